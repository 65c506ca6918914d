"""Every notebook opens and closes the same way, and is committed executed, small and clean.

(Running them is nbval's job: `make test` runs each notebook in fast mode.)
"""
import json

import nbformat
import pytest

from mdnet_utils.notebooks import check_structure, notebook_paths

NOTEBOOKS = notebook_paths()


def test_the_course_has_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_the_data.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_fixed_opening_and_closing(path):
    assert check_structure(nbformat.read(path, as_version=4)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_executed_top_to_bottom_without_errors_and_under_3_mb(path):
    assert path.stat().st_size < 3 * 1024 * 1024
    cells = json.loads(path.read_text())["cells"]
    counts = [c["execution_count"] for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert counts == list(range(1, len(counts) + 1))
    assert not [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]


def test_check_structure_names_what_is_missing():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("no title"), nbformat.v4.new_code_cell("x = 1")]
    problems = check_structure(nb)
    assert any("title" in p for p in problems)
    assert any("Prerequisites" in p for p in problems)
    assert any("seed_everything" in p for p in problems)
    assert any("Summary" in p for p in problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_is_paired_with_its_script_cell_for_cell(path):
    """notebooks/py/NN_slug.py (jupytext py:percent) holds the notebook's cells: `make sync` after an edit."""
    jupytext = pytest.importorskip("jupytext")
    script = path.parent / "py" / path.with_suffix(".py").name
    assert script.exists(), f"{script} is missing: run `make sync`"
    paired = jupytext.read(script)
    notebook = nbformat.read(path, as_version=4)
    ours = [(c.cell_type, c.source.strip()) for c in notebook.cells]
    theirs = [(c.cell_type, c.source.strip()) for c in paired.cells]
    assert ours == theirs, f"{path.name} and {script.name} differ: run `make sync`"


def test_check_structure_asks_for_a_questionnaire_and_two_checked_exercises():
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    nb.cells = [c for c in nb.cells if "questionnaire" not in c.metadata.get("tags", [])]
    assert any("Questionnaire" in p for p in check_structure(nb))
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    first = next(c for c in nb.cells if "solution" in c.metadata.get("tags", []))
    first.metadata["tags"] = []
    assert any("1 checked exercise" in p for p in check_structure(nb))
