"""Reading a course notebook: where the notebooks are, a cell's text and tags, the fixed opening, the checked
exercises. Every other course module reads a notebook through here; this module imports no other.

A notebook is read as nbformat gives it (or as the plain JSON dict: only item access is used), so this module
needs no nbformat itself. The notebooks are those of ``config.notebooks_dir`` (``notebooks/`` of the checkout,
or of ``$MDNET_ROOT``), looked up when a function is called.

A checked exercise is three cells: a markdown cell that states the task (headed ``### Exercise A · title``), a
code cell tagged ``solution`` that defines the function (``stub`` in the student edition), and the check cell,
tagged ``check``, that runs ``mdnet_utils.exercises.check_<name>`` on it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from mdnet_utils import config

SOLUTION, STUB, CHECK, QUESTIONNAIRE = "solution", "stub", "check", "questionnaire"
# "Exercise", or the Chinese edition's "练习" (notebooks/zh/glossary.yml; tests/test_zh.py holds the two equal)
EXERCISE_HEADING = re.compile(r"^###\s+(?:Exercise|练习)\s+([A-Z])\s*·\s*(.+)$", re.M)


def notebook_paths(folder: str | os.PathLike | None = None) -> list[Path]:
    """The course's notebooks, in order (``NN_slug.ipynb``), in ``folder`` (default ``config.notebooks_dir``)."""
    return sorted(Path(config.notebooks_dir if folder is None else folder).glob("[0-9][0-9]_*.ipynb"))


def cell_text(cell) -> str:
    """A cell's source as one string (nbformat's files store it as a list of lines)."""
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def setup_index(nb) -> int | None:
    """The index of the setup cell (the first code cell), or None when there is no code cell."""
    return next((i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"), None)


def opening(nb) -> str:
    """The fixed opening: the markdown cells before the setup cell (all of them without one), as one text."""
    return "\n".join(cell_text(c) for c in nb["cells"][:setup_index(nb)] if c["cell_type"] == "markdown")


def exercises(nb, tag: str = SOLUTION) -> list[dict]:
    """The checked exercises of a notebook, in order: letter, title, task, the index of the cell tagged ``tag``
    (``solution``; ``stub`` in the student edition), the check and the function it is called on."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if tag not in tags(cell):
            continue
        task_cell = nb["cells"][i - 1] if i > 0 else None
        heading = EXERCISE_HEADING.search(cell_text(task_cell)) if task_cell and task_cell["cell_type"] == "markdown" else None
        if heading is None:
            raise ValueError(f"cell {i}: a solution cell must follow a markdown cell headed '### Exercise X · title'.")
        check_cell = nb["cells"][i + 1] if i + 1 < len(nb["cells"]) else None
        call = re.search(r"\b(check_\w+)\((\w+)\)", cell_text(check_cell)) if check_cell else None
        if call is None or check_cell["cell_type"] != "code":
            raise ValueError(f"cell {i}: a solution cell must be followed by a code cell calling check_<name>(function).")
        task = EXERCISE_HEADING.sub("", cell_text(task_cell)).strip()
        found.append({"letter": heading.group(1), "title": heading.group(2).strip(), "task": task, "cell": i,
                      "check": call.group(1), "function": call.group(2)})
    return found
