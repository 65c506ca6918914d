"""A pre-activation ResNet whose last stage is read member by member: Eq. (9) on a real backbone, and a variant.

Inside the last stage the stream is a sum (Eq. (5)): y_L = h + sum_m F_m(y_m), where h is the stage's
projected input and F_m the residuals of its blocks. The shared head (Eqs. (7)-(8)) is

    logits = W . GAP(ReLU(BN(y_L))) + b.

Between the sum and W sit a batch norm and a ReLU, and Eq. (9) as printed has neither. Both split over the
members: BN is an affine map per channel, BN(y) = a * y + s with a = gamma / sqrt(var + eps) and
s = beta - a * mean (the batch's mean and biased variance in training, the running ones in eval), and
ReLU(z) = g * z with the mask g = 1[z > 0]. So

    ReLU(BN(y_L)) = g * (a * h + s) + sum_m g * a * F_m,    g = 1[BN(y_L) > 0],

one gated, scaled copy per member, BN's shift s carried by the first member h (``shared_bn_relu``).

``DecoupledResNet(backbone, C)`` (``norm="shared"``, config head "eq9") is Eq. (9) exactly: the shared head's
one BN-ReLU, its statistics and its mask set by the whole sum y_L, applied to every member; then GAP and one
classifier w_m^c per member, the scores summed:

    Eq. (9):  p^c = w_1^c . GAP(g * (a * h + s)) + sum_m w_{m+1}^c . GAP(g * a * F_m) + b_c

With every w_m^c = w^c this is the shared head exactly (the same logits and, in training, the same gradients):
``DecoupledResNet.from_shared`` builds it from a trained shared network.

``norm="per-member"`` (config head "decoupled", the reference "resnet-32-decoupled") is a variant: each member
its own BN-ReLU (its own statistics, affine map and mask), p^c = sum_m w_m^c . GAP(BN-ReLU_m(member_m)) + b_c.
It is not Eq. (9) as written, and with equal weights it is not Eq. (8): ReLU(BN(a)) + ReLU(BN(b)) is not
ReLU(BN(a + b)). Notebook 04 compares the shared network, Eq. (9) and this variant.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from mdnet_utils.models.heads import DecoupledHead
from mdnet_utils.models.resnet import CifarResNet

__all__ = ["NORMS", "DecoupledResNet", "shared_bn_relu"]

#: How the head normalises the members: one BN-ReLU for their sum (Eq. (9) exactly), or one per member.
NORMS = ("shared", "per-member")


def shared_bn_relu(members: Sequence[torch.Tensor], bn: nn.BatchNorm2d) -> list[torch.Tensor]:
    """The shared head's BN-ReLU carried member by member: [g * (a * m_1 + s), g * a * m_2, ...], which sum to
    ReLU(BN(m_1 + m_2 + ...)). BN(y) = a * y + s per channel, with the statistics ``bn`` uses (the batch's in
    training, whose running averages it updates as usual; the running ones in eval); g = 1[BN(y) > 0], the
    ReLU's mask, set by the whole sum. BN's shift s goes with the first member."""
    y = sum(members)
    z = bn(y)  # the shared BN as the shared head runs it: its mask is the gate, and training updates its statistics
    if bn.training or bn.running_mean is None:
        mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)  # what BN normalises with
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = torch.rsqrt(var + bn.eps)
    shift = -mean * scale
    if bn.weight is not None:
        scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
    a, s = scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)
    gate = (z > 0).to(z.dtype)  # ReLU(z) = gate * z exactly
    return [gate * (a * m + s) if i == 0 else gate * (a * m) for i, m in enumerate(members)]


class DecoupledResNet(nn.Module):
    """Eq. (9): a pre-activation ``CifarResNet`` backbone, one classifier per member of its last stage; the
    members normalised by the shared head's one BN-ReLU (``norm="shared"``: Eq. (9) exactly, the backbone's own
    final BN) or by one BN-ReLU each (``norm="per-member"``: the variant). See the module docstring."""

    def __init__(self, backbone: CifarResNet, num_classes: int, *, norm: str = "shared"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}: use 'shared' (Eq. (9) exactly) or 'per-member' (the variant).")
        blocks = list(backbone.blocks)
        if not all(b.preact and not b.plain for b in blocks):
            raise ValueError("DecoupledResNet needs a pre-activation residual backbone (Eq. (3) in every block).")
        # The last stage starts at the last block that changes shape (its shortcut is a projection).
        start = max((i for i, b in enumerate(blocks) if not b.keeps_shape), default=0)
        self.norm = norm
        self.stem = backbone.stem
        self.early = nn.Sequential(*blocks[:start])
        self.last_stage = nn.ModuleList(blocks[start:])
        width = blocks[-1].out_channels
        self.member_names = [f"h_{start}"] + [f"F_{i}" for i in range(start, len(blocks))]
        if norm == "shared":
            self.bn = backbone.final_act[0]  # the shared head's BN, as in the backbone
        else:
            self.norms = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True))
                                       for _ in self.member_names)
        self.head = DecoupledHead([width] * len(self.member_names), num_classes)

    @classmethod
    def from_shared(cls, model: CifarResNet, *, norm: str = "shared") -> "DecoupledResNet":
        """A copy of the trained shared network ``model`` with every member classifier w_m^c = its w^c and its
        bias: with ``norm="shared"`` the same network (Eq. (9) with equal weights is Eq. (8)); with
        ``"per-member"`` each member's BN-ReLU a copy of the shared one, which is not."""
        model = copy.deepcopy(model)
        with torch.random.fork_rng(devices=[]):  # the head's initial draw is overwritten: leave the caller's RNG
            new = cls(model, model.fc.out_features, norm=norm).to(model.fc.weight.dtype)
        with torch.no_grad():
            for clf in new.head.classifiers:
                clf.weight.copy_(model.fc.weight)
            new.head.bias.copy_(model.fc.bias)
            for seq in getattr(new, "norms", []):
                seq.load_state_dict(model.final_act.state_dict())
        return new.train(model.training)

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

    def normalised(self, x: torch.Tensor) -> list[torch.Tensor]:
        """What each member's classifier sees: the shared BN-ReLU carried member by member (Eq. (9)), or the
        member's own BN-ReLU (the variant)."""
        members = self.members(x)
        if self.norm == "shared":
            return shared_bn_relu(members, self.bn)
        return [norm(m) for norm, m in zip(self.norms, members)]

    def member_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, C): each member's w_m^c . GAP(its normalised map); they sum to the logits minus the bias."""
        return self.head.member_scores(self.normalised(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.normalised(x))
