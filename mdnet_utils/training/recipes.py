"""The course's CLI recipes, defined once, as data: what ``mdnet train`` runs (notebook 08).

``course_recipe("diagnosis")``  the diagnosis stage of ``mdnet train``: 8 epochs (fast mode 2) on the first 1,536
                                training tiles (256), batch 64, AdamW 3e-3 with weight decay 5e-4, one-cycle,
                                flips and turns, no clipping.
``course_recipe("mdnet")``      MDNet's three stages (``mdnet train``): that diagnosis stage; then 4 epochs (1)
                                of the decoder with the image model frozen, lr 3e-3, all training tiles (256),
                                every reference report of a tile at once; then 4 epochs (1) end to end on
                                L_words + 0.1 L_class, lr 2e-3, two of each tile's reports a step, flips and
                                turns. Both report stages clip gradients at norm 5 (usual for LSTMs), batch 32,
                                weight decay 1e-4. The vocabulary keeps words seen 3 times, reports are cut at
                                60 tokens (the course's reports have at most 52).

The authors used RMSProp (their later code); the course keeps one optimiser, AdamW, for every stage. The
``limit``s keep a course run within minutes on a laptop CPU; ``mdnet train`` drops them (it trains on all of
a user's data) unless its ``--config`` asks for them.

``mdnet train`` (notebook 08) runs ``course_recipe("mdnet")`` through the engine. ``diagnosis_net``,
``fit_diagnosis`` and ``report_generator`` run the same recipes from Python, each stage kept in ``runs/``
(``checkpoint.cached_fit``) keyed by the data, the settings and the weights it starts from; a test holds their
weights and the CLI's bit for bit equal. Notebooks 01-07 no longer call them: they load the reference models
(``mdnet_utils.reference``, whose recipes are the registry's) and train live with ``engine.train``.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from mdnet_utils.data.dataset import training_vocab
from mdnet_utils.data.grades import CLASSES
from mdnet_utils.data.loading import TensorCases, load_report_tiles, load_tiles
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.evaluation.diagnosis import accuracy
from mdnet_utils.models.config import MODEL_PRESETS, ModelConfig, build_model
from mdnet_utils.models.mdnet import ReportGenerator
from mdnet_utils.training.checkpoint import cached_fit, fingerprint, weights_fingerprint
from mdnet_utils.training.config import STAGES, Stage, TrainConfig
from mdnet_utils.training.engine import train

__all__ = ["course_recipe", "RECIPES", "DIAGNOSIS_MODELS", "diagnosis_model", "fit_diagnosis", "diagnosis_net",
           "report_generator"]

RECIPES = ("diagnosis", "mdnet")
#: The image model each report generator is pre-trained from, by the name notebooks 01-05 train it under.
DIAGNOSIS_MODELS = {"mdnet": "EcNet-20-4", "resnet-sat": "ResNet-32"}


def course_recipe(name: str, *, fast: bool = False) -> TrainConfig:
    """The recipe ``name`` ("diagnosis" or "mdnet") in full or fast mode (see the module docstring)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}.")
    pick = (lambda full, quick: quick) if fast else (lambda full, quick: full)
    diagnosis = Stage("diagnosis", epochs=pick(8, 2), lr=3e-3, batch_size=64, weight_decay=5e-4, clip=None,
                      augment=True, limit=pick(1536, 256))
    if name == "diagnosis":
        return TrainConfig((diagnosis,), seed=0)
    decoder = Stage("decoder", epochs=pick(4, 1), lr=3e-3, batch_size=32, weight_decay=1e-4, clip=5.0,
                    augment=False, limit=pick(None, 256))
    end_to_end = Stage("end_to_end", epochs=pick(4, 1), lr=2e-3, batch_size=32, weight_decay=1e-4, clip=5.0,
                       augment=True, class_weight=0.1, reports_per_tile=2, limit=pick(None, 256))
    return TrainConfig((diagnosis, decoder, end_to_end), seed=0, min_count=3, max_len=60)


def diagnosis_model(depth: int, *, plain: bool = False, decoupled: bool = False) -> ModelConfig:
    """The CIFAR-style pre-activation (plain) network of notebooks 01-04 as a ``ModelConfig``: stride-2 stem,
    four classes; ``decoupled`` puts Eq. (9)'s head on it (notebook 04)."""
    return ModelConfig(backbone="plain" if plain else "resnet", depth=depth, width=1,
                       head="decoupled" if decoupled else "shared", num_classes=len(CLASSES))


