"""The figures a reference model stores (``mdnet_utils.reference``): computed the same way when it is trained,
when a notebook reads it and when ``reference --check`` recomputes them (``figures_agree``: equal up to the
rounding of another CPU).

* an image model: accuracy and the mean cross-entropy of its class logits (a continuous figure: any change of
  the weights shows in it);
* a report generator: the same from its class logits, and BLEU-4 of its greedy reports against the five;
* a grade reader: the same from its conclusion head, the accuracy of each grade, and "tasks", the mean of the
  six accuracies (what its model selection maximises).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mdnet_utils.data.grades import FEATURES
from mdnet_utils.data.loading import load_report_tiles, load_tiles, to_input
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.evaluation.diagnosis import predict
from mdnet_utils.evaluation.metrics import caption_scores
from mdnet_utils.evaluation.reports import generate_reports
from mdnet_utils.models.grade_reader import GradeReader

__all__ = ["figures_agree", "grade_outputs", "reference_figures", "reference_split", "summed_cross_entropy"]


def reference_split(root: str | os.PathLike, name: str, vocab: Vocabulary | None, max_len: int | None) -> dict:
    """A split in memory: images, labels and grades (no ``vocab``), or the report tiles' images, labels, ids,
    reports and training cases (with one)."""
    if vocab is None:
        images, labels, grades = load_tiles(Path(root), name)
        return {"images": images, "labels": labels, "grades": grades}
    tiles = load_report_tiles(Path(root), name, vocab, max_len=max_len)
    return {"images": tiles.images, "labels": tiles.labels, "ids": tiles.ids, "reports": tiles.reports,
            "cases": tiles.cases()}


@torch.no_grad()
def grade_outputs(model: GradeReader, images: torch.Tensor, batch_size: int = 256) -> list[torch.Tensor]:
    """A grade reader's logits on uint8 images (N, 3, H, W), in batches, on the CPU: one (N, classes) tensor per
    head, the conclusion first. The caller chooses the mode (``model.eval()`` for figures)."""
    device = next(model.parameters()).device
    batches = (model(to_input(images[i:i + batch_size], device)) for i in range(0, len(images), batch_size))
    return [torch.cat(o).cpu() for o in zip(*batches)]


@torch.no_grad()
def reference_figures(model: nn.Module, split: dict, vocab: Vocabulary | None, limit: int | None = None) -> dict:
    """The figures of the module docstring on the first ``limit`` tiles of ``split`` (all by default)."""
    images, labels = split["images"][:limit], split["labels"][:limit]
    if isinstance(model, GradeReader):
        outs = grade_outputs(model, images)
        logits = outs[0]
        scores = {f: float((o.argmax(1) == split["grades"][:limit, k]).float().mean())
                  for k, (f, o) in enumerate(zip(FEATURES, outs[1:]))}
        scores["tasks"] = (sum(scores.values()) + float((logits.argmax(1) == labels).float().mean())) / len(outs)
    elif vocab is None:
        logits = predict(model, images)
        scores = {}
    else:
        gen = generate_reports(model, images, vocab, max_len=60)
        logits = gen.class_logits.float().cpu()
        ids = split["ids"][:len(images)]
        refs = {i: r for i, r in zip(ids, split["reports"][:len(images)])}
        scores = {"BLEU-4": caption_scores(refs, dict(zip(ids, gen.texts)), meteor=False)["BLEU-4"]}
    return {"accuracy": float((logits.argmax(1) == labels).float().mean()),
            "class_loss": float(F.cross_entropy(logits, labels, ignore_index=-1)), **scores}


def summed_cross_entropy(outputs: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """A grade reader's loss: the sum of its heads' cross-entropies, targets (N, heads) (notebook 00's reader is
    trained the same way)."""
    return sum(F.cross_entropy(out, targets[:, t]) for t, out in enumerate(outputs))


def figures_agree(found: dict, stored: dict | None, tiles: int) -> bool:
    """Whether figures recomputed on ``tiles`` tiles are the stored ones, up to what another machine changes: the
    same keys, each loss within a relative 1e-5 (float rounding differs between CPUs and thread counts: a
    relative 2.2e-7 measured between two machines of this project), a share of tiles within one tile, BLEU-4
    within 0.01 (a near-tie in greedy decoding may change a word). Changed weights move the loss far more."""
    if not stored or set(found) != set(stored):
        return False
    for key, value in found.items():
        if key.endswith("loss"):
            ok = math.isclose(value, stored[key], rel_tol=1e-5, abs_tol=1e-8)
        else:
            ok = abs(value - stored[key]) <= (0.01 if key == "BLEU-4" else 1 / tiles + 1e-9)
        if not ok:
            return False
    return True
