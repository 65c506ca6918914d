"""The diagnosis of an image model, scored: its logits for a set of tiles, and its accuracy."""
from __future__ import annotations

import torch
from torch import nn

from mdnet_utils.data.loading import to_input

__all__ = ["predict", "accuracy"]


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The model's logits for uint8 images, in eval mode, batch by batch, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(to_input(images[i:i + batch_size], device)).cpu()
                      for i in range(0, len(images), batch_size)])


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction of tiles whose arg-max logit is the label."""
    return float((predict(model, images, batch_size).argmax(1) == labels).float().mean())
