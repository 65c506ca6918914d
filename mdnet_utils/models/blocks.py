"""Residual blocks: the post-activation form (He et al. 2015) and the pre-activation form (He et al. 2016).

Every block maps x_l to x_{l+1} with a residual branch F_l and a shortcut h (equations.md, Part I):

    (1)  y_l     = F_l(x_l) + h(x_l)
    (2)  x_{l+1} = f(y_l)
    (3)  x_{l+1} = x_l + F_l(x_l)        (h and f both the identity)

Post-activation (``BasicBlock``, ``Bottleneck``: torchvision's blocks, same parameter names): F_l ends
with a BN, f = ReLU after the addition, h = identity or, where the block changes width or resolution,
a strided 1x1 conv + BN (``downsample``).
Pre-activation (``PreActBasicBlock``, ``PreActBottleneck``): every conv is preceded by BN-ReLU and
nothing follows the addition (f = identity), so Eq. (3) holds exactly in every block that keeps width
and resolution; elsewhere h is a strided 1x1 conv of the pre-activated input.

``plain=True`` builds a block's twin without a shortcut, x_{l+1} = f(F_l(x_l)): the "plain" networks
the papers compare against. Every block exposes ``branch(x)`` = F_l(x), ``h(x)`` and ``forward``.
"""
from __future__ import annotations

import torch
from torch import nn


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class ResidualBlock(nn.Module):
    """What every block of the series shares; subclasses define the layers, ``branch`` and ``forward``.

    ``tap`` is an ``nn.Identity`` that F_l(x_l) passes through on its way out of ``branch``. It has no
    parameters (state_dicts are unchanged); it is where ``mdnet_utils.models.stream`` hooks in to read
    the residual stream and to lesion the block.
    """

    expansion = 1  # output width = planes * expansion
    preact = False

    def __init__(self, in_ch: int, planes: int, stride: int, plain: bool):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_ch, planes * self.expansion, stride
        self.plain = plain
        self.tap = nn.Identity()

    @property
    def keeps_shape(self) -> bool:
        """True where x_{l+1} has the shape of x_l (so h is the identity)."""
        return self.stride == 1 and self.in_channels == self.out_channels

    def _projection(self, with_bn: bool) -> nn.Module | None:
        """h where the block changes width or resolution: a strided 1x1 conv (+ BN); None elsewhere."""
        if self.plain or self.keeps_shape:
            return None
        conv = conv1x1(self.in_channels, self.out_channels, self.stride)
        return nn.Sequential(conv, nn.BatchNorm2d(self.out_channels)) if with_bn else conv

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F_l(x_l), the residual branch."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return "plain" if self.plain else ""


class PostActBlock(ResidualBlock):
    """Post-activation: Eqs. (1)-(2) with f = ReLU; h = identity or ``downsample`` (1x1 conv + BN)."""

    def h(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eqs. (1)-(2): x_{l+1} = ReLU(F_l(x_l) + h(x_l)); the plain twin: ReLU(F_l(x_l))."""
        if self.plain:
            return torch.relu(self.branch(x))
        return self.relu(self.branch(x) + self.h(x))  # the sum is a new tensor: ReLU in place on it


class PreActBlock(ResidualBlock):
    """Pre-activation: Eq. (3), x_{l+1} = h(x_l) + F_l(x_l) with f the identity.

    F_l starts with BN-ReLU on x_l (``preactivate``); h is the identity or, where the block changes
    width or resolution, a strided 1x1 conv of that same pre-activated input (He et al.'s code).
    """

    preact = True

    def preactivate(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(x))

    def branch_from(self, a: torch.Tensor) -> torch.Tensor:
        """F_l after its first BN-ReLU: F_l(x_l) = branch_from(preactivate(x_l))."""
        raise NotImplementedError

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F_l(x_l), the residual branch."""
        return self.branch_from(self.preactivate(x))

    def h(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(self.preactivate(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. (3): x_{l+1} = h(x_l) + F_l(x_l), h = identity where the shape is kept; the plain twin: F_l(x_l)."""
        a = self.preactivate(x)  # computed once, shared by F_l and a projection h
        if self.plain:
            return self.branch_from(a)
        return (x if self.downsample is None else self.downsample(a)) + self.branch_from(a)


class BasicBlock(PostActBlock):
    """Post-activation basic block, torchvision's ``BasicBlock``: F_l = conv3x3-BN-ReLU-conv3x3-BN."""

    def __init__(self, in_ch: int, planes: int, stride: int = 1, *, plain: bool = False):
        super().__init__(in_ch, planes, stride, plain)
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = self._projection(with_bn=True)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F_l(x_l) = BN(conv(ReLU(BN(conv(x_l)))))."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.tap(self.bn2(self.conv2(out)))


class Bottleneck(PostActBlock):
    """Post-activation bottleneck, torchvision's ``Bottleneck`` (v1.5: the stride on the 3x3 conv).

    F_l = conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1-BN; widths in -> planes -> planes -> 4 planes.
    """

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, *, plain: bool = False):
        super().__init__(in_ch, planes, stride, plain)
        self.conv1 = conv1x1(in_ch, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, self.out_channels)
        self.bn3 = nn.BatchNorm2d(self.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = self._projection(with_bn=True)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F_l(x_l): 1x1 reduce, 3x3, 1x1 expand, each conv followed by BN (and ReLU but the last)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.tap(self.bn3(self.conv3(out)))


class PreActBasicBlock(PreActBlock):
    """Pre-activation basic block: F_l = BN-ReLU-conv3x3-BN-ReLU-conv3x3."""

    def __init__(self, in_ch: int, planes: int, stride: int = 1, *, plain: bool = False):
        super().__init__(in_ch, planes, stride, plain)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = self._projection(with_bn=False)

    def branch_from(self, a: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn2(self.conv1(a)))
        return self.tap(self.conv2(out))


class PreActBottleneck(PreActBlock):
    """Pre-activation bottleneck (ResNet-164): F_l = BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1.

    Widths in -> planes -> planes -> 4 planes; the stride on the 3x3 conv.
    """

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, *, plain: bool = False):
        super().__init__(in_ch, planes, stride, plain)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv1x1(in_ch, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, self.out_channels)
        self.downsample = self._projection(with_bn=False)

    def branch_from(self, a: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn2(self.conv1(a)))
        out = self.relu(self.bn3(self.conv2(out)))
        return self.tap(self.conv3(out))