def fit_diagnosis(model: nn.Module, name: str, *, root: str | os.PathLike, config,
                  device: torch.device | None = None, progress: bool = True) -> list[dict]:
    """Train ``model`` on the diagnosis of the tiles with the course's recipe, or load it if done before.

    ``course_recipe("diagnosis")`` through the engine; training accuracy on the first 512 training tiles and
    accuracy on the test split recorded every epoch; the result kept in ``runs/diagnosis/{name}-{mode}.pt``.
    Seed the model's initialisation before building it.
    """
    recipe = course_recipe("diagnosis", fast=config.fast)
    stage = recipe.stages[0]
    images, labels, _ = load_tiles(root, "train")
    images, labels = images[:stage.limit], labels[:stage.limit]
    test_images, test_labels, _ = load_tiles(root, "test")
    model.to(device or torch.device("cpu"))

    def evaluate(m: nn.Module) -> dict:  # training accuracy on the first 512 training tiles: cheaper, same trend
        return {"train_acc": accuracy(m, images[:512], labels[:512]), "test_acc": accuracy(m, test_images, test_labels)}

    key = {"tag": "diagnosis-v3", "model": name, "n_parameters": sum(p.numel() for p in model.parameters()),
           "data": fingerprint(images, labels), "recipe": recipe.replace(seed=config.seed).to_dict()}
    path = Path(config.runs_dir) / "diagnosis" / f"{name}-{config.mode}.pt"
    return cached_fit(path, model, key, lambda: train(model, TensorCases(images, labels), recipe.stages,
                                                      seed=config.seed, evaluate=evaluate,
                                                      progress=name if progress else False))


def diagnosis_net(depth: int, *, plain: bool, root: str | os.PathLike, config, device: torch.device | None = None,
                  progress: bool = True, decoupled: bool = False) -> tuple[nn.Module, list[dict]]:
    """The course's residual (or plain) CIFAR-style network trained on the diagnosis of the tiles.

    Notebook 01 trains these (ResNet-8/32 and their plain twins) and notebooks 02-05 take them apart; they all
    call this function, so they share one recipe (``fit_diagnosis``) and one training run. ``decoupled=True``
    (notebook 04) puts a ``DecoupledResNet`` head (Eq. (9)) on the same backbone, drawn first, so it starts from
    the shared network's weights.
    """
    cfg = diagnosis_model(depth, plain=plain, decoupled=decoupled)
    torch.manual_seed(config.seed)
    model = build_model(cfg)
    history = fit_diagnosis(model, cfg.name, root=root, config=config, device=device, progress=progress)
    return model, history


def report_generator(kind: str, *, root: str | os.PathLike, config, device: torch.device | None = None,
                     until: str = "decoder", progress: bool = True) -> tuple[ReportGenerator, Vocabulary, dict]:
    """A course report generator (``"mdnet"`` or ``"resnet-sat"``) trained through stage ``until`` of
    ``course_recipe("mdnet")``. Its image model is pre-trained as in notebooks 01-05 (``fit_diagnosis``:
    EcNet-20-4 for MDNet, ResNet-32 for the baseline; the same run they keep in ``runs/diagnosis``). Returns the
    model (in eval mode), the vocabulary and each stage's history."""
    if kind not in MODEL_PRESETS:
        raise ValueError(f"unknown model {kind!r}: choose one of {', '.join(MODEL_PRESETS)}.")
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}: choose one of {', '.join(STAGES)}.")
    recipe = course_recipe("mdnet", fast=config.fast).replace(seed=config.seed)
    device = device or torch.device("cpu")
    vocab = training_vocab(root, recipe.min_count)
    cfg = MODEL_PRESETS[kind].replace(vocab_size=len(vocab), image_size=config.image_size, num_classes=len(CLASSES))
    torch.manual_seed(recipe.seed)  # the image model is built first: the same start as notebooks 01 and 05
    model = build_model(cfg).to(device)
    histories = {"diagnosis": fit_diagnosis(model.image_model, DIAGNOSIS_MODELS[kind], root=root, config=config,
                                            device=device, progress=progress)}
    if until == "diagnosis":
        return model.eval(), vocab, histories
    train_tiles = load_report_tiles(root, "train", vocab, max_len=recipe.max_len)
    cases = train_tiles.cases()
    for stage in recipe.stages[1:]:
        used = cases.subset(stage.limit)
        key = {"tag": "reports-v2", "model": cfg.to_dict(), "data": fingerprint(used.images, used.tokens),
               "start": weights_fingerprint(model), "stage": asdict(stage), "seed": recipe.seed}
        path = Path(config.runs_dir) / "reports" / f"{kind}-{stage.name}-{config.mode}.pt"
        histories[stage.name] = cached_fit(path, model, key, lambda s=stage: train(
            model, cases, [s], seed=recipe.seed, progress=f"{kind}: {s.name}" if progress else False))
        if stage.name == until:
            break
    return model.eval(), vocab, histories
