"""Course upkeep: run every notebook in place (``make run``) and check the shape they all share.

Every notebook opens the same way (a title; "What you will learn" ending in "Equations covered: ...";
"Prerequisites"; "Runtime" in fast and full mode; then one setup cell that seeds and picks the
device) and closes the same way ("Summary", "Exercises" with at least two checked exercises,
"Questionnaire", "References"). ``check_structure`` says what is missing.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
OPENING = ("What you will learn", "Prerequisites", "Runtime")
CLOSING = ("Summary", "Exercises", "Questionnaire", "References")
MIN_CHECKED_EXERCISES = 2


def notebook_paths(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The course's notebooks, in order (``NN_slug.ipynb``)."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def _text(cell) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def check_structure(nb) -> list[str]:
    """Problems with a notebook's fixed opening and closing (an empty list when all is well)."""
    cells = nb["cells"]
    problems = []
    if not cells or cells[0]["cell_type"] != "markdown" or not _text(cells[0]).startswith("# "):
        problems.append("the first cell is not a markdown cell starting with a '# ' title")
    first_code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), None)
    opening = "\n".join(_text(c) for c in cells[:first_code] if c["cell_type"] == "markdown")
    for heading in OPENING:
        if not re.search(rf"^#+\s*{heading}", opening, re.M | re.I):
            problems.append(f"the opening has no '{heading}' heading before the setup cell")
    if not re.search(r"^\*?Equations covered:", opening, re.M):
        problems.append("the opening has no 'Equations covered:' line (the series map and the README read it)")
    if not re.search(r"fast", opening, re.I) or not re.search(r"full", opening, re.I):
        problems.append("the runtime does not state both fast and full mode")
    if first_code is None:
        problems.append("there is no setup cell")
    else:
        setup = _text(cells[first_code])
        for name in ("seed_everything", "get_device", "__version__"):
            if name not in setup:
                problems.append(f"the setup cell does not call {name}")
    headings = [m.group(1).strip() for c in cells if c["cell_type"] == "markdown"
                for m in re.finditer(r"^##\s+(.+)$", _text(c), re.M)]
    if tuple(headings[-len(CLOSING):]) != CLOSING:
        problems.append(f"the last '## ' headings are {headings[-len(CLOSING):]}, not {list(CLOSING)}")
    from mdnet_utils.student import exercises  # student imports this module: import here, no cycle
    try:
        checked = exercises(nb)
    except ValueError as err:
        problems.append(f"a checked exercise is malformed: {err}")
    else:
        if len(checked) < MIN_CHECKED_EXERCISES:
            problems.append(f"{len(checked)} checked exercise(s) (cells tagged 'solution'); "
                            f"at least {MIN_CHECKED_EXERCISES} are expected")
    return problems


def write_folder(out: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """``fill(tmp)`` a hidden sibling of ``out``, then swap it in for ``out``: ``out`` is always either the old
    folder or the complete new one, and a failed ``fill`` leaves no temporary folder behind. The site and the
    student edition are written this way."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        fill(tmp)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def run_notebooks(paths: list[Path] | None = None, timeout: int = 1800) -> None:
    """Execute notebooks in place, full mode, top to bottom in one fresh kernel each."""
    import nbformat
    from nbclient import NotebookClient
    from tqdm.auto import tqdm

    env_fast = os.environ.pop("MDNET_FAST", None)  # committed outputs are full mode
    try:
        for path in paths or notebook_paths():
            nb = nbformat.read(path, as_version=4)
            n_code = sum(c.cell_type == "code" for c in nb.cells)
            bar = tqdm(total=n_code, desc=path.name, unit="cell")
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                    resources={"metadata": {"path": str(path.parent)}},
                                    on_cell_executed=lambda **kw: bar.update(1))
            client.execute()
            bar.close()
            tmp = path.with_suffix(".ipynb.tmp")
            nbformat.write(nb, tmp)
            os.replace(tmp, path)
    finally:
        if env_fast is not None:
            os.environ["MDNET_FAST"] = env_fast
