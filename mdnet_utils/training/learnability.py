"""How learnable is the synthetic data? A small CNN reads the conclusion and all five grades.

The datasheet's promise (data/README.md) is measured here: a pre-activation ResNet with a
stride-2 stem, one shared backbone and six linear heads (the conclusion and the five feature
grades), trained jointly for a fixed number of epochs with the course's one engine (a diagnosis stage
whose loss is the sum of six cross-entropies). Budgets are epochs, never seconds, so the figures are the
same on every machine.
"""
from __future__ import annotations

import torch
from torch import nn

from mdnet_utils.data.grades import CLASSES, FEATURES, GRADES
from mdnet_utils.data.loading import TensorCases
from mdnet_utils.evaluation.figures import grade_outputs, summed_cross_entropy
from mdnet_utils.models import grade_reader
from mdnet_utils.models.resnet import PreActResNet
from mdnet_utils.training.config import Stage
from mdnet_utils.training.engine import train

TASKS: tuple[str, ...] = ("conclusion",) + FEATURES
TASK_SIZES: tuple[int, ...] = (len(CLASSES),) + tuple(len(GRADES[f]) for f in FEATURES)


class GradeReader(grade_reader.GradeReader):
    """Notebook 00's reader: the small pre-activation ResNet (widths 16/32/64, stride-2 stem) unless another
    backbone is given, one linear head per task in TASKS order."""

    def __init__(self, backbone: nn.Module | None = None):
        super().__init__(backbone or PreActResNet(2, (16, 32, 64), stem_stride=2, num_classes=0), TASK_SIZES)


def evaluate(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """Accuracy per task (fraction correct) on uint8 images (N, 3, H, W) and targets (N, 6)."""
    model.eval()
    outs = grade_outputs(model, images, batch_size)
    return {task: float((out.argmax(1) == targets[:, t]).sum()) / len(images)
            for t, (task, out) in enumerate(zip(TASKS, outs))}


def train_grade_reader(train_images: torch.Tensor, train_targets: torch.Tensor, *, epochs: int,
                       batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
                       val: tuple[torch.Tensor, torch.Tensor] | None = None, progress: bool = True,
                       model: grade_reader.GradeReader | None = None,
                       stage: Stage | None = None) -> tuple[grade_reader.GradeReader, list[dict]]:
    """Train a GradeReader jointly on the six tasks (summed cross-entropies): one diagnosis-like stage of the
    engine (AdamW with weight decay 5e-4, one-cycle, flips and turns), targets (N, 6).

    ``model``: another reader to train (e.g. the "grade-reader" reference's network, built from its
    ``ModelConfig``); by default a fresh ``GradeReader`` drawn from ``seed``. ``stage``: the engine stage to
    train with (e.g. the reference's recipe, ``REGISTRY["grade-reader"].recipe.stages[0]``), its epochs set to
    ``epochs`` (``batch_size`` and ``lr`` then unused); by default the one above. Returns the model and a history
    with the mean training loss (and validation accuracies) per epoch.
    """
    torch.manual_seed(seed)
    model = model if model is not None else GradeReader()

    def on_val(m: nn.Module) -> dict:
        return {f"val_{k}": v for k, v in evaluate(m, *val).items()}

    stage = stage.replace(epochs=epochs) if stage is not None else Stage(
        "diagnosis", epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=5e-4)
    history = train(model, TensorCases(train_images, train_targets), [stage], seed=seed,
                    loss_fn=summed_cross_entropy,
                    evaluate=on_val if val is not None else None, progress=progress)
    return model, history
