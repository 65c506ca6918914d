"""The benchmarks the issues name; each returns a dict that ``python -m mdnet_utils bench`` prints.

Benchmarks measure; they never assert. Their figures are quoted in README.md with the machine.

    data       build time of the full-mode synthetic dataset, and the rendering rate
    resnet     a training step of our resnet18 against torchvision's (the same computation: ratio 1.00)
    train      an end-to-end training step of MDNet, and its decoder against a straightforward reference
    data-path  memory and time of the streaming data path: peak RSS of one epoch on 2,000 and on 20,000 images
               (goal: ratio <= 1.2), and epoch time streamed from disk against held in memory (goal <= 1.15x)
"""
from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import platform
import queue
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from mdnet_utils import Config
from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.data.dataset import ReportDataset, training_vocab
from mdnet_utils.data.grades import sample_case
from mdnet_utils.data.loading import FileCases, TensorCases, batches, load_report_tiles
from mdnet_utils.data.synthetic import render_tile
from mdnet_utils.models import mdnet, resnet18
from mdnet_utils.models.decoder import word_loss
from mdnet_utils.training.config import Stage
from mdnet_utils.training.engine import make_optimizer, run_epoch, trainable
from mdnet_utils.training.recipes import course_recipe


def machine() -> dict:
    """What the figures were measured on."""
    return {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def bench_data(n_images: int | None = None, image_size: int = 64) -> dict:
    """Build time of the default full-mode dataset, and the single-process rendering rate."""
    n_images = n_images or Config(fast=False).n_images
    rng = np.random.default_rng(0)
    cases = [sample_case(rng) for _ in range(300)]
    start = time.perf_counter()
    for grades, in_focus in cases:
        render_tile(grades, in_focus=in_focus, size=image_size, rng=rng)
    render_rate = len(cases) / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        make_synthetic_dataset(Path(tmp) / "bench", n_images=n_images, image_size=image_size)
        build_s = time.perf_counter() - start
    return {"benchmark": "data", "n_images": n_images, "image_size": image_size,
            "build_seconds": round(build_s, 2), "build_images_per_s": round(n_images / build_s, 1),
            "render_images_per_s_one_process": round(render_rate, 1), "machine": machine()}


def bench_resnet(batch_size: int = 16, image_size: int = 112, steps: int = 12, warmup: int = 2) -> dict:
    """A training step (forward, backward, SGD step) of ``mdnet_utils.models.resnet18`` against torchvision's
    ``resnet18``: same weights, same input, timed alternately step by step so that both see the same machine
    load. The same computation, so the ratio (ours / torchvision, of the median step times) should be 1.00.
    On a machine that is busy with something else, ``OMP_NUM_THREADS=1`` avoids oversubscribed cores
    (which slow both sides tenfold).
    """
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18()
    ours = resnet18()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.randint(0, 1000, (batch_size,))
    loss_fn = torch.nn.CrossEntropyLoss()
    runs = {}
    for name, model in (("ours", ours), ("torchvision", theirs)):
        model.train()
        runs[name] = (model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), [], [])

    def step(name: str) -> None:
        model, opt, times, losses = runs[name]
        start = time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))

    for i in range(warmup + steps):
        for name in (("ours", "torchvision") if i % 2 == 0 else ("torchvision", "ours")):
            step(name)
    median = {name: statistics.median(times[warmup:]) for name, (_, _, times, _) in runs.items()}
    return {"benchmark": "resnet", "model": "resnet18", "batch_size": batch_size, "image_size": image_size,
            "steps_timed": steps, "threads": torch.get_num_threads(),
            "ours_step_s": round(median["ours"], 4), "torchvision_step_s": round(median["torchvision"], 4),
            "ratio_ours_over_torchvision": round(median["ours"] / median["torchvision"], 3),
            "first_loss_ours": round(runs["ours"][3][0], 6), "first_loss_torchvision": round(runs["torchvision"][3][0], 6),
            "machine": machine()}


