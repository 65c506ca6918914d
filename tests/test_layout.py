"""The package's architecture, read from its source with ``ast`` (nothing of the package is imported):

* the import graph of ``mdnet_utils`` (module-level and function-level imports) has no cycle;
* the layers: errors, io -> data -> models -> evaluation -> training -> {reporting, bench, exercises, course,
  __main__}, a lower unit never importing a higher one; ``models`` does not import ``data``; ``visualise``
  imports no other module of the package;
* imports sit at the top of a module, but for an allow-list in which each entry says why;
* no module is longer than MAX_LINES.

The helpers (``module_imports``, ``find_cycle``, ``layer_violations``, ``local_imports``) are tested on
synthetic input too, so that each check is known to be able to fail.
"""
from __future__ import annotations

import ast
import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "mdnet_utils"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE
MAX_LINES = 400

# --- the layers ---------------------------------------------------------------------------------------------
# A unit is a top-level module or subpackage of mdnet_utils; "__init__" is the package itself
# (mdnet_utils/__init__.py: Config, config, seed_everything, get_device). Python runs it before any submodule,
# so it sits at the bottom: it may import only errors and io. It is the course's settings, which only the top
# layer reads. ``__main__`` is the entry point: no unit imports it.
BASE = {"errors", "io"}
TOP = {"reporting", "bench", "exercises", "course", "reference", "__main__"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),                                             # imports nothing of the package
    "cli_errors": {"errors"},                                    # the CLI's one-line errors
    "io": {"errors"},
    "__init__": {"errors", "io"},
    "visualise": set(),                                          # depends on no other package module
    "diagrams": {"models"},                                      # schematic pictures, read from the models they show
    "data": BASE | {"data"},
    "models": {"errors", "models"},                              # not data: a model knows tensors, not files
    "evaluation": BASE | {"data", "models", "evaluation"},
    "training": BASE | {"data", "models", "evaluation", "training"},
    **{unit: BASE | {"__init__", "visualise", "data", "models", "evaluation", "training"} | (TOP - {"__main__"})
       for unit in TOP},
    "__main__": BASE | {"__init__", "visualise", "data", "models", "evaluation", "training", "cli_errors"}
    | (TOP - {"__main__"}),
}


# --- function-local imports ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Allowed:
    path: str                 # relative to the repository root
    function: str             # a function's qualified name, or a glob of them (fnmatch)
    modules: tuple[str, ...]  # what it may import: a module and its submodules
    reason: str


HEAVY = "importing torch costs 2.0 s and 650 MB, torchvision another 1.6 s and 170 MB (measured)"
ALLOWED_LOCAL_IMPORTS = (
    Allowed("mdnet_utils/__init__.py", "seed_everything", ("numpy", "torch"),
            "importing the package stays cheap (no numpy, no torch); " + HEAVY),
    Allowed("mdnet_utils/__init__.py", "get_device", ("torch",),
            "importing the package stays cheap (no torch); " + HEAVY),
    Allowed("mdnet_utils/io.py", "read_image", ("numpy", "torch", "PIL"),
            "io is imported by the command line and the course tools, which never read an image; " + HEAVY),
    Allowed("mdnet_utils/io.py", "resize_image", ("torchvision",), "as read_image: " + HEAVY),
    Allowed("mdnet_utils/__main__.py", "_cmd_*", (PACKAGE,),
            "each command imports what it runs: --help, student and site never pay for torch; " + HEAVY),
    Allowed("mdnet_utils/__main__.py", "_device", ("torch",),
            "called by the train command only: --help never pays for torch"),
    Allowed("mdnet_utils/__main__.py", "build_parser", (PACKAGE,),
            "`from mdnet_utils import config` (cheap; could be at the top)"),
    Allowed("mdnet_utils/reporting.py", "report_images", ("matplotlib.pyplot",),
            "importing pyplot fixes the backend: report_images chooses Agg first when none was chosen"),
    Allowed("mdnet_utils/visualise.py", "diagnosis_card", ("matplotlib.pyplot",),
            "importing pyplot fixes the backend: the caller (a notebook, report_images) chooses it first"),
)
# mdnet_utils/exercises/__init__.py shows `from mdnet_utils.exercises import check_conclusion` in its docstring:
# that is text, not code, and ast does not see it, so it needs no entry.


