"""What the classifier sees: class activation maps (Eq. (7)), the logit split into the ensemble's members
(Eq. (8)), and a shared versus a decoupled classifier (Eq. (9)).

Eq. (7): with global average pooling (GAP) and a linear layer (weights w^c, bias b_c), the score of class c is

    logit_c = (1/HW) sum_{i,j} M_c(i, j) + b_c,    M_c(i, j) = sum_k w_k^c y_L^(k)(i, j)

M_c is the class activation map (Zhou et al. 2016); the paper's p^c = sum_k w_k^c sum_{i,j} y_L^(k)(i, j)
is H W (logit_c - b_c): ``class_activation_map``, ``logits_from_cam``, ``eq7_score``, ``model_cam``.

Eq. (8): y_L = y_1 + sum_m F_m(y_m), so one classifier w^c weighs every member alike:
``logit_decomposition`` splits a network's logits into one exact contribution per member.

Eq. (9): one classifier per member, ``DecoupledHead``; ``SharedHead`` is the single classifier of Eqs. (7)-(8).
A linear layer over a concatenation is a sum of linear layers over its parts, W^T [a; b] = W_a^T a + W_b^T b:
``DecoupledHead.from_linear`` and ``to_linear`` turn one into the other exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mdnet_utils.models.blocks import PostActBlock
from mdnet_utils.models.stream import record_stream, residual_blocks

__all__ = ["class_activation_map", "logits_from_cam", "eq7_score", "model_cam", "SharedHead", "DecoupledHead",
           "LogitDecomposition", "logit_decomposition"]


# ----------------------------------------------------------------------------------------------- Eq. (7)

def class_activation_map(features: torch.Tensor, fc_weight: torch.Tensor, classes=None,
                         size: tuple[int, int] | None = None) -> torch.Tensor:
    """Eq. (7) with the sum over k kept outside the sum over positions: M_c(i, j) = sum_k w_k^c y_L^(k)(i, j).

    features: (B, K, H, W), the last feature maps y_L (what GAP pools); fc_weight: (C, K), the linear layer's
    weight. classes: None for every class, (B, C, H, W); an int, or one class per image (a length-B tensor
    or list), (B, H, W). size: (H_img, W_img) to upsample to (bilinear), or None to stay on the feature grid.
    No bias and no 1/HW: see ``logits_from_cam``.
    """
    cam = torch.einsum("ck,bkhw->bchw", fc_weight.to(features.dtype), features)
    if classes is not None:
        if isinstance(classes, int):
            cam = cam[:, classes]
        else:
            idx = torch.as_tensor(classes, device=cam.device).long()
            cam = cam[torch.arange(cam.shape[0], device=cam.device), idx]
    if size is not None and tuple(cam.shape[-2:]) != tuple(size):
        squeeze = cam.dim() == 3
        cam = F.interpolate(cam.unsqueeze(1) if squeeze else cam, size=tuple(size), mode="bilinear",
                            align_corners=False)
        cam = cam.squeeze(1) if squeeze else cam
    return cam


def logits_from_cam(cam: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The logits a GAP + linear head gives, read off its class activation maps (on the feature grid):
    logit_c = (1/HW) sum_{i,j} M_c(i, j) + b_c. cam: (B, C, H, W) -> (B, C)."""
    logits = cam.mean(dim=(-2, -1))
    return logits if bias is None else logits + bias


def eq7_score(features: torch.Tensor, fc_weight: torch.Tensor) -> torch.Tensor:
    """Eq. (7) as printed: p^c = sum_k w_k^c sum_{i,j} y_L^(k)(i, j), (B, C). It is H W (logit_c - b_c):
    the pre-softmax score without GAP's 1/(HW) and without the bias."""
    return features.sum(dim=(-2, -1)) @ fc_weight.to(features.dtype).T


