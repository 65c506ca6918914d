"""Does a report generator look where it speaks? The scores of Part III's attention study.

``finding_attention`` scores, for every sentence of a generated report that names a finding the tile really
has (an abnormal grade: a preserved polarity or inconspicuous nucleoli have nothing to point at), three maps
against the finding's mask (:data:`~mdnet_utils.evaluation.localisation.FINDING_MASKS`): the attention of its
keyword, of its grade words, and the sentence's mean map. Each as

``lift``          mass inside / the mask's area share: 1 is a uniform map, 1 / share the most any map can reach;
``above_chance``  (mass inside - share) / (1 - share): 0 for a uniform map, 1 for a map wholly inside;
``pointing``      whether the map's maximum lies in the mask, beside ``pointing_chance`` (the mask's share).

``attention_sink`` asks whether the attention sits on one cell of the grid whatever the image: the cell that
gets the most attention over all words of all tiles, the mean share each word gives it (1/N for a uniform
map), and the share of words whose most attended cell it is (flagged as a sink above one half).
"""
from __future__ import annotations

import pandas as pd
import torch

from mdnet_utils.data.grades import FEATURES
from mdnet_utils.evaluation.localisation import (
    finding_sentences,
    mass_inside,
    mass_inside_uniform,
    pointing_game,
)

__all__ = ["PARTS", "attention_sink", "finding_attention", "study_scores", "summarise_finding_attention"]

#: The three maps scored per finding sentence.
PARTS = ("keyword", "grade words", "sentence")


def finding_attention(alphas, tokens: list[list[str]], masks: dict, grades: torch.Tensor, *,
                      grid: tuple[int, int]) -> pd.DataFrame:
    """One row per (image, finding sentence, part) for the findings the image has (``grades[i, k] > 0`` for
    feature k, as the loader gives them: 0 the normal grade, -1 unknown) and whose mask is not empty.

    ``alphas[i]``: (L_i, N) attention of image i, row j the map used for ``tokens[i][j]``, N = grid[0] x grid[1]
    (a map that sums to less than 1, as with a sentinel slot, is scored by its shape); ``masks[name]``: (B, 1, H,
    W) or (B, H, W). A part with no token (a sentence without grade words) gives no row. Columns: image,
    feature, mask, part, lift, above_chance, pointing, pointing_chance, share."""
    if not (len(alphas) == len(tokens) == len(grades)):
        raise ValueError(f"{len(alphas)} attention maps, {len(tokens)} token lists and {len(grades)} grade rows: "
                         "need one of each per image.")
    rows = []
    for i, (a, toks) in enumerate(zip(alphas, tokens)):
        a = torch.as_tensor(a).detach().float()
        if a.shape != (len(toks), grid[0] * grid[1]):
            raise ValueError(f"attention {i} has shape {tuple(a.shape)}, expected ({len(toks)}, "
                             f"{grid[0] * grid[1]}): one row per token, one column per cell of the grid.")
        for s in finding_sentences(toks):
            if s.mask not in masks or int(grades[i, FEATURES.index(s.feature)]) <= 0:
                continue
            mask = torch.as_tensor(masks[s.mask][i]).squeeze()
            share = float(mass_inside_uniform(mask))
            if not share > 0:  # an empty mask: nothing to point at
                continue
            for part, positions in zip(PARTS, (s.keyword, s.grade, tuple(range(s.start, s.end)))):
                if not positions:
                    continue
                m = a[list(positions)].mean(dim=0).reshape(grid)
                inside = float(mass_inside(m, mask))
                rows.append({"image": i, "feature": s.feature, "mask": s.mask, "part": part,
                             "lift": inside / share, "above_chance": (inside - share) / (1 - share),
                             "pointing": float(pointing_game(m, mask)), "pointing_chance": share, "share": share})
    return pd.DataFrame(rows, columns=["image", "feature", "mask", "part", "lift", "above_chance", "pointing",
                                       "pointing_chance", "share"])


def summarise_finding_attention(rows: pd.DataFrame) -> pd.DataFrame:
    """``finding_attention``'s rows as means per (mask, part): the findings of the nuclei ("lesion") and the
    mitoses ("mitosis"), with "pointing / chance" (the pointing game in multiples of its chance level) and
    "sentences" (how many rows were averaged)."""
    g = rows.groupby(["mask", "part"], sort=False)
    out = g[["lift", "above_chance", "pointing", "pointing_chance"]].mean()
    out["pointing / chance"] = out["pointing"] / out["pointing_chance"]
    out["sentences"] = g.size()
    return out


def attention_sink(alphas) -> dict:
    """Whether the attention sits on one cell whatever the image: ``alphas`` a list of (L_i, N) maps (every word
    of every tile). Returns {"cell": the cell with the most attention in all, "mass": the mean share of a word's
    attention on it (each map normalised to sum 1), "uniform": 1 / N, "argmax_share": the share of words whose
    most attended cell it is, "sink": argmax_share > 0.5, "words"}."""
    words = [torch.as_tensor(a).detach().float() for a in alphas if len(a)]
    if not words:
        raise ValueError("no attention maps given: an attention sink needs at least one word.")
    maps = torch.cat(words)
    maps = maps / maps.sum(dim=1, keepdim=True).clamp_min(torch.finfo(maps.dtype).tiny)
    cell = int(maps.sum(dim=0).argmax())
    argmax_share = float((maps.argmax(dim=1) == cell).float().mean())
    return {"cell": cell, "mass": float(maps[:, cell].mean()), "uniform": 1 / maps.shape[1],
            "argmax_share": argmax_share, "sink": argmax_share > 0.5, "words": len(maps)}


def study_scores(alphas, tokens: list[list[str]], masks: dict, grades: torch.Tensor, *,
                 grid: tuple[int, int]) -> dict:
    """The study's scores of a set of generated reports as plain data (what ``evaluate`` writes):
    {"findings": {mask: {part: summarise_finding_attention's columns}} (empty without masks or findings),
    "attention sink": attention_sink's dict (absent when no report has a word)}."""
    summary = summarise_finding_attention(finding_attention(alphas, tokens, masks, grades, grid=grid))
    findings: dict = {}
    for (mask, part), row in summary.iterrows():
        findings.setdefault(mask, {})[part] = {k: (int(v) if k == "sentences" else float(v)) for k, v in row.items()}
    out = {"findings": findings}
    if any(len(a) for a in alphas):
        out["attention sink"] = attention_sink(alphas)
    return out
