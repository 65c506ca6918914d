"""environment.yml (conda) and pyproject.toml (pip) must describe the same installation."""
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def _load():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    return project, pip, conda


def test_the_pip_section_lists_exactly_the_dependencies_and_dev_extra_with_the_same_specifiers():
    project, pip, _ = _load()
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    listed = [r for r in pip if not r.startswith("-e")]
    assert sorted(r.replace(" ", "") for r in listed) == sorted(r.replace(" ", "") for r in declared)


def test_the_package_itself_is_installed_with_its_dev_extra():
    _, pip, _ = _load()
    assert "-e .[dev]" in pip


def test_the_conda_python_satisfies_requires_python():
    project, _, conda = _load()
    python = next(d for d in conda if d.startswith("python"))
    version = tuple(int(x) for x in python.split("=")[-1].split("."))
    minimum = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", project["requires-python"]).group(1).split("."))
    assert version >= minimum


def test_only_torch_and_torchvision_are_pinned_exactly():
    project, _, _ = _load()
    pinned = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"] if "==" in r}
    assert pinned == {"torch", "torchvision"}