def model_cam(model: nn.Module, x: torch.Tensor, classes=None, *, upsample: bool = True) -> torch.Tensor:
    """Class activation maps of a network with ``features(x)`` and a linear ``fc`` after GAP (every network of
    ``mdnet_utils.models``): see ``class_activation_map``; upsampled to x's size unless ``upsample=False``."""
    features = model.features(x)
    return class_activation_map(features, model.fc.weight, classes, tuple(x.shape[-2:]) if upsample else None)


# ----------------------------------------------------------------------------------------------- Eq. (9)

def _pool(features: torch.Tensor) -> torch.Tensor:
    """GAP over the positions of (B, K, H, W) maps; (B, K) vectors pass unchanged."""
    return features.mean(dim=(-2, -1)) if features.dim() == 4 else features


class SharedHead(nn.Module):
    """Eqs. (7)-(8): GAP, then one linear classifier w^c for the whole feature, so for every member alike.

    forward(features): (B, K, H, W) or pooled (B, K) -> logits (B, C).
    member_scores(members): a list of M tensors that sum to the feature (Eq. (8)'s y_1, F_1(y_1), ...) ->
    (B, M, C), each w^c . GAP(member), the same w^c for all; they sum to the logits minus the bias.
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(_pool(features))

    def member_scores(self, members: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([_pool(m) @ self.fc.weight.T for m in members], dim=1)

    def cam(self, features: torch.Tensor, classes=None, size=None) -> torch.Tensor:
        """Eq. (7): the class activation maps of this head."""
        return class_activation_map(features, self.fc.weight, classes, size)


class DecoupledHead(nn.Module):
    """Eq. (9): one linear classifier w_m^c per ensemble member (after GAP), the members' scores summed.

    p^c = sum_m w_m^c . GAP(member_m) + b_c. ``member_channels``: the members' widths, in order. One bias
    b_c for the sum (so that the head is exactly one ``nn.Linear`` over the concatenated members), or with
    ``per_member_bias=True`` one per member (their sum is all that reaches the logits).

    forward(features): a list of the M member tensors, or their concatenation along channels (Eq. (10)),
    (B, sum(member_channels), H, W) or pooled; -> (B, C).
    member_scores(features): (B, M, C), member m's w_m^c . GAP(member_m) (+ its bias if per member).
    """

    def __init__(self, member_channels: Sequence[int], num_classes: int, *, per_member_bias: bool = False):
        super().__init__()
        self.member_channels = [int(c) for c in member_channels]
        self.classifiers = nn.ModuleList(nn.Linear(c, num_classes, bias=per_member_bias) for c in self.member_channels)
        self.bias = None if per_member_bias else nn.Parameter(torch.zeros(num_classes))
        if not per_member_bias:  # the same init as one nn.Linear over the concatenation
            bound = 1 / sum(self.member_channels) ** 0.5
            for clf in self.classifiers:
                nn.init.uniform_(clf.weight, -bound, bound)
            nn.init.uniform_(self.bias, -bound, bound)

    def split(self, features) -> list[torch.Tensor]:
        """The members: a list passes through; a concatenation is cut along channels by ``member_channels``."""
        if isinstance(features, (list, tuple)):
            parts = list(features)
        else:
            if features.shape[1] != sum(self.member_channels):
                raise ValueError(f"features have {features.shape[1]} channels; the members have "
                                 f"{sum(self.member_channels)} ({self.member_channels}).")
            parts = list(torch.split(features, self.member_channels, dim=1))
        if [p.shape[1] for p in parts] != self.member_channels:
            raise ValueError(f"member widths {[p.shape[1] for p in parts]} are not {self.member_channels}.")
        return parts

    def member_scores(self, features) -> torch.Tensor:
        return torch.stack([clf(_pool(m)) for clf, m in zip(self.classifiers, self.split(features))], dim=1)

    def forward(self, features) -> torch.Tensor:
        scores = self.member_scores(features).sum(dim=1)
        return scores if self.bias is None else scores + self.bias

    @classmethod
    def from_linear(cls, linear: nn.Linear, member_channels: Sequence[int]) -> "DecoupledHead":
        """The decoupled form of one linear layer over a concatenation: W^T [a; b] = W_a^T a + W_b^T b, the
        member classifiers are the column blocks of ``linear.weight``; its bias becomes the shared bias."""
        head = cls(member_channels, linear.out_features)
        head = head.to(device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            for clf, w in zip(head.classifiers, torch.split(linear.weight, head.member_channels, dim=1)):
                clf.weight.copy_(w)
            if linear.bias is None:
                head.bias = None
            else:
                head.bias.copy_(linear.bias)
        return head

    def to_linear(self) -> nn.Linear:
        """One ``nn.Linear`` over the concatenated members computing the same function (the biases summed)."""
        w = self.classifiers[0].weight
        linear = nn.Linear(sum(self.member_channels), w.shape[0]).to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.cat([clf.weight for clf in self.classifiers], dim=1))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
            else:
                linear.bias.copy_(sum(clf.bias for clf in self.classifiers))
        return linear


# ----------------------------------------------------------------------------------------------- Eq. (8)

@dataclass
class LogitDecomposition:
    """The logits of a batch split by ``logit_decomposition``: logits = contributions.sum(1) + rest.

    names: the members, in forward order: "x_0" (the stem's output, the paper's y_1), "F_l" (block l's branch,
    l indexing ``residual_blocks(model)``), "h_l" (a non-linear projection shortcut of block l: everything
    before block l, which cannot be split further).
    contributions: (B, M, C), member m's share of each logit. rest: (B, C), what no member carries: the final
    BN's shift (through the same ReLU gate) and the linear layer's bias. logits: (B, C), the model's output.
    """

    names: list[str]
    contributions: torch.Tensor
    rest: torch.Tensor
    logits: torch.Tensor

    def total(self) -> torch.Tensor:
        """contributions summed over the members, plus the rest: equals ``logits`` (up to rounding)."""
        return self.contributions.sum(dim=1) + self.rest


def _stream_members(model: nn.Module, records) -> list[tuple[str, torch.Tensor]]:
    """The members whose sum is the last block's output, carried forward block by block (see logit_decomposition)."""
    blocks = residual_blocks(model)
    members = [("x_0", records[0].x_in)]
    for r in records:
        block = blocks[r.block_index]
        if block.plain or isinstance(block, PostActBlock):
            raise ValueError(f"block {r.name!r} is {'plain' if block.plain else 'post-activation'}: its output is "
                             f"not a sum of members (no shortcut, or a ReLU after the addition).")
        F_l = (f"F_{r.block_index}", r.branch)
        if getattr(block, "concat", False):  # Eq. (10): x_{l+1} = F_l (+) h(x_l); h linear: members go on through it
            zeros_f = torch.zeros_like(r.branch)
            carried = [(n, torch.cat([zeros_f, block.h(m)], dim=1)) for n, m in members]
            pad = torch.zeros_like(r.out[:, r.branch.shape[1]:])
            members = carried + [(F_l[0], torch.cat([r.branch, pad], dim=1))]  # kept in forward order
        elif getattr(block, "downsample", None) is None:  # Eq. (3): x_{l+1} = x_l + F_l(x_l)
            members.append(F_l)
        else:  # a projection of the pre-activated input: non-linear, the sum starts again (Eq. (5)'s segments)
            members = [(f"h_{r.block_index}", block.h(r.x_in)), F_l]
    return members


