"""Reference models: the networks whose results the notebooks discuss, trained once on the whole training split
over several seeds and shipped with the course as small weight files (``python -m mdnet_utils reference``).

``REGISTRY`` (``mdnet_utils.training.registry``) names each one, as data. ``train_reference(name, seed)`` writes

    checkpoints/NAME/seed-K.safetensors   the selected weights (``safetensors``: tensors only, no pickle; stored
                                          in float16 where the registry says so, and every figure of the JSON is
                                          computed from the stored weights)
    checkpoints/NAME/seed-K.json          {"format", "name", "seed", "model", "recipe", "start_from", "fingerprint":
                                          {"data", "recipe"}, "vocab" (report generators), "versions", "device",
                                          "seconds", "history" (per epoch: the losses and the validation score),
                                          "best_epoch", "val", "test", "check" (the figures on the first
                                          ``CHECK_TILES`` test tiles), and for a report generator "study" (every
                                          score of Part III's attention study on the whole test split:
                                          ``evaluation.study_table.study_record``)}

Model selection is on validation (accuracy for an image model, the mean of the six accuracies for a grade
reader, BLEU-4 of greedy reports for a report generator), never on test. Training is resumable: every epoch
leaves ``checkpoints/.work/NAME/seed-K/`` (``last.pt``, the engine's exact resume state, and
``best.safetensors``), so a killed training continues where it stopped; a model
whose JSON carries today's data and recipe fingerprints is skipped (a report generator's JSON without "study"
gets it added, from its stored weights). ``check_references`` loads every shipped file,
compares its fingerprints with today's data and recipe, and re-evaluates the first ``CHECK_TILES`` test tiles
against the stored figures (equal up to another CPU's rounding: ``evaluation.figures.figures_agree``); ``load_reference(name, seed=0)`` is what a notebook calls.

Comparisons over seeds: ``seed_table`` (a reference's figures per seed, with mean and sd) and ``difference``
(``mdnet_utils.evaluation.seeds``: when a difference is measurable).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path

import pandas as pd
import safetensors.torch
import torch
import torchvision
from torch import nn

from mdnet_utils import Config, config
from mdnet_utils.data.build import make_synthetic_dataset
from mdnet_utils.data.dataset import training_vocab
from mdnet_utils.data.loading import TensorCases, load_report_tiles
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.errors import ConfigError
from mdnet_utils.evaluation.figures import (
    figures_agree,
    reference_figures,
    reference_split,
    summed_cross_entropy,
)
from mdnet_utils.evaluation.seeds import difference, mean_and_sd
from mdnet_utils.evaluation.study_table import study_record
from mdnet_utils.io import write_bytes, write_json
from mdnet_utils.models.config import ModelConfig, build_model
from mdnet_utils.training.checkpoint import load_training, save_training
from mdnet_utils.training.config import TrainConfig
from mdnet_utils.training.engine import EpochEnd, Resume, train
from mdnet_utils.training.registry import EPOCHS, REGISTRY, Reference

__all__ = [
    "CHECK_TILES",
    "EPOCHS",
    "FORMAT",
    "REGISTRY",
    "Reference",
    "check_references",
    "course_data",
    "data_fingerprint",
    "difference",
    "load",
    "load_reference",
    "metas",
    "recipe_fingerprint",
    "seed_table",
    "shipped",
    "train_reference",
]

FORMAT = "mdnet-reference-v1"
CHECK_TILES = 200
log = logging.getLogger(__name__)


# -- fingerprints -----------------------------------------------------------------------------------------------

def data_fingerprint(root: str | os.PathLike) -> str:
    """SHA-256 (16 hex digits) over annotation.json and every file under images/ and masks/ (names and bytes):
    what a reference was trained and tested on. A vocabulary cached in the folder does not count."""
    root, h = Path(root), hashlib.sha256()
    files = [root / "annotation.json"] + sorted(p for d in ("images", "masks") for p in (root / d).rglob("*")
                                                if p.is_file())
    for path in files:
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def recipe_fingerprint(ref: Reference) -> str:
    """SHA-256 (16 hex digits) of what decides the weights besides the data: the model, the recipe, the start."""
    spec = {"format": FORMAT, "model": ref.model.to_dict(), "recipe": ref.recipe.to_dict(),
            "start_from": ref.start_from, "float16": ref.float16}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


# -- files --------------------------------------------------------------------------------------------------------

def _paths(out: Path, name: str, seed: int) -> tuple[Path, Path, Path]:
    folder = out / name
    return folder / f"seed-{seed}.safetensors", folder / f"seed-{seed}.json", out / ".work" / name / f"seed-{seed}"


def shipped(out: str | os.PathLike) -> list[tuple[str, int]]:
    """(name, seed) of every reference JSON under ``out``."""
    out = Path(out)
    return sorted((p.parent.name, int(p.stem[len("seed-"):])) for p in out.glob("*/seed-*.json")
                  if p.parent.name != ".work")


def _stored(model: nn.Module, float16: bool) -> dict[str, torch.Tensor]:
    """The state_dict as it is stored (floating tensors in float16 when asked), contiguous, on the CPU."""
    return {k: (v.half() if float16 and v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in model.state_dict().items()}


def _load_stored(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in tensors.items()})


# -- training -----------------------------------------------------------------------------------------------------

def train_reference(name: str, seed: int, *, root: str | os.PathLike, out: str | os.PathLike,
                    device: torch.device | None = None, progress: bool = True, stop_after: int | None = None) -> dict:
    """Train reference ``name`` with ``seed`` on the data set ``root`` into ``out`` (see the module docstring),
    or return its JSON if it is there with today's fingerprints. ``stop_after`` ends the call after that many
    epochs (as a kill would; the next call resumes)."""
    if name not in REGISTRY:
        raise ConfigError("name", name, f"is not a reference model (choose from {', '.join(REGISTRY)}).")
    ref, root, out = REGISTRY[name], Path(root), Path(out)
    weights, meta_path, work = _paths(out, name, seed)
    prints = {"data": data_fingerprint(root), "recipe": recipe_fingerprint(ref)}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == prints and weights.exists():
            if ref.reports and "study" not in meta:  # shipped before the study's scores were stored
                model, vocab, meta = load_reference(name, seed, out=out, device=device)
                meta["study"] = _study(model, root, vocab)
                write_json(meta_path, meta)
                log.info("%s seed %d: up to date; its study scores added", name, seed)
                return meta
            log.info("%s seed %d: up to date, skipped", name, seed)
            return meta
    device = device or torch.device("cpu")
    recipe = ref.recipe.replace(seed=seed)
    vocab = training_vocab(root, recipe.min_count) if ref.reports else None
    cfg = ref.model.replace(vocab_size=len(vocab)) if vocab is not None else ref.model
    train_split = reference_split(root, "train", vocab, recipe.max_len)
    val = reference_split(root, "val", vocab, recipe.max_len)
    loss_fn = None
    if vocab is not None:
        cases = train_split["cases"]
    elif ref.model.head == "grades":  # six targets: the conclusion, then the grades; the loss sums their CEs
        cases = TensorCases(train_split["images"], torch.cat([train_split["labels"][:, None],
                                                              train_split["grades"]], dim=1))
        loss_fn = summed_cross_entropy
    else:
        cases = TensorCases(train_split["images"], train_split["labels"])
    if ref.start_from is not None:  # trained (or found) first: the global RNG below is this model's alone
        train_reference(ref.start_from, seed, root=root, out=out, device=device, progress=progress)

    def fresh() -> nn.Module:
        """The model at its start: drawn from the seed; a report generator's image model then replaced by the
        image reference of the same seed."""
        torch.manual_seed(seed)
        net = build_model(cfg).to(device)
        if ref.start_from is not None:
            _load_stored(net.image_model, safetensors.torch.load_file(str(_paths(out, ref.start_from, seed)[0])))
        return net

    model = fresh()
    key = "BLEU-4" if vocab is not None else "tasks" if ref.model.head == "grades" else "accuracy"
    state = {"history": [], "best": None, "best_epoch": None, "seconds": 0.0, "fingerprint": prints}
    at = Resume()
    if (work / "last.pt").exists():
        at, saved = load_training(work / "last.pt", model)
        if saved.get("fingerprint") == prints:
            state = {k: saved[k] for k in state}
            log.info("%s seed %d: resumed after epoch %d", name, seed, len(state["history"]))
        else:  # a state of another data set or recipe: start again
            at = Resume()
            shutil.rmtree(work)
            model = fresh()
    clock = [time.perf_counter()]

    def on_epoch(end: EpochEnd) -> None:
        score = reference_figures(model, val, vocab)
        record = {"epoch": len(state["history"]) + 1, "stage": end.stage.name,
                  **{k: v for k, v in end.record.items() if k.endswith("loss")},
                  **{f"val_{k}": v for k, v in score.items()}}
        state["history"].append(record)
        state["seconds"] += time.perf_counter() - clock[0]
        if state["best"] is None or score[key] > state["best"]:
            state["best"], state["best_epoch"] = score[key], record["epoch"]
            write_bytes(work / "best.safetensors", safetensors.torch.save(_stored(model, False)))
        save_training(work / "last.pt", model, end, dict(state))
        clock[0] = time.perf_counter()

    work.mkdir(parents=True, exist_ok=True)
    if at.stage < len(recipe.stages):
        train(model, cases, recipe, device=device, loss_fn=loss_fn, on_epoch=on_epoch, resume=at,
              stop_after=stop_after, progress=f"{name} seed {seed}" if progress else False)
    if len(state["history"]) < recipe.epochs:
        return {"name": name, "seed": seed, "stopped_after": len(state["history"])}
    best = safetensors.torch.load_file(str(work / "best.safetensors"))
    _load_stored(model, best)
    stored = _stored(model, ref.float16)
    _load_stored(model, stored)  # every figure below is computed from the weights as they are stored
    model.eval()
    test = reference_split(root, "test", vocab, recipe.max_len)
    meta = {"format": FORMAT, "name": name, "seed": seed, "model": cfg.to_dict(), "recipe": recipe.to_dict(),
            "start_from": ref.start_from, "fingerprint": prints, "vocab": vocab.itos if vocab is not None else None,
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "python": platform.python_version()},
            "device": str(device), "seconds": round(state["seconds"], 1), "history": state["history"],
            "best_epoch": state["best_epoch"], "val": reference_figures(model, val, vocab), "test": reference_figures(model, test, vocab),
            "check": reference_figures(model, test, vocab, CHECK_TILES)}
    if vocab is not None:
        meta["study"] = _study(model, root, vocab)
    weights.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(weights, safetensors.torch.save(stored, metadata={"format": FORMAT}))
    write_json(meta_path, meta)
    _remove_work(work)
    return meta


def _study(model: nn.Module, root: Path, vocab: Vocabulary) -> dict:
    """A report generator's "study" (``study_record``) on the whole test split, read as notebook 07 reads it."""
    return study_record(model.eval(), load_report_tiles(root, "test", vocab), vocab)


