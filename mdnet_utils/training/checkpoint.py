"""Checkpoints that are safe to load, and the one resume API.

* ``save_checkpoint`` / ``load_checkpoint``: a model's state_dict plus a JSON-able ``meta`` dict (with the
  model's ``ModelConfig`` when it has one, so the file says what network it belongs to), written atomically and
  read back with ``torch.load(..., weights_only=True)``: never a pickled module, so loading cannot run code.
* ``save_training`` / ``load_training``: all a run needs to continue exactly after an interruption: the model,
  the stage's optimizer, schedule and generator, the global RNG (dropout draws from it; CUDA's too), where the
  run stands (an ``engine.Resume``) and its history.
* ``cached_fit``: train once per key, load afterwards (the notebooks keep each stage they train this way, so a
  later notebook reuses what an earlier one trained).
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mdnet_utils.io import write_bytes
from mdnet_utils.training.engine import EpochEnd, Resume

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "save_training", "load_training",
           "cached_fit", "fingerprint", "weights_fingerprint", "rng_state", "set_rng_state"]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _model_meta(model: nn.Module) -> dict:
    cfg = getattr(model, "config", None)
    return {"model_config": cfg.to_dict()} if cfg is not None else {}


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``{"state_dict", "meta"}`` atomically: a crash never leaves half a checkpoint at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": _state(model), "meta": {**_model_meta(model), **(meta or {})}}
    return _write(path, payload)


def _write(path: Path, payload: dict) -> Path:
    """Serialised in memory, then written atomically: a full disk is an ``OSError`` naming ``path`` (torch.save
    into the file would raise a RuntimeError naming none), and the checkpoint there before stays intact."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """The contents of a checkpoint (tensors and plain containers only); a one-sentence ``ValueError`` naming
    the file if it is not one of ours or is corrupt (``FileNotFoundError`` if it is missing)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever broke, the sentence names the file
        raise ValueError(f"{path}: not a checkpoint of this package, or corrupt ({type(e).__name__}).") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a checkpoint of this package (no state_dict).")
    return ckpt


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict:
    """Load a checkpoint written by ``save_checkpoint`` (or ``save_training``) into ``model``; returns its
    ``meta``. A file that does not fit the model gets a one-sentence ``ValueError`` naming it."""
    path = Path(path)
    return _load_into(model, read_checkpoint(path, next(model.parameters()).device), path)


def _load_into(model: nn.Module, ckpt: dict, path: Path) -> dict:
    """The weights of a checkpoint already read into ``model``; its ``meta``."""
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a checkpoint of this model ({type(e).__name__}).") from None
    return ckpt.get("meta", {})


def rng_state() -> dict:
    """The global RNG states (CPU, and every CUDA device's when there are any)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_training(path: str | os.PathLike, model: nn.Module, end: EpochEnd, meta: dict) -> Path:
    """After epoch ``end.epoch`` of stage ``end.stage_index``: everything ``load_training`` needs. A stage's last
    epoch is saved as the start of the next stage (its optimizer is not needed again)."""
    at = Resume(end.stage_index + 1, 0) if end.last_of_stage else Resume(end.stage_index, end.epoch)
    payload = {"state_dict": _state(model), "rng": rng_state(),
               "resume": {"stage": at.stage, "epoch": at.epoch},
               "meta": {**_model_meta(model), **meta}}
    if at.epoch:
        payload.update(optimizer=end.optimizer.state_dict(), scheduler=end.scheduler.state_dict(),
                       generator=end.generator.get_state())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write(path, payload)


def load_training(path: str | os.PathLike, model: nn.Module) -> tuple[Resume, dict]:
    """Restore a ``save_training`` checkpoint: the model's weights and the global RNG; returns where to resume
    (for ``engine.train(resume=...)``) and the saved ``meta``. One-sentence ``ValueError``s for a file that is
    not such a checkpoint, or not of this model."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    if "resume" not in ckpt or "rng" not in ckpt:
        raise ValueError(f"{path}: a model checkpoint, not a training state to resume from.")
    at = _check_resume(path, ckpt)  # everything read is checked before the model or the RNG is touched
    meta = _load_into(model, ckpt, path)  # the file is read once
    set_rng_state(ckpt["rng"])
    return at, meta


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_resume(path: Path, ckpt: dict) -> Resume:
    """The ``Resume`` a training state holds, each part checked (a hand-edited or foreign file is refused in one
    sentence naming it, never half-loaded)."""
    at, rng, meta = ckpt.get("resume"), ckpt.get("rng"), ckpt.get("meta")
    if not isinstance(at, dict) or not _whole(at.get("stage")) or not _whole(at.get("epoch")):
        raise ValueError(f"{path}: its 'resume' entry is not {{'stage': n, 'epoch': n}} with whole numbers "
                         f"(found {at!r}).")
    if not isinstance(rng, dict) or not isinstance(rng.get("cpu"), torch.Tensor) or rng["cpu"].dtype != torch.uint8:
        raise ValueError(f"{path}: its 'rng' entry is not the random number generators' state.")
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its 'meta' entry is not a mapping.")
    parts = {k: ckpt.get(k) for k in ("optimizer", "scheduler", "generator")}
    if at["epoch"]:  # in the middle of a stage: the optimizer, schedule and generator continue from here
        for key, value in parts.items():
            kind = torch.Tensor if key == "generator" else dict
            if not isinstance(value, kind):
                raise ValueError(f"{path}: stopped in the middle of a stage, but its {key!r} state is missing or "
                                 "malformed, so the run cannot continue exactly.")
    return Resume(at["stage"], at["epoch"], parts["optimizer"], parts["scheduler"], parts["generator"])


def fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of tensors' bytes: which data (or weights) a checkpoint was trained on (from)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def weights_fingerprint(model: nn.Module) -> str:
    """Which weights a stage starts from: a later stage retrains when an earlier one changed."""
    return fingerprint(*(v.float() for v in model.state_dict().values()))


def cached_fit(path: str | os.PathLike, model: nn.Module, key: dict, run: Callable[[], list[dict]]) -> list[dict]:
    """``run()`` (which trains ``model`` in place and returns its history) once per ``key``; afterwards load.

    The checkpoint at ``path`` keeps ``key`` and the history in its ``meta``; a checkpoint with another key,
    or one that cannot be read, means running again and replacing it. ``key`` must be JSON-able.
    """
    path = Path(path)
    try:  # read the meta first: a mismatched checkpoint must not touch the model's weights
        meta = read_checkpoint(path)["meta"]
    except Exception:  # noqa: BLE001 - missing, unreadable or not ours: train (again) and replace it
        meta = {}
    if meta.get("key") == key:
        load_checkpoint(model, path)
        return meta["history"]
    history = run()
    save_checkpoint(model, path, {"key": key, "history": history})
    return history
