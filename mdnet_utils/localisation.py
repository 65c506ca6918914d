"""How well a saliency map (a class activation map, an attention map) points at a ground-truth region.

Two scores per image, each beside what a map that knows nothing would get (a uniform map, or a point
drawn uniformly at random), so a number is never read without its chance level:

``mass_inside``     the share of the map's mass inside the mask, sum(s * mask) / sum(s); chance: the mask's
                    area share (``mass_inside_uniform``).
``pointing_game``   1 if the map's maximum lies in the mask (within ``tolerance`` pixels), else 0
                    (Zhang et al. 2016's pointing game; ties split, see the function); chance: the probability
                    that a uniformly random point does, the (grown) mask's area share (``pointing_game_uniform``).

Conventions. Saliency s and mask m are (H, W) or a batch (B, H, W) (a channel axis of size 1 is dropped);
tensors or arrays. The saliency is made non-negative with a ReLU (CAM practice: negative evidence is not
"where the class is"). A saliency smaller than the mask is upsampled to it (bilinear, before the ReLU,
as when a map is overlaid on its image); a larger one is an error. The mask is binary: True, or > 0.5.
An empty mask has no inside: every score is NaN (skip it with ``torch.nanmean``). A map that is all zero
after the ReLU points nowhere: it counts as the uniform map, both scores equal to their chance level
(``mass_inside`` falls back to the area share; ``pointing_game`` splits the tie over every pixel).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mass_inside", "pointing_game", "mass_inside_uniform", "pointing_game_uniform", "localisation_scores"]


def _as_batch(t, name: str) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.dim() == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3:
        raise ValueError(f"{name} must be (H, W) or (B, H, W); got shape {tuple(t.shape)}.")
    return t


def _prepare_mask(mask) -> tuple[torch.Tensor, bool]:
    """(B, H, W) bool mask, and whether the input was a batch."""
    batched = torch.as_tensor(mask).dim() >= 3
    m = _as_batch(mask, "mask")
    return (m if m.dtype == torch.bool else m > 0.5), batched


def _prepare(saliency, mask) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(B, H, W) float non-negative saliency on the mask's grid, (B, H, W) bool mask, whether batched."""
    m, batched = _prepare_mask(mask)
    s = _as_batch(saliency, "saliency")
    s = s if s.is_floating_point() else s.to(torch.get_default_dtype())
    if s.shape[0] != m.shape[0]:
        if s.shape[0] != 1 and m.shape[0] != 1:
            raise ValueError(f"{s.shape[0]} saliency maps for {m.shape[0]} masks.")
        b = max(s.shape[0], m.shape[0])
        s, m, batched = s.expand(b, *s.shape[1:]), m.expand(b, *m.shape[1:]), True
    if s.shape[-2:] != m.shape[-2:]:
        if s.shape[-2] > m.shape[-2] or s.shape[-1] > m.shape[-1]:
            raise ValueError(f"saliency {tuple(s.shape[-2:])} is larger than the mask {tuple(m.shape[-2:])}: "
                             f"resize the mask (or the map) yourself.")
        s = F.interpolate(s.unsqueeze(1), size=tuple(m.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    return torch.relu(s), m.to(s.device), batched


def _dilate(m: torch.Tensor, tolerance: int) -> torch.Tensor:
    """The mask grown by ``tolerance`` pixels (a square neighbourhood)."""
    if tolerance <= 0:
        return m
    k = 2 * tolerance + 1
    return F.max_pool2d(m.unsqueeze(1).float(), k, stride=1, padding=tolerance)[:, 0] > 0


def _area_share(m: torch.Tensor, dtype) -> torch.Tensor:
    share = m.flatten(1).to(dtype).mean(dim=1)
    return torch.where(m.flatten(1).any(dim=1), share, torch.full_like(share, float("nan")))


def _out(t: torch.Tensor, batched: bool) -> torch.Tensor:
    return t if batched else t[0]


def mass_inside_uniform(mask) -> torch.Tensor:
    """Chance level of ``mass_inside``: the mask's area share (NaN for an empty mask)."""
    m, batched = _prepare_mask(mask)
    return _out(_area_share(m, torch.get_default_dtype()), batched)


def pointing_game_uniform(mask, tolerance: int = 0) -> torch.Tensor:
    """Chance level of ``pointing_game``: the probability that a uniformly random point lands in the mask
    grown by ``tolerance`` pixels, i.e. its area share (NaN for an empty mask)."""
    m, batched = _prepare_mask(mask)
    return _out(_area_share(_dilate(m, tolerance), torch.get_default_dtype()), batched)


def mass_inside(saliency, mask) -> torch.Tensor:
    """sum(s * m) / sum(s), s = ReLU(saliency): 1 when all of the map lies in the mask, the mask's area share
    for a uniform map (or an all-zero one). One value per image, NaN where the mask is empty."""
    s, m, batched = _prepare(saliency, mask)
    total = s.flatten(1).sum(dim=1)
    inside = (s * m).flatten(1).sum(dim=1)
    share = _area_share(m, s.dtype)
    score = torch.where(total > 0, inside / total.clamp_min(torch.finfo(s.dtype).tiny), share)
    return _out(torch.where(m.flatten(1).any(dim=1), score, torch.full_like(score, float("nan"))), batched)


def pointing_game(saliency, mask, tolerance: int = 0) -> torch.Tensor:
    """1.0 where the maximum of ReLU(saliency) lies in the mask (or within ``tolerance`` pixels of it), else 0.0.

    Ties are split: with several maximal points the score is the share of them that hit, so a constant map
    (an all-zero one included) scores the chance level, the (grown) mask's area share. NaN where the mask is empty.
    """
    s, m, batched = _prepare(saliency, mask)
    flat = s.flatten(1)
    at_max = flat == flat.amax(dim=1, keepdim=True)
    hits = (at_max & _dilate(m, tolerance).flatten(1)).sum(dim=1)
    score = hits.to(s.dtype) / at_max.sum(dim=1).to(s.dtype)
    return _out(torch.where(m.flatten(1).any(dim=1), score, torch.full_like(score, float("nan"))), batched)


def localisation_scores(saliency, mask, tolerance: int = 0) -> dict[str, torch.Tensor]:
    """Both scores with their chance levels: {"mass_inside", "mass_inside_uniform", "pointing_game",
    "pointing_game_uniform"}, one value per image each (a scalar for a single (H, W) pair)."""
    return {"mass_inside": mass_inside(saliency, mask),
            "mass_inside_uniform": mass_inside_uniform(mask),
            "pointing_game": pointing_game(saliency, mask, tolerance),
            "pointing_game_uniform": pointing_game_uniform(mask, tolerance)}