def _synthetic_reports(n: int, length: int, vocab_size: int, gen) -> "torch.Tensor":
    """(n, length) ids <bos> (1), words (4, 5, ...), <eos> (2), <pad> (0); rows length/2 .. length long, row 0 full."""
    lengths = torch.randint(length // 2, length + 1, (n, 1), generator=gen)
    lengths[0] = length
    pos = torch.arange(length)
    tokens = torch.randint(4, vocab_size, (n, length), generator=gen)
    return tokens.masked_fill(pos == 0, 1).masked_fill(pos == lengths - 1, 2).masked_fill(pos >= lengths, 0)


def _decoder_pair(batch: int, steps: int, vocab_size: int = 100, image_size: int = 64, seed: int = 0):
    """The CLI's MDNet decoder (eval mode: no dropout, so both sides compute the same), a straightforward reference
    of Eqs. (12)-(14) on copies of its weights, seeded features (B, N, D) (taking gradients, as end to end), tokens
    (B, steps+1), cam (B, N). -> (run, nets, features); ``run("package" | "reference")``: forward + backward, loss."""
    torch.manual_seed(seed)
    dec = mdnet(vocab_size, image_size=image_size).decoder.eval()
    ref = torch.nn.ModuleDict({name: copy.deepcopy(module) for name, module in (
        ("E", dec.embedding), ("init_h", dec.init_h), ("init_c", dec.init_c), ("W_h", dec.attention.W_h),
        ("W_att", dec.attention.W_att), ("lstm", dec.lstm), ("out", dec.out))})   # the decoder's parameter order
    gen, n_pos = torch.Generator().manual_seed(seed), dec.attention.num_positions
    features = torch.randn(batch, n_pos, dec.feature_dim, generator=gen).requires_grad_()
    tokens = _synthetic_reports(batch, steps + 1, vocab_size, gen)
    cam = torch.randn(batch, n_pos, generator=gen)

    def reference():
        mean = features.mean(dim=1)
        h, c = torch.tanh(ref["init_h"](mean)), torch.tanh(ref["init_c"](mean))
        c_std = (cam - cam.mean(1, keepdim=True)) / torch.sqrt(cam.var(1, unbiased=False, keepdim=True) + 1e-5)
        embedded, logits = ref["E"](tokens[:, :-1]), []
        for t in range(embedded.shape[1]):
            a = torch.softmax(ref["W_att"](torch.tanh(ref["W_h"](h) + c_std)), dim=-1)   # Eq. (14)
            z = (a.unsqueeze(-1) * features).sum(dim=1)                                  # Eq. (13)
            h, c = ref["lstm"](torch.cat([embedded[:, t], z], dim=-1), (h, c))           # Eq. (12)
            logits.append(ref["out"](h))
        targets = tokens[:, 1:]
        return torch.nn.functional.cross_entropy(torch.stack(logits, 1)[targets != 0], targets[targets != 0])

    nets = {"package": dec, "reference": ref}

    def run(name: str) -> float:
        features.grad = None
        nets[name].zero_grad(set_to_none=True)
        loss = word_loss(dec(features, tokens, cam)[0], tokens) if name == "package" else reference()
        loss.backward()
        return float(loss.detach())
    return run, nets, features


def check_decoder_reference(batch: int = 4, steps: int = 6, *, pair=None, **kw) -> tuple[float, float]:
    """(package loss, reference loss) on the same weights and inputs (``_decoder_pair``). Raises if the losses,
    or the gradients of the features and of every weight, differ by more than 1e-5."""
    run, nets, features = pair or _decoder_pair(batch, steps, **kw)
    losses, grads = [], []
    for name in ("package", "reference"):
        losses.append(run(name))
        grads.append([features.grad, *(p.grad for p in nets[name].parameters())])
    if abs(losses[0] - losses[1]) > 1e-5 or not all(a.allclose(b, rtol=1e-5, atol=1e-5) for a, b in zip(*grads)):
        raise RuntimeError(f"the reference decoder disagrees with the package's: losses {losses}.")
    return losses[0], losses[1]


def bench_train(batch_size: int = 32, reports: int = 5, length: int = 42, vocab_size: int = 100,
                image_size: int = 64, steps: int = 6, warmup: int = 2, rounds: int = 5) -> dict:
    """1. One end-to-end step of the engine (``engine.run_epoch`` on one batch: forward, backward, clipping, AdamW)
    of the CLI's MDNet on batch_size synthetic cases, each with ``reports``; the median of ``steps`` after
    ``warmup``. 2. The package's decoder against the reference of ``_decoder_pair`` (checked to agree first, also
    the warm-up) on batch_size * reports rows, timed alternately for ``rounds``: the ratio package / reference of
    the medians (goal: at most 1)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model, n = mdnet(vocab_size, image_size=image_size), batch_size
    cases = TensorCases(torch.randint(0, 256, (n, 3, image_size, image_size), dtype=torch.uint8, generator=gen),
                        torch.randint(0, 4, (n,), generator=gen),
                        _synthetic_reports(n * reports, length, vocab_size, gen).view(n, reports, length))
    stage = Stage("end_to_end", epochs=1, lr=2e-3, batch_size=n, clip=5.0)
    opt, sched = make_optimizer(trainable(model, stage), stage, warmup + steps)
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        run_epoch(model, batches(cases, torch.arange(n), n), stage, opt, sched, gen)
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times[warmup:])
    pair = _decoder_pair(n * reports, length - 1, vocab_size, image_size)
    loss_package, loss_reference = check_decoder_reference(pair=pair)
    dec_times = {"package": [], "reference": []}
    for i in range(rounds):
        for name in (("package", "reference") if i % 2 == 0 else ("reference", "package")):
            start = time.perf_counter()
            pair[0](name)
            dec_times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in dec_times.items()}
    return {"benchmark": "train", "model": "mdnet", "image_size": image_size, "vocab_size": vocab_size,
            "threads": torch.get_num_threads(),
            "end_to_end": {"cases_per_step": n, "reports_per_case": reports, "report_tokens": length,
                           "steps_timed": steps, "step_s": round(step_s, 4), "images_per_s": round(n / step_s, 1)},
            "decoder": {"rows": n * reports, "time_steps": length - 1, "rounds_timed": rounds,
                        "loss_package": round(loss_package, 6), "loss_reference": round(loss_reference, 6),
                        **{f"{name}_step_s": round(t, 4) for name, t in med.items()},
                        "ratio_package_over_reference": round(med["package"] / med["reference"], 3)},
            "machine": machine()}


# --- the data path ----------------------------------------------------------------------------------------

def _all_in_train(root: Path) -> Path:
    """The bench's own copy of a built data set with every case in the train split (and a renamed copy of one in
    val)."""
    annotation = json.loads((root / "annotation.json").read_text())
    cases = [e for split in ("train", "val", "test") for e in annotation[split]]
    val = [{**cases[0], "id": cases[0]["id"] + "-val"}]  # a case may be in one split only: a copy, renamed
    (root / "annotation.json").write_text(json.dumps({"train": cases, "val": val, "test": []}))
    return root


def _workers_pss_mb() -> float:
    """Memory of this process's children (the DataLoader's workers) now: their proportional set size, which
    counts the pages they share with this process (forked) only in part; from /proc (Linux; 0 elsewhere)."""
    me = os.getpid()
    try:
        children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
    except OSError:
        return 0.0
    total_kb = 0
    for pid in children:
        try:
            total_kb += sum(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                            if line.startswith("Pss:"))
        except OSError:  # the worker has just ended
            pass
    return total_kb / 1024


class _PeakSampler(threading.Thread):
    """The largest value ``measure()`` returns, sampled every ``every`` seconds until ``stop()``."""

    def __init__(self, measure, every: float = 0.05):
        super().__init__(daemon=True)
        self.measure, self.every, self.peak, self._done = measure, every, 0.0, threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            self.peak = max(self.peak, self.measure())

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak


def _epoch(root: str, streaming: bool, num_workers: int, limit: int | None, threads: int, results) -> None:
    """In a fresh process: one decoder-stage epoch of MDNet over the train split of ``root`` (streamed from disk,
    or first read into memory); puts {seconds, peak RSS of this process, peak PSS of its data workers (sampled)}
    on ``results`` (a queue). (Importing torch runs a short-lived child process of its own, so the children's peak RSS that
    ``getrusage`` reports would not be the workers'.)"""
    torch.set_num_threads(threads)
    vocab = training_vocab(root, 3)
    torch.manual_seed(0)
    model = mdnet(len(vocab))
    stage = course_recipe("mdnet").stage("decoder").replace(epochs=1, limit=limit)
    start = time.perf_counter()
    if streaming:
        source = FileCases(ReportDataset(root, "train", vocab=vocab), vocab, image_size=64, max_len=60)
    else:
        source = load_report_tiles(root, "train", vocab, image_size=64, max_len=60).cases()
    source = source.subset(stage.limit)
    loaded = time.perf_counter() - start
    opt, sched = make_optimizer(trainable(model, stage), stage, (len(source) + stage.batch_size - 1) // stage.batch_size)
    order = torch.randperm(len(source), generator=torch.Generator().manual_seed(0))
    sampler = _PeakSampler(_workers_pss_mb)
    sampler.start()
    start = time.perf_counter()
    run_epoch(model, batches(source, order, stage.batch_size, num_workers=num_workers), stage, opt, sched,
              torch.Generator().manual_seed(0))
    epoch_s = time.perf_counter() - start
    results.put({"cases": len(source), "load_s": round(loaded, 2), "epoch_s": round(epoch_s, 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               "worker_peak_pss_mb": round(sampler.stop(), 1)})


def _in_fresh_process(*args) -> dict:
    """``_epoch(*args)`` in a spawned process (a clean one: its peak RSS is this epoch's alone); its result, or a
    RuntimeError if it ends without one."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_epoch, args=(*args, results))
    proc.start()
    while True:
        try:
            result = results.get(timeout=1.0)
            break
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the benchmark's epoch process ended with exit code {proc.exitcode} and no "
                                   "result.") from None
    proc.join()
    return result


def bench_data_path(sizes: tuple[int, int] = (2_000, 20_000), num_workers: int = 1,
                    timing_workers: tuple[int, ...] = (0, 1), epochs: int = 2, limit: int | None = None) -> dict:
    """1. Memory: one epoch of the decoder stage (the image model encodes every batch, the decoder trains: the
    whole data path, images and reports) over ``sizes`` synthetic 64 px images streamed from disk by
    ``num_workers`` worker processes, each epoch in a fresh process; the peak RSS of each (the main process; the
    workers' peak PSS apart) and their ratio (goal <= 1.2; held in memory as float32, 20,000 tiles would be about
    1 GB). The in-memory path's peak at the larger size, for contrast. 2. Time: the same epoch on the course's full
    dataset (its train split, ``limit`` cases), streamed (with each of ``timing_workers``) and in memory,
    alternately ``epochs`` times each; the ratio of the medians (goal <= 1.15x)."""
    threads = torch.get_num_threads()
    memory = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            root = _all_in_train(make_synthetic_dataset(Path(tmp) / f"n{n}", n_images=n))
            memory[n] = _in_fresh_process(str(root), True, num_workers, limit, threads)
        in_memory_large = _in_fresh_process(str(root), False, 0, limit, threads)
    small, large = (memory[n] for n in sizes)
    full = Config(fast=False)
    root = make_synthetic_dataset(full.dataset_dir, n_images=full.n_images, image_size=full.image_size, seed=full.seed)
    names = [f"streaming, {w} workers" for w in timing_workers] + ["in memory"]
    times = {name: [] for name in names}
    for i in range(epochs):
        for name in (names if i % 2 == 0 else names[::-1]):
            workers = 0 if name == "in memory" else timing_workers[names.index(name)]
            times[name].append(_in_fresh_process(str(root), name != "in memory", workers, limit, threads))
    med = {name: statistics.median(r["epoch_s"] for r in runs) for name, runs in times.items()}
    return {"benchmark": "data-path", "stage": "decoder (MDNet, image model frozen)", "image_size": 64,
            "num_workers": num_workers, "threads": threads,
            "memory": {"streaming": {str(n): memory[n] for n in sizes},
                       "peak_rss_ratio_large_over_small": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
                       "in_memory_at_large": in_memory_large},
            "time": {"dataset": str(root.name), "cases": times["in memory"][0]["cases"],
                     "epoch_s": med, "in_memory_load_s": times["in memory"][0]["load_s"],
                     "ratio_streaming_over_in_memory": {name: round(med[name] / med["in memory"], 3)
                                                        for name in names[:-1]},
                     "runs": times},
            "machine": machine()}


BENCHMARKS = {"data": bench_data, "resnet": bench_resnet, "train": bench_train, "data-path": bench_data_path}
