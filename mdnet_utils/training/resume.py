"""Continuing a run: a run folder's files read back and checked before anything is written.

``read_config`` and ``saved_configs`` read ``RUN/config.json`` (the model, the recipe, whether the data was
labelled); ``same_settings`` refuses a resumed run's option that contradicts them; ``check_state`` checks the
history and position of ``RUN/last.pt`` against the recipe; ``foreign_files`` tells a run folder's own files
(``RUN_FILES``, the lock, ``atomic_write``'s leftovers) from anything else. Each refusal is one sentence naming
the file or the option: a hand-edited or foreign file is never half-used.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from mdnet_utils.errors import ConfigError
from mdnet_utils.models.config import ModelConfig
from mdnet_utils.training.config import TrainConfig
from mdnet_utils.training.engine import Resume
from mdnet_utils.training.lock import LOCK

__all__ = ["FORMAT", "RUN_FILES", "read_config", "saved_configs", "same_settings", "check_state", "foreign_files"]

FORMAT = "mdnet-run-v2"


def same_settings(saved: dict, model: str | None, config: dict | None, overrides: dict) -> None:
    """A resumed run keeps its settings: what is not given comes from its config.json, and what is given must be
    what started the run (repeating its command is fine); a change is refused, naming it."""
    asked = saved.get("requested", {})
    why = "differs from the run being resumed ({}): it keeps the settings in its config.json."
    if model is not None and model != (asked.get("model") or "mdnet"):
        raise ConfigError("model", model, why.format(asked.get("model") or "mdnet"))
    if config is not None and config != asked.get("config"):
        raise ConfigError("config", "the file", why.format("started with another configuration"))
    stages = saved["training"]["stages"]
    effective = {"epochs": sum(s["epochs"] for s in stages), "image_size": saved["model"]["image_size"],
                 **{k: saved["training"][k] for k in ("seed", "min_count", "max_len", "bf16")}}
    for key in ("batch_size", "lr", "weight_decay"):
        values = sorted({s[key] for s in stages})
        effective[key] = values[0] if len(values) == 1 else values
    for key, value in overrides.items():
        if value is None:
            continue
        theirs = asked.get("overrides", {}).get(key, effective[key])
        if value != theirs:
            raise ConfigError(key, value, why.format(theirs))


def read_config(run: Path) -> dict:
    try:
        cfg = json.loads((run / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{run}: not a training run (no readable config.json).") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ValueError(f"{run / 'config.json'}: not a config written by mdnet train ({FORMAT}).")
    return cfg


def saved_configs(run: Path, cfg: dict) -> tuple[ModelConfig, TrainConfig, bool]:
    """The model, the recipe and whether the data was labelled, from a run's config.json, each checked: a
    hand-edited file is refused in one sentence naming it."""
    try:
        if not isinstance(cfg.get("data"), dict) or not isinstance(cfg["data"].get("labelled"), bool):
            raise ConfigError("data", cfg.get("data"), "is not {'path': ..., 'labelled': true|false}.")
        return ModelConfig.from_dict(cfg["model"]), TrainConfig.from_dict(cfg["training"]), cfg["data"]["labelled"]
    except KeyError as err:
        raise ValueError(f"{run / 'config.json'}: has no {err.args[0]!r} section (not a config written by mdnet "
                         f"train, {FORMAT}).") from None
    except ConfigError as err:
        raise ValueError(f"{run / 'config.json'}: {err}") from None
    except TypeError:
        raise ValueError(f"{run / 'config.json'}: not a config written by mdnet train ({FORMAT}).") from None


#: What ``train`` writes in a run folder (and no other file): its own leftovers may be removed, nothing else.
RUN_FILES = ("config.json", "vocab.json", "log.txt", "last.pt", "best.pt", "metrics.jsonl")


def foreign_files(out: Path) -> list[str]:
    """What ``out`` holds besides a lock and ``atomic_write``'s temporary files (which a killed run leaves)."""
    if not out.exists():
        return []
    if not out.is_dir():
        return [out.name]
    leftovers = re.compile("|".join(rf"\.{re.escape(n)}\.[a-z0-9_]{{8}}\.tmp" for n in RUN_FILES))
    return sorted(p.name for p in out.iterdir() if p.name != LOCK and not leftovers.fullmatch(p.name))


def check_state(path: Path, at: Resume, meta: dict, training: TrainConfig) -> dict:
    """The history and best score a training state holds, checked against the recipe it belongs to."""
    history, best = meta.get("history"), meta.get("best")
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise ValueError(f"{path}: its history is not a list of epoch records (found {type(history).__name__}).")
    if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))):
        raise ValueError(f"{path}: its best score {best!r} is not a number.")
    if at.stage > len(training.stages) or (at.stage < len(training.stages)
                                           and at.epoch >= training.stages[at.stage].epochs):
        raise ValueError(f"{path}: stopped at stage {at.stage}, epoch {at.epoch}, which the run's recipe does not "
                         "have.")
    done = sum(s.epochs for s in training.stages[:at.stage]) + at.epoch
    if len(history) != done:
        raise ValueError(f"{path}: holds {len(history)} epoch records for {done} epochs done.")
    return {"history": history, "best": best}
