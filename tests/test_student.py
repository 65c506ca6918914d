"""The student edition (`make student`) is the notebooks with their solutions replaced by stubs, the
questionnaire's answers removed and the outputs cleared; every check fails on its stub and passes on
its solution."""
import ast
import contextlib
import io
import re

import nbformat
import pytest

from mdnet_utils import exercises as checks
from mdnet_utils.course.notebook import CHECK, QUESTIONNAIRE, SOLUTION, STUB, exercises, notebook_paths, tags
from mdnet_utils.course.student import _plain, build_student_edition, stub_source, student_notebook

NOTEBOOKS = notebook_paths()
PAIRS = [(p, k) for p in NOTEBOOKS for k in range(len(exercises(nbformat.read(p, as_version=4))))]


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    return build_student_edition(tmp_path_factory.mktemp("course") / "student")


def _setup_imports(nb) -> str:
    """The import statements of a notebook's setup cell: the names a solution may use."""
    setup = next(c for c in nb.cells if c.cell_type == "code").source
    tree = ast.parse(re.sub(r"(?m)^\s*[%!].*$", "", setup))           # IPython magics are not Python
    return ast.unparse([n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))])


def _run_check(nb, cell_source: str, ex: dict):
    namespace = {}
    exec(_setup_imports(nb), namespace)
    exec(cell_source, namespace)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        result = getattr(checks, ex["check"])(namespace[ex["function"]])
    return result, out.getvalue()


def test_every_notebook_has_at_least_two_checked_exercises_and_the_checks_are_the_registry():
    for path in NOTEBOOKS:
        found = [ex["check"] for ex in exercises(nbformat.read(path, as_version=4))]
        assert len(found) >= 2, path.name
        assert tuple(found) == checks.CHECKS[path.name[:2]], path.name


@pytest.mark.parametrize("path,k", PAIRS, ids=lambda v: v.name[:2] if hasattr(v, "name") else str(v))
def test_every_check_passes_on_the_solution_and_fails_on_the_stub(path, k, edition):
    nb = nbformat.read(path, as_version=4)
    ex = exercises(nb)[k]
    solved, out = _run_check(nb, nb.cells[ex["cell"]].source, ex)
    assert solved, out
    student = nbformat.read(edition / path.name, as_version=4)
    stubbed, out = _run_check(student, student.cells[ex["cell"]].source, ex)
    assert not stubbed and "not written yet" in out, out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_student_edition_is_the_notebook_cell_for_cell_without_solutions_answers_or_outputs(path, edition):
    nb = nbformat.read(path, as_version=4)
    student = nbformat.read(edition / path.name, as_version=4)
    assert [c.cell_type for c in student.cells] == [c.cell_type for c in nb.cells]
    solutions = {ex["cell"]: ex for ex in exercises(nb)}
    for i, (mine, theirs) in enumerate(zip(nb.cells, student.cells)):
        if theirs.cell_type == "code":
            assert theirs.outputs == [] and theirs.execution_count is None
        if i in solutions:
            assert "NotImplementedError" in theirs.source and SOLUTION not in tags(theirs)
            assert theirs.source != mine.source
        elif QUESTIONNAIRE in tags(mine):
            assert "<details>" in mine.source and "<details>" not in theirs.source
            questions = re.findall(r"(?m)^\d+\. .+$", mine.source)
            assert questions and questions == re.findall(r"(?m)^\d+\. .+$", theirs.source)
        else:
            assert theirs.source == mine.source, f"cell {i} differs"
    assert "widgets" not in student.metadata
    assert [ex["check"] for ex in exercises(student, tag=STUB)] == [ex["check"] for ex in solutions.values()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_stub_keeps_the_signature_and_docstring_and_states_the_task(path):
    nb = nbformat.read(path, as_version=4)
    student = student_notebook(nb, path.name)
    for ex in exercises(nb):
        solution = ast.parse(nb.cells[ex["cell"]].source)
        stub_text = student.cells[ex["cell"]].source
        stub = ast.parse(stub_text)
        defs = lambda tree: {f.name: (ast.dump(f.args), ast.get_docstring(f))
                             for f in tree.body if isinstance(f, ast.FunctionDef)}
        assert defs(stub) == defs(solution)
        assert stub_text.startswith(f"# Exercise {path.name[:2]}.{ex['letter']}: ")
        first_words = " ".join(_plain(ex["task"]).split()[:6])
        assert first_words in " ".join(line.lstrip("# ") for line in stub_text.splitlines())
        assert CHECK in tags(nb.cells[ex["cell"] + 1])


def test_stub_source_refuses_anything_but_imports_and_functions():
    assert "raise NotImplementedError" in stub_source("import math\n\ndef f(x):\n    return math.sqrt(x)\n",
                                                      "Write f.", "Exercise 99.A")
    with pytest.raises(ValueError, match="only imports and functions"):
        stub_source("ANSWER = 42\n\ndef f():\n    return ANSWER\n", "Write f.", "Exercise 99.A")


def test_a_failed_build_leaves_the_previous_edition_and_no_temporary_folder(tmp_path, monkeypatch):
    out = build_student_edition(tmp_path / "student", NOTEBOOKS[:1])
    before = sorted(p.name for p in out.iterdir())

    def broken(nb, name=""):
        raise RuntimeError("disk full")

    monkeypatch.setattr("mdnet_utils.course.student.student_notebook", broken)
    with pytest.raises(RuntimeError):
        build_student_edition(tmp_path / "student", NOTEBOOKS[:2])
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]


def test_the_student_command_writes_the_edition(tmp_path, capsys):
    from mdnet_utils.__main__ import main

    assert main(["student", "--out", str(tmp_path / "ed")]) == 0
    assert sorted(p.name for p in (tmp_path / "ed").glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    assert (tmp_path / "ed" / "README.md").exists()
    assert f"{len(NOTEBOOKS)} notebooks, {len(PAIRS)} exercises to solve" in capsys.readouterr().out


@pytest.mark.slow  # a real kernel
def test_run_all_in_a_kernel_goes_past_every_stub_without_an_error(edition):
    """In a real kernel, as "Run All" in JupyterLab would: each student notebook's setup cell, then its
    exercises (task, stub, check). No cell errors; every check prints "not written yet"."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    for path in NOTEBOOKS:
        student = nbformat.read(edition / path.name, as_version=4)
        setup = next(c for c in student.cells if c.cell_type == "code")
        nb.cells.append(nbformat.v4.new_code_cell(setup.source))
        for ex in exercises(student, tag=STUB):
            nb.cells += [student.cells[i] for i in range(ex["cell"] - 1, ex["cell"] + 2)]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(edition)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    verdicts = ["".join(o.text for o in c.outputs if o.output_type == "stream") for c in nb.cells if CHECK in tags(c)]
    assert len(verdicts) == len(PAIRS) and all("not written yet" in v for v in verdicts), verdicts
