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

Both attentions share one call: ``forward(features, h, cam=None, cache=None) -> alpha``. What does not depend on
the time step is computed once per sequence by ``precompute(features, cam)`` (a tensor, batch first, so a beam
search can ``repeat_interleave`` it) and passed back as ``cache``; without a cache it is recomputed each call.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["flatten_features", "context", "standardise_cam", "CamAttention", "SoftAttention",
           "doubly_stochastic_penalty"]


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
