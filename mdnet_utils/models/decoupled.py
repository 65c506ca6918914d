"""A pre-activation ResNet whose last stage is read member by member: Eq. (9) on a real backbone.

Inside the last stage the stream is a sum (Eq. (5)): y_L = h + sum_m F_m(y_m), where h is the stage's
projected input and F_m the residuals of its blocks. The usual head (Eqs. (7)-(8)) normalises that
sum and weighs it with one classifier w^c. ``DecoupledResNet`` keeps the backbone unchanged and gives
every member its own BN-ReLU, global average pooling and classifier w_m^c, the class scores summed:

    Eq. (9):  p^c = sum_m w_m^c . GAP(BN-ReLU_m(member_m))   (+ b_c)

So the shared and the decoupled network differ only in the head; notebook 04 trains both.
"""
from __future__ import annotations

import torch
from torch import nn

from mdnet_utils.models.heads import DecoupledHead
from mdnet_utils.models.resnet import CifarResNet


class DecoupledResNet(nn.Module):
    """Eq. (9): a pre-activation ``CifarResNet`` backbone, one classifier per member of its last stage."""

    def __init__(self, backbone: CifarResNet, num_classes: int):
        super().__init__()
        blocks = list(backbone.blocks)
        if not all(b.preact and not b.plain for b in blocks):
            raise ValueError("DecoupledResNet needs a pre-activation residual backbone (Eq. (3) in every block).")
        # The last stage starts at the last block that changes shape (its shortcut is a projection).
        start = max((i for i, b in enumerate(blocks) if not b.keeps_shape), default=0)
        self.stem = backbone.stem
        self.early = nn.Sequential(*blocks[:start])
        self.last_stage = nn.ModuleList(blocks[start:])
        width = blocks[-1].out_channels
        self.member_names = [f"h_{start}"] + [f"F_{i}" for i in range(start, len(blocks))]
        self.norms = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True))
                                   for _ in self.member_names)
        self.head = DecoupledHead([width] * len(self.member_names), num_classes)

    def members(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The last stage's members [h, F_start, ..., F_last]; their sum is the backbone's last feature y_L."""
        x = self.early(self.stem(x))
        first, rest = self.last_stage[0], self.last_stage[1:]
        a = first.preactivate(x)  # once: shared by the projection h and the first residual
        members = [first.h(x) if first.downsample is None else first.downsample(a), first.branch_from(a)]
        y = members[0] + members[1]
        for block in rest:  # Eq. (3): each block adds its residual to the stream
            f = block.branch(y)
            members.append(f)
            y = y + f
        return members

    def member_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, C): each member's w_m^c . GAP(BN-ReLU_m(member)); they sum to the logits minus the bias."""
        return self.head.member_scores([norm(m) for norm, m in zip(self.norms, self.members(x))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head([norm(m) for norm, m in zip(self.norms, self.members(x))])
