"""Residual networks built from the blocks of ``blocks.py``.

ImageNet-style: ``ResNet`` and ``resnet18``, ``resnet34``, ``resnet50``, torchvision's layout with the
same parameter names, shapes and initialisation: ``ours.load_state_dict(torchvision_model.state_dict())``
works and the two compute the same function. The series' proof that the from-scratch ResNet is the real one.

CIFAR-style, for small tiles: ``cifar_resnet(depth, ...)`` (He et al. 2015 and 2016): a 3x3 stem conv,
three stages of n blocks at widths 16k, 32k, 64k with strides 1, 2, 2, global average pooling, a linear
head. ``PreActResNet`` is the small pre-activation one of ``learnability.py``.

Every network has ``features(x)`` (the last feature maps), ``num_features`` (their channels) and
``blocks`` (its residual blocks in forward order).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mdnet_utils.models.blocks import (BasicBlock, Bottleneck, PostActBlock, PreActBasicBlock,
                                       PreActBottleneck, ResidualBlock)


def init_weights(model: nn.Module) -> None:
    """torchvision's rule: convs kaiming-normal (fan_out, ReLU), BN weight 1 and bias 0, linear layers as built."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def _stage(block: type[ResidualBlock], in_ch: int, planes: int, n: int, stride: int, plain: bool = False) -> nn.Sequential:
    """n blocks; the first takes the stride and the change of width (so it has the projection shortcut)."""
    blocks = []
    for i in range(n):
        blocks.append(block(in_ch, planes, stride if i == 0 else 1, plain=plain))
        in_ch = blocks[-1].out_channels
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """ImageNet-style ResNet, torchvision's layout: 7x7/2 conv-BN-ReLU, 3x3/2 max pool, layer1..layer4
    (widths 64, 128, 256, 512 times the block's expansion; strides 1, 2, 2, 2), average pool, fc.

    ``num_classes=0`` leaves the head out: ``forward`` then returns the pooled features.
    """

    def __init__(self, block: type[PostActBlock], layers: Sequence[int], num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _stage(block, 64, 64, layers[0], stride=1)
        self.layer2 = _stage(block, 64 * block.expansion, 128, layers[1], stride=2)
        self.layer3 = _stage(block, 128 * block.expansion, 256, layers[2], stride=2)
        self.layer4 = _stage(block, 256 * block.expansion, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else None
        init_weights(self)

    @property
    def blocks(self) -> list[ResidualBlock]:
        """The residual blocks of layer1..layer4, in forward order (a list: registering them twice
        would change the state_dict)."""
        return [b for layer in (self.layer1, self.layer2, self.layer3, self.layer4) for b in layer]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """layer4's feature maps, (B, num_features, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return x if self.fc is None else self.fc(x)


def resnet18(*, num_classes: int = 1000) -> ResNet:
    """ResNet-18: basic blocks, (2, 2, 2, 2); loads torchvision's ``resnet18`` state_dict."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet34(*, num_classes: int = 1000) -> ResNet:
    """ResNet-34: basic blocks, (3, 4, 6, 3); loads torchvision's ``resnet34`` state_dict."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes)


def resnet50(*, num_classes: int = 1000) -> ResNet:
    """ResNet-50: bottleneck blocks, (3, 4, 6, 3); loads torchvision's ``resnet50`` state_dict."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)


class CifarResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem conv (followed by BN-ReLU in post-activation nets), one stage per
    entry of ``widths`` (strides 1, 2, 2, ...), ``blocks_per_stage`` blocks each, then BN-ReLU in
    pre-activation nets (their blocks end with an addition), global average pooling and a linear head.

    ``widths`` are the blocks' ``planes`` (bottleneck blocks output 4 times as many channels).
    ``num_classes=0`` leaves the head out: ``forward`` then returns the pooled features.
    """

    def __init__(self, block: type[ResidualBlock], blocks_per_stage: int, widths: Sequence[int] = (16, 32, 64), *,
                 stem_width: int = 16, stem_stride: int = 1, plain: bool = False, num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        stem = [nn.Conv2d(in_channels, stem_width, 3, stem_stride, 1, bias=False)]
        if not block.preact:
            stem += [nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)
        stages, ch = [], stem_width
        for s, planes in enumerate(widths):
            stages.append(_stage(block, ch, planes, blocks_per_stage, stride=1 if s == 0 else 2, plain=plain))
            ch = stages[-1][-1].out_channels
        self.blocks = nn.Sequential(*(b for stage in stages for b in stage))  # one flat sequence
        self.final_act = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(inplace=True)) if block.preact else nn.Identity()
        self.num_features = ch
        self.fc = nn.Linear(ch, num_classes) if num_classes else None
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature maps (after the final BN-ReLU in pre-activation nets), (B, num_features, H', W')."""
        return self.final_act(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        return pooled if self.fc is None else self.fc(pooled)


_CIFAR_BLOCKS = {("basic", False): BasicBlock, ("basic", True): PreActBasicBlock,
                 ("bottleneck", False): Bottleneck, ("bottleneck", True): PreActBottleneck}


def cifar_resnet(depth: int, *, block: str = "basic", preact: bool = True, plain: bool = False,
                 widen_factor: int = 1, num_classes: int = 10, stem_stride: int = 1,
                 in_channels: int = 3) -> CifarResNet:
    """He et al.'s CIFAR ResNets: depth 6n+2 (basic blocks, 2 convs each) or 9n+2 (bottleneck, 3 convs).

    depth counts the stem conv, the convs of the branches and the linear head (not projections).
    Widths: stem 16, stages 16k, 32k, 64k for ``widen_factor`` k (bottleneck outputs 4 times that).
    ``preact=False`` gives the original post-activation net (with projection shortcuts, He et al.'s
    option B), ``plain=True`` the same net without shortcuts. Examples: ``cifar_resnet(20, preact=False)``
    is ResNet-20 (0.27M parameters); ``cifar_resnet(164, block="bottleneck")`` is pre-act ResNet-164 (1.7M).
    """
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"block={block!r} is not a CIFAR ResNet block; use 'basic' or 'bottleneck'.")
    per_block = 2 if block == "basic" else 3
    if depth < 3 * per_block + 2 or (depth - 2) % (3 * per_block):
        examples = "20, 32, 44, 56, 110" if block == "basic" else "29, 56, 110, 164"
        raise ValueError(f"depth={depth} is not {3 * per_block}n+2 with n >= 1, which {block} blocks need "
                         f"(e.g. {examples}).")
    if widen_factor < 1:
        raise ValueError(f"widen_factor={widen_factor} must be a positive integer.")
    k = widen_factor
    return CifarResNet(_CIFAR_BLOCKS[block, preact], (depth - 2) // (3 * per_block), (16 * k, 32 * k, 64 * k),
                       stem_width=16, stem_stride=stem_stride, plain=plain, num_classes=num_classes,
                       in_channels=in_channels)


class PreActResNet(CifarResNet):
    """The small pre-activation ResNet of ``learnability.py``: ``blocks_per_stage`` basic blocks per stage
    at ``widths`` (the stem has ``widths[0]`` channels).

    ``stem_stride=2`` halves the resolution at the stem: a 64x64 tile then costs what a 32x32 CIFAR
    image does, which is what makes CPU training in minutes possible.
    """

    def __init__(self, blocks_per_stage: int = 2, widths: tuple[int, ...] = (16, 32, 64),
                 stem_stride: int = 1, num_classes: int = 10, in_channels: int = 3):
        super().__init__(PreActBasicBlock, blocks_per_stage, widths, stem_width=widths[0],
                         stem_stride=stem_stride, num_classes=num_classes, in_channels=in_channels)
