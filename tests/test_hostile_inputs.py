"""Hostile input through the real command line: every case runs `python -m mdnet_utils` in a subprocess and
asserts the exit status, that stderr is one line naming the file or the value, and that the folders it was
given hold exactly what they held before (a hash of the tree).

The data sets and runs are tiny (24 tiles of 24 pixels, one epoch at 16 pixels) and built once per module;
a test that hands one to a command which might write copies it into its own tmp_path first.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mdnet_utils.data.grades import CLASSES
from mdnet_utils.training.runs import train_run

pytestmark = pytest.mark.slow  # every case starts a fresh interpreter (torch's import alone is 2-4 s)

TIMEOUT = 300                   # a refusal takes seconds; this only keeps a hung command from hanging the suite
ENV = {**os.environ, "MDNET_FAST": "1"}
TRAIN = ["--epochs", "1", "--batch-size", "8", "--image-size", "16"]   # how the shared 1-epoch run was started
MID = ["--epochs", "4", "--batch-size", "8", "--image-size", "16"]     # ... and the run stopped inside a stage


# -- helpers -----------------------------------------------------------------------------------------------------

def run(*args, timeout=TIMEOUT, cwd=None):
    """The command line, as a user types it; -q: stderr holds only warnings and errors."""
    return subprocess.run([sys.executable, "-m", "mdnet_utils", "-q", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, env=ENV)


def tree_hash(path) -> str:
    """SHA-256 over every path under ``path`` (hidden ones too, links not followed): its relative name, whether it
    is a link (and where to), a folder, or a file (and its bytes). A missing path has a value of its own."""
    path = Path(path)
    h = hashlib.sha256()
    if not os.path.lexists(path):
        return hashlib.sha256(b"<missing>").hexdigest()
    entries = [path]
    for folder, dirs, files in os.walk(path, followlinks=False):
        entries += [Path(folder) / name for name in dirs + files]
    for p in sorted(entries, key=lambda p: p.relative_to(path).as_posix()):
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        if p.is_symlink():
            h.update(b"L" + os.readlink(p).encode() + b"\0")
        elif p.is_dir():
            h.update(b"D\0")
        else:
            h.update(b"F" + p.read_bytes() + b"\0")
    return h.hexdigest()


def assert_refused(result, *names, status=2):
    """Exit ``status``, and stderr one line "error: ..." naming every one of ``names``, without a traceback."""
    err = result.stderr
    assert result.returncode == status, f"exit {result.returncode} (expected {status}); stderr: {err[-2000:]!r}"
    assert err.endswith("\n") and err.count("\n") == 1, f"stderr is not one line: {err[-2000:]!r}"
    assert err.startswith("error: "), err
    assert "Traceback" not in err, err
    for name in names:
        assert str(name) in err, f"{name!r} not named in {err!r}"


def refused(*args, names=(), watch=(), status=2, **kw):
    """Run a command that must be refused, and check that the folders in ``watch`` did not change."""
    before = [tree_hash(p) for p in watch]
    result = run(*args, **kw)
    assert_refused(result, *names, status=status)
    after = [tree_hash(p) for p in watch]
    changed = [str(p) for p, b, a in zip(watch, before, after) if b != a]
    assert not changed, f"changed by a refused command: {changed}"
    return result


def succeeded(result):
    assert result.returncode == 0, f"exit {result.returncode}; stderr: {result.stderr[-2000:]!r}"
    return result


def copy(src, dst) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return Path(dst)


def annotation(root) -> dict:
    return json.loads((Path(root) / "annotation.json").read_text())


def write_annotation(root, ann) -> None:
    (Path(root) / "annotation.json").write_text(json.dumps(ann))


def epochs(run_dir) -> list[int]:
    return [json.loads(line)["epoch"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def assert_trained(result, run_dir, n_epochs):
    succeeded(result)
    assert epochs(run_dir) == list(range(1, n_epochs + 1))
    assert not (Path(run_dir) / ".lock").exists(), "a finished train left its lock behind"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width=20000, height=20000) -> bytes:
    """A valid PNG header claiming width x height RGB pixels, with a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def write_png(path, size=(32, 32), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return Path(path)


def two_view_data(root, n_train, n_val, second=(32, 32)) -> Path:
    """A hand-made data set of two-view cases: two small PNGs each (the second ``second`` pixels), a short
    report, a label of CLASSES."""
    root = Path(root)
    (root / "images").mkdir(parents=True)
    ann = {}
    for split, n in (("train", n_train), ("val", n_val)):
        ann[split] = []
        for i in range(n):
            label = CLASSES[i % len(CLASSES)]
            views = [f"{split}{i:03d}_{v}.png" for v in ("frontal", "lateral")]
            write_png(root / "images" / views[0], (32, 32), seed=2 * i)
            write_png(root / "images" / views[1], second, seed=2 * i + 1)
            ann[split].append({"id": f"{split}{i:03d}", "image_path": views, "report": f"the tissue looks {label}.",
                               "label": label})
    write_annotation(root, ann)
    return root


def live_lock(run_dir, pid) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class Evil:
    """Unpickling this runs a shell command: a checkpoint must never be loaded with pickle."""

    def __reduce__(self):
        return os.system, ("touch PWNED",)


# -- shared data sets and runs (built once) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def ds(base):
    succeeded(run("data", "--out", base / "ds", "--n-images", "24", "--size", "24"))
    return base / "ds"


@pytest.fixture(scope="module")
def run1(base, ds):
    """A finished 1-epoch run (its one stage: end_to_end)."""
    succeeded(run("train", "--data", ds, "--out", base / "run1", *TRAIN))
    return base / "run1"


@pytest.fixture(scope="module")
def run_mid(base, ds):
    """A run stopped after epoch 1 of its 2-epoch diagnosis stage: last.pt holds an optimizer state."""
    out = base / "mid"
    train_run(ds, out, epochs=4, batch_size=8, image_size=16, progress=False, stop_after=1)
    (out / ".lock").unlink(missing_ok=True)  # an in-process stop is no crash; a later command must not see a lock
    assert torch.load(out / "last.pt", weights_only=True)["resume"]["epoch"] > 0
    return out


@pytest.fixture(scope="module")
def image(ds):
    """A real tile of the data set."""
    return ds / "images" / annotation(ds)["train"][0]["image_path"][0]


@pytest.fixture
def my_ds(ds, tmp_path):
    return copy(ds, tmp_path / "ds")


@pytest.fixture
def my_run(run1, tmp_path):
    return copy(run1, tmp_path / "run")


# -- 1. data --out ---------------------------------------------------------------------------------------------

def test_data_out_refuses_a_folder_it_did_not_build(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    refused("data", "--out", mine, "--n-images", "24", "--size", "24", names=[mine], watch=[tmp_path])


def test_data_out_builds_into_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    succeeded(run("data", "--out", tmp_path / "empty", "--n-images", "24", "--size", "24"))
    assert (tmp_path / "empty" / "annotation.json").is_file()


def test_data_out_rebuilds_a_folder_it_built_with_another_seed(my_ds):
    before = tree_hash(my_ds)
    succeeded(run("data", "--out", my_ds, "--n-images", "24", "--size", "24", "--seed", "3"))
    assert tree_hash(my_ds) != before and (my_ds / "annotation.json").is_file()


# -- 2. report --out -------------------------------------------------------------------------------------------

def test_report_refuses_to_write_a_card_over_its_input_image(my_ds, run1, tmp_path):
    img = my_ds / "images" / annotation(my_ds)["train"][0]["image_path"][0]
    refused("report", "--run", run1, img, "--out", my_ds / "images", names=[img], watch=[tmp_path, run1])


def test_report_refuses_to_write_a_card_over_a_file_it_did_not_write(run1, image, tmp_path):
    (tmp_path / "other").mkdir()
    shutil.copy(image, tmp_path / "other" / "x.png")
    (tmp_path / "out").mkdir()
    write_png(tmp_path / "out" / "x.png", seed=7)  # someone's file, named as the card would be
    refused("report", "--run", run1, tmp_path / "other" / "x.png", "--out", tmp_path / "out",
            names=[tmp_path / "out" / "x.png"], watch=[tmp_path, run1])


def test_report_rewrites_the_cards_it_wrote_before(run1, image, tmp_path):
    for _ in range(2):
        succeeded(run("report", "--run", run1, image, "--out", tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([image.name, "attention.npz",
                                                                           "reports.json"])


# -- 3. site and student ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["site", "student"])
def test_course_builds_refuse_a_foreign_folder_unless_forced(command, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    refused(command, "--out", mine, names=[mine], watch=[tmp_path])
    succeeded(run(command, "--out", mine, "--force"))


# -- 4. paths leading out of the data set ----------------------------------------------------------------------

def leading_outside(root: Path, kind: str, outside: Path) -> str:
    """Make the first training entry of ``root`` point at ``outside`` (a file beside the data set, which may or
    may not exist) in the way ``kind`` says; returns the path string the annotation (or images/) holds."""
    ann = annotation(root)
    entry = ann["train"][0]
    if kind == "parent":
        entry["image_path"] = [f"../../{outside.name}"]
    elif kind == "absolute":
        entry["image_path"] = [str(outside)]
    elif kind == "mask":
        entry["mask_path"] = {"nuclei": "../x.png"}   # masks/../x.png: out of masks/
    elif kind == "symlink":
        link = root / "images" / entry["image_path"][0]
        link.unlink()
        link.symlink_to(outside)
    write_annotation(root, ann)
    return {"parent": f"../../{outside.name}", "absolute": str(outside), "mask": "../x.png",
            "symlink": entry["image_path"][0]}[kind]


def outside_file(root: Path, kind: str) -> Path:
    return root / "x.png" if kind == "mask" else root.parent / "outside.png"


KINDS = ["parent", "absolute", "mask", "symlink"]


@pytest.mark.parametrize("kind", KINDS)
def test_data_check_refuses_a_path_leading_outside_and_never_tells_whether_it_exists(kind, my_ds, image, tmp_path):
    target = outside_file(my_ds, kind)
    shutil.copy(image, target)                        # a real PNG there
    name = leading_outside(my_ds, kind, target)
    there = refused("data", "--check", my_ds, names=[name], watch=[tmp_path])
    target.unlink()                                   # and now nothing there
    gone = refused("data", "--check", my_ds, names=[name], watch=[tmp_path])
    assert there.stderr == gone.stderr, "the message tells whether a file outside the data set exists"


@pytest.mark.parametrize("kind", KINDS)
def test_train_refuses_a_path_leading_outside(kind, my_ds, image, tmp_path):
    target = outside_file(my_ds, kind)
    shutil.copy(image, target)
    name = leading_outside(my_ds, kind, target)
    refused("train", "--data", my_ds, "--out", tmp_path / "run", *TRAIN, names=[name], watch=[tmp_path])


# -- 5. a decompression bomb -----------------------------------------------------------------------------------

@pytest.fixture
def bombed(my_ds):
    name = annotation(my_ds)["train"][0]["image_path"][0]
    (my_ds / "images" / name).write_bytes(bomb_png())
    return my_ds, name


def test_data_check_refuses_a_decompression_bomb(bombed, tmp_path):
    root, name = bombed
    refused("data", "--check", root, names=[root / "images" / name], watch=[tmp_path], timeout=120)


def test_train_refuses_a_decompression_bomb(bombed, tmp_path):
    root, name = bombed
    refused("train", "--data", root, "--out", tmp_path / "run", *TRAIN, names=[root / "images" / name],
            watch=[tmp_path], timeout=120)


def test_report_refuses_a_decompression_bomb(run1, tmp_path):
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    refused("report", "--run", run1, tmp_path / "bomb.png", "--out", tmp_path / "out", names=[tmp_path / "bomb.png"],
            watch=[tmp_path, run1], timeout=120)
    assert not (tmp_path / "out").exists()


# -- 6. the run lock -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["run1", "run_mid"], ids=["finished", "stopped-inside-a-stage"])
def test_train_resume_refuses_a_run_locked_by_a_live_process(which, request, ds, tmp_path):
    run_dir = copy(request.getfixturevalue(which), tmp_path / "run")
    live_lock(run_dir, os.getpid())  # this test's process: alive, on this host
    refused("train", "--data", ds, "--out", run_dir, "--resume", *(TRAIN if which == "run1" else MID),
            names=[os.getpid()], watch=[tmp_path, ds])


def test_train_refuses_a_new_run_folder_locked_by_a_live_process(ds, tmp_path):
    live_lock(tmp_path / "run", os.getpid())
    refused("train", "--data", ds, "--out", tmp_path / "run", *TRAIN, names=[os.getpid()], watch=[tmp_path, ds])


def test_train_takes_over_a_stale_lock_and_says_so(ds, tmp_path):
    live_lock(tmp_path / "run", dead_pid())
    result = run("train", "--data", ds, "--out", tmp_path / "run", *TRAIN)
    assert_trained(result, tmp_path / "run", 1)
    assert any("stale" in line.lower() and "lock" in line.lower() for line in result.stderr.splitlines()), \
        result.stderr


# -- 7. a run folder without a checkpoint yet ------------------------------------------------------------------

@pytest.fixture
def no_checkpoint(my_run):
    for name in ("last.pt", "best.pt", "metrics.jsonl"):
        (my_run / name).unlink()
    return my_run


def test_train_resume_starts_a_run_that_has_its_config_but_no_checkpoint(ds, no_checkpoint):
    result = run("train", "--data", ds, "--out", no_checkpoint, "--resume", *TRAIN)
    assert_trained(result, no_checkpoint, 1)


def test_train_without_resume_refuses_a_run_that_has_its_config_but_no_checkpoint(ds, no_checkpoint, tmp_path):
    refused("train", "--data", ds, "--out", no_checkpoint, *TRAIN, names=["--resume"], watch=[tmp_path, ds])


# -- 8, 11, 17. flags out of range -----------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value", [
    ("--seed", "9000000000000000000"), ("--seed", "1e20"), ("--seed", "-1"),
    ("--epochs", "1000000000"), ("--image-size", "100000"),
    ("--batch-size", "0"), ("--lr", "-1"), ("--lr", "nan"), ("--epochs", "0"), ("--num-workers", "-1"),
    ("--max-len", "1"), ("--image-size", "20"), ("--min-count", "1000000"),
], ids=lambda v: v.lstrip("-"))
def test_train_refuses_a_value_out_of_range_before_creating_the_run(flag, value, ds, tmp_path):
    # quickly, and without trying to allocate what the value asks for
    result = refused("train", "--data", ds, "--out", tmp_path / "run", *TRAIN, flag, value, names=[flag],
                     watch=[tmp_path, ds], timeout=60)
    assert "MemoryError" not in result.stderr and not (tmp_path / "run").exists()


def test_train_help_states_the_upper_limits():
    result = succeeded(run("train", "--help"))
    options, block = {}, None
    for line in result.stdout.splitlines():       # the help of each option: its line and the lines indented below
        if line.startswith("  -"):
            block = options.setdefault(line.split()[0].rstrip(","), [])
        if block is not None:
            block.append(line)
    for flag in ("--epochs", "--image-size"):
        assert "at most" in " ".join(" ".join(options.get(flag, [])).split()), f"{flag}: {options.get(flag)}"


# -- 10. an interruption ---------------------------------------------------------------------------------------

def test_an_interrupted_train_says_where_in_one_line_and_resumes_to_the_end(ds, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(ds), "--out", str(out), "--epochs", "6", "--batch-size", "8", "--image-size", "16"]
    # Ctrl-C as a terminal sends it: a test run started in the background (nohup, `&` without job control)
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt; the child gets the default back
    child = subprocess.Popen([sys.executable, "-m", "mdnet_utils", "-q", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None, f"train ended before it could be interrupted: {child.communicate()}"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, f"exit {child.returncode}; stderr: {err[-2000:]!r}"
    assert "Traceback" not in err, err[-2000:]
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("error: ") and "interrupted in epoch" in last and "--resume" in last, err[-2000:]
    assert_trained(run(*args, "--resume"), out, 6)


# -- 12. views ---------------------------------------------------------------------------------------------------

@pytest.fixture
def mixed_views(my_ds):
    ann = annotation(my_ds)
    ann["train"][0]["image_path"] *= 2                    # one case of two views among cases of one
    write_annotation(my_ds, ann)
    two = ann["train"][0]["id"]
    ones = [e["id"] for entries in ann.values() for e in entries if e["id"] != two]
    return my_ds, two, ones


@pytest.mark.parametrize("command", ["check", "train"])
def test_a_data_set_mixing_one_and_two_view_cases_is_refused_naming_one_of_each(command, mixed_views, tmp_path):
    root, two, ones = mixed_views
    args = ["data", "--check", root] if command == "check" else ["train", "--data", root, "--out", tmp_path / "run",
                                                                  *TRAIN]
    result = refused(*args, names=[two], watch=[tmp_path])
    assert any(i in result.stderr for i in ones), f"no one-view entry named: {result.stderr!r}"


@pytest.fixture(scope="module")
def views_of_two_sizes(base):
    return two_view_data(base / "two-sizes", n_train=8, n_val=4, second=(24, 24))


@pytest.mark.parametrize("command", ["check", "train"])
def test_two_views_of_different_pixel_sizes_are_accepted_by_check_and_train_alike(command, views_of_two_sizes,
                                                                                 tmp_path):
    root = copy(views_of_two_sizes, tmp_path / "ds")
    if command == "check":
        succeeded(run("data", "--check", root))
    else:
        assert_trained(run("train", "--data", root, "--out", tmp_path / "run", *TRAIN), tmp_path / "run", 1)


# -- 13. hand-edited run files -----------------------------------------------------------------------------------

def edit_checkpoint(change):
    def edit(run_dir):
        ckpt = torch.load(run_dir / "last.pt", weights_only=True)
        change(ckpt)
        torch.save(ckpt, run_dir / "last.pt")
    return edit


def edit_config(change):
    def edit(run_dir):
        cfg = json.loads((run_dir / "config.json").read_text())
        change(cfg)
        (run_dir / "config.json").write_text(json.dumps(cfg))
    return edit


def evil_checkpoint(run_dir):
    torch.save(Evil(), run_dir / "last.pt")


@pytest.mark.parametrize("which, edit, file", [
    ("run1", edit_checkpoint(lambda c: c["resume"].update(epoch="1")), "last.pt"),
    ("run1", edit_checkpoint(lambda c: c["meta"].update(history=None)), "last.pt"),
    ("run_mid", edit_checkpoint(lambda c: c.pop("optimizer")), "last.pt"),
    ("run1", edit_config(lambda c: c.pop("training")), "config.json"),
    ("run1", edit_config(lambda c: c["training"].update(stages="x")), "config.json"),
    ("run1", evil_checkpoint, "last.pt"),
], ids=["resume-epoch-a-string", "history-null", "no-optimizer-mid-stage", "config-without-training",
        "stages-a-string", "checkpoint-that-runs-code"])
def test_train_resume_refuses_a_hand_edited_run_file_and_leaves_the_run_alone(which, edit, file, request, ds,
                                                                              tmp_path):
    run_dir = copy(request.getfixturevalue(which), tmp_path / "run")
    edit(run_dir)
    args = TRAIN if which == "run1" else MID
    refused("train", "--data", ds, "--out", run_dir, "--resume", *args, names=[file], watch=[tmp_path, ds],
            cwd=tmp_path)
    assert not list(tmp_path.rglob("PWNED")) and not (Path.cwd() / "PWNED").exists(), "a checkpoint ran code"


@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_a_run_whose_config_is_not_json_is_refused_naming_it(command, ds, my_run, image, tmp_path):
    (my_run / "config.json").write_text("{not json")
    args = (["evaluate", "--run", my_run, "--data", ds] if command == "evaluate"
            else ["report", "--run", my_run, image, "--out", tmp_path / "out"])
    refused(*args, names=["config.json"], watch=[tmp_path, ds])


# -- 14. usage errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["train", "--data", "d"], ["bench", "nothing"], ["train", "--epochs", "x"]],
                         ids=["missing-out", "unknown-benchmark", "epochs-not-a-number"])
def test_a_usage_error_is_one_line_pointing_to_help(args, tmp_path):
    refused(*args, names=["--help"], watch=[tmp_path], cwd=tmp_path)


# -- 15. 16-bit images: scaled, not clipped (in process, in test_run_safety) ------------------------------------

# -- 16. an id in two splits -----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["check", "train"])
def test_an_id_in_both_the_train_and_the_test_split_is_refused_naming_it(command, my_ds, tmp_path):
    ann = annotation(my_ds)
    ann["test"][0]["id"] = shared = ann["train"][0]["id"]
    write_annotation(my_ds, ann)
    args = ["data", "--check", my_ds] if command == "check" else ["train", "--data", my_ds, "--out",
                                                                  tmp_path / "run", *TRAIN]
    refused(*args, names=[shared], watch=[tmp_path])


# -- 18. resuming with other settings --------------------------------------------------------------------------

def test_train_resume_refuses_another_model_and_length_and_leaves_the_run_alone(ds, my_run, tmp_path):
    result = refused("train", "--data", ds, "--out", my_run, "--resume", "--epochs", "5", "--model", "resnet-sat",
                     watch=[tmp_path, ds])
    assert "--model" in result.stderr or "--epochs" in result.stderr, result.stderr


# -- 19. check writes nothing ----------------------------------------------------------------------------------

def test_data_check_writes_nothing_into_the_data_set(my_ds):
    (my_ds / "vocab.json").unlink()
    before = tree_hash(my_ds)
    succeeded(run("data", "--check", my_ds))
    assert tree_hash(my_ds) == before and not (my_ds / "vocab.json").exists()


# -- 20. small data sets train ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_views(base):
    return two_view_data(base / "two-views", n_train=32, n_val=8)


def test_a_small_two_view_data_set_trains(two_views, tmp_path):
    root = copy(two_views, tmp_path / "ds")
    assert_trained(run("train", "--data", root, "--out", tmp_path / "run", *TRAIN), tmp_path / "run", 1)


def test_a_data_set_of_one_training_case_trains(my_ds, tmp_path):
    ann = annotation(my_ds)
    ann["train"] = ann["train"][:1]
    write_annotation(my_ds, ann)
    (my_ds / "vocab.json").unlink()
    assert_trained(run("train", "--data", my_ds, "--out", tmp_path / "run", *TRAIN), tmp_path / "run", 1)


# -- refused today already, and must stay so -------------------------------------------------------------------

def _edit_first_entry(change):
    def setup(root):
        ann = annotation(root)
        change(ann["train"][0])
        write_annotation(root, ann)
        return ann["train"][0]
    return setup


def _first_image(root):
    return root / "images" / annotation(root)["train"][0]["image_path"][0]


@pytest.mark.parametrize("setup, names", [
    (lambda root: (root / "annotation.json").write_text("{not json"), ["annotation.json"]),
    (_edit_first_entry(lambda e: e.pop("report")), ["annotation.json", "report"]),
    (_edit_first_entry(lambda e: e.update(label="purple")), ["purple"]),
    (lambda root: _first_image(root).unlink(), ["IMAGE"]),
    (lambda root: _first_image(root).write_bytes(b"not a png"), ["IMAGE"]),
    (lambda root: _first_image(root).write_bytes(_first_image(root).read_bytes()[:40]), ["IMAGE"]),
], ids=["annotation-not-json", "entry-without-report", "unknown-label", "image-missing", "image-is-text",
        "truncated-png"])
def test_data_check_refuses_a_broken_data_set(setup, names, my_ds, tmp_path):
    name = _first_image(my_ds).name
    setup(my_ds)
    refused("data", "--check", my_ds, names=[name if n == "IMAGE" else n for n in names], watch=[tmp_path])


def test_train_refuses_a_missing_data_folder(tmp_path):
    refused("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run", *TRAIN, names=[tmp_path / "nowhere"],
            watch=[tmp_path])


def _config(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "missing.json", "missing.json"
    if kind == "bad-yaml":
        (tmp_path / "bad.yaml").write_text("model: [unclosed\n  training: {\n")
        return tmp_path / "bad.yaml", "bad.yaml"
    (tmp_path / "extra.json").write_text(json.dumps({"optimizer": {}}))
    return tmp_path / "extra.json", "optimizer"


@pytest.mark.parametrize("kind", ["missing", "bad-yaml", "unknown-section"])
def test_train_refuses_a_bad_config_file(kind, ds, tmp_path):
    path, name = _config(tmp_path, kind)
    refused("train", "--data", ds, "--out", tmp_path / "run", *TRAIN, "--config", path, names=[name],
            watch=[tmp_path, ds])


def test_train_refuses_an_unknown_device(ds, tmp_path):
    refused("train", "--data", ds, "--out", tmp_path / "run", *TRAIN, "--device", "nonsense", names=["--device"],
            watch=[tmp_path, ds])


def test_train_refuses_an_out_that_is_a_file(ds, tmp_path):
    (tmp_path / "file.txt").write_text("mine")
    refused("train", "--data", ds, "--out", tmp_path / "file.txt", *TRAIN, names=[tmp_path / "file.txt"],
            watch=[tmp_path, ds])


def test_train_resume_refuses_a_folder_that_does_not_exist(ds, tmp_path):
    refused("train", "--data", ds, "--out", tmp_path / "nowhere", "--resume", *TRAIN, names=[tmp_path / "nowhere"],
            watch=[tmp_path, ds])


@pytest.fixture
def not_a_run(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    return tmp_path / "notes"


def test_evaluate_refuses_a_folder_that_is_not_a_run(not_a_run, ds, tmp_path):
    refused("evaluate", "--run", not_a_run, "--data", ds, names=[not_a_run], watch=[tmp_path, ds])


def test_plot_refuses_a_folder_that_is_not_a_run(not_a_run, tmp_path):
    refused("plot", not_a_run, names=[not_a_run], watch=[tmp_path])


def test_report_refuses_a_missing_image(run1, tmp_path):
    refused("report", "--run", run1, tmp_path / "missing.png", "--out", tmp_path / "out", names=["missing.png"],
            watch=[tmp_path, run1])


def test_report_refuses_a_beam_of_zero(run1, image, tmp_path):
    refused("report", "--run", run1, image, "--out", tmp_path / "out", "--beam", "0", names=["--beam"],
            watch=[tmp_path, run1])
