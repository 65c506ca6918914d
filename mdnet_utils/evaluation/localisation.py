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

Attention of a report generator. :func:`attention_localisation` applies the two scores to the words of
generated reports that name a localised finding (:func:`finding_words`: a feature's keyword and the
wording of its grade, as in "there are *numerous mitoses*."): does the attention used to write the word
lie in the region that shows the finding? :data:`FINDING_MASKS` says which region that is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mdnet_utils.data.grades import FEATURES
from mdnet_utils.data.reports import KEYWORDS, PHRASES

__all__ = ["mass_inside", "pointing_game", "mass_inside_uniform", "pointing_game_uniform", "localisation_scores",
           "FINDING_MASKS", "FindingSentence", "finding_sentences", "finding_words", "attention_localisation"]


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


# --- attention of a report generator --------------------------------------------------------------------------

#: The mask each feature's finding lies in (the synthetic data's mask names). The nuclear features
#: (pleomorphism, crowding, polarity, nucleoli) are properties of the lesion's nuclei, so they are seen anywhere
#: in the "lesion" mask; mitotic figures are single small clumps, each marked in the "mitosis" mask.
FINDING_MASKS: dict[str, str] = {"pleomorphism": "lesion", "crowding": "lesion", "polarity": "lesion",
                                 "mitosis": "mitosis", "nucleoli": "lesion"}

# Every wording of every grade of a feature, as token lists, longest first (so "well preserved" wins over
# "preserved", as in the report parser).
_WORDINGS = {f: sorted({tuple(w.split()) for ws in PHRASES[f]["wordings"].values() for w in ws}, key=len, reverse=True)
             for f in FEATURES}


@dataclass(frozen=True)
class FindingSentence:
    """A sentence of a report about exactly one localised feature: its ``feature``, the ``mask`` its finding lies
    in (:data:`FINDING_MASKS`), its token positions ``start``..``end`` (the closing "." excluded), and the
    positions of its ``keyword`` tokens and of its ``grade`` wording (the words that say how much, keyword
    tokens excluded: in "there are numerous mitoses ." the keyword is "mitoses", the grade words "numerous")."""
    feature: str
    mask: str
    start: int
    end: int
    keyword: tuple[int, ...]
    grade: tuple[int, ...]


def finding_sentences(tokens: list[str]) -> list[FindingSentence]:
    """The sentences of ``tokens`` that are about exactly one feature, in order (see :func:`finding_words`)."""
    out: list[FindingSentence] = []
    start = 0
    for end in [*(i for i, t in enumerate(tokens) if t == "."), len(tokens)]:
        sentence = tokens[start:end]
        features = [f for f in FEATURES if any(t.startswith(KEYWORDS[f]) for t in sentence)]
        if len(features) == 1:
            f = features[0]
            keyword = {i for i, t in enumerate(sentence) if t.startswith(KEYWORDS[f])}
            grade, i = set(), 0
            while i < len(sentence):  # non-overlapping wordings, longest match first
                match = next((w for w in _WORDINGS[f] if tuple(sentence[i:i + len(w)]) == w), None)
                if match:
                    grade.update(range(i, i + len(match)))
                i += len(match) if match else 1
            out.append(FindingSentence(f, FINDING_MASKS[f], start, end, tuple(start + k for k in sorted(keyword)),
                                       tuple(start + g for g in sorted(grade - keyword))))
        start = end + 1
    return out


def finding_words(tokens: list[str]) -> list[tuple[int, str, str]]:
    """``(position in tokens, feature, mask name)`` for each token that names a localised finding.

    Sentences end at ``"."``. In a sentence about exactly one feature (one whose tokens start with that
    feature's :data:`~mdnet_utils.data.reports.KEYWORDS`, the rule of the report parser), the finding words are
    the keyword tokens and the tokens of every grade wording of that feature found in it: in
    "there are numerous mitoses ." they are "numerous" and "mitoses". The conclusion and sentences about no
    feature or several give none. ``tokens`` are as :func:`~mdnet_utils.data.vocab.tokenize` makes them.
    """
    return [(i, s.feature, s.mask) for s in finding_sentences(tokens) for i in sorted({*s.keyword, *s.grade})]