def _remove_work(work: Path) -> None:
    """The resume state of a finished reference, and the folders above it that it leaves empty."""
    shutil.rmtree(work, ignore_errors=True)
    for folder in (work.parent, work.parent.parent):  # .work/NAME, then .work
        try:
            folder.rmdir()
        except OSError:  # not empty: another reference's state is there
            break


# -- loading and checking -----------------------------------------------------------------------------------------

def load_reference(name: str, seed: int = 0, *, out: str | os.PathLike, device: torch.device | None = None):
    """(model in eval mode, vocabulary or None, the JSON) of a shipped reference; a one-sentence ``ValueError``
    naming the file when it is missing or not one."""
    weights, meta_path, _ = _paths(Path(out), name, seed)
    try:
        meta = json.loads(meta_path.read_text())
        cfg = ModelConfig.from_dict(meta["model"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{meta_path}: not a reference model's description (train it: python -m mdnet_utils "
                         f"reference {name}).") from None
    try:
        tensors = safetensors.torch.load_file(str(weights))
    except Exception as err:  # noqa: BLE001 - missing or corrupt: the sentence names the file
        raise ValueError(f"{weights}: not readable weights ({type(err).__name__}).") from None
    model = build_model(cfg)
    _load_stored(model, tensors)
    vocab = Vocabulary(meta["vocab"][4:]) if meta.get("vocab") else None
    return model.to(device or torch.device("cpu")).eval(), vocab, meta


def load(name: str, seed: int = 0, *, device: torch.device | None = None):
    """``load_reference`` from the course's ``checkpoints/``: the one call a notebook makes. With
    ``MDNET_RETRAIN=1`` the reference is trained from scratch instead, on the course's data, into
    ``runs/references/`` (and loaded from there once it is done: the shipped files are never touched)."""
    if config.retrain:
        out = config.runs_dir / "references"
        train_reference(name, seed, root=course_data(config), out=out)
        return load_reference(name, seed, out=out, device=device)
    return load_reference(name, seed, out=config.checkpoints_dir, device=device)


def course_data(settings: Config = config, *, progress: bool = False) -> Path:
    """The data set every reference is trained and checked on: the course's full-mode synthetic tiles (built, or
    found in the cache, whatever mode the caller runs in)."""
    full = Config(fast=False, root=settings.root, data_dir=settings.data_dir, seed=settings.seed,
                  image_size=settings.image_size)
    return make_synthetic_dataset(full.dataset_dir, n_images=full.n_images, image_size=full.image_size,
                                  seed=full.seed, progress=progress)


def metas(name: str, *, out: str | os.PathLike | None = None) -> dict[int, dict]:
    """The JSON of every shipped seed of reference ``name``, by seed (no weights are read); ``out``: default the
    course's checkpoints/. A one-sentence ``ValueError`` naming the folder when none is shipped."""
    out = Path(out) if out is not None else config.checkpoints_dir
    found = {}
    for n, seed in shipped(out):
        if n == name:
            path = _paths(out, name, seed)[1]
            try:
                found[seed] = json.loads(path.read_text())
            except (OSError, ValueError):
                raise ValueError(f"{path}: not a reference model's description.") from None
    if not found:
        raise ValueError(f"{out / name}: no seed of {name!r} is shipped (train it: python -m mdnet_utils "
                         f"reference {name}).")
    return found


def seed_table(name: str | dict[int, dict], keys: list[str] | None = None, *, split: str = "test",
               out: str | os.PathLike | None = None) -> pd.DataFrame:
    """A pandas DataFrame of a reference's stored figures on ``split`` ("val" or "test"): one row per shipped seed
    ("seed K"), then "mean" and "sd" (``evaluation.seeds.mean_and_sd``). ``name``: a reference's name, or the
    JSONs ``metas`` returned (read once by a caller that needs them for more); ``keys``: which figures (default:
    all); ``out``: as in ``metas``."""
    found = metas(name, out=out) if isinstance(name, str) else name
    table = pd.DataFrame({f"seed {s}": meta[split] for s, meta in sorted(found.items())}).T
    return mean_and_sd(table[keys] if keys else table)


def check_references(*, root: str | os.PathLike, out: str | os.PathLike) -> tuple[int, list[str]]:
    """Every shipped reference under ``out``: (how many were checked, one sentence per problem). A problem is a
    file that does not load, a fingerprint that differs from today's data or recipe (naming which), or a figure
    on the first ``CHECK_TILES`` test tiles that the stored weights no longer give."""
    root, out = Path(root), Path(out)
    problems, data = [], data_fingerprint(root)
    found = shipped(out)
    for name, seed in found:
        meta_path = _paths(out, name, seed)[1]
        if name not in REGISTRY:
            problems.append(f"{meta_path}: {name!r} is not in the registry any more.")
            continue
        try:
            model, vocab, meta = load_reference(name, seed, out=out)
        except ValueError as err:
            problems.append(str(err))
            continue
        prints = meta.get("fingerprint", {})
        if prints.get("data") != data:
            problems.append(f"{meta_path}: stale: the data changed ({prints.get('data')} then, {data} now).")
            continue
        if prints.get("recipe") != recipe_fingerprint(REGISTRY[name]):
            problems.append(f"{meta_path}: stale: the model or recipe in the registry changed.")
            continue
        if REGISTRY[name].reports and not isinstance(meta.get("study"), dict):
            problems.append(f"{meta_path}: no stored study scores (add them: python -m mdnet_utils reference {name}).")
            continue
        recipe = TrainConfig.from_dict(meta["recipe"])
        figures = reference_figures(model, reference_split(root, "test", vocab, recipe.max_len), vocab, CHECK_TILES)
        if not figures_agree(figures, meta.get("check"), CHECK_TILES):
            problems.append(f"{meta_path}: the stored weights give {figures} on the first {CHECK_TILES} test "
                            f"tiles, not {meta.get('check')}.")
    return len(found), problems

