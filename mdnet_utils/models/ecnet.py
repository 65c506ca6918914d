"""Eq. (10): the ensemble-connection, y_{l+1} = F_l(y_l) (+) y_l, (+) = concatenation along channels.

Two readings of it, built from the same pre-activation bottleneck branch F_l so that only the
connection differs:

``ecnet(depth, widen_factor, num_classes)``: what the authors released (Torch7, the "EcNet" of the
paper's CIFAR table; github.com/zizhaozhang/mdnet-cvpr2017, ``cnn/models/ecnet.lua``). Concatenation only
where a stage starts; inside a stage, the ordinary identity addition of Eq. (3).

``literal_ecnet(depth, widen_factor, num_classes)`` / ``LiteralEcNet``: Eq. (10) read literally, a
concatenation at *every* block, so the channels grow block by block as in a DenseNet.

The released EcNet, block by block (depth 9n + 2: the stem conv, 3 stages of n blocks of 3 convs, the
linear head; widen factor k; stage widths {16, 16k, 32k, 64k}):

    stem         conv3x3 3 -> 16 (no bias)
    stage s      first block (stride 1, 2, 2 for s = 1, 2, 3), an ensemble-connection:
                     x_{l+1} = F_l(x_l) (+) P_l(x_l),  F_l: in -> w_s,  P_l = conv1x1 with the block's stride
                     of x_l itself (not of its BN-ReLU), in -> w_s: the output has 2 w_s channels
                 n - 1 identity blocks at 2 w_s channels: x_{l+1} = x_l + F_l(x_l)
    head         BN-ReLU, global average pooling, linear (the only layer with a bias)

with branch widths w_s = 16k, 32k and 64k / 2 (stage 3 at half its nominal width "to avoid parameter
explosion", says the released code), so the stages run at 32k, 64k and 64k channels and the final feature
has 64k channels. Every branch F is BN-ReLU-conv1x1 (the block's stride here, on the first conv, unlike
``PreActBottleneck``), BN-ReLU-conv3x3, BN-ReLU-conv1x1, its bottleneck a quarter of the branch's output.
So "stage width 16k" is the width of the *branch* of the stage's first block; the stage itself runs at
twice that. Parameters (b = w / 4 the bottleneck, BN = 2 per channel):

    F (in -> w)   2 in + in b + 2 b + 9 b^2 + 2 b + b w        P (in -> w)   in w

    EcNet-110-4 (n = 12)   stem 432
                           stage 1: 16 -> 64 (+) 64 (4,704), then 11 blocks at 128 (17,792 each): 200,416
                           stage 2: 128 -> 128 (+) 128 (34,176), then 11 at 256 (70,400 each): 808,576
                           stage 3: 256 -> 128 (+) 128 (54,912), then 11 at 256: 829,312
                           head 2 * 256 + 256 * 10 + 10 = 3,082            total 1,841,818 (the paper: 1.8M)
    EcNet-56-12 (n = 6)    stem 432, stages 823,136 + 3,450,240 + 3,635,328, head 9,226: total 7,918,362

7,918,362 is, to the parameter, the count the authors' own training log prints for EcNet-56-12 on
CIFAR-10 (``cnn/logs/ecnet_56_12_cifar10/log.txt``: "Network has 7918362 parameters"); the paper's table
rounds it to 8.0M. No log of EcNet-110-4 was released; 1,841,818 is the table's 1.8M.

One choice of ours: the released code decides "concatenate or add" by shape (concatenate where the
width or the stride changes). For k >= 2 that is exactly "the first block of each stage". For k = 1 the
first block of stage 1 keeps width 16 and stride 1, so the released code would add there and then fail
(the next block expects 32 channels). We decide by position, which is the same net for every k >= 2 and
a working one for k = 1.

Initialisation as released ("MSR"): every conv weight N(0, 2 / (k_h k_w in)), He's fan-in rule; the
linear head's weight uniform in +-1/sqrt(in) (Torch7's default, and PyTorch's) and its bias 0. Batch
norms: weight 1, bias 0 (PyTorch's default; the released code does not touch them, leaving Torch7's own
default initialisation).

What ``branch`` and the members are in a concatenation block: ``branch(x)`` is F_l(x_l), the new member;
it leaves through ``tap``, so ``read_stream`` records it and ``lesion`` zeroes it as in every block (a
lesioned concatenation block returns 0 (+) h(x_l), every shape kept). ``h(x)`` is the other part of the
concatenation: P_l(x_l) in the released net, x_l itself (or its 2x2 average where the block halves the
resolution) in the literal one. Both are linear in x_l (a conv without bias, a pooling), so every
member of earlier blocks travels on through them unmixed with anything else: the whole stream from the
stem to the head is linear in the members, which is what lets ``heads.logit_decomposition`` split an
EcNet's logits into every block's contribution. In the literal net the members even sit in separate
channels of the final feature, [F_{L-1}; ...; F_0; x_0]: one classifier over that concatenation *is*
one classifier per member (Eq. (9), see ``heads.DecoupledHead``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from mdnet_utils.models.blocks import ResidualBlock, conv1x1, conv3x3
from mdnet_utils.models.stream import named_residual_blocks


class EcBlock(ResidualBlock):
    """The pre-activation bottleneck branch of the released EcNet, shared by both readings of Eq. (10):

    F_l(x) = conv1x1(ReLU(BN(conv3x3(ReLU(BN(conv1x1_stride(ReLU(BN(x))))))))), widths
    in -> w/4 -> w/4 -> w (w = ``branch_channels``); the stride on the first 1x1 conv, as released.

    Subclasses choose the connection: ``concat`` (Eq. (10)) or addition (Eq. (3)), and ``h``.
    """

    preact = True
    concat = False           # True: x_{l+1} = F_l(x_l) (+) h(x_l); False: x_{l+1} = h(x_l) + F_l(x_l)
    shortcut_kind = "identity"

    def __init__(self, in_ch: int, branch_ch: int, stride: int = 1):
        if branch_ch % 4:
            raise ValueError(f"branch_ch={branch_ch}: the bottleneck is a quarter of it, so it must be a multiple of 4.")
        super().__init__(in_ch, branch_ch, stride, plain=False)
        self.branch_channels = branch_ch
        mid = branch_ch // 4
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv1x1(in_ch, mid, stride)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = conv3x3(mid, mid)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = conv1x1(mid, branch_ch)
        self.downsample: nn.Module | None = None

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F_l(x_l): BN-ReLU-conv1x1 (stride), BN-ReLU-conv3x3, BN-ReLU-conv1x1."""
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return self.tap(self.conv3(self.relu(self.bn3(out))))

    def h(self, x: torch.Tensor) -> torch.Tensor:
        """The shortcut: the identity here; subclasses that concatenate override it."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.concat:
            return torch.cat([self.branch(x), self.h(x)], dim=1)  # Eq. (10): F_l(x_l) (+) h(x_l)
        return self.h(x) + self.branch(x)                          # Eq. (3)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, stride {self.stride}, " + \
            (f"concat with {self.shortcut_kind}" if self.concat else "add")


class EcAddBlock(EcBlock):
    """Eq. (3) inside an EcNet stage: x_{l+1} = x_l + F_l(x_l), width and resolution kept."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 1)


