"""Build the synthetic dataset on disk: tiles, masks, five reports each, splits by patient.

The build is deterministic (tile i is drawn from its own generator seeded with (seed, i), so the
bytes do not depend on how many processes render) and atomic: everything is written to a hidden
temporary folder beside ``root``, a manifest with a hash of the content is written last, and the
folder is swapped into place (``io.write_folder``). Only an empty folder or a build of ours (its manifest
says so) is ever replaced: any other folder is refused, never deleted. A folder whose manifest is missing, was made with other parameters
or another version of the generator, or whose files no longer match the hash, is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from mdnet_utils.data import grades as _grades_module
from mdnet_utils.data import reports as _reports_module
from mdnet_utils.data import synthetic as _synthetic_module
from mdnet_utils.data.dataset import ANNOTATION, build_vocab
from mdnet_utils.data.grades import conclusion, sample_case
from mdnet_utils.data.reports import write_reports
from mdnet_utils.data.synthetic import render_tile
from mdnet_utils.errors import ConfigError, DatasetError
from mdnet_utils.io import write_folder

MANIFEST = "manifest.json"
TILES_PER_PATIENT = 6
SPLIT_SHARES = (("train", 0.70), ("val", 0.15), ("test", 0.15))
MIN_IMAGES = 3 * TILES_PER_PATIENT  # at least one patient in each split
MAX_IMAGES = 1_000_000  # a typo's extra zeros are refused, not rendered for hours


def generator_version() -> str:
    """A hash of the generator's source: change the renderer or the grammar and caches rebuild."""
    h = hashlib.sha256()
    for module in (_grades_module, _synthetic_module, _reports_module):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]


def content_hash(root: Path) -> str:
    """SHA-256 over every file under ``root`` (path and bytes), the manifest excepted."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def _params(n_images: int, image_size: int, seed: int) -> dict:
    return {"n_images": n_images, "image_size": image_size, "seed": seed,
            "generator": generator_version()}


def is_complete(root: str | os.PathLike, *, n_images: int, image_size: int = 64, seed: int = 0) -> bool:
    """True when ``root`` holds a whole, unedited build with exactly these parameters."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (manifest.get("params") == _params(n_images, image_size, seed)
            and manifest.get("content_hash") == content_hash(Path(root)))


def _ours(root: Path) -> bool:
    """May ``root`` be replaced? Only when it is an empty folder, or a build of ours (stale, partial or edited:
    its manifest says it was made here)."""
    if not root.is_dir():
        return False
    if not any(root.iterdir()):
        return True
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and isinstance(manifest.get("params"), dict) and \
        "generator" in manifest["params"]


def split_patients(n_patients: int, seed: int) -> list[str]:
    """The split of each patient: a seeded shuffle cut 70/15/15, every split non-empty."""
    order = np.random.default_rng([seed, 2**31]).permutation(n_patients)
    n_val = max(1, round(SPLIT_SHARES[1][1] * n_patients))
    n_test = max(1, round(SPLIT_SHARES[2][1] * n_patients))
    split = ["train"] * n_patients
    for rank, patient in enumerate(order):
        if rank < n_val:
            split[patient] = "val"
        elif rank < n_val + n_test:
            split[patient] = "test"
    return split


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)  # fast; tiles are small


def _render_one(args: tuple) -> dict:
    """Render tile ``index`` into ``out``; return its annotation entry (without the split)."""
    index, out, image_size, seed = args
    patient, j = divmod(index, TILES_PER_PATIENT)
    stain = 1.0 + 0.06 * np.random.default_rng([seed, 2**32 + patient]).standard_normal(3)
    rng = np.random.default_rng([seed, index])
    grades, in_focus = sample_case(rng)
    tile = render_tile(grades, in_focus=in_focus, size=image_size, rng=rng,
                       stain=stain * (1.0 + 0.015 * rng.standard_normal(3)))
    label = conclusion(grades, in_focus)
    reports = write_reports(grades, label, rng)
    tile_id = f"p{patient:04d}_t{j:02d}"
    _save_png(tile.image, Path(out) / "images" / f"{tile_id}.png")
    mask_path = {}
    for name, mask in tile.masks.items():
        mask_path[name] = f"{tile_id}_{name}.png"
        _save_png(mask.astype(np.uint8) * 255, Path(out) / "masks" / mask_path[name])
    return {"id": tile_id, "patient": f"p{patient:04d}", "image_path": [f"{tile_id}.png"],
            "report": reports[0], "reports": reports, "label": label, "grades": grades,
            "in_focus": in_focus, "mask_path": mask_path}


def make_synthetic_dataset(root: str | os.PathLike, *, n_images: int, image_size: int = 64, seed: int = 0,
                           workers: int | None = None, progress: bool = False) -> Path:
    """Build (or reuse, if complete) the synthetic BCIDR stand-in at ``root``; returns ``root``.

    ``n_images`` tiles of ``image_size`` pixels, ``TILES_PER_PATIENT`` tiles per synthetic
    patient, patients split 70/15/15 into train/val/test. ``workers`` processes render in
    parallel (default: the CPU count); the bytes written do not depend on it.
    """
    root = Path(root)
    if isinstance(n_images, bool) or not isinstance(n_images, int) or not MIN_IMAGES <= n_images <= MAX_IMAGES:
        raise ConfigError("n_images", n_images, f"is out of range: a whole number from {MIN_IMAGES} (one patient per "
                                                f"split) to {MAX_IMAGES}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 16 <= image_size <= 1024:
        raise ConfigError("image_size", image_size, "is out of range: a whole number from 16 to 1024.")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise ConfigError("seed", seed, "is out of range: a whole number from 0 to 4294967295.")
    if is_complete(root, n_images=n_images, image_size=image_size, seed=seed):
        return root
    if root.exists() and not _ours(root):
        raise DatasetError(f"{root}: holds files that are not a data set this command built (no {MANIFEST} of "
                           "ours), so it is left alone: choose another folder, or empty this one.")

    def fill(tmp: Path) -> None:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        jobs = [(i, str(tmp), image_size, seed) for i in range(n_images)]
        n_workers = workers or os.cpu_count() or 1
        if n_workers > 1 and n_images >= 100:
            # fork: workers inherit the imported modules instead of importing torch again.
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(n_workers) as pool:
                it = pool.imap(_render_one, jobs, chunksize=64)
                entries = list(_progress(it, n_images, progress))
        else:
            entries = list(_progress(map(_render_one, jobs), n_images, progress))

        split_of = split_patients(math.ceil(n_images / TILES_PER_PATIENT), seed)
        annotation = {name: [] for name, _ in SPLIT_SHARES}
        for e in entries:
            e["split"] = split_of[int(e["patient"][1:])]
            annotation[e["split"]].append(e)
        (tmp / ANNOTATION).write_text(json.dumps(annotation, indent=1))
        build_vocab(tmp)
        manifest = {"params": _params(n_images, image_size, seed),
                    "counts": {k: len(v) for k, v in annotation.items()},
                    "content_hash": content_hash(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))

    write_folder(root, fill)  # a stale or partial folder is replaced whole
    return root


def _progress(it, total: int, enabled: bool):
    if not enabled:
        return it
    return tqdm(it, total=total, desc="rendering tiles", unit="tile")
