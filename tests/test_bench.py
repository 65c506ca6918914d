"""`bench train` and `bench data-path`: the reference decoder computes what the package's does, and each benchmark's
result has its documented keys, with figures in range."""
import functools
import math
import queue
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from mdnet_utils import bench
from mdnet_utils.__main__ import BENCHMARK_NAMES, build_parser

# One thread: on a busy 2-core machine two threads a process slow a training step tenfold (bench_resnet's note),
# and bench_data_path gives its spawned epochs this process's thread count.
torch.set_num_threads(1)


def test_the_reference_decoder_gives_the_package_decoders_loss():
    package, reference = bench.check_decoder_reference(batch=4, steps=6)
    assert package == pytest.approx(reference, abs=1e-5)


def test_the_check_notices_a_reference_on_other_weights():
    pair = bench._decoder_pair(4, 6)
    pair[1]["reference"]["W_att"].weight.data[0, 0] += 0.1  # one weight off
    with pytest.raises(RuntimeError, match="disagrees"):
        bench.check_decoder_reference(pair=pair)


def test_synthetic_reports_are_framed_and_padded():
    tokens = bench._synthetic_reports(16, 12, 30, torch.Generator().manual_seed(0))
    assert (tokens[:, 0] == 1).all() and (tokens == 2).sum(1).eq(1).all() and tokens[0, -1] == 2
    lengths = (tokens != 0).sum(1)
    assert (tokens.gather(1, (lengths - 1).unsqueeze(1)) == 2).all() and (lengths >= 6).all()


def test_bench_train_reports_throughput_and_the_decoder_ratio():
    assert build_parser().parse_args(["bench", "train"]).name == "train"
    out = bench.BENCHMARKS["train"](batch_size=2, reports=2, length=8, image_size=32, steps=1, warmup=1, rounds=1)
    assert set(out) == {"benchmark", "model", "image_size", "vocab_size", "threads", "end_to_end", "decoder",
                        "machine"}
    assert out["benchmark"] == "train" and out["model"] == "mdnet" and out["image_size"] == 32
    assert {"cpu_count", "processor", "python", "torch", "cuda"} <= set(out["machine"])
    assert isinstance(out["threads"], int) and out["threads"] >= 1
    e2e = out["end_to_end"]
    assert set(e2e) == {"cases_per_step", "reports_per_case", "report_tokens", "steps_timed", "step_s", "images_per_s"}
    assert (e2e["cases_per_step"], e2e["reports_per_case"], e2e["report_tokens"], e2e["steps_timed"]) == (2, 2, 8, 1)
    assert 0 < e2e["step_s"] < math.inf
    # images_per_s is cases / the unrounded step time; step_s is rounded to 0.1 ms, images_per_s to 0.1
    expected = e2e["cases_per_step"] / e2e["step_s"]
    # both roundings at once: approx takes the larger of rel and abs, so the bound is written as their sum
    bound = expected * 1.01 * 0.5e-4 / e2e["step_s"] + 0.051
    assert abs(e2e["images_per_s"] - expected) <= bound, (e2e, bound)
    dec = out["decoder"]
    assert set(dec) == {"rows", "time_steps", "rounds_timed", "loss_package", "loss_reference", "package_step_s",
                        "reference_step_s", "ratio_package_over_reference"}
    assert (dec["rows"], dec["time_steps"], dec["rounds_timed"]) == (4, 7, 1)
    assert all(0 < dec[k] < math.inf for k in ("package_step_s", "reference_step_s"))
    assert math.isfinite(dec["loss_package"]) and dec["loss_package"] > 0
    assert dec["loss_package"] == pytest.approx(dec["loss_reference"], abs=1e-5)
    assert 0 < dec["ratio_package_over_reference"] < 20
    # the ratio is of the unrounded medians: the rounded step times give it to within their rounding
    assert dec["ratio_package_over_reference"] == pytest.approx(
        dec["package_step_s"] / dec["reference_step_s"], rel=0.05 + 1e-4 / min(dec["package_step_s"],
                                                                                dec["reference_step_s"]))


def test_the_command_lines_benchmark_names_are_the_benchmarks():
    assert list(BENCHMARK_NAMES) == list(bench.BENCHMARKS)
    assert all(callable(f) for f in bench.BENCHMARKS.values())


