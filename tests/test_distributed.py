"""Scale-out: torchrun with 2 CPU processes (gloo) follows a single process with the same global batch."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from mdnet_utils.data import make_synthetic_dataset, read_annotation

TOLERANCE = 0.05  # relative: batch norm sees half the batch in each process, so the two runs differ a little


@pytest.mark.slow  # two torchrun processes: about 20 s
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed beside this python")
def test_two_processes_follow_one_with_the_same_global_batch(tmp_path):
    data = make_synthetic_dataset(tmp_path / "ds", n_images=36, image_size=32, seed=5, workers=1)
    n_train = len(read_annotation(data)["train"])
    assert n_train % 8 == 0  # no incomplete global batch, so both runs take the same steps
    args = ["train", "--data", str(data), "--epochs", "3", "--batch-size", "8", "--image-size", "32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "mdnet_utils", *args, "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    double = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "mdnet_utils", *args,
                             "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stderr[-2000:]

    def losses(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [(r["stage"], r.get("words_loss"), r.get("class_loss")) for r in map(json.loads, lines)]

    one, two = losses("one"), losses("two")
    assert [s for s, *_ in one] == [s for s, *_ in two]
    for (_, *a), (_, *b) in zip(one, two):
        for x, y in zip(a, b):
            assert (x is None) == (y is None)
            if x is not None:
                assert abs(x - y) <= TOLERANCE * abs(x), (one, two)


@pytest.mark.slow  # two torchrun processes: about 10 s
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed beside this python")
def test_a_refusal_by_the_main_process_ends_every_process_with_its_reason(tmp_path):
    data = make_synthetic_dataset(tmp_path / "ds", n_images=36, image_size=32, seed=5, workers=1)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")  # only the main process looks at the folder: it refuses
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "mdnet_utils", "-q", "train",
                        "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "8",
                        "--image-size", "32"], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                       text=True, timeout=120)  # no process waits for the main one: a refusal, not a hang
    assert r.returncode != 0
    assert "already holds files" in r.stderr and "the main process of this run refused it" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
