"""The ground truth of a case in names: what a report about it should say (the clinical score compares with it).

Kept apart from ``grades`` on purpose: the synthetic data's cache key hashes the generator's source
(``grades``, ``synthetic``, ``reports``; see ``build.generator_version``), and reading the truth back is not
part of generating it.
"""
from __future__ import annotations

from collections.abc import Mapping

from mdnet_utils.data.grades import CLASSES, FEATURES, GRADES

__all__ = ["clinical_truth"]


def _grade_name(feature: str, value) -> str | None:
    """``value`` (a grade name, an index into GRADES[feature], -1 or None) as a grade name or None."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in GRADES[feature]:
            raise ValueError(f"unknown grade {value!r} for feature {feature!r} (expected one of {GRADES[feature]}).")
        return value
    i = int(value)
    if i == -1:  # the data set's "unknown"
        return None
    if not 0 <= i < len(GRADES[feature]):
        raise ValueError(f"grade index {i} is out of range for feature {feature!r} ({len(GRADES[feature])} grades).")
    return GRADES[feature][i]


def _class_name(value) -> str | None:
    """``value`` (a class name, an index into CLASSES, -1 or None) as a class name or None."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in CLASSES:
            raise ValueError(f"unknown conclusion {value!r} (expected one of {CLASSES}).")
        return value
    i = int(value)
    if i == -1:
        return None
    if not 0 <= i < len(CLASSES):
        raise ValueError(f"label index {i} is out of range ({len(CLASSES)} classes).")
    return CLASSES[i]


def clinical_truth(grades, label) -> dict:
    """One ground-truth entry of :func:`clinical_scores`.

    Returns ``{"grades": {feature: grade or None, ...}, "conclusion": class or None}``, every feature present.

    ``grades`` is either a mapping feature -> grade name (a missing feature is unknown) or, as a
    :class:`~mdnet_utils.data.dataset.ReportDataset` item holds it, a sequence (list, tensor) of
    5 grade indices in ``FEATURES`` order; ``label`` is a class name or an index into ``CLASSES``.
    None and the data set's -1 mean unknown. Unknown names and out-of-range indices raise
    ``ValueError``.
    """
    if isinstance(grades, Mapping):
        unknown = sorted(set(grades) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown features {unknown} (expected some of {FEATURES}).")
        names = {f: _grade_name(f, grades.get(f)) for f in FEATURES}
    else:
        values = grades.tolist() if hasattr(grades, "tolist") else list(grades)
        if len(values) != len(FEATURES):
            raise ValueError(f"expected {len(FEATURES)} grades, one per feature of {FEATURES}; got {len(values)}.")
        names = {f: _grade_name(f, v) for f, v in zip(FEATURES, values)}
    if hasattr(label, "item"):  # a 0-d tensor or array
        label = label.item()
    return {"grades": names, "conclusion": _class_name(label)}
