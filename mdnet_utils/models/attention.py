"""Eqs. (13)-(14): where the report generator looks.

The image model's last feature maps C(I), (B, D, H, W), are read as N = H W positions of D channels each,
(B, N, D), row-major over (h, w): ``flatten_features``. An attention map a_t is (B, N), non-negative and
summing to 1 over the positions; a class activation map c is (B, N) on the same grid.

Eq. (13): z_t = a_t C(I), the context vector, a weighted mean of the positions' features: ``context``.

Eq. (14): a_t = softmax(W_att tanh(W_h h_{t-1} + c)), c the class activation map of class c: ``CamAttention``.
The image model's diagnosis steers where the language model looks; the features enter only through c.

The baseline: Show, Attend and Tell's additive attention (Xu et al. 2015), e_ti = w^T tanh(W_a a_i + W_h h_{t-1}),
which looks at every position's features: ``SoftAttention``; and its doubly stochastic regulariser,
``doubly_stochastic_penalty``.

Two more ways to let the CAM steer an attention that also reads the features (the attention study of Part III):
``CamContentAttention``, Eq. (14) with a content term (our reading: the CAM enters each position's additive score),
and ``CamSlotAttention``, as the authors' later code does it (the CAM pools one extra candidate, a sentinel).

Every attention declares ``uses_cam`` (whether it reads c) and shares one call: ``forward(features, h, cam=None, cache=None) -> alpha``. What does not depend on
the time step is computed once per sequence by ``precompute(features, cam)`` (a tensor, batch first, so a beam
search can ``repeat_interleave`` it) and passed back as ``cache``; without a cache it is recomputed each call.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["flatten_features", "context", "standardise_cam", "CamAttention", "SoftAttention",
           "CamContentAttention", "CamSlotAttention", "doubly_stochastic_penalty"]


def flatten_features(features: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) feature maps -> (B, N, D), N = H W positions in row-major order over (h, w)."""
    return features.flatten(2).transpose(1, 2)


def context(alpha: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Eq. (13): z_t = a_t C(I), alpha (B, N) and features (B, N, D) -> (B, D), z = sum_i alpha_i C_i.

    The write-up prints C(I)^T (and C(I)_T); with C(I) laid out as N positions by D channels, a row vector a_t
    times C(I) is the D-vector meant, so no transpose here.
    """
    return torch.bmm(alpha.unsqueeze(1), features).squeeze(1)


def standardise_cam(cam: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(B, N) -> (B, N), each map shifted and scaled to zero mean and unit standard deviation over its positions:
    (c - mean) / sqrt(var + eps). Unchanged (up to eps) by adding a constant to c or scaling it by a positive factor."""
    mean = cam.mean(dim=1, keepdim=True)
    var = cam.var(dim=1, unbiased=False, keepdim=True)
    return (cam - mean) / torch.sqrt(var + eps)


class CamAttention(nn.Module):
    """Eq. (14) as the equations read it: a_t = softmax(W_att tanh(W_h h_{t-1} + c)).

    W_h (``nn.Linear(hidden_dim, num_positions)``) maps the hidden state to one score per position; c, the class
    activation map, adds one value per position; W_att (``nn.Linear(num_positions, num_positions)``, N x N) mixes
    the positions. The features' content is not looked at (only through c): ``features`` is accepted so that
    both attentions share one call signature.

    Our choice, where the equations are silent: c is standardised per image (zero mean, unit standard deviation
    over the N positions, eps 1e-5; ``standardise_cam``) before it enters tanh. A raw CAM has an arbitrary scale
    (it grows with the classifier's weights) and would saturate tanh; standardised, only its shape counts.

    precompute(features, cam) -> the standardised c, (B, N): what does not depend on t.
    forward(features (B, N, D), h (B, hidden_dim), cam (B, N), cache=None) -> alpha (B, N).
    """

    uses_cam = True

    def __init__(self, hidden_dim: int, num_positions: int):
        super().__init__()
        self.num_positions = num_positions
        self.W_h = nn.Linear(hidden_dim, num_positions)
        self.W_att = nn.Linear(num_positions, num_positions)

    def precompute(self, features: torch.Tensor, cam: torch.Tensor | None) -> torch.Tensor:
        if cam is None:
            raise ValueError("CamAttention needs the class activation map c (B, N) of Eq. (14); pass cam=.")
        if cam.shape[-1] != self.num_positions:
            raise ValueError(f"the CAM has {cam.shape[-1]} positions; this attention was built for "
                             f"{self.num_positions}.")
        return standardise_cam(cam)

    def forward(self, features: torch.Tensor, h: torch.Tensor, cam: torch.Tensor | None = None,
                cache: torch.Tensor | None = None) -> torch.Tensor:
        c = self.precompute(features, cam) if cache is None else cache
        return torch.softmax(self.W_att(torch.tanh(self.W_h(h) + c)), dim=-1)


class SoftAttention(nn.Module):
    """The baseline, Show, Attend and Tell's additive attention (Xu et al. 2015):

        e_ti = w^T tanh(W_a a_i + W_h h_{t-1}),    alpha_t = softmax_i(e_t)

    a_i the features of position i. W_a carries the bias (one is enough inside tanh); w has none (a constant
    added to every e_ti does not change the softmax). It ignores ``cam``.

    precompute(features, cam=None) -> W_a a_i for every position, (B, N, attention_dim): what does not depend on t.
    forward(features (B, N, D), h (B, hidden_dim), cam=None, cache=None) -> alpha (B, N).
    """

    uses_cam = False

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int = 128):
        super().__init__()
        self.W_a = nn.Linear(feature_dim, attention_dim)
        self.W_h = nn.Linear(hidden_dim, attention_dim, bias=False)
        self.w = nn.Linear(attention_dim, 1, bias=False)

    def precompute(self, features: torch.Tensor, cam: torch.Tensor | None = None) -> torch.Tensor:
        return self.W_a(features)

    def forward(self, features: torch.Tensor, h: torch.Tensor, cam: torch.Tensor | None = None,
                cache: torch.Tensor | None = None) -> torch.Tensor:
        projected = self.precompute(features) if cache is None else cache
        e = self.w(torch.tanh(projected + self.W_h(h).unsqueeze(1))).squeeze(-1)
        return torch.softmax(e, dim=-1)


