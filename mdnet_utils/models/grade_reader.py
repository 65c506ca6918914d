"""The grade reader: one backbone, one linear head per task (the conclusion, then the five feature grades).

It measures what the pixels give a backbone: notebook 00 uses a small one to show the data is learnable (the
datasheet's promise), notebook 07 one with MDNet's backbone to say how much of each grade a report generator
could read back at best. The task sizes come from the caller (the data's grades), as a model knows tensors,
not the data set.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["GradeReader"]


class GradeReader(nn.Module):
    """``backbone`` (any network with ``num_features`` whose forward returns pooled features) and one linear head
    per entry of ``task_sizes``; returns a list of logits in that order."""

    def __init__(self, backbone: nn.Module, task_sizes: tuple[int, ...]):
        super().__init__()
        self.backbone = backbone
        self.task_sizes = tuple(task_sizes)
        self.heads = nn.ModuleList(nn.Linear(backbone.num_features, n) for n in self.task_sizes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        z = self.backbone(x)
        return [h(z) for h in self.heads]