def _affine_and_gate(final_act: nn.Module, members: list[torch.Tensor], const: torch.Tensor):
    """Carry the members (and a constant) through the head's BN (eval: an affine map per channel) and ReLU (with
    its on/off pattern fixed at the one the whole input produced: ReLU(z) = 1[z > 0] z exactly)."""
    layers = list(final_act) if isinstance(final_act, nn.Sequential) else [final_act]
    for layer in layers:
        if isinstance(layer, nn.Identity):
            continue
        if isinstance(layer, nn.BatchNorm2d):
            if layer.training or layer.running_mean is None:
                raise ValueError("the final batch norm must be in eval mode with running statistics "
                                 "(call model.eval()): only then is it an affine map.")
            scale = 1 / torch.sqrt(layer.running_var + layer.eps)
            shift = -layer.running_mean * scale
            if layer.weight is not None:
                scale, shift = scale * layer.weight, shift * layer.weight + layer.bias
            scale, shift = scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)
            members = [m * scale for m in members]
            const = const * scale + shift
        elif isinstance(layer, nn.ReLU):
            gate = ((sum(members) + const) > 0).to(const.dtype)
            members = [m * gate for m in members]
            const = const * gate
        else:
            raise ValueError(f"cannot carry members through {type(layer).__name__} in the head; "
                             f"only BatchNorm2d, ReLU and Identity.")
    return members, const


