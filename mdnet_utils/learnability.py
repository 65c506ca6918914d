"""How learnable is the synthetic data? A small CNN reads the conclusion and all five grades.

The datasheet's promise (data/README.md) is measured here: a pre-activation ResNet with a
stride-2 stem, one shared backbone and six linear heads (the conclusion and the five feature
grades), trained jointly for a fixed number of epochs. Budgets are epochs, never seconds, so the
figures are the same on every machine.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mdnet_utils.data.grades import CLASSES, FEATURES, GRADES
from mdnet_utils.models.resnet import PreActResNet

TASKS: tuple[str, ...] = ("conclusion",) + FEATURES
TASK_SIZES: tuple[int, ...] = (len(CLASSES),) + tuple(len(GRADES[f]) for f in FEATURES)


class GradeReader(nn.Module):
    """One backbone, one linear head per task; returns a list of logits in TASKS order."""

    def __init__(self, backbone: PreActResNet | None = None):
        super().__init__()
        self.backbone = backbone or PreActResNet(2, (16, 32, 64), stem_stride=2, num_classes=0)
        self.heads = nn.ModuleList(nn.Linear(self.backbone.num_features, n) for n in TASK_SIZES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        z = self.backbone(x)
        return [h(z) for h in self.heads]


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips and right-angle turns: none of the five features depends on the tile's orientation."""
    if torch.rand((), generator=gen) < 0.5:
        x = x.flip(3)
    k = int(torch.randint(0, 4, (), generator=gen))
    return torch.rot90(x, k, dims=(2, 3))


def evaluate(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """Accuracy per task (fraction correct) on uint8 images (N, 3, H, W) and targets (N, 6)."""
    model.eval()
    correct = torch.zeros(len(TASKS))
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].float() / 255.0
            outs = model(x)
            for t, out in enumerate(outs):
                correct[t] += (out.argmax(1) == targets[i:i + batch_size, t]).sum()
    return {task: float(c) / len(images) for task, c in zip(TASKS, correct)}


def train_grade_reader(train_images: torch.Tensor, train_targets: torch.Tensor, *, epochs: int,
                       batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
                       val: tuple[torch.Tensor, torch.Tensor] | None = None,
                       progress: bool = True) -> tuple[GradeReader, list[dict]]:
    """Train a GradeReader jointly on the six tasks (summed cross-entropies), AdamW + one-cycle.

    Returns the model and a history with the mean training loss (and validation accuracies)
    per epoch.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = GradeReader()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * ((len(train_images) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    bar = tqdm(range(epochs), desc="epochs", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train_images), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x = _augment(train_images[idx].float() / 255.0, gen)
            y = train_targets[idx]
            loss = sum(loss_fn(out, y[:, t]) for t, out in enumerate(model(x)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        record = {"epoch": epoch + 1, "train_loss": total / n}
        if val is not None:
            record.update({f"val_{k}": v for k, v in evaluate(model, *val).items()})
            bar.set_postfix(conclusion=f"{record['val_conclusion']:.3f}")
        history.append(record)
    return model, history
