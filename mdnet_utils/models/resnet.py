"""Residual networks, starting with the pre-activation form of He et al. 2016.

Eq. (3): x_{l+1} = x_l + F_l(x_l), with F_l = (BN-ReLU-conv3x3) twice in the pre-activation
basic block. Where a block changes width or resolution the shortcut is a strided 1x1 conv.
"""
from __future__ import annotations

import torch
from torch import nn


class PreActBasicBlock(nn.Module):
    """Eq. (3): x_{l+1} = h(x_l) + F_l(x_l), F_l = BN-ReLU-conv3x3-BN-ReLU-conv3x3 (pre-activation).

    h is the identity when width and stride are kept, else a strided 1x1 projection.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F_l(x_l), the residual branch."""
        pre = torch.relu(self.bn1(x))
        return self.conv2(torch.relu(self.bn2(self.conv1(pre))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.shortcut is None else self.shortcut(torch.relu(self.bn1(x)))
        return h + self.branch(x)


class PreActResNet(nn.Module):
    """A small CIFAR-style pre-activation ResNet: stem conv, three stages, BN-ReLU-GAP head.

    ``stem_stride=2`` halves the resolution at the stem: a 64x64 tile then costs what a 32x32
    CIFAR image does, which is what makes CPU training in minutes possible.
    """

    def __init__(self, blocks_per_stage: int = 2, widths: tuple[int, int, int] = (16, 32, 64),
                 stem_stride: int = 1, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1, bias=False)
        layers, ch = [], widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks_per_stage):
                layers.append(PreActBasicBlock(ch, w, stride=2 if (b == 0 and i > 0) else 1))
                ch = w
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(ch)
        self.num_features = ch
        self.fc = nn.Linear(ch, num_classes) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's feature maps after the final BN-ReLU: (B, C, H', W')."""
        return torch.relu(self.bn(self.blocks(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        return pooled if self.fc is None else self.fc(pooled)
