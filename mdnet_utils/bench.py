"""The benchmarks the issues name; each returns a dict that ``python -m mdnet_utils bench`` prints.

Benchmarks measure; they never assert. Their figures are quoted in README.md with the machine.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path


def machine() -> dict:
    """What the figures were measured on."""
    import torch

    return {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def bench_data(n_images: int | None = None, image_size: int = 64) -> dict:
    """Build time of the default full-mode dataset, and the single-process rendering rate."""
    import numpy as np

    from mdnet_utils import Config
    from mdnet_utils.data import make_synthetic_dataset
    from mdnet_utils.data.grades import sample_case
    from mdnet_utils.data.synthetic import render_tile

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
    import statistics

    import torch
    import torchvision

    from mdnet_utils.models import resnet18

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


BENCHMARKS = {"data": bench_data, "resnet": bench_resnet}
