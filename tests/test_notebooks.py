"""Every notebook opens and closes the same way, and is committed executed, small and clean.

(Running them is nbval's job: `make test` runs each notebook in fast mode.)
"""
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

import mdnet_utils
import mdnet_utils.course.notebook
from mdnet_utils import Config
from mdnet_utils.course.checks import check_structure
from mdnet_utils.course.notebook import notebook_paths, opening
from mdnet_utils.course.runner import run_notebooks
from mdnet_utils.course.runtimes import phrase, read_runtimes, record_runtime

NOTEBOOKS = notebook_paths()
PACKAGE = Path(mdnet_utils.__file__).resolve().parent
COURSE = PACKAGE / "course"


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


def _imports(path: Path, package: str, modules: set[str] | None = None) -> set[str]:
    """The modules a file imports (at the top or inside a function), as absolute names. ``from A import b`` is
    ``A.b`` when that is one of ``modules`` (a submodule), else ``A``; with ``modules=None`` it is both."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.update([base, full] if modules is None else [full] if full in modules else [base])
    return found


def _course_graph() -> dict[str, set[str]]:
    """Course module -> the course modules it imports (``mdnet_utils.course`` is the package's __init__)."""
    names = {p: "mdnet_utils.course" if p.stem == "__init__" else f"mdnet_utils.course.{p.stem}"
             for p in sorted(COURSE.glob("*.py"))}
    modules = set(names.values())
    return {name: (_imports(path, "mdnet_utils.course", modules) & modules) - {name} for path, name in names.items()}


def test_the_course_modules_import_one_another_without_a_cycle():
    graph = _course_graph()
    assert "mdnet_utils.course.notebook" in graph and graph["mdnet_utils.course.notebook"] == set(), \
        "course.notebook is the one module every other reads notebooks through: it imports none of them"
    done, path = set(), []

    def visit(module):  # depth first; meeting a module already on the path is a cycle
        if module in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module not in done:
            path.append(module)
            for dep in sorted(graph[module]):
                visit(dep)
            path.pop()
            done.add(module)

    for module in sorted(graph):
        visit(module)


@pytest.mark.slow  # a fresh interpreter: about 2.5 s
def test_each_course_module_imports_on_its_own_in_a_fresh_interpreter():
    modules = sorted(_course_graph())
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('mdnet_utils.course')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_nothing_outside_the_course_package_but_the_command_line_imports_it():
    for path in sorted(PACKAGE.rglob("*.py")):
        if COURSE in path.parents or path.name == "__main__.py":
            continue
        package = ".".join(("mdnet_utils",) + path.relative_to(PACKAGE).parent.parts)
        course = {m for m in _imports(path, package) if m == "mdnet_utils.course" or m.startswith("mdnet_utils.course.")}
        assert not course, f"{path.relative_to(PACKAGE)} imports {sorted(course)}: course upkeep is not the ML library"


def _copy_of_the_course(root: Path) -> Path:
    """``root/notebooks`` holding a copy of notebook 00 and a file that is not a course notebook."""
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOKS[0], root / "notebooks" / NOTEBOOKS[0].name)
    (root / "notebooks" / "scratch.ipynb").write_text("{}")
    return root / "notebooks" / NOTEBOOKS[0].name