def attention_localisation(alphas, tokens: list[list[str]], masks: dict, *, grid: tuple[int, int],
                           tolerance: int = 0) -> dict[str, dict[str, float]]:
    """Where a report generator looks when it writes a finding: its attention scored against the finding's mask.

    ``alphas[i]`` is the ``(L_i, N)`` attention of image i, row j the attention over the ``N = grid[0] * grid[1]``
    image regions (row-major) when emitting ``tokens[i][j]``; ``masks[name]`` is ``(B, 1, H, W)`` or
    ``(B, H, W)`` for the same B images. For each finding word of each image (:func:`finding_words`) the word's
    attention, reshaped to the grid, is scored against its mask (:data:`FINDING_MASKS`) with
    :func:`mass_inside` and :func:`pointing_game` (so upsampled bilinear to the mask), beside their chance levels.
    Words whose mask is empty (NaN) are skipped; so are mask names absent from ``masks``.

    Returns, per mask name present, and under ``"all"`` for every scored word pooled: ``"mass_inside"``,
    ``"mass_inside_uniform"``, ``"ratio"`` (the first over the second: how many times chance),
    ``"pointing_game"``, ``"pointing_game_uniform"`` (means over words, each scored word counting once; NaN when
    there is none), ``"words"`` (scored words) and ``"images"`` (images with at least one). Raises
    ``ValueError`` when the numbers of maps, token lists, masks, rows or regions do not match.
    """
    alphas = [torch.as_tensor(a).detach() for a in alphas]
    b, n = len(alphas), grid[0] * grid[1]
    if len(tokens) != b:
        raise ValueError(f"{b} attention maps for {len(tokens)} token lists.")
    prepared = {}
    for name, mask in masks.items():
        m, _ = _prepare_mask(mask)
        if m.shape[0] != b:
            raise ValueError(f"the {name!r} masks hold {m.shape[0]} images, the attention maps {b}.")
        prepared[name] = m
    for i, (a, toks) in enumerate(zip(alphas, tokens)):
        if a.dim() != 2 or a.shape[0] != len(toks) or a.shape[1] != n:
            raise ValueError(f"attention {i} has shape {tuple(a.shape)}, expected ({len(toks)}, {n}): "
                             f"one row per token, one column per region of the {grid[0]}x{grid[1]} grid.")

    keys = ("mass_inside", "mass_inside_uniform", "pointing_game", "pointing_game_uniform")
    names = [name for name in dict.fromkeys(FINDING_MASKS.values()) if name in prepared]
    scores = {name: {k: [] for k in keys} for name in [*names, "all"]}
    images = {name: set() for name in scores}
    for i, (a, toks) in enumerate(zip(alphas, tokens)):
        words = finding_words(toks)
        for name in names:
            rows = [j for j, _, mask_name in words if mask_name == name]
            if not rows:
                continue
            maps = a[rows].reshape(len(rows), *grid)
            m = prepared[name][i:i + 1]  # one mask against all the word maps of the image
            s = localisation_scores(maps, m, tolerance)
            s["mass_inside_uniform"] = s["mass_inside_uniform"].expand(len(rows))
            s["pointing_game_uniform"] = s["pointing_game_uniform"].expand(len(rows))
            if torch.isnan(s["mass_inside_uniform"]).any():  # an empty mask: nothing to point at
                continue
            for target in (name, "all"):
                for k in keys:
                    scores[target][k] += s[k].tolist()
                images[target].add(i)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else math.nan

    out = {}
    for name, lists in scores.items():
        m = {k: mean(v) for k, v in lists.items()}
        out[name] = {"mass_inside": m["mass_inside"], "mass_inside_uniform": m["mass_inside_uniform"],
                     "ratio": m["mass_inside"] / m["mass_inside_uniform"] if lists["mass_inside"] else math.nan,
                     "pointing_game": m["pointing_game"], "pointing_game_uniform": m["pointing_game_uniform"],
                     "words": len(lists["mass_inside"]), "images": len(images[name])}
    return out