class EcConcatBlock(EcBlock):
    """Eq. (10) as released, at the start of each EcNet stage: x_{l+1} = F_l(x_l) (+) P_l(x_l).

    P_l = ``downsample``: a 1x1 conv (no bias) with the block's stride, of x_l itself (linear in x_l),
    in -> ``branch_ch``; the output has 2 ``branch_ch`` channels, F_l's first.
    """

    concat = True
    shortcut_kind = "conv1x1"

    def __init__(self, in_ch: int, branch_ch: int, stride: int = 1):
        super().__init__(in_ch, branch_ch, stride)
        self.out_channels = 2 * branch_ch
        self.downsample = conv1x1(in_ch, branch_ch, stride)

    def h(self, x: torch.Tensor) -> torch.Tensor:
        """P_l(x_l), the strided 1x1 projection of the block's input."""
        return self.downsample(x)


class LiteralConcatBlock(EcBlock):
    """Eq. (10) read literally: y_{l+1} = F_l(y_l) (+) y_l, at every block.

    F_l adds ``growth`` channels; h is the identity, or where the block halves the resolution a 2x2
    average pooling (linear and parameter-free: the nearest thing to the identity that fits).
    """

    concat = True

    def __init__(self, in_ch: int, growth: int, stride: int = 1):
        super().__init__(in_ch, growth, stride)
        self.out_channels = growth + in_ch
        if stride == 1:
            self.pool = None
        elif stride == 2:
            self.pool = nn.AvgPool2d(2, ceil_mode=True)  # ceil: the same size as the strided conv's output
            self.shortcut_kind = "avgpool"
        else:
            raise ValueError(f"stride={stride}: a literal ensemble-connection block takes stride 1 or 2.")

    def h(self, x: torch.Tensor) -> torch.Tensor:
        """y_l itself (2x2-averaged where the block has stride 2)."""
        return x if self.pool is None else self.pool(x)


