"""Each notebook's measured runtime: the one source that its opening and the README's course map quote.

``notebooks/runtimes.json`` holds, per notebook, the wall-clock seconds of its last execution in each mode:
``{"00_the_data.ipynb": {"full": 92.1, "fast": 36.0}, ...}``. ``make run`` (``run_notebooks``) records the
full-mode time of every notebook it executes; ``make runtimes`` (``run_notebooks(fast=True)``) executes them in
fast mode, records that time and writes no output. ``phrase(seconds)`` is how the prose quotes a time
("~1.5 min", "~40 s"); ``tests/test_notebooks.py`` holds each opening's "Runtime" section and the README's row
to the phrases of the recorded times, so a notebook that becomes slower or faster shows in the test.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from mdnet_utils.io import write_json

__all__ = ["RUNTIMES_FILE", "MODES", "phrase", "read_runtimes", "record_runtime"]

RUNTIMES_FILE = "runtimes.json"
MODES = ("full", "fast")


def phrase(seconds: float) -> str:
    """A runtime as the course quotes it: under a minute in steps of 5 s ("~40 s"), then in half minutes
    ("~1.5 min", "~3 min")."""
    if seconds < 57.5:
        return f"~{max(5, 5 * math.floor(seconds / 5 + 0.5))} s"   # halves round up, not to even
    return f"~{math.floor(seconds / 30 + 0.5) / 2:g} min"


def read_runtimes(folder: str | os.PathLike) -> dict[str, dict[str, float]]:
    """``folder/runtimes.json`` ({} when there is none)."""
    path = Path(folder) / RUNTIMES_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def record_runtime(folder: str | os.PathLike, notebook: str, mode: str, seconds: float) -> None:
    """Set ``notebook``'s time in ``mode`` ("full" or "fast") in ``folder/runtimes.json``, keeping the rest."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: choose from {', '.join(MODES)}.")
    runtimes = read_runtimes(folder)
    runtimes.setdefault(notebook, {})[mode] = round(float(seconds), 1)
    write_json(Path(folder) / RUNTIMES_FILE, dict(sorted(runtimes.items())))
