"""``make run``: execute the course's notebooks in place, in full mode, so that their committed outputs are
those of a full run."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from tqdm.auto import tqdm

from mdnet_utils.course.notebook import notebook_paths
from mdnet_utils.io import atomic_write


def run_notebooks(paths: list[Path] | None = None, timeout: int = 1800) -> None:
    """Execute notebooks in place (default: every notebook of ``config.notebooks_dir``), full mode, top to
    bottom in one fresh kernel each; each is written back atomically once it has run."""
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
            atomic_write(path, lambda tmp: nbformat.write(nb, tmp))
    finally:
        if env_fast is not None:
            os.environ["MDNET_FAST"] = env_fast
