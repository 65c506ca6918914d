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


BENCHMARKS = {"data": bench_data}