# --- bench data-path ------------------------------------------------------------------------------------------
# bench_data_path builds its timing dataset where Config(fast=False) says, the course's full one (4,320 tiles):
# the tests hand it a Config of 36 tiles in tmp_path instead.
SIZES, TIMING_IMAGES = (18, 36), 36
EPOCH_KEYS = {"cases", "load_s", "epoch_s", "peak_rss_mb", "worker_peak_pss_mb"}


@pytest.fixture
def small_timing_dataset(tmp_path, monkeypatch):
    """A 36-tile timing dataset; every dataset rendered in this process."""
    small = SimpleNamespace(dataset_dir=tmp_path / "timing", n_images=TIMING_IMAGES, image_size=64, seed=0)
    monkeypatch.setattr(bench, "Config", lambda fast=False: small)
    monkeypatch.setattr(bench, "make_synthetic_dataset", functools.partial(bench.make_synthetic_dataset, workers=1))
    return small


def check_data_path(out: dict, epochs: int, limit: int | None = None) -> None:
    assert out["benchmark"] == "data-path" and out["num_workers"] == 0 and out["threads"] == 1
    assert set(out) == {"benchmark", "stage", "image_size", "num_workers", "threads", "memory", "time", "machine"}
    memory, timing = out["memory"], out["time"]
    assert set(memory["streaming"]) == {str(n) for n in SIZES}
    names = ["streaming, 0 workers", "in memory"]
    assert set(timing["runs"]) == set(timing["epoch_s"]) == set(names)
    epochs_run = [*memory["streaming"].values(), memory["in_memory_at_large"],
                  *(r for name in names for r in timing["runs"][name])]
    for r in epochs_run:
        assert set(r) == EPOCH_KEYS, r
        assert r["peak_rss_mb"] > 0 and r["worker_peak_pss_mb"] >= 0 and r["load_s"] >= 0, r
        assert 0 < r["epoch_s"] < math.inf, r
    assert [memory["streaming"][str(n)]["cases"] for n in SIZES] == [min(n, limit or n) for n in SIZES]  # all in train
    small, large = (memory["streaming"][str(n)]["peak_rss_mb"] for n in SIZES)
    assert memory["peak_rss_ratio_large_over_small"] == pytest.approx(large / small, abs=1e-3)
    assert memory["peak_rss_ratio_large_over_small"] > 0
    assert all(len(timing["runs"][name]) == epochs for name in names)
    assert 0 < timing["cases"] <= min(limit or TIMING_IMAGES, 0.8 * TIMING_IMAGES)     # of the train split
    assert timing["dataset"] == "timing"
    assert all(v > 0 for v in timing["epoch_s"].values())
    ratio = timing["ratio_streaming_over_in_memory"]["streaming, 0 workers"]
    assert ratio == pytest.approx(timing["epoch_s"]["streaming, 0 workers"] / timing["epoch_s"]["in memory"], abs=1e-3)
    assert ratio > 0


def test_bench_data_path_in_one_process_gives_every_figure(small_timing_dataset, monkeypatch):
    """The plumbing, quickly: each epoch in this process instead of a fresh one (its peak RSS is this process's),
    on 8 cases."""
    def in_this_process(*args):
        q = queue.Queue()
        bench._epoch(*args, q)
        return q.get_nowait()

    monkeypatch.setattr(bench, "_in_fresh_process", in_this_process)
    check_data_path(bench.bench_data_path(sizes=SIZES, num_workers=0, timing_workers=(0,), epochs=1, limit=8), epochs=1, limit=8)


@pytest.mark.slow
def test_bench_data_path_in_fresh_processes(small_timing_dataset):
    """As `bench data-path` runs, each epoch in a spawned process: about 20 s here, most of it importing torch."""
    check_data_path(bench.bench_data_path(sizes=SIZES, num_workers=0, timing_workers=(0,), epochs=1), epochs=1)


def test_the_workers_memory_is_sampled_from_the_children_of_this_process():
    before = bench._workers_pss_mb()  # other children may exist: the point is the one started below
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(50_000_000); time.sleep(3)"])
    try:
        sampler = bench._PeakSampler(bench._workers_pss_mb, every=0.05)
        sampler.start()
        time.sleep(1.5)
        peak = sampler.stop()
    finally:
        child.kill()
        child.wait()
    assert peak - before > 40  # MB: the child's 50 MB buffer is its own memory