def _needs_cam(cam: torch.Tensor | None, features: torch.Tensor, name: str) -> torch.Tensor:
    if cam is None:
        raise ValueError(f"{name} needs the class activation map c (B, N); pass cam=.")
    if cam.shape != features.shape[:2]:
        raise ValueError(f"the CAM is {tuple(cam.shape)}; the features have {tuple(features.shape[:2])} positions.")
    return cam


class CamContentAttention(nn.Module):
    """Eq. (14) with a content term, **our reading** (the paper prints none): the CAM enters Show-Attend-Tell's
    additive score of every position,

        e_ti = w^T tanh(W_a C_i + W_h h_{t-1} + u c_i),    a_t = softmax_i(e_t)

    C_i the features of position i, c_i the CAM there, standardised per image as in ``CamAttention``, and u a
    learned vector (``U_c``, ``nn.Linear(1, attention_dim)`` without bias). With u = 0 it is ``SoftAttention``;
    where the CAM is high, u shifts every position's pre-activation the same way, so the CAM can raise (or
    lower) a position's score, not only the features.

    precompute(features, cam) -> W_a C_i + u c_i, (B, N, attention_dim): what does not depend on t.
    forward(features (B, N, D), h (B, hidden_dim), cam (B, N), cache=None) -> alpha (B, N).
    """

    uses_cam = True

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int = 128):
        super().__init__()
        self.W_a = nn.Linear(feature_dim, attention_dim)
        self.U_c = nn.Linear(1, attention_dim, bias=False)
        self.W_h = nn.Linear(hidden_dim, attention_dim, bias=False)
        self.w = nn.Linear(attention_dim, 1, bias=False)

    def precompute(self, features: torch.Tensor, cam: torch.Tensor | None = None) -> torch.Tensor:
        c = standardise_cam(_needs_cam(cam, features, "CamContentAttention"))
        return self.W_a(features) + self.U_c(c.unsqueeze(-1))

    def forward(self, features: torch.Tensor, h: torch.Tensor, cam: torch.Tensor | None = None,
                cache: torch.Tensor | None = None) -> torch.Tensor:
        projected = self.precompute(features, cam) if cache is None else cache
        e = self.w(torch.tanh(projected + self.W_h(h).unsqueeze(1))).squeeze(-1)
        return torch.softmax(e, dim=-1)