def msr_init(model: nn.Module) -> None:
    """The released EcNet's initialisation: convs N(0, 2 / fan_in) (He et al. 2015, "MSR"), linear biases 0,
    linear weights as built (uniform +-1/sqrt(fan_in)), batch norms weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


class _EnsembleNet(nn.Module):
    """What both EcNets share with ``CifarResNet``: ``stem``, ``blocks`` (one flat sequence), ``final_act``
    (BN-ReLU), global average pooling, ``fc``; ``features(x)`` and ``num_features``."""

    def _finish(self, stem: nn.Module, blocks: list[ResidualBlock], num_classes: int) -> None:
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        ch = blocks[-1].out_channels
        self.final_act = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(inplace=True))
        self.num_features = ch
        self.fc = nn.Linear(ch, num_classes) if num_classes else None
        msr_init(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature maps, after the final BN-ReLU: (B, num_features, H', W')."""
        return self.final_act(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        return pooled if self.fc is None else self.fc(pooled)


class EcNet(_EnsembleNet):
    """The released EcNet (see the module docstring): a stem conv, one stage per entry of ``branch_widths``
    (strides 1, 2, 2, ...), each an ``EcConcatBlock`` then ``blocks_per_stage - 1`` ``EcAddBlock``s at twice
    the branch width; BN-ReLU, global average pooling, linear head. ``num_classes=0``: no head.
    """

    def __init__(self, blocks_per_stage: int, branch_widths: Sequence[int], *, stem_width: int = 16,
                 stem_stride: int = 1, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        blocks: list[ResidualBlock] = []
        ch = stem_width
        for s, width in enumerate(branch_widths):
            blocks.append(EcConcatBlock(ch, width, stride=1 if s == 0 else 2))
            ch = blocks[-1].out_channels
            blocks += [EcAddBlock(ch) for _ in range(blocks_per_stage - 1)]
        self._finish(nn.Conv2d(in_channels, stem_width, 3, stem_stride, 1, bias=False), blocks, num_classes)


class LiteralEcNet(_EnsembleNet):
    """Eq. (10) at every block: a stem conv, then per stage ``blocks_per_stage`` ``LiteralConcatBlock``s that
    each add ``growth[s]`` channels (the first of stages 2, 3, ... halves the resolution); BN-ReLU, global
    average pooling, linear head. The final feature is [F_{L-1}; ...; F_0; x_0], every member in its own
    channels: ``member_channels`` lists their widths in that order.
    """

    def __init__(self, blocks_per_stage: int = 2, growth: Sequence[int] = (16, 32, 64), *, stem_width: int = 16,
                 stem_stride: int = 1, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        blocks: list[ResidualBlock] = []
        ch = stem_width
        for s, g in enumerate(growth):
            for i in range(blocks_per_stage):
                blocks.append(LiteralConcatBlock(ch, g, stride=2 if s > 0 and i == 0 else 1))
                ch = blocks[-1].out_channels
        self._finish(nn.Conv2d(in_channels, stem_width, 3, stem_stride, 1, bias=False), blocks, num_classes)

    @property
    def member_channels(self) -> list[int]:
        """Widths of the members in the final feature's channel order: F_{L-1}, ..., F_0, then x_0 (the stem)."""
        return [b.branch_channels for b in reversed(self.blocks)] + [self.blocks[0].in_channels]


def _stages_of(depth: int) -> int:
    if depth < 11 or (depth - 2) % 9:
        raise ValueError(f"depth={depth} is not 9n+2 with n >= 1 (3 stages of n bottleneck blocks of 3 convs, "
                         f"the stem and the head), e.g. 11, 20, 29, 56, 110.")
    return (depth - 2) // 9


def ecnet(depth: int, widen_factor: int = 1, num_classes: int = 10, *, stem_stride: int = 1,
          in_channels: int = 3) -> EcNet:
    """The authors' released EcNet-depth-k: depth 9n + 2, branch widths 16k, 32k, 64k / 2 (stages at 32k, 64k,
    64k channels). ``ecnet(110, 4)`` has 1,841,818 parameters and ``ecnet(56, 12)`` 7,918,362 (CIFAR-10 head),
    the paper's 1.8M and 8.0M."""
    if widen_factor < 1:
        raise ValueError(f"widen_factor={widen_factor} must be a positive integer.")
    k = widen_factor
    return EcNet(_stages_of(depth), (16 * k, 32 * k, 64 * k // 2), stem_width=16, stem_stride=stem_stride,
                 num_classes=num_classes, in_channels=in_channels)


def literal_ecnet(depth: int, widen_factor: int = 1, num_classes: int = 10, *, stem_stride: int = 1,
                  in_channels: int = 3) -> LiteralEcNet:
    """Eq. (10) literally, sized like ``ecnet``: depth 9n + 2, every block concatenating a branch of 16k, 32k,
    64k channels (stages 1, 2, 3) to its input, so the final feature has 16 + 112 n k channels."""
    if widen_factor < 1:
        raise ValueError(f"widen_factor={widen_factor} must be a positive integer.")
    k = widen_factor
    return LiteralEcNet(_stages_of(depth), (16 * k, 32 * k, 64 * k), stem_width=16, stem_stride=stem_stride,
                        num_classes=num_classes, in_channels=in_channels)


@dataclass
class BlockChannels:
    """One block's channel bookkeeping: x_{l+1} = F_l(x_l) (+) h(x_l) (concat) or h(x_l) + F_l(x_l) (add)."""

    index: int             # l, its position in residual_blocks(model)
    name: str              # its name in model.named_modules()
    connection: str        # "concat" (Eq. (10)), "add" (Eq. (3)) or "none" (a plain block)
    shortcut: str          # h: "identity", "conv1x1", "conv1x1+BN", "avgpool" or "none"
    stride: int
    in_channels: int       # of x_l
    branch_channels: int   # of F_l(x_l)
    out_channels: int      # of x_{l+1}


def channel_table(model: nn.Module) -> list[BlockChannels]:
    """Per residual block of ``model`` (either EcNet, or any network of ``mdnet_utils.models``): how many
    channels come in, how many the branch makes, how many go out. ``dataclasses.asdict`` each row for a table."""

    rows = []
    for index, (name, b) in enumerate(named_residual_blocks(model)):
        concat = getattr(b, "concat", False)
        if b.plain:
            connection, shortcut = "none", "none"
        else:
            connection = "concat" if concat else "add"
            shortcut = getattr(b, "shortcut_kind", None)
            if shortcut is None:
                ds = getattr(b, "downsample", None)
                shortcut = "identity" if ds is None else ("conv1x1+BN" if isinstance(ds, nn.Sequential) else "conv1x1")
        branch = getattr(b, "branch_channels", b.out_channels)
        rows.append(BlockChannels(index, name, connection, shortcut, b.stride, b.in_channels, branch, b.out_channels))
    return rows
