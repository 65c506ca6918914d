"""A training recipe as data: ``Stage`` (one stage of the schedule) and ``TrainConfig`` (the stages in order,
the seed, and how reports become tokens).

JSON-serialisable (``to_dict`` / ``from_dict``), saved in a run folder's ``config.json`` and in every
checkpoint, read back from a ``--config`` file (JSON or YAML). Every value is checked when the object is made,
and a bad one raises a ``ConfigError`` naming it as the configuration does (``stages[1].lr=-1 ...``).

The stages (MDNet's schedule, after the authors' later code; see equations.md):

* ``"diagnosis"``   the image model on the class loss alone (notebooks 01-05, and MDNet's pre-training);
* ``"decoder"``     the language model with the image model frozen (eval mode, no gradient);
* ``"end_to_end"``  everything, on L_words + class_weight * L_class.

Each stage has its own AdamW with a one-cycle schedule over its epochs (warm-up ``warmup`` of the steps),
optional gradient clipping (``clip``, a max norm), the images augmented by flips and right-angle turns or not
(``augment``), and ``limit``: train on the first ``limit`` training cases only (the notebooks' recipes use it
to stay within minutes; None: all of them).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from mdnet_utils.errors import ConfigError
from mdnet_utils.models.config import check_at_least, check_choice, check_whole, from_dict

__all__ = ["STAGES", "Stage", "TrainConfig", "read_config_file", "MAX_EPOCHS", "MAX_BATCH", "MAX_SEED", "MAX_LEN"]

STAGES = ("diagnosis", "decoder", "end_to_end")

#: Upper bounds, so that a typo is refused in one line instead of exhausting memory: a stage's (and ``--epochs``')
#: epochs (the engine keys each epoch's data order by stage * 1000 + epoch, so a stage has fewer than 1000), a batch,
#: a seed (numpy's and every generator's range), a report's tokens.
MAX_EPOCHS, MAX_BATCH, MAX_SEED, MAX_LEN = 999, 4096, 2**32 - 1, 1000


@dataclass(frozen=True)
class Stage:
    """One stage of a recipe (see the module docstring)."""
    name: str
    epochs: int
    lr: float
    batch_size: int = 32
    weight_decay: float = 1e-4
    clip: float | None = None
    augment: bool = True
    warmup: float = 0.25
    class_weight: float = 0.1
    attention_weight: float = 0.0
    reports_per_tile: int | None = None
    limit: int | None = None

    def __post_init__(self):
        check_choice("name", self.name, STAGES)
        for key, high in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH)):
            check_whole(key, getattr(self, key), 1, high)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < float("inf"):
            raise ConfigError("lr", self.lr, "is out of range: a learning rate must be above 0.")
        for key in ("weight_decay", "class_weight", "attention_weight"):
            check_at_least(key, getattr(self, key), 0)
        if self.clip is not None:
            if isinstance(self.clip, bool) or not isinstance(self.clip, (int, float)) or self.clip <= 0:
                raise ConfigError("clip", self.clip, "is out of range: a gradient norm limit must be above 0 "
                                                     "(null: no clipping).")
        if not 0 < self.warmup < 1:
            raise ConfigError("warmup", self.warmup, "is out of range: the warm-up share must be in (0, 1).")
        for key in ("reports_per_tile", "limit"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(key, value, "is out of range: a whole number of at least 1, or null for all.")

    @property
    def trains(self) -> str:
        """Which part of a report generator learns: "image_model", "decoder" or "all"."""
        return {"diagnosis": "image_model", "decoder": "decoder", "end_to_end": "all"}[self.name]

    def replace(self, **changes) -> "Stage":
        return replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """The stages in order; ``seed`` (the model's initialisation and every stage's data order); ``min_count``
    (the vocabulary keeps words seen that often in the training reports) and ``max_len`` (reports are cut to
    that many tokens; None: never); ``bf16`` (bfloat16 autocast in the forward pass)."""
    stages: tuple[Stage, ...]
    seed: int = 0
    min_count: int = 1
    max_len: int | None = None
    bf16: bool = False

    def __post_init__(self):
        if not self.stages:
            raise ConfigError("stages", list(self.stages), "is empty: a recipe needs at least one stage.")
        object.__setattr__(self, "stages", tuple(self.stages))
        check_whole("seed", self.seed, 0, MAX_SEED)
        check_whole("min_count", self.min_count, 1)
        if self.max_len is not None and (isinstance(self.max_len, bool) or not isinstance(self.max_len, int)
                                         or not 3 <= self.max_len <= MAX_LEN):
            raise ConfigError("max_len", self.max_len, f"is out of range: from 3 (<bos>, a word, <eos>) to {MAX_LEN}, "
                                                       "or null.")
        names = [s.name for s in self.stages]
        if names != sorted(names, key=STAGES.index) or len(set(names)) != len(names):
            raise ConfigError("stages", names, f"are not in the order {', '.join(STAGES)}, each at most once.")

    @property
    def epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def replace(self, **changes) -> "TrainConfig":
        return replace(self, **changes)

    def with_stages(self, **changes) -> "TrainConfig":
        """Every stage with ``changes`` (e.g. ``lr=1e-3``: one learning rate for all of them)."""
        return replace(self, stages=tuple(s.replace(**changes) for s in self.stages))

    def with_total_epochs(self, total: int) -> "TrainConfig":
        """The stages' epochs rescaled to sum to ``total``, in proportion to the recipe's (largest remainders),
        every stage keeping at least one; stages are dropped from the front when ``total`` is smaller than
        their number (the last stages are the ones that write reports)."""
        check_whole("epochs", total, 1, MAX_EPOCHS)
        stages = self.stages[-total:] if total < len(self.stages) else self.stages
        spare = total - len(stages)
        weights = [s.epochs for s in stages]
        shares = [spare * w / sum(weights) for w in weights]
        extra = [int(x) for x in shares]
        # largest remainders first; on a tie the later stage (the ones that write reports come last)
        for i in sorted(range(len(stages)), key=lambda i: (shares[i] - extra[i], i), reverse=True)[:spare - sum(extra)]:
            extra[i] += 1
        return replace(self, stages=tuple(s.replace(epochs=1 + e) for s, e in zip(stages, extra)))

    def without(self, name: str) -> "TrainConfig":
        """The recipe without the stage ``name`` (a data set without labels has no diagnosis to learn)."""
        return replace(self, stages=tuple(s for s in self.stages if s.name != name))

    def to_dict(self) -> dict:
        return {**asdict(self), "stages": [asdict(s) for s in self.stages]}

    @classmethod
    def from_dict(cls, data: dict, base: "TrainConfig | None" = None) -> "TrainConfig":
        """A config from a dict; with ``base``, a partial dict changes only what it names, and each entry of
        ``stages`` only what it names of ``base``'s stage of the same name."""
        if not isinstance(data, dict):
            raise ConfigError("training", data, "is not a mapping of settings.")
        data = dict(data)
        stages = data.pop("stages", None)
        defaults = {} if base is None else {k: v for k, v in asdict(base).items() if k != "stages"}
        if stages is None:
            if base is None:
                raise ConfigError("stages", None, "is missing: a recipe needs its stages.")
            built = base.stages
        else:
            if not isinstance(stages, list):
                raise ConfigError("stages", stages, "is not a list of stages.")
            built = []
            for i, entry in enumerate(stages):
                where = f"stages[{i}]."
                if not isinstance(entry, dict) or "name" not in entry:
                    raise ConfigError(f"stages[{i}]", entry, "is not a mapping with a 'name'.")
                old = base.stage(entry["name"]) if base is not None else None
                try:
                    built.append(from_dict(Stage, {**(asdict(old) if old else {}), **entry}, where))
                except ConfigError as err:
                    raise ConfigError(err.key if err.key.startswith(where) else where + err.key, err.value,
                                      err.reason) from None
                except TypeError as err:  # a required setting missing
                    raise ConfigError(f"stages[{i}]", entry, f"is incomplete ({err}).") from None
        return from_dict(cls, {**defaults, **data, "stages": tuple(built)})


def read_config_file(path: str | Path) -> dict:
    """A ``--config`` file (JSON, or YAML by its .yaml/.yml suffix) as a dict; a ``ConfigError`` naming the
    file if it cannot be read or is not a mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError("config", str(path), f"cannot be read ({err.strerror or type(err).__name__}).") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError("config", str(path), f"is not valid YAML ({type(err).__name__}).") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError("config", str(path), f"is not valid JSON ({err.msg} at line {err.lineno}).") from None
    if not isinstance(data, dict):
        raise ConfigError("config", str(path), "does not hold a mapping (expected keys such as 'model', 'training').")
    return data