class CamSlotAttention(nn.Module):
    """The CAM as the authors' later code uses it (``TopicMDNet.py`` of zizhaozhang/nmi-wsi-diagnosis, their
    2019 model; the CVPR 2017 language model was never released): content scores over the N positions plus one
    extra candidate, the projected features pooled by the CAM's softmax,

        P_i = W_a C_i,   s = sum_i softmax(c)_i P_i,   e_i = w^T tanh(P_i + W_h h_{t-1}),   e_s = w^T tanh(s + W_h h_{t-1})

    and one softmax over the N + 1 scores. The first N are the attention map, **not renormalised** (they sum to
    1 minus the slot's share), and Eq. (13)'s context is formed from the positions alone, z_t = sum_i a_i C_i.
    c is the raw CAM, as in the authors' code (a softmax is only shifted by a constant; its scale counts).

    What follows: among the positions, a_i / a_j = exp(e_i - e_j) does not depend on the CAM. The CAM only
    decides how much attention goes to the extra slot (a "visual sentinel", Lu et al. 2017), so the map can
    follow the diagnosis only in how much of it there is, never in where it is. W_a and W_h carry no bias, as
    there.

    precompute(features, cam) -> the N + 1 projected candidates, (B, N + 1, attention_dim), the slot last.
    forward(features (B, N, D), h (B, hidden_dim), cam (B, N), cache=None) -> alpha (B, N) (the map), and
    ``slot_share(features, h, cam)`` the share the slot takes, (B,).
    """

    uses_cam = True

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int = 128):
        super().__init__()
        self.W_a = nn.Linear(feature_dim, attention_dim, bias=False)
        self.W_h = nn.Linear(hidden_dim, attention_dim, bias=False)
        self.w = nn.Linear(attention_dim, 1, bias=False)

    def precompute(self, features: torch.Tensor, cam: torch.Tensor | None = None) -> torch.Tensor:
        c = _needs_cam(cam, features, "CamSlotAttention")
        projected = self.W_a(features)                                     # (B, N, A)
        slot = torch.bmm(torch.softmax(c, dim=-1).unsqueeze(1), projected)  # (B, 1, A): the CAM-pooled candidate
        return torch.cat([projected, slot], dim=1)

    def _weights(self, features, h, cam, cache) -> torch.Tensor:
        candidates = self.precompute(features, cam) if cache is None else cache
        e = self.w(torch.tanh(candidates + self.W_h(h).unsqueeze(1))).squeeze(-1)
        return torch.softmax(e, dim=-1)                                    # (B, N + 1)

    def forward(self, features: torch.Tensor, h: torch.Tensor, cam: torch.Tensor | None = None,
                cache: torch.Tensor | None = None) -> torch.Tensor:
        return self._weights(features, h, cam, cache)[:, :-1]

    def slot_share(self, features: torch.Tensor, h: torch.Tensor, cam: torch.Tensor | None = None,
                   cache: torch.Tensor | None = None) -> torch.Tensor:
        return self._weights(features, h, cam, cache)[:, -1]


def doubly_stochastic_penalty(alphas: torch.Tensor, mask: torch.Tensor | None = None, *,
                              target: float | None = None) -> torch.Tensor:
    """Xu et al.'s doubly stochastic regulariser: sum_i (target - sum_t alpha_ti)^2, the mean over the batch.

    alphas: (B, T, N), the attention of every step; mask: (B, T) bool, True at the real steps (padding steps
    are left out of the sum over t), or None for all. Each alpha_t sums to 1 over the positions, so the total
    attention of a sequence is its number of steps; the penalty pushes it to spread evenly over the positions.
    target None is the paper's 1 (every position gets attention about 1 in all); with T steps and N positions
    the even share is T / N, which can be passed as ``target`` (the paper's form needs T = N to reach zero).
    Weigh it by lambda in the loss yourself.
    """
    if mask is not None:
        alphas = torch.where(mask.unsqueeze(-1), alphas, torch.zeros_like(alphas))   # where: padding may hold NaN
    total = alphas.sum(dim=1)                                    # (B, N): attention each position got
    return ((1.0 if target is None else target) - total).pow(2).sum(dim=1).mean()
