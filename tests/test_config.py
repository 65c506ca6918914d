"""The one configuration object, seeding and device choice."""
import random

import numpy as np
import torch

import mdnet_utils
from mdnet_utils import Config, get_device, seed_everything


def test_fast_mode_and_folders_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MDNET_FAST", "1")
    monkeypatch.setenv("MDNET_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("MDNET_RUNS_DIR", str(tmp_path / "r"))
    cfg = Config.from_env()
    assert cfg.fast and cfg.data_dir == tmp_path / "d" and cfg.runs_dir == tmp_path / "r"
    assert cfg.pick(full=10, fast=2) == 2 and cfg.mode == "fast"
    monkeypatch.delenv("MDNET_FAST")
    full = Config.from_env()
    assert not full.fast and full.pick(full=10, fast=2) == 10
    assert full.n_images > cfg.n_images and full.dataset_dir != cfg.dataset_dir


def test_the_default_folders_are_data_and_runs_at_the_repository_root(monkeypatch):
    monkeypatch.delenv("MDNET_DATA_DIR", raising=False)
    cfg = Config.from_env()
    assert cfg.data_dir.name == "data" and (cfg.data_dir.parent / "pyproject.toml").exists()
    assert cfg.runs_dir.name == "runs"


def test_seed_everything_makes_python_numpy_and_torch_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()
    seed_everything(3)
    a = draw()
    seed_everything(3)
    assert draw() == a
    assert torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)  # leave the test process as it was


def test_get_device_says_which(capsys):
    device = get_device()
    assert device.type in {"cuda", "mps", "cpu"}
    assert device.type in capsys.readouterr().out


def test_the_package_has_a_version():
    assert mdnet_utils.__version__
