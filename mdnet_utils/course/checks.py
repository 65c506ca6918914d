"""The shape every course notebook shares, and ``check_structure``, which says what a notebook lacks.

Every notebook opens the same way (a title; "What you will learn" ending in "Equations covered: ...";
"Prerequisites"; "Runtime" in fast and full mode; then one setup cell that seeds and picks the
device) and closes the same way ("Summary", "Exercises" with at least two checked exercises,
"Questionnaire", "References").
"""
from __future__ import annotations

import re

from mdnet_utils.course.notebook import cell_text, exercises, opening, setup_index

OPENING = ("What you will learn", "Prerequisites", "Runtime")
CLOSING = ("Summary", "Exercises", "Questionnaire", "References")
MIN_CHECKED_EXERCISES = 2


def check_structure(nb) -> list[str]:
    """Problems with a notebook's fixed opening and closing (an empty list when all is well)."""
    cells = nb["cells"]
    problems = []
    if not cells or cells[0]["cell_type"] != "markdown" or not cell_text(cells[0]).startswith("# "):
        problems.append("the first cell is not a markdown cell starting with a '# ' title")
    first_code = setup_index(nb)
    text = opening(nb)
    for heading in OPENING:
        if not re.search(rf"^#+\s*{heading}", text, re.M | re.I):
            problems.append(f"the opening has no '{heading}' heading before the setup cell")
    if not re.search(r"^\*?Equations covered:", text, re.M):
        problems.append("the opening has no 'Equations covered:' line (the series map and the README read it)")
    if not re.search(r"fast", text, re.I) or not re.search(r"full", text, re.I):
        problems.append("the runtime does not state both fast and full mode")
    if first_code is None:
        problems.append("there is no setup cell")
    else:
        setup = cell_text(cells[first_code])
        for name in ("seed_everything", "get_device", "__version__"):
            if name not in setup:
                problems.append(f"the setup cell does not call {name}")
    headings = [m.group(1).strip() for c in cells if c["cell_type"] == "markdown"
                for m in re.finditer(r"^##\s+(.+)$", cell_text(c), re.M)]
    if tuple(headings[-len(CLOSING):]) != CLOSING:
        problems.append(f"the last '## ' headings are {headings[-len(CLOSING):]}, not {list(CLOSING)}")
    try:
        checked = exercises(nb)
    except ValueError as err:
        problems.append(f"a checked exercise is malformed: {err}")
    else:
        if len(checked) < MIN_CHECKED_EXERCISES:
            problems.append(f"{len(checked)} checked exercise(s) (cells tagged 'solution'); "
                            f"at least {MIN_CHECKED_EXERCISES} are expected")
    return problems
