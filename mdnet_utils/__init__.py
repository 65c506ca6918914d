"""mdnet_utils: the helper package of the course "MDNet, step by step".

Importing it is cheap (no torch): the one configuration object, ``config``, is read from the
environment here, and ``seed_everything`` / ``get_device`` import torch when they are called.

Environment variables (read once, at import):

* ``MDNET_FAST=1``: fast mode, for tests only: smaller data, fewer epochs. ``make test`` sets it.
* ``MDNET_DATA_DIR``: where generated data is cached (default: ``data/`` at the repository root).
* ``MDNET_RUNS_DIR``: where training runs write (default: ``runs/`` at the repository root).
* ``MDNET_RETRAIN=1``: ``mdnet_utils.reference.load`` trains each reference model from scratch (into
  ``runs/references/``) instead of loading the shipped weights: hours on a CPU for the whole registry.
* ``MDNET_ROOT``: the course checkout whose ``notebooks/`` the course tools (site, student edition,
  notebook runner) read (default: the checkout this package is installed from, else the working directory).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

__version__ = "0.1.0"
__all__ = ["Config", "config", "seed_everything", "get_device", "__version__"]

T = TypeVar("T")


def _repo_root() -> Path:
    """The checkout this package lives in (editable install), else the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Config:
    """Everything that differs between fast (test) mode and full mode, in one place.

    Notebooks read sizes and budgets from here instead of hard-coding them, so that
    ``MDNET_FAST=1`` shrinks a whole run without rewriting a notebook.
    """

    fast: bool = False
    root: Path = field(default_factory=_repo_root)
    data_dir: Path = field(default_factory=lambda: _repo_root() / "data")
    runs_dir: Path = field(default_factory=lambda: _repo_root() / "runs")
    checkpoints_dir: Path = field(default_factory=lambda: _repo_root() / "checkpoints")  # the shipped references
    seed: int = 0
    image_size: int = 64
    retrain: bool = False  # MDNET_RETRAIN: train the references instead of loading the shipped ones

    @classmethod
    def from_env(cls) -> "Config":
        kwargs = {"fast": _flag("MDNET_FAST"), "retrain": _flag("MDNET_RETRAIN")}
        if os.environ.get("MDNET_ROOT"):
            kwargs["root"] = Path(os.environ["MDNET_ROOT"]).expanduser().resolve()
        if os.environ.get("MDNET_DATA_DIR"):
            kwargs["data_dir"] = Path(os.environ["MDNET_DATA_DIR"]).expanduser().resolve()
        if os.environ.get("MDNET_RUNS_DIR"):
            kwargs["runs_dir"] = Path(os.environ["MDNET_RUNS_DIR"]).expanduser().resolve()
        return cls(**kwargs)

    def pick(self, full: T, fast: T) -> T:
        """``fast`` in fast mode, else ``full``: the one way a notebook sizes its work."""
        return fast if self.fast else full

    @property
    def n_images(self) -> int:
        """Tiles in the course's synthetic dataset (about 70/15/15 train/val/test by patient)."""
        return self.pick(full=4320, fast=720)

    @property
    def dataset_dir(self) -> Path:
        """Cache folder of the course's synthetic dataset; its name says how it was made."""
        return self.data_dir / f"synthetic-n{self.n_images}-s{self.image_size}-seed{self.seed}"

    @property
    def notebooks_dir(self) -> Path:
        """The course's notebooks (``NN_slug.ipynb``), which the course tools read."""
        return self.root / "notebooks"

    @property
    def mode(self) -> str:
        return "fast" if self.fast else "full"


config = Config.from_env()


def seed_everything(seed: int = 0, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch; ask PyTorch for deterministic algorithms where it has them.

    ``warn_only=True`` keeps an operation without a deterministic kernel usable (it warns).
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this set before its first use to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def get_device(verbose: bool = True):
    """The best available device, CUDA, then Apple's MPS, then the CPU; prints which."""
    import torch

    if torch.cuda.is_available():
        device = torch.device("cuda")
        name = torch.cuda.get_device_name(0)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device, name = torch.device("mps"), "Apple MPS"
    else:
        device, name = torch.device("cpu"), f"CPU, {torch.get_num_threads()} threads"
    if verbose:
        print(f"device: {device} ({name})")
    return device