@pytest.mark.slow  # a fresh interpreter: about 2.5 s
def test_mdnet_root_points_the_course_tools_at_another_checkout(tmp_path):
    copied = _copy_of_the_course(tmp_path / "course")
    script = ("import json; from mdnet_utils import config; from mdnet_utils.course import notebook_paths; "
              "print(json.dumps([str(config.notebooks_dir), [str(p) for p in notebook_paths()]]))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "MDNET_ROOT": str(tmp_path / "course")})
    assert done.returncode == 0, done.stderr
    folder, paths = json.loads(done.stdout)
    assert Path(folder) == copied.parent.resolve()
    assert paths == [str(copied.resolve())]


def test_the_notebook_folder_is_read_from_config_when_called_not_at_import(tmp_path, monkeypatch):
    copied = _copy_of_the_course(tmp_path)
    monkeypatch.setattr(mdnet_utils.course.notebook, "config", Config(root=tmp_path))
    assert notebook_paths() == [copied]
    assert notebook_paths(NOTEBOOKS[0].parent) == NOTEBOOKS


@pytest.mark.slow  # a real kernel
def test_run_notebooks_writes_the_executed_notebook_in_place_in_full_mode(tmp_path, monkeypatch):
    path = tmp_path / "99_tiny.ipynb"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("import os\nprint(os.environ.get('MDNET_FAST', 'full'))"),
                # a run left behind by an earlier execution is not seen: each execution gets an empty runs folder
                nbformat.v4.new_code_cell("from mdnet_utils import config\n"
                                          "print([p.name for p in config.runs_dir.iterdir()], config.runs_dir)\n"
                                          "(config.runs_dir / 'left-behind').mkdir()")]
    nbformat.write(nb, path)
    path.chmod(0o644)
    monkeypatch.setenv("MDNET_FAST", "1")
    monkeypatch.setenv("MDNET_RUNS_DIR", str(tmp_path / "mine"))
    run_notebooks([path], timeout=120)
    assert os.environ["MDNET_FAST"] == "1", "the caller's fast mode is given back"
    assert os.environ["MDNET_RUNS_DIR"] == str(tmp_path / "mine"), "and the caller's runs folder"
    cell, runs = nbformat.read(path, as_version=4).cells
    assert cell.execution_count == 1 and cell.outputs[0]["text"] == "full\n"
    folder = Path(tempfile.gettempdir()) / "mdnet-make-run" / path.stem     # a fixed name: the same paths each run
    assert runs.outputs[0]["text"] == f"['.mdnet-make-run'] {folder}\n" and not folder.exists()
    assert path.stat().st_mode & 0o777 == 0o644, "the notebook keeps its permissions"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, "runtimes.json"], "a temporary file was left"
    full = read_runtimes(tmp_path)[path.name]
    assert set(full) == {"full"} and full["full"] > 0
    # fast mode: the kernel sees MDNET_FAST, the notebook on disk is left as it was, only the time is recorded
    before = path.read_bytes()
    run_notebooks([path], timeout=120, fast=True)   # would fail on mkdir if it saw the first run's folder
    assert path.read_bytes() == before and os.environ["MDNET_FAST"] == "1"
    assert not (tmp_path / "mine").exists(), "the caller's runs folder is never touched"
    folder.mkdir(parents=True)                       # a folder of that name that make run did not make is refused
    try:
        with pytest.raises(ValueError, match="was not made by make run"):
            run_notebooks([path], timeout=120)
        assert folder.is_dir()
    finally:
        folder.rmdir()
    assert set(read_runtimes(tmp_path)[path.name]) == {"full", "fast"}


# Notebooks whose time is not measured yet (none: every notebook runs on the reference models and is measured).
NOT_YET_MEASURED: set[str] = set()


def test_a_runtime_is_quoted_in_5_second_steps_then_in_half_minutes():
    assert [phrase(s) for s in (3, 37.5, 57, 58, 75, 92, 175, 400)] == \
        ["~5 s", "~40 s", "~55 s", "~1 min", "~1.5 min", "~1.5 min", "~3 min", "~6.5 min"]


def test_record_runtime_keeps_the_other_notebooks_and_modes(tmp_path):
    record_runtime(tmp_path, "01_a.ipynb", "full", 92.14)
    record_runtime(tmp_path, "00_b.ipynb", "fast", 20)
    record_runtime(tmp_path, "01_a.ipynb", "fast", 19.96)
    assert read_runtimes(tmp_path) == {"00_b.ipynb": {"fast": 20.0}, "01_a.ipynb": {"full": 92.1, "fast": 20.0}}
    with pytest.raises(ValueError, match="choose from full, fast"):
        record_runtime(tmp_path, "01_a.ipynb", "slow", 1)


def test_each_opening_and_the_readme_quote_the_measured_runtimes():
    runtimes = read_runtimes(NOTEBOOKS[0].parent)
    assert {p.name for p in NOTEBOOKS} - set(runtimes) == NOT_YET_MEASURED
    readme = (NOTEBOOKS[0].parent.parent / "README.md").read_text()
    for path in NOTEBOOKS:
        if path.name in NOT_YET_MEASURED:
            continue
        full, fast = phrase(runtimes[path.name]["full"]), phrase(runtimes[path.name]["fast"])
        text = opening(nbformat.read(path, as_version=4))
        runtime = " ".join(text[text.index("Runtime"):].split())   # a phrase may wrap over two lines
        assert f"**{full}** in full mode" in runtime and f"**{fast}** in fast mode" in runtime, \
            f"{path.name}: its opening should quote {full} (full) and {fast} (fast), as measured"
        row = next(line for line in readme.splitlines() if line.startswith(f"| [{path.name[:2]} "))
        assert row.endswith(f"| {full} / {fast} |"), f"README's course map: {path.name} takes {full} / {fast}"
