"""Comparisons over seeds: the course's rule for when a difference between two models is measurable.

``mdnet_utils.reference.seed_table`` gathers a reference's figures per seed; ``difference`` compares two lists
of them; ``seed_curves`` summarises a training history over the seeds, epoch by epoch (the notebooks' bands). A notebook concludes that one model is better only when ``measurable`` is True, and otherwise says
that no difference is measurable at this scale.
"""
from __future__ import annotations

import pandas as pd

__all__ = ["difference", "mean_and_sd", "seed_curves"]


def mean_and_sd(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (one row per seed) with two rows added: "mean" and "sd" (the sample standard deviation over
    the seeds, ddof 1: what every comparison of the notebooks quotes)."""
    table = table.copy()
    table.loc["mean"], table.loc["sd"] = table.mean(), table.std(ddof=1)
    return table


def difference(a: list[float], b: list[float]) -> dict:
    """How two models compare over their seeds: the means, the sample standard deviations, the difference of the
    means, and ``measurable``: True when that difference exceeds the sum of the two spreads."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a comparison needs at least two seeds a side ({len(a)} and {len(b)} given).")
    sa, sb = pd.Series(a, dtype=float), pd.Series(b, dtype=float)
    diff = float(sa.mean() - sb.mean())
    return {"mean_a": float(sa.mean()), "mean_b": float(sb.mean()), "sd_a": float(sa.std(ddof=1)),
            "sd_b": float(sb.std(ddof=1)), "difference": diff,
            "measurable": abs(diff) > float(sa.std(ddof=1) + sb.std(ddof=1))}


def seed_curves(metas: dict[int, dict], key: str) -> pd.DataFrame:
    """One entry ``key`` of the per-epoch histories of a reference's seeds (``metas``: seed -> its JSON, as
    ``mdnet_utils.reference.metas`` returns them), per epoch: the "mean", "min" and "max" over the seeds and
    "seeds", how many had that epoch (index: the epoch)."""
    if not metas:
        raise ValueError("no seeds given: a curve over seeds needs at least one history.")
    runs = pd.concat({s: pd.DataFrame(m["history"]).set_index("epoch")[key] for s, m in metas.items()}, axis=1)
    return pd.DataFrame({"mean": runs.mean(axis=1), "min": runs.min(axis=1), "max": runs.max(axis=1),
                         "seeds": runs.notna().sum(axis=1)})
