"""``make run``: execute the course's notebooks in place, in full mode, so that their committed outputs are
those of a full run; ``make runtimes``: execute them in fast mode, writing nothing back. Both record each
notebook's wall-clock time (``runtimes``). Each notebook runs with a runs folder of its own that starts empty
(``MDNET_RUNS_DIR`` = ``<temp>/mdnet-make-run/<notebook>``, removed afterwards): a run left in ``runs/`` by an
earlier execution would otherwise be resumed (notebook 08's command-line training), and the committed outputs
and times would show a resumed run instead of a fresh one. The folder's name is fixed, so that the paths the
outputs print are the same at every run on a machine. The user's own ``runs/`` is neither read nor touched."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from tqdm.auto import tqdm

from mdnet_utils.course.notebook import notebook_paths
from mdnet_utils.course.runtimes import record_runtime
from mdnet_utils.io import atomic_write


MARKER = ".mdnet-make-run"


def fresh_runs_folder(name: str) -> Path:
    """An empty runs folder for one execution of notebook ``name`` (see the module's docstring), carrying
    ``MARKER``; one left by an interrupted execution is replaced, a folder of that name without the marker is
    refused (ValueError), never removed."""
    folder = Path(tempfile.gettempdir()) / "mdnet-make-run" / name
    if folder.exists():
        if not (folder / MARKER).is_file():
            raise ValueError(f"{folder}: exists and was not made by make run; move it away and run again.")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by make run for one notebook's execution; removed when it ends\n")
    return folder


def run_notebooks(paths: list[Path] | None = None, timeout: int = 1800, *, fast: bool = False) -> None:
    """Execute notebooks (default: every notebook of ``config.notebooks_dir``), top to bottom in one fresh kernel
    each, and record each one's time in its folder's ``runtimes.json``. Full mode (the default) writes each back
    atomically once it has run; ``fast`` runs them in fast mode (``MDNET_FAST=1``) and writes nothing back."""
    env_fast = os.environ.pop("MDNET_FAST", None)  # committed outputs are full mode
    env_runs = os.environ.get("MDNET_RUNS_DIR")
    if fast:
        os.environ["MDNET_FAST"] = "1"  # the kernel inherits it
    try:
        for path in paths or notebook_paths():
            nb = nbformat.read(path, as_version=4)
            n_code = sum(c.cell_type == "code" for c in nb.cells)
            bar = tqdm(total=n_code, desc=path.name, unit="cell")
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                    resources={"metadata": {"path": str(path.parent)}},
                                    on_cell_executed=lambda **kw: bar.update(1))
            runs = fresh_runs_folder(path.stem)
            os.environ["MDNET_RUNS_DIR"] = str(runs)  # the kernel inherits it: a fresh runs folder per notebook
            try:
                start = time.perf_counter()
                client.execute()
                seconds = time.perf_counter() - start
            finally:
                shutil.rmtree(runs)
            bar.close()
            if not fast:
                atomic_write(path, lambda tmp: nbformat.write(nb, tmp))
            record_runtime(path.parent, path.name, "fast" if fast else "full", seconds)
    finally:
        os.environ.pop("MDNET_FAST", None)
        if env_fast is not None:
            os.environ["MDNET_FAST"] = env_fast
        os.environ.pop("MDNET_RUNS_DIR", None)
        if env_runs is not None:
            os.environ["MDNET_RUNS_DIR"] = env_runs