@torch.no_grad()
def logit_decomposition(model: nn.Module, x: torch.Tensor) -> LogitDecomposition:
    """Eq. (8): every logit of ``model`` on ``x`` split exactly into one contribution per member of the stream.

    Which score: the model's actual logits, in eval mode. For a model laid out as ``blocks`` -> ``final_act``
    (BN-ReLU) -> GAP -> ``fc``: the pre-activation CIFAR ResNets and both EcNets.

    The stream: the last block's output is a sum of members, y_L = x_0 + sum_m F_m(x_m) (Eq. (5)), as far back
    as every shortcut is linear. Through an identity block a member passes unchanged (Eq. (3)); through a
    concatenation block (Eq. (10)) every earlier member passes through its linear h (a bias-free 1x1 conv or
    a pooling) and lands in h's channels, while F_l takes the other channels. The EcNets are linear from the
    stem on, so their members are x_0 and every F_l. A pre-activation ResNet's projection shortcut acts on
    BN-ReLU of its input, which is not linear: there the sum starts again with a member "h_l", everything
    before block l (Eq. (5) holds inside the last stage only).

    The head: BN in eval mode is an affine map per channel, so it maps the sum of members to the sum of
    their images plus a constant shift. The ReLU is not linear, but ReLU(z) = g * z with g = 1[z > 0], the
    on/off pattern the whole input produced; with g fixed at that pattern every step is linear. So member
    m contributes w^c . GAP(g * scale * m) and the parts add up exactly to the logit. The price: a
    member's contribution is weighed by the gate all members set together, so it is its share of this
    logit, not the logit it would produce alone. (In ``LiteralEcNet`` BN and ReLU act on each member's own
    channels, so there it is both.) Without the final ReLU (``final_act`` BN only or Identity) g is all ones.
    """
    if not hasattr(model, "final_act") or getattr(model, "fc", None) is None:
        raise ValueError("logit_decomposition needs a model laid out as blocks -> final_act -> GAP -> fc "
                         "(a pre-activation CifarResNet, EcNet or LiteralEcNet, with a head).")
    if model.training:
        raise ValueError("logit_decomposition needs model.eval(): in train mode batch norm is not a fixed affine map.")
    with record_stream(model) as records:
        logits = model(x)
    if not records:
        raise ValueError("the model has no residual blocks.")
    named = _stream_members(model, records)
    names, members = [n for n, _ in named], [m for _, m in named]
    members, const = _affine_and_gate(model.final_act, members, torch.zeros_like(records[-1].out))
    w = model.fc.weight
    contributions = torch.stack([m.mean(dim=(2, 3)) @ w.T for m in members], dim=1)
    rest = const.mean(dim=(2, 3)) @ w.T
    if model.fc.bias is not None:
        rest = rest + model.fc.bias
    return LogitDecomposition(names, contributions, rest, logits)
