"""The figures a reference model stores (``mdnet_utils.reference``): computed the same way when it is trained,
when a notebook reads it and when ``reference --check`` recomputes them, so that they can be compared exactly.

* an image model: accuracy and the mean cross-entropy of its class logits (a continuous figure: any change of
  the weights shows in it);
* a report generator: the same from its class logits, and BLEU-4 of its greedy reports against the five;
* a grade reader: the same from its conclusion head, the accuracy of each grade, and "tasks", the mean of the
  six accuracies (what its model selection maximises).
"""
from __future__ import annotations

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

__all__ = ["reference_figures", "reference_split", "summed_cross_entropy"]


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
def reference_figures(model: nn.Module, split: dict, vocab: Vocabulary | None, limit: int | None = None) -> dict:
    """The figures of the module docstring on the first ``limit`` tiles of ``split`` (all by default)."""
    images, labels = split["images"][:limit], split["labels"][:limit]
    if isinstance(model, GradeReader):
        device = next(model.parameters()).device
        outs = [torch.cat(o) for o in zip(*(model(to_input(images[i:i + 256], device))
                                            for i in range(0, len(images), 256)))]
        logits = outs[0].cpu()
        scores = {f: float((o.argmax(1).cpu() == split["grades"][:limit, k]).float().mean())
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
