"""The reference registry: every model whose result a notebook discusses, as data (``mdnet_utils.reference``
trains, ships, loads and checks them).

Each ``Reference`` is a ``ModelConfig``, a recipe (``TrainConfig``: the engine's stages without the notebooks'
``limit``s), its seeds, and for a report generator the image reference its image model starts from (the same
seed). The epoch budgets (``EPOCHS``) are provisional: they are to be fixed where the validation curves flatten,
when the registry is first trained in full (see the README); a budget change changes every recipe fingerprint
(``mdnet_utils.reference.recipe_fingerprint``), so ``check_references`` then names every model it makes stale.
"""
from __future__ import annotations

from dataclasses import dataclass

from mdnet_utils.data.grades import CLASSES, FEATURES, GRADES
from mdnet_utils.models.config import MODEL_PRESETS, ModelConfig
from mdnet_utils.training.config import TrainConfig
from mdnet_utils.training.recipes import course_recipe, diagnosis_model

__all__ = ["EPOCHS", "REGISTRY", "Reference"]

#: Epochs of each recipe (provisional: see the module docstring).
EPOCHS = {"diagnosis": 30, "decoder": 10, "end_to_end": 10}


@dataclass(frozen=True)
class Reference:
    """One entry of the registry (see the module docstring)."""
    name: str
    model: ModelConfig
    recipe: TrainConfig
    seeds: tuple[int, ...] = (0, 1, 2)
    start_from: str | None = None
    float16: bool = True

    @property
    def reports(self) -> bool:
        return self.model.reports


def _image_recipe() -> TrainConfig:
    stage = course_recipe("diagnosis").stages[0].replace(epochs=EPOCHS["diagnosis"], limit=None)
    return TrainConfig((stage,), seed=0)


def _report_recipe() -> TrainConfig:
    full = course_recipe("mdnet")
    stages = tuple(s.replace(epochs=EPOCHS[s.name], limit=None) for s in full.stages[1:])
    return full.replace(stages=stages)


def _registry() -> dict[str, Reference]:
    image, reports = _image_recipe(), _report_recipe()
    four = {"num_classes": len(CLASSES)}
    grades = {"head": "grades", "grade_sizes": tuple(len(GRADES[f]) for f in FEATURES), **four}
    entries = [Reference("resnet-8", diagnosis_model(8), image),
               Reference("plain-8", diagnosis_model(8, plain=True), image),
               Reference("resnet-32", diagnosis_model(32), image),
               Reference("plain-32", diagnosis_model(32, plain=True), image),
               Reference("resnet-32-decoupled", diagnosis_model(32, decoupled=True), image),
               # Eq. (9) exactly: the shared head's one BN-ReLU, a classifier per member (notebook 04)
               Reference("resnet-32-eq9", diagnosis_model(32).replace(head="eq9"), image),
               Reference("literal-ecnet-11-6", ModelConfig(backbone="ecnet-literal", depth=11, width=6, **four), image),
               Reference("ecnet-20-4", MODEL_PRESETS["mdnet"].replace(**four), image),
               # grade readers: what the pixels give a backbone (notebook 00's, then MDNet's)
               Reference("grade-reader", ModelConfig(backbone="resnet", depth=14, width=2, **grades), image),
               Reference("grade-reader-ecnet-20-4", MODEL_PRESETS["mdnet"].replace(**grades), image),
               # report generators: vocab_size 4 (the special tokens) stands for "the training split's vocabulary"
               Reference("mdnet", MODEL_PRESETS["mdnet"].replace(vocab_size=4, **four), reports,
                         start_from="ecnet-20-4"),
               Reference("sat-ecnet-20-4", MODEL_PRESETS["mdnet"].replace(vocab_size=4, attention="soft", **four),
                         reports, start_from="ecnet-20-4"),
               # the attention study of Part III: two more ways for the CAM to steer, on MDNet's backbone
               Reference("mdnet-cam-content",
                         MODEL_PRESETS["mdnet"].replace(vocab_size=4, attention="cam-content", **four), reports,
                         start_from="ecnet-20-4"),
               Reference("mdnet-cam-slot", MODEL_PRESETS["mdnet"].replace(vocab_size=4, attention="cam-slot", **four),
                         reports, start_from="ecnet-20-4")]
    # The ResNet-32 Show-Attend-Tell baseline (MODEL_PRESETS["resnet-sat"], `train --model resnet-sat`) is not
    # a reference: since the study compares attentions on one backbone, no notebook discusses its result.
    return {e.name: e for e in entries}


REGISTRY: dict[str, Reference] = _registry()
