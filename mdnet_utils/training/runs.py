"""A training run on disk: what ``python -m mdnet_utils train`` writes, and what ``evaluate`` reads.

    RUN/config.json    {"format", "model": ModelConfig, "training": TrainConfig, "data": {...}, "requested": what
                       the command asked for}: the model is rebuilt from it alone, never from today's defaults
    RUN/vocab.json     the vocabulary, from the training split's reports (words seen ``min_count`` times)
    RUN/last.pt        the training state after the last epoch (``checkpoint.save_training``): weights, the
                       stage's optimizer, schedule and generator, the global RNG, the history
    RUN/best.pt        the model with the best validation score so far (BLEU-4 of free-running reports); both
                       checkpoints carry the ModelConfig and the TrainConfig in their meta
    RUN/metrics.jsonl  one JSON line per epoch: "epoch" (of the run), "stage", "stage_epoch", the losses, the
                       validation scores, "seconds"
    RUN/log.txt        what the run decided (no labels: class loss off, ...)

The folder and its first three files appear when training starts, after everything given and read has been
checked; a bad input found in the first epoch (an unreadable image) leaves nothing behind, one found later leaves
a run that resumes from its last epoch. While a process writes the folder it holds ``RUN/.lock`` (its PID and
host; ``lock.RunLock``): a second writer is refused, a lock left by a dead process taken over.

The recipe is the course's (``recipes.course_recipe("mdnet")``: the stages of notebooks 06-08) without its
notebook-sized ``limit``s, changed by a config file and by keyword overrides (``resolve_configs``). Training
streams the cases from disk (``data.loading.FileCases`` through a ``DataLoader``), so memory does not grow
with the data set; the validation split is held in memory (it is scored every epoch).

Every file is written atomically; checkpoints are state_dicts plus JSON-able meta, loaded with
``weights_only=True``. Bad input is refused before anything is written (``ConfigError`` and ``DatasetError``,
one sentence naming the value or the file). A run interrupted after any epoch and resumed ends with the
weights of an uninterrupted one. Under torchrun only the main process writes and validates.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import torch

from mdnet_utils.data.dataset import ReportDataset, read_annotation, same_views, training_vocab
from mdnet_utils.data.grades import CLASSES
from mdnet_utils.data.loading import FileCases, ReportTiles, load_report_tiles
from mdnet_utils.data.vocab import SPECIALS, Vocabulary
from mdnet_utils.errors import ConfigError, DatasetError, Interrupted
from mdnet_utils.evaluation.metrics import caption_scores, consistency, leave_one_out_scores, report_agreement
from mdnet_utils.evaluation.reports import encode_tiles, evaluate_reports, generate_reports
from mdnet_utils.io import remove_leftovers, write_json, write_text
from mdnet_utils.models.config import MODEL_PRESETS, ModelConfig, build_model
from mdnet_utils.training.checkpoint import load_checkpoint, load_training, save_checkpoint, save_training
from mdnet_utils.training.config import TrainConfig
from mdnet_utils.training.distributed import Distributed
from mdnet_utils.training.engine import EpochEnd, Resume, ResumeMismatch, one_cycle_fits, train
from mdnet_utils.training.lock import RunLock
from mdnet_utils.training.recipes import course_recipe
from mdnet_utils.training.resume import (FORMAT, RUN_FILES, check_state, foreign_files, read_config, same_settings,
                                         saved_configs)

__all__ = ["FORMAT", "default_configs", "resolve_configs", "train_run", "load_run", "evaluate_run"]

log = logging.getLogger(__name__)

#: The most worker processes a run reads its images with.
MAX_WORKERS = 64
#: Keyword overrides of ``resolve_configs``: which configuration each one sets.
OVERRIDES = ("epochs", "batch_size", "lr", "weight_decay", "seed", "image_size", "min_count", "max_len", "bf16")


def default_configs(model: str = "mdnet") -> tuple[ModelConfig, TrainConfig]:
    """The CLI's starting point: the preset ``model`` and the course's MDNet recipe for all of the data."""
    if model not in MODEL_PRESETS:
        raise ConfigError("model", model, f"is not a model of the course (choose one of {', '.join(MODEL_PRESETS)}).")
    recipe = course_recipe("mdnet")
    return (MODEL_PRESETS[model].replace(num_classes=len(CLASSES)),
            recipe.replace(stages=tuple(s.replace(limit=None) for s in recipe.stages)))


def resolve_configs(model: str = "mdnet", file: dict | None = None, *, labelled: bool = True,
                    **overrides) -> tuple[ModelConfig, TrainConfig]:
    """The configurations of a run: ``default_configs(model)``, then what a config file's dict says ({"model":
    {...}, "training": {...}}, each partial; a run's config.json is one), then what the data allows (no labels:
    no diagnosis stage, and no CAM to steer the attention), then the keyword overrides (None: not given):
    ``epochs`` (the total of the stages trained, shared out over them as the recipe shares them),
    ``batch_size``, ``lr``, ``weight_decay`` (every stage), ``seed``, ``image_size``, ``min_count``, ``max_len``,
    ``bf16``."""
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(f"resolve_configs() got an unexpected keyword argument {unknown[0]!r}")
    model_cfg, training = default_configs(model)
    if file:
        extra = sorted(set(file) - {"model", "training", "format", "data", "requested"})
        if extra:
            raise ConfigError(extra[0], file[extra[0]], "is not a section of a run configuration (use 'model' and "
                                                        "'training').")
        if "model" in file:
            if not isinstance(file["model"], dict):
                raise ConfigError("model", file["model"], "is not a mapping of model settings.")
            given = {k: v for k, v in file["model"].items() if k != "vocab_size"}  # the data decides it
            model_cfg = ModelConfig.from_dict({**model_cfg.to_dict(), **given})
        if "training" in file:
            training = TrainConfig.from_dict(file["training"], base=training)
    if not labelled:
        if [s.name for s in training.stages] == ["diagnosis"]:
            raise ConfigError("stages", ["diagnosis"], "hold only the diagnosis stage, and the data has no labels.")
        model_cfg, training = model_cfg.replace(conditioned=False), training.without("diagnosis")
    o = {k: v for k, v in overrides.items() if v is not None}
    if "image_size" in o:
        model_cfg = model_cfg.replace(image_size=o["image_size"])
    if "epochs" in o:
        training = training.with_total_epochs(o["epochs"])
    for key in ("batch_size", "lr", "weight_decay"):
        if key in o:
            training = training.with_stages(**{key: o[key]})
    training = training.replace(**{k: o[k] for k in ("seed", "min_count", "max_len", "bf16") if k in o})
    return model_cfg, training


def _check_data(data: Path) -> dict:
    if not data.is_dir():
        raise DatasetError(f"{data}: no such data folder.")
    splits = read_annotation(data)
    for split in ("train", "val"):
        if not splits.get(split):
            raise DatasetError(f"{data / 'annotation.json'}: the split {split!r} is missing or empty (training "
                               "needs 'train' and 'val').")
    return splits


def train_run(data: str | os.PathLike, out: str | os.PathLike, *, model: str | None = None,
              config: dict | None = None,
              resume: bool = False, device: torch.device | None = None, num_workers: int = 0,
              stop_after: int | None = None, progress: bool = True, dist: Distributed | None = None,
              **overrides) -> list[dict]:
    """Train a report generator on ``data`` (the annotation.json layout) into the run folder ``out``.

    ``model`` (None: "mdnet"), ``config`` (a config file's dict) and the keyword ``overrides`` as in
    ``resolve_configs``.
    ``resume`` continues the run in ``out`` with the settings saved there (the same settings may be given again,
    as when the command that started the run is repeated; other ones are refused); a run stopped before its
    first epoch ended (a config.json, no last.pt) starts again from epoch 0.
    ``num_workers`` processes read the training cases. ``stop_after`` ends the call after that many epochs (as
    an interruption would). Returns the whole history (one record per epoch).

    Everything given and everything read is checked before anything is written; the run folder is locked while
    this process writes it (``lock.RunLock``), and temporary files a killed run left there are removed.
    """
    data, out = Path(data), Path(out)
    dist = dist or Distributed.from_env()
    resolve_configs(model or "mdnet", config, **overrides)  # every value checked before anything else
    splits = _check_data(data)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or not 0 <= num_workers <= MAX_WORKERS:
        raise ConfigError("num_workers", num_workers, f"is out of range: a whole number from 0 to {MAX_WORKERS}.")
    requested = {"model": model, "config": config, "overrides": {k: v for k, v in overrides.items() if v is not None}}
    state = {"history": [], "best": None}
    at = Resume()
    if resume:
        if not (out / "config.json").exists():
            raise ConfigError("resume", True, f"finds nothing to resume in {out} (no config.json): start the run "
                                              "without `resume`.")
        saved = read_config(out)
        model_cfg, training, labelled = saved_configs(out, saved)
        requested = saved.get("requested", requested)
        same_settings(saved, model, config, overrides)
        vocab = Vocabulary.load(out / "vocab.json")
        if len(vocab) != model_cfg.vocab_size:
            raise ValueError(f"{out / 'vocab.json'}: holds {len(vocab)} tokens, but the model of {out / 'config.json'} "
                             f"has {model_cfg.vocab_size}.")
    else:
        if not dist.active and foreign_files(out):  # early, before the data is read (under torchrun: after the lock)
            raise ConfigError("out", str(out), "already holds files: continue that run with `resume`, or choose "
                                               "another `out`.")
        _, training = resolve_configs(model or "mdnet", config, **overrides)
        vocab = training_vocab(data, training.min_count)  # reads (and checks) every training entry
        if len(vocab) == len(SPECIALS):
            raise ConfigError("min_count", training.min_count, "leaves no word in the vocabulary (no word of the "
                                                               "training reports is seen that often).")
        labelled = all(e.get("label") is not None for e in splits["train"])
        model_cfg, training = resolve_configs(model or "mdnet", config, labelled=labelled, **overrides)
        model_cfg = model_cfg.replace(vocab_size=len(vocab))
    train_ds = ReportDataset(data, "train", vocab=vocab)
    val_ds = ReportDataset(data, "val", vocab=vocab)
    same_views(train_ds, val_ds)  # validation reads cases as training does
    source = FileCases(train_ds, vocab, image_size=model_cfg.image_size, max_len=training.max_len)
    val = load_report_tiles(data, "val", vocab, image_size=model_cfg.image_size, max_len=training.max_len) \
        if dist.is_main else None
    device = device or dist.device()

    torch.manual_seed(training.seed)
    net = build_model(model_cfg).to(device)
    if resume and (out / "last.pt").exists():
        try:
            at, meta = load_training(out / "last.pt", net)
        except FileNotFoundError:
            raise ConfigError("resume", True, f"finds nothing to resume in {out} (no last.pt).") from None
        except ValueError as err:
            raise ValueError(str(err) if str(err).startswith(str(out / "last.pt")) else
                             f"{out / 'last.pt'}: not a checkpoint of this run, or corrupt.") from None
        state = check_state(out / "last.pt", at, meta, training)
    elif resume:
        log.info("%s: no epoch was saved before the run stopped: it starts again from epoch 1.", out)
    if at.stage >= len(training.stages):
        if dist.is_main:
            RunLock(out).acquire().release()  # even a finished run is refused while another process writes it
        log.info("%s: the run is complete (%d epochs); nothing to resume.", out, len(state["history"]))
        return state["history"]
    notes = []
    if not resume:
        schedule = ", ".join(f"{s.name} {s.epochs}" for s in training.stages)
        notes = [f"model {model_cfg.name}, {len(source)} training and {len(val) if val else '?'} validation cases, "
                 f"{len(vocab)} words (min count {training.min_count}), stages (epochs): {schedule}"]
        if not labelled:
            notes.append("no labels in the training split: the class loss is off, and the attention's class "
                         "activation map is replaced by zeros (an unconditioned attention).")
        for stage in training.stages:
            steps = -(-(len(source.subset(stage.limit)) // dist.world) // (stage.batch_size // dist.world or 1))
            if not one_cycle_fits(steps * stage.epochs, stage.warmup):
                notes.append(f"stage {stage.name}: {steps * stage.epochs} optimizer steps are too few for a "
                             f"one-cycle schedule; it keeps the learning rate {stage.lr:g} throughout.")
        for note in notes:
            log.info(note)

    lock = RunLock(out) if dist.is_main else None
    created, wrote = not out.exists(), False  # wrote: this call wrote the run's first files (and may remove them)
    try:
        if lock is not None:
            lock.acquire()  # from here on this process writes the folder, and only this one
    except BaseException:
        dist.agree(False)  # the other processes stop too, instead of waiting for this one
        raise
    try:
        if lock is not None:
            try:
                if not resume and foreign_files(out):  # under torchrun the first check; else a writer got in between
                    raise ConfigError("out", str(out), "already holds files: continue that run with `resume`, or "
                                                       "choose another `out`.")
                removed = remove_leftovers(out, RUN_FILES)
                if removed:
                    log.info("%s: removed %d temporary file%s left by an interrupted run.", out, len(removed),
                             "" if len(removed) == 1 else "s")
                if not resume:
                    write_json(out / "config.json", {"format": FORMAT, "model": model_cfg.to_dict(),
                                                     "training": training.to_dict(),
                                                     "data": {"path": str(data), "labelled": labelled},
                                                     "requested": requested})
                    wrote = True
                    vocab.save(out / "vocab.json")
                    write_text(out / "log.txt", "\n".join(notes) + "\n")
            except BaseException:
                dist.agree(False)
                raise
        if not dist.agree(True):
            raise ValueError(f"{out}: the main process of this run refused it (its message says why).")
        try:
            _train(net, source, val, vocab, training, model_cfg, out, state, at, device=device, dist=dist,
                   num_workers=num_workers, stop_after=stop_after, progress=progress)
        except ResumeMismatch as err:
            raise ValueError(f"{out / 'last.pt'}: {err}") from None
    except KeyboardInterrupt:
        total, done = training.epochs, len(state["history"])
        if done:
            raise Interrupted(f"{out}: interrupted in epoch {done + 1} of {total}; epoch {done} is saved: "
                              "continue with `resume`.") from None
        raise Interrupted(f"{out}: interrupted in epoch 1 of {total}, before an epoch was saved: `resume` starts "
                          "it again.") from None
    except Exception:
        if wrote and not state["history"]:  # bad input found in the first epoch: leave nothing behind
            for name in ("config.json", "vocab.json", "log.txt"):
                (out / name).unlink(missing_ok=True)
            lock.release()
            if created:
                try:
                    out.rmdir()
                except OSError:
                    pass
        raise
    finally:
        if lock is not None:
            lock.release()
    dist.barrier()
    return state["history"]


def _train(net, source, val, vocab, training, model_cfg, out, state, at, *, device, dist, num_workers, stop_after,
           progress) -> None:
    """The engine's loop, with each epoch's validation and files (``best.pt``, ``last.pt``, ``metrics.jsonl``)."""
    clock = [time.perf_counter()]

    def on_epoch(end: EpochEnd) -> None:
        record = {"epoch": len(state["history"]) + 1, "stage": end.stage.name, "stage_epoch": end.epoch,
                  **{k: v for k, v in end.record.items() if k not in ("stage", "epoch")}}
        if dist.is_main:
            record.update(_validate(net, val, vocab, end.stage.name, training.max_len or 60))
        record["seconds"] = time.perf_counter() - clock[0]
        if dist.is_main:
            score = record.get("val_BLEU-4")
            best = state["best"]
            if score is not None and (best is None or score > best):
                best = score
                save_checkpoint(net, out / "best.pt", {"format": FORMAT, "training": training.to_dict(),
                                                       "epoch": record["epoch"], "val_BLEU-4": score})
            history = state["history"] + [record]
            save_training(out / "last.pt", net, end, {"format": FORMAT, "training": training.to_dict(),
                                                      "history": history, "best": best})
            state["best"] = best
            write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
            log.debug("epoch %d (%s): %s", record["epoch"], end.stage.name,
                      ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)))
        state["history"].append(record)
        clock[0] = time.perf_counter()

    train(net, source, training, device=device, dist=dist, on_epoch=on_epoch, resume=at, stop_after=stop_after,
          num_workers=num_workers, progress=f"train {model_cfg.name}" if progress else False)


@torch.no_grad()
def _validate(net, val: ReportTiles, vocab: Vocabulary, stage: str, max_len: int) -> dict:
    """Validation scores after an epoch: accuracy where there are labels; BLEU-4 once the decoder trains."""
    record = {}
    if stage == "diagnosis":
        enc = encode_tiles(net, val.images)
    else:
        enc = generate_reports(net, val.images, vocab, max_len=max_len)
        record["val_BLEU-4"] = caption_scores(val.references(), dict(zip(val.ids, enc.texts)), meteor=False)["BLEU-4"]
    labelled = val.labels >= 0
    if bool(labelled.any()):
        record["val_accuracy"] = float((enc.class_logits.argmax(1).cpu() == val.labels)[labelled].float().mean())
    return record


def load_run(run: str | os.PathLike, device: torch.device | None = None):
    """(model with the best weights, vocabulary, config dict) of a run folder, the model rebuilt from the
    ``ModelConfig`` saved there; one-sentence errors if it is not one."""
    run = Path(run)
    cfg = read_config(run)
    model_cfg = saved_configs(run, cfg)[0]
    vocab = Vocabulary.load(run / "vocab.json")
    if not (run / "best.pt").exists():
        raise ValueError(f"{run}: no best.pt yet (the run has not finished a report-writing epoch).")
    net = build_model(model_cfg).to(device or torch.device("cpu"))
    load_checkpoint(net, run / "best.pt")
    return net.eval(), vocab, cfg


def evaluate_run(run: str | os.PathLike, data: str | os.PathLike, *, split: str = "test",
                 meteor: bool | None = None) -> dict:
    """Every Part III score the data supports, for the run's best model on ``split``; NaN scores left out. Besides
    ``evaluate_reports``' groups: "report, like for like" (with two or more reports a tile: the generated reports
    scored leave-one-out, beside the references' own agreement over every choice, each against R - 1 reports)
    and, where grades or labels give the reports something to be read against, "consistency"."""
    net, vocab, cfg = load_run(run)
    data = Path(data)
    if not data.is_dir():
        raise DatasetError(f"{data}: no such data folder.")
    if split not in read_annotation(data):
        raise DatasetError(f"{data}: no split {split!r}.")
    training = saved_configs(Path(run), cfg)[1]
    tiles = load_report_tiles(data, split, vocab, image_size=net.config.image_size, max_len=training.max_len)
    generated = generate_reports(net, tiles.images, vocab, max_len=training.max_len or 60)
    scores = evaluate_reports(net, tiles, vocab, generated=generated, meteor=meteor, max_len=training.max_len or 60)
    if tiles.tokens.shape[1] >= 2:  # like for like: generated and reference reports each against R - 1 others
        hypotheses = dict(zip(tiles.ids, generated.texts))
        scores["report, like for like"] = {
            "generated (leave one out)": leave_one_out_scores(tiles.references(), hypotheses),
            "references' agreement": report_agreement(tiles.reports, every_choice=True)}
    if not bool((tiles.labels >= 0).any()):
        scores.pop("diagnosis")
    if not bool((tiles.grades >= 0).any()) and not bool((tiles.labels >= 0).any()):
        scores.pop("clinical")  # nothing to read the reports against
    else:
        scores["consistency"] = consistency(generated.texts)
    if scores["attention"].get("all", {}).get("words", 0) == 0:
        scores.pop("attention")  # no masks, or no finding words

    def clean(x):
        if isinstance(x, dict):
            kept = {k: clean(v) for k, v in x.items()}
            return {k: v for k, v in kept.items() if v is not None and v != {}}
        return None if isinstance(x, float) and math.isnan(x) else x
    return clean(scores)

