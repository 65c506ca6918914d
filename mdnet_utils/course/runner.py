"""``make run``: execute the course's notebooks in place, in full mode, so that their committed outputs are
those of a full run; ``make runtimes``: execute them in fast mode, writing nothing back. Both record each
notebook's wall-clock time (``runtimes``)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from tqdm.auto import tqdm

from mdnet_utils.course.notebook import notebook_paths
from mdnet_utils.course.runtimes import record_runtime
from mdnet_utils.io import atomic_write


def run_notebooks(paths: list[Path] | None = None, timeout: int = 1800, *, fast: bool = False) -> None:
    """Execute notebooks (default: every notebook of ``config.notebooks_dir``), top to bottom in one fresh kernel
    each, and record each one's time in its folder's ``runtimes.json``. Full mode (the default) writes each back
    atomically once it has run; ``fast`` runs them in fast mode (``MDNET_FAST=1``) and writes nothing back."""
    env_fast = os.environ.pop("MDNET_FAST", None)  # committed outputs are full mode
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
            start = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - start
            bar.close()
            if not fast:
                atomic_write(path, lambda tmp: nbformat.write(nb, tmp))
            record_runtime(path.parent, path.name, "fast" if fast else "full", seconds)
    finally:
        os.environ.pop("MDNET_FAST", None)
        if env_fast is not None:
            os.environ["MDNET_FAST"] = env_fast
