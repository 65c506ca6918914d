"""The diagnostic vocabulary of the synthetic BCIDR stand-in: features, grades, conclusions.

BCIDR (the paper's bladder data set) describes each image by five features, always in this
order, then a conclusion. This module is the single place that names them, and it holds the
rule that turns grades into a conclusion, so the renderer, the report grammar, the loader and
the clinical parser all agree.

The conclusion rule (documented here, quoted in data/README.md and notebook 00):

* a tile that is out of focus cannot be graded: ``insufficient information``;
* otherwise add up the grade indices (0 = the normal grade) over the five features,
  the *abnormality score* S (0..9):
  S == 0 -> ``normal``; 1 <= S <= 4 -> ``low grade``; S >= 5 -> ``high grade``.
"""
from __future__ import annotations

import numpy as np

FEATURES: tuple[str, ...] = ("pleomorphism", "crowding", "polarity", "mitosis", "nucleoli")

GRADES: dict[str, tuple[str, ...]] = {
    "pleomorphism": ("mild", "moderate", "severe"),
    "crowding": ("mild", "moderate", "severe"),
    "polarity": ("preserved", "partially lost", "completely lost"),
    "mitosis": ("rare", "infrequent", "frequent"),
    "nucleoli": ("inconspicuous", "prominent"),
}

CLASSES: tuple[str, ...] = ("normal", "low grade", "high grade", "insufficient information")

# Score thresholds of the rule above.
LOW_GRADE_MIN_SCORE = 1
HIGH_GRADE_MIN_SCORE = 5


def grade_index(feature: str, grade: str) -> int:
    """Position of ``grade`` in the ordered grades of ``feature`` (0 is the normal grade)."""
    try:
        return GRADES[feature].index(grade)
    except (KeyError, ValueError):
        raise ValueError(f"unknown grade {grade!r} for feature {feature!r}") from None


def abnormality_score(grades: dict[str, str]) -> int:
    """Sum of grade indices over the five features: 0 (all normal) to 9."""
    return sum(grade_index(f, grades[f]) for f in FEATURES)


def conclusion(grades: dict[str, str], in_focus: bool = True) -> str:
    """The documented conclusion rule (see the module docstring)."""
    if not in_focus:
        return "insufficient information"
    s = abnormality_score(grades)
    if s >= HIGH_GRADE_MIN_SCORE:
        return "high grade"
    if s >= LOW_GRADE_MIN_SCORE:
        return "low grade"
    return "normal"


def has_findings(grades: dict[str, str]) -> bool:
    """True when any feature is graded away from normal: exactly the tiles with a lesion."""
    return abnormality_score(grades) > 0


def sample_case(rng: np.random.Generator, p_out_of_focus: float = 0.1) -> tuple[dict[str, str], bool]:
    """Draw one tile's grades and focus so that the four conclusions come out roughly balanced.

    A target conclusion is drawn first, then grades from a latent severity until the rule
    gives that conclusion (rejection sampling): the rule stays exact, the classes stay balanced,
    and grades are correlated through the severity, as in real tissue, without any single
    feature deciding the conclusion.
    """
    in_focus = bool(rng.random() >= p_out_of_focus)
    target = CLASSES[int(rng.integers(0, 3))]
    while True:
        # Severity centred on where the target's scores lie; each feature scatters around it.
        centre = {"normal": 0.0, "low grade": 0.3, "high grade": 0.7}[target]
        severity = float(np.clip(centre + 0.18 * rng.standard_normal(), 0.0, 1.0))
        grades = {}
        for f in FEATURES:
            n = len(GRADES[f])
            level = severity * (n - 1) + 0.55 * rng.standard_normal()
            grades[f] = GRADES[f][int(np.clip(np.rint(level), 0, n - 1))]
        if conclusion(grades) == target:
            return grades, in_focus