# --- helpers (tested below on synthetic input) -------------------------------------------------------------
def module_name(path: Path, root: Path) -> str:
    """mdnet_utils/data/build.py -> mdnet_utils.data.build; mdnet_utils/data/__init__.py -> mdnet_utils.data."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@dataclass(frozen=True)
class Import:
    source: str       # the importing module
    target: str       # the imported module of the package (a name imported from a package resolves to it)
    line: int
    local: bool       # inside a function (or class) body


def _walk(node: ast.AST, inside: tuple[str, ...] = ()):
    """(import node, qualified name of the enclosing functions/classes, or ()) for every import in ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, inside
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield from _walk(child, inside + (child.name,))
        else:
            yield from _walk(child, inside)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def module_imports(source: str, module: str, modules: set[str], *, is_package: bool = False) -> list[Import]:
    """The imports of package modules in ``source`` (the code of ``module``). ``from P import N`` imports the
    module P.N when that is a module of ``modules``, else P itself."""
    found = []
    for node, inside in _walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = _absolute(node, module, is_package)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in dict.fromkeys(targets):
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                found.append(Import(module, target, node.lineno, bool(inside)))
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a] (each consecutive pair an edge), or None if it has none."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def unit(module: str) -> str:
    """mdnet_utils -> "__init__"; mdnet_utils.data.build -> "data"; mdnet_utils.io -> "io"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(imports: list[Import], allowed: dict[str, set[str]]) -> list[str]:
    """One line per import that crosses the layers the wrong way (or comes from a unit in no layer)."""
    bad = []
    for imp in imports:
        src, dst = unit(imp.source), unit(imp.target)
        if src not in allowed:
            bad.append(f"{imp.source}: the unit {src!r} is in no layer (add it to ALLOWED in tests/test_layout.py)")
        elif dst != src and dst not in allowed[src]:
            bad.append(f"{imp.source} (line {imp.line}) imports {imp.target}: {src} may import only "
                       f"{', '.join(sorted(allowed[src] | {src}))}")
    return bad


def local_imports(source: str, path: str) -> list[tuple[str, str, str, int]]:
    """(path, function, imported module, line) for each import statement inside a function or class body."""
    found = []
    for node, inside in _walk(ast.parse(source)):
        if not inside:
            continue
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [("." * node.level) + (node.module or "")])
        found += [(path, ".".join(inside), name, node.lineno) for name in names]
    return found


def unexplained(found: list[tuple[str, str, str, int]], allow: tuple[Allowed, ...]) -> tuple[list[str], list[Allowed]]:
    """(the local imports no entry of ``allow`` covers, the entries that cover none)."""
    used, bad = set(), []
    for path, function, module, line in found:
        entry = next((a for a in allow if a.path == path and fnmatch.fnmatchcase(function, a.function)
                      and any(module == m or module.startswith(m + ".") for m in a.modules)), None)
        if entry is None:
            bad.append(f"{path}:{line} imports {module} inside {function}(): move it to the top of the module, or "
                       "add an entry with its reason to ALLOWED_LOCAL_IMPORTS in tests/test_layout.py")
        else:
            used.add(entry)
    return bad, [a for a in allow if a not in used]


# --- the real tree ------------------------------------------------------------------------------------------
def package_files() -> dict[str, Path]:
    return {module_name(p, PACKAGE_DIR): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def package_imports() -> list[Import]:
    files = package_files()
    return [imp for module, path in files.items()
            for imp in module_imports(path.read_text(), module, set(files), is_package=path.name == "__init__.py")]


def rel(path: Path) -> str:
    return path.relative_to(PACKAGE_DIR.parent).as_posix()


def test_the_package_is_where_the_test_reads_it():
    files = package_files()
    assert len(files) > 30 and {"mdnet_utils", "mdnet_utils.data", "mdnet_utils.models.mdnet"} <= set(files)


def test_every_import_of_the_package_names_a_module_that_exists():
    files = package_files()
    missing = [f"{i.source} (line {i.line}) imports {i.target}, which is no module of the package"
               for i in package_imports() if i.target not in files]
    assert not missing, "\n".join(missing)


def test_the_import_graph_has_no_cycle():
    graph: dict[str, set[str]] = {}
    for imp in package_imports():
        if imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
    cycle = find_cycle(graph)
    assert cycle is None, "the modules import one another in a cycle: " + " -> ".join(cycle)


def test_every_unit_is_in_a_layer():
    units = {unit(m) for m in package_files()}
    assert units == set(ALLOWED), (f"in no layer: {sorted(units - set(ALLOWED))}; in ALLOWED but not in the "
                                   f"package: {sorted(set(ALLOWED) - units)} (edit ALLOWED in tests/test_layout.py)")


def test_each_layer_imports_only_itself_and_the_layers_below():
    bad = layer_violations(package_imports(), ALLOWED)
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_imports_are_at_the_top_of_the_module_but_for_the_allow_list():
    found = [hit for path in package_files().values() for hit in local_imports(path.read_text(), rel(path))]
    bad, stale = unexplained(found, ALLOWED_LOCAL_IMPORTS)
    assert not bad, "function-local imports without a reason:\n" + "\n".join(bad)
    assert not stale, "entries of ALLOWED_LOCAL_IMPORTS that no import needs any more (remove them): " + ", ".join(
        f"{a.path} {a.function}" for a in stale)


def test_no_module_is_longer_than_max_lines():
    lengths = sorted(((len(p.read_text().splitlines()), rel(p)) for p in package_files().values()), reverse=True)
    long = [f"{path}: {n} lines" for n, path in lengths if n > MAX_LINES]
    largest = ", ".join(f"{path} {n}" for n, path in lengths[:3])
    assert not long, f"modules longer than {MAX_LINES} lines (split them): {'; '.join(long)} (largest: {largest})"


# --- the checks can fail ------------------------------------------------------------------------------------
def test_module_imports_finds_function_level_and_relative_imports():
    modules = {"mdnet_utils", "mdnet_utils.data", "mdnet_utils.data.grades", "mdnet_utils.data.build",
               "mdnet_utils.models", "mdnet_utils.models.mdnet", "mdnet_utils.io"}
    source = ("import os\nimport mdnet_utils.io\nfrom . import grades\nfrom .grades import CLASSES\n"
              "from mdnet_utils import config\n"
              "def f():\n    from mdnet_utils.models.mdnet import mdnet\n    import torch\n")
    found = module_imports(source, "mdnet_utils.data.build", modules)
    assert [(i.target, i.local) for i in found] == [
        ("mdnet_utils.io", False), ("mdnet_utils.data.grades", False), ("mdnet_utils.data.grades", False),
        ("mdnet_utils", False), ("mdnet_utils.models.mdnet", True)]
    # in a package's __init__, "." is the package itself
    assert [i.target for i in module_imports("from .grades import X", "mdnet_utils.data", modules,
                                             is_package=True)] == ["mdnet_utils.data.grades"]


def test_find_cycle_reports_a_cycle_and_none_without_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert all(b in graph[a] for a, b in zip(cycle, cycle[1:]))
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_a_synthetic_cycle_fails_the_check_naming_it(monkeypatch):
    fake = [Import("mdnet_utils.data.build", "mdnet_utils.models.mdnet", 3, False),
            Import("mdnet_utils.models.mdnet", "mdnet_utils.data.build", 5, True)]
    monkeypatch.setattr(sys.modules[__name__], "package_imports", lambda: fake)
    with pytest.raises(AssertionError, match=r"cycle: mdnet_utils\.data\.build -> mdnet_utils\.models\.mdnet -> "
                                             r"mdnet_utils\.data\.build"):
        test_the_import_graph_has_no_cycle()


def test_layer_violations_name_the_import_and_what_is_allowed():
    imports = [Import("mdnet_utils.models.mdnet", "mdnet_utils.data.loading", 7, False),  # models -> data
               Import("mdnet_utils.data.build", "mdnet_utils.training.engine", 9, True),   # data -> training
               Import("mdnet_utils.visualise", "mdnet_utils.io", 2, False),                 # visualise -> anything
               Import("mdnet_utils.training.engine", "mdnet_utils.data.loading", 4, False),  # fine
               Import("mdnet_utils.bench", "mdnet_utils.__main__", 4, False),              # nobody imports __main__
               Import("mdnet_utils.plugins.x", "mdnet_utils.io", 1, False)]                # a unit in no layer
    bad = layer_violations(imports, ALLOWED)
    assert len(bad) == 5
    assert bad[0] == ("mdnet_utils.models.mdnet (line 7) imports mdnet_utils.data.loading: models may import only "
                      "errors, models")
    assert "data.build (line 9) imports mdnet_utils.training.engine" in bad[1]
    assert "visualise may import only visualise" in bad[2] and "__main__" in bad[3]
    assert "'plugins' is in no layer" in bad[4]


def test_the_allowed_sets_follow_the_layers():
    order = ["data", "models", "evaluation", "training"]
    for low, high in [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]:
        assert high not in ALLOWED[low], f"{low} may not import {high}"
    assert "data" not in ALLOWED["models"] and not ALLOWED["visualise"]
    assert all("__main__" not in allowed for allowed in ALLOWED.values())
    assert all(ALLOWED[u] <= BASE for u in BASE | {"__init__"})


def test_an_unexplained_local_import_and_a_stale_entry_are_reported():
    source = ("import json\n\ndef read():\n    import torch\n    from .grades import X\n"
              "class K:\n    def m(self):\n        import PIL.Image\n")
    found = local_imports(source, "pkg/m.py")
    assert [(f, m) for _, f, m, _ in found] == [("read", "torch"), ("read", ".grades"), ("K.m", "PIL.Image")]
    allow = (Allowed("pkg/m.py", "read", ("torch",), "heavy"), Allowed("pkg/m.py", "K.*", ("PIL",), "heavy"),
             Allowed("pkg/other.py", "f", ("numpy",), "gone"))
    bad, stale = unexplained(found, allow)
    assert len(bad) == 1 and bad[0].startswith("pkg/m.py:5 imports .grades inside read()")
    assert stale == [allow[2]]
