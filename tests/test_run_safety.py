"""What a user owns survives: a full disk, a killed process, a second writer, a short schedule, odd image files.

The command-line side of the same promises (exit status, one line, an unchanged tree) is in test_hostile_inputs.
"""
import errno
import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mdnet_utils import io as mio
from mdnet_utils.__main__ import main
from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.errors import ConfigError, ImageError
from mdnet_utils.training.config import Stage
from mdnet_utils.training.engine import make_optimizer, one_cycle_fits
from mdnet_utils.training.lock import LOCK, RunLock
from mdnet_utils.training.runs import train_run

ARGS = ["--epochs", "2", "--batch-size", "8", "--image-size", "16"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("safety") / "ds", n_images=24, image_size=24, seed=1,
                                  workers=1)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A finished two-epoch run (diagnosis, then end to end)."""
    run = tmp_path_factory.mktemp("safety-run") / "run"
    assert main(["-q", "train", "--data", str(data), "--out", str(run), *ARGS]) == 0
    return run


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- a full disk -------------------------------------------------------------------------------------------------

def _half_run(data, run):
    """A two-epoch run stopped after its first epoch (its last.pt says: continue with epoch 2)."""
    train_run(data, run, epochs=2, batch_size=8, image_size=16, progress=False, stop_after=1)
    return ["-q", "train", "--data", str(data), "--out", str(run), *ARGS, "--resume"]


def test_a_full_disk_names_the_file_keeps_the_last_checkpoint_and_leaves_no_temporary_file(data, tmp_path,
                                                                                          monkeypatch, capsys):
    run = tmp_path / "run"
    resume = _half_run(data, run)
    before = _files(run)
    real = pathlib.Path.write_bytes
    tried = []

    def full(self, payload):  # half the bytes land, then the disk is full
        tried.append(self)
        real(self, payload[:len(payload) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    assert main(resume) == 1
    # the message names the checkpoint being written (best.pt when epoch 2 improved on validation, else last.pt),
    # not the temporary file the bytes went to
    (temporary,) = tried
    dest = run / ("best.pt" if temporary.name.startswith(".best.pt.") else "last.pt")
    assert temporary.parent == run and temporary.name != dest.name
    assert capsys.readouterr().err == f"error: mdnet train failed writing {dest}: No space left on device.\n"
    assert _files(run) == before  # the checkpoint before is intact; no temporary file, no lock
    monkeypatch.undo()
    assert main(resume) == 0 and len((run / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow  # two command-line runs in subprocesses, about 9 s
def test_on_a_real_full_file_system_the_run_stops_in_one_line_and_resumes_afterwards(data, tmp_path):
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    half = tmp_path / "half"
    _half_run(data, half)
    small = tmp_path / "small"
    small.mkdir()
    # room for the run so far and half of one more checkpoint: epoch 2's best.pt cannot be written
    size = sum(p.stat().st_size for p in half.iterdir()) + (half / "last.pt").stat().st_size // 2
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(small)]).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        run = small / "run"
        shutil.copytree(half, run)
        before = _files(run)
        resume = [sys.executable, "-m", "mdnet_utils", "-q", "train", "--data", str(data), "--out", str(run), *ARGS,
                  "--resume"]
        r = subprocess.run(resume, capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert "No space left on device" in r.stderr and str(run) in r.stderr and "Traceback" not in r.stderr
        assert _files(run) == before
        shutil.rmtree(half)
        shutil.copytree(run, half)  # the same folder on a disk with room: it resumes
    finally:
        subprocess.run(["umount", str(small)])
    r = subprocess.run(resume[:8] + [str(half)] + resume[9:], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len((half / "metrics.jsonl").read_text().splitlines()) == 2


# -- leftovers of a killed process --------------------------------------------------------------------------------

def test_leftover_temporary_files_of_our_own_names_are_removed_and_nothing_else(tmp_path):
    ours = [tmp_path / ".last.pt.ab_d1234.tmp", tmp_path / ".metrics.jsonl.zzzzzzzz.tmp"]
    theirs = [tmp_path / ".last.pt.tmp", tmp_path / "notes.tmp", tmp_path / ".other.txt.abcd1234.tmp",
              tmp_path / "last.pt"]
    for p in ours + theirs:
        p.write_text("x")
    removed = mio.remove_leftovers(tmp_path, ["last.pt", "metrics.jsonl"])
    assert sorted(removed) == sorted(ours)
    assert all(p.exists() for p in theirs) and not any(p.exists() for p in ours)


def test_a_folder_build_killed_midway_is_cleaned_up_and_a_swap_killed_midway_is_undone(tmp_path):
    out = tmp_path / "site"
    mio.write_folder(out, lambda tmp: (tmp / "a.txt").write_text("old"))
    partial = tmp_path / ".site.partial-abcd1234"
    partial.mkdir()
    (partial / "half.txt").write_text("half")
    mio.write_folder(out, lambda tmp: (tmp / "a.txt").write_text("new"))
    assert not partial.exists() and (out / "a.txt").read_text() == "new"
    # killed between moving the old folder aside and moving the new one in: the old one comes back first
    old = tmp_path / ".site.old-wxyz1234"
    old.mkdir()
    os.replace(out, old / "site")
    seen = []
    mio.write_folder(out, lambda tmp: seen.append((out / "a.txt").read_text()) or (tmp / "b.txt").write_text("b"))
    assert seen == ["new"] and not old.exists() and sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_a_run_killed_before_its_first_epoch_ended_restarts_under_resume(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    train_run(data, run, epochs=2, batch_size=8, image_size=16, progress=False, stop_after=1)
    for name in ("last.pt", "best.pt", "metrics.jsonl"):  # what a kill in epoch 1 leaves: the config and vocabulary
        (run / name).unlink(missing_ok=True)
    (run / ".last.pt.abcdefgh.tmp").write_bytes(b"half a checkpoint")
    with pytest.raises(ConfigError, match="already holds files"):
        train_run(data, run, epochs=2, batch_size=8, image_size=16, progress=False)
    history = train_run(data, run, epochs=2, batch_size=8, image_size=16, progress=False, resume=True)
    assert [r["epoch"] for r in history] == [1, 2] and not (run / ".last.pt.abcdefgh.tmp").exists()


def test_an_unreadable_image_in_the_first_epoch_leaves_no_folder_behind(data, tmp_path):
    broken = tmp_path / "ds"
    shutil.copytree(data, broken)
    first = json.loads((broken / "annotation.json").read_text())["train"][0]["image_path"][0]
    (broken / "images" / first).write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        train_run(broken, tmp_path / "run", epochs=1, batch_size=8, image_size=16, progress=False)
    assert not (tmp_path / "run").exists()


# -- one writer per run ---------------------------------------------------------------------------------------------

def test_a_run_lock_refuses_a_live_holder_takes_over_a_dead_one_and_is_gone_after(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with pytest.raises(ConfigError, match=f"being written by process {os.getpid()}"):
        RunLock(run).acquire()
    (run / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(ConfigError, match="on host elsewhere.example"):
        RunLock(run).acquire()
    dead = _dead_pid()
    (run / LOCK).write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    with RunLock(run) as lock:
        assert json.loads((run / LOCK).read_text())["pid"] == os.getpid() and lock.held
        with pytest.raises(ConfigError, match="being written"):
            RunLock(run).acquire()  # a second writer in this very process too
    assert f"took over the stale lock of process {dead}" in caplog.text
    assert not (run / LOCK).exists()


# -- a schedule too short for one cycle ------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 8])
def test_any_number_of_steps_trains_at_a_sane_rate(steps, caplog):
    caplog.set_level(logging.INFO)
    param = torch.nn.Parameter(torch.zeros(1))
    opt, sched = make_optimizer([param], Stage("diagnosis", epochs=1, lr=1e-3), steps)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert one_cycle_fits(steps, 0.25) == (steps > 4)
    assert max(rates) > 1e-4  # OneCycleLR with one step would train at 4e-9
    assert ("too few for a one-cycle schedule" in caplog.text) == (steps <= 4)


def test_thirty_two_two_view_cases_in_four_steps_train(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    splits = {"train": [], "val": []}
    for split, n in (("train", 32), ("val", 8)):
        for i in range(n):
            paths = []
            for v in range(2):
                name = f"{split}{i}-{v}.png"
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "images" / name)
                paths.append(name)
            splits[split].append({"id": f"{split}{i}", "image_path": paths, "label": "normal",
                                  "report": "no atypia seen here ."})
    (root / "annotation.json").write_text(json.dumps(splits))
    history = train_run(root, tmp_path / "run", epochs=1, batch_size=8, image_size=16, min_count=1, progress=False)
    assert len(history) == 1 and "too few for a one-cycle" in (tmp_path / "run" / "log.txt").read_text()


# -- image files ----------------------------------------------------------------------------------------------------

def test_a_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    image = mio.read_image(path)
    assert image.dtype == torch.uint8 and int(image.min()) >= 127 and int(image.max()) <= 129
    assert abs(int(mio.read_image(path, gray=True).float().mean()) - 128) <= 1


def _png_header_only(path, width, height):
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    _png_header_only(path, 20000, 20000)
    with pytest.raises(ImageError, match="header claims"):
        mio.read_image(path)
    _png_header_only(path, 9000, 9000)  # 81 million pixels: under the limit, so decoding is tried (and fails)
    with pytest.raises(ImageError) as err:
        mio.read_image(path)
    assert "header claims" not in str(err.value)
