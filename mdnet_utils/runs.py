"""A training run on disk: what ``python -m mdnet_utils train`` writes, and what ``evaluate`` reads.

    RUN/config.json    everything needed to rebuild the model: kind, vocabulary size, image size, classes, schedule
    RUN/vocab.json     the vocabulary, from the training split's reports (words seen at least --min-count times)
    RUN/last.pt        state_dicts of model, optimizer and schedule, the epoch reached, the RNG state, the history
    RUN/best.pt        the model with the best validation score so far (BLEU-4 of free-running reports)
    RUN/metrics.jsonl  one JSON line per epoch (rewritten from last.pt's history, so the two always agree)
    RUN/log.txt        what the run decided (no labels: class loss off, ...)

Every file is written atomically (temporary file, then rename); checkpoints are state_dicts plus JSON-able
meta, loaded with ``weights_only=True``. Bad input is refused before anything is written. Images are resized
to ``--image-size`` (antialiased bilinear) as they are read, so a data set whose images differ in size (or a
case whose views do) trains as it is.

The schedule is MDNet's three stages (notebook 07), in epochs: ``schedule(epochs, labelled)`` gives the stage
of each epoch. Each stage has its own AdamW + one-cycle schedule. The data order of epoch e is a permutation
drawn from ``seed + e``, and the global RNG (dropout) is saved with every checkpoint, so a run interrupted after
any epoch and resumed with ``--resume`` ends with the weights of an uninterrupted one.

Scale-out: under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (gloo on CPU,
nccl on GPU); every process takes its share of each global batch (``--batch-size`` is the global batch, a
multiple of the number of processes; the last incomplete global batch of an epoch is dropped so that every
process takes the same steps), the logged losses are averaged over the processes, and only rank 0 writes and
validates. Batch-norm statistics are per process (each sees its share of the batch), so a run on N processes
follows a single-process run closely but not bit for bit.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from mdnet_utils.data.dataset import DatasetError, ReportDataset, read_annotation
from mdnet_utils.data.grades import CLASSES
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.report_training import (MODELS, ReportTiles, encode_tiles, evaluate_reports, generate_reports,
                                         load_report_tiles, train_epoch)
from mdnet_utils.train import atomic_write, load_checkpoint, save_checkpoint

__all__ = ["schedule", "train_run", "evaluate_run", "load_run", "FORMAT"]

FORMAT = "mdnet-run-v1"
LR = {"diagnosis": 3e-3, "decoder": 3e-3, "end_to_end": 2e-3}


def schedule(epochs: int, labelled: bool) -> list[str]:
    """The stage of each epoch: about 30 % diagnosis, 30 % decoder, the rest end to end (at least one).
    Without labels there is no diagnosis to learn: half decoder, half end to end."""
    if labelled:
        first = int(0.3 * epochs)
        second = int(0.3 * epochs)
    else:
        first, second = 0, epochs // 2
    third = epochs - first - second
    return ["diagnosis"] * first + ["decoder"] * second + ["end_to_end"] * third


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON at ``path``, atomically."""
    _write_text(path, json.dumps(obj, indent=1) + "\n")


def _check_args(data: Path, out: Path, model: str, epochs: int, batch_size: int, image_size: int, min_count: int,
                max_len: int, resume: bool) -> None:
    """Refuse bad input in one sentence, before anything is written."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}.")
    for name, value, low in (("--epochs", epochs, 1), ("--batch-size", batch_size, 1), ("--min-count", min_count, 1),
                             ("--max-len", max_len, 3)):
        if value < low:
            raise ValueError(f"{name} {value} is out of range: it must be at least {low}.")
    if image_size < 16 or image_size % 8:
        raise ValueError(f"--image-size {image_size} is out of range: use a multiple of 8, at least 16.")
    if not data.exists():
        raise ValueError(f"{data}: no such data folder.")
    splits = read_annotation(data)
    for split in ("train", "val"):
        if not splits.get(split):
            raise ValueError(f"{data}: the split {split!r} is missing or empty (train needs 'train' and 'val').")
    if out.exists() and any(out.iterdir()) and not resume:
        raise ValueError(f"{out} already holds files: pass --resume to continue that run, or choose another --out.")
    if resume and not (out / "last.pt").exists():
        raise ValueError(f"{out}: nothing to resume (no last.pt); run without --resume to start it.")


def _distributed() -> tuple[int, int]:
    """(rank, world size), starting the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _load_split(data: Path, split: str, vocab: Vocabulary, cfg: dict) -> ReportTiles:
    tiles = load_report_tiles(data, split, vocab, image_size=cfg["image_size"], max_len=cfg["max_len"])
    if len(tiles) == 0:
        raise ValueError(f"{data}: the split {split!r} is empty.")
    return tiles


def train_run(data: str | os.PathLike, out: str | os.PathLike, *, model: str = "mdnet", epochs: int = 10,
              batch_size: int = 32, image_size: int = 64, seed: int = 0, resume: bool = False, min_count: int = 3,
              max_len: int = 60, bf16: bool = False, device: torch.device | None = None,
              stop_after: int | None = None, progress: bool = True) -> list[dict]:
    """Train a report generator on ``data`` (the annotation.json layout) into the run folder ``out``.

    ``stop_after`` ends the call after that many epochs (as an interruption would; ``--resume`` continues).
    Returns the history (one record per epoch).
    """
    data, out = Path(data), Path(out)
    _check_args(data, out, model, epochs, batch_size, image_size, min_count, max_len, resume)
    rank, world = _distributed()
    if batch_size % world:
        raise ValueError(f"--batch-size {batch_size} is out of range: under torchrun it must be a multiple of the "
                         f"{world} processes.")
    device = device or torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")

    if resume:
        try:
            cfg = json.loads((out / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            raise ValueError(f"{out}: not a run to resume (no readable config.json).") from None
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{out / 'config.json'}: not a config written by mdnet train ({FORMAT}).")
        vocab = Vocabulary.load(out / "vocab.json")
    else:
        train_ds = ReportDataset(data, "train", vocab=Vocabulary())  # vocab: a placeholder, not used here
        vocab = Vocabulary.build((r for e in train_ds.entries for r in e["reports"]), min_count=min_count)
        labelled = all(e["label"] >= 0 for e in train_ds.entries)
        cfg = {"format": FORMAT, "model": model, "vocab_size": len(vocab), "image_size": image_size,
               "num_classes": len(CLASSES), "labelled": labelled, "epochs": epochs, "batch_size": batch_size,
               "seed": seed, "min_count": min_count, "max_len": max_len, "bf16": bf16,
               "schedule": schedule(epochs, labelled), "data": str(data)}
    train = _load_split(data, "train", vocab, cfg)
    val = _load_split(data, "val", vocab, cfg)

    torch.manual_seed(cfg["seed"])
    net = MODELS[cfg["model"]][0](cfg["vocab_size"], image_size=cfg["image_size"]).to(device)
    state = {"epoch": 0, "history": [], "best": None}
    if resume:
        try:
            ckpt = torch.load(out / "last.pt", map_location=device, weights_only=True)
            net.load_state_dict(ckpt["state_dict"])
            state = ckpt["meta"]
            torch.set_rng_state(ckpt["rng"].cpu())
        except Exception as e:  # noqa: BLE001 - whatever broke, one sentence naming the file
            raise ValueError(f"{out / 'last.pt'}: not a checkpoint of this run, or corrupt ({type(e).__name__}).") \
                from None
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", cfg)
        vocab.save(out / "vocab.json")
        notes = [f"model {cfg['model']}, {len(train)} training and {len(val)} validation cases, "
                 f"{len(vocab)} words (min count {min_count}), schedule {cfg['schedule']}"]
        if not cfg["labelled"]:
            notes.append("no labels in the training split: the class loss is off, and the attention's class "
                         "activation map is replaced by zeros (an unconditioned attention).")
        _write_text(out / "log.txt", "\n".join(notes) + "\n")
        if progress:
            print("\n".join(notes))
    if not cfg["labelled"]:
        net.unconditioned = True
    wrapped = (torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
               if world > 1 else None)

    stages = cfg["schedule"]
    start_epoch = state["epoch"]
    opt = sched = None
    bar = tqdm(range(state["epoch"], len(stages)), desc=f"train {cfg['model']}", disable=not progress or rank > 0,
               initial=state["epoch"], total=len(stages))
    for epoch in bar:
        stage = stages[epoch]
        if opt is None or stages[epoch - 1] != stage:  # a new stage: a new optimizer and one-cycle schedule
            opt, sched = _optimizer(net, stage, stages, len(train), cfg["batch_size"])
            if resume and epoch == start_epoch and ckpt["meta"].get("stage") == stage:
                opt.load_state_dict(ckpt["optimizer"])
                sched.load_state_dict(ckpt["scheduler"])
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg["seed"] * 1000 + epoch)
        order = torch.randperm(len(train), generator=gen)
        global_batch = cfg["batch_size"]
        if world > 1:  # every process must take the same steps: drop the last, incomplete global batch
            order = order[:len(order) // global_batch * global_batch]
        mine = torch.cat([order[i:i + global_batch][rank::world] for i in range(0, len(order), global_batch)])
        losses = train_epoch(net, train, mine, stage=stage, optimizer=opt, scheduler=sched, gen=gen,
                             batch_size=global_batch // world, wrapped=wrapped, autocast=cfg["bf16"])
        if world > 1:  # report the mean over all processes' shards, as one process would
            values = torch.tensor(list(losses.values()), dtype=torch.float64)
            dist.all_reduce(values)
            losses = dict(zip(losses, (values / world).tolist()))
        record = {"epoch": epoch + 1, "stage": stage, **losses, "seconds": time.perf_counter() - start}
        if rank == 0:
            record.update(_validate(net, val, vocab, stage))
            score = record.get("val_BLEU-4")
            improved = score is not None and (state["best"] is None or score > state["best"])
            if improved:
                state["best"] = score
                save_checkpoint(net, out / "best.pt", {"format": FORMAT, "epoch": epoch + 1, "val_BLEU-4": score})
            state["history"].append(record)
            state.update(epoch=epoch + 1, stage=stage)
            _save_last(out, net, opt, sched, state)
            _write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if isinstance(v, float) and k != "seconds"})
        if stop_after is not None and epoch + 1 - start_epoch >= stop_after:
            break
    if world > 1:
        dist.barrier()
    return state["history"]


def _optimizer(net, stage: str, stages: list[str], n_train: int, batch_size: int):
    params = list((net.image_model if stage == "diagnosis" else net.decoder if stage == "decoder" else net).parameters())
    opt = torch.optim.AdamW(params, lr=LR[stage], weight_decay=1e-4)
    steps = stages.count(stage) * ((n_train + batch_size - 1) // batch_size)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR[stage], total_steps=steps, pct_start=0.25)


def _save_last(out: Path, net, opt, sched, state: dict) -> None:
    ckpt = {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
            "meta": {**state, "format": FORMAT}}
    atomic_write(out / "last.pt", lambda tmp: torch.save(ckpt, tmp))


@torch.no_grad()
def _validate(net, val: ReportTiles, vocab: Vocabulary, stage: str) -> dict:
    """Validation scores after an epoch: accuracy where there are labels; BLEU-4 once the decoder trains."""
    from mdnet_utils.metrics import caption_scores

    record = {}
    if stage == "diagnosis":
        enc = encode_tiles(net, val.images)
    else:
        gen = generate_reports(net, val.images, vocab)
        enc = gen
        record["val_BLEU-4"] = caption_scores(val.references(), dict(zip(val.ids, gen.texts)), meteor=False)["BLEU-4"]
    labelled = val.labels >= 0
    if bool(labelled.any()):
        record["val_accuracy"] = float((enc.class_logits.argmax(1).cpu() == val.labels)[labelled].float().mean())
    return record


def load_run(run: str | os.PathLike, device: torch.device | None = None):
    """(model with the best weights, vocabulary, config) of a run folder; one-sentence errors if it is not one."""
    run = Path(run)
    try:
        cfg = json.loads((run / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise ValueError(f"{run}: not a training run (no readable config.json).") from None
    if cfg.get("format") != FORMAT or cfg.get("model") not in MODELS:
        raise ValueError(f"{run / 'config.json'}: not a config written by mdnet train ({FORMAT}).")
    vocab = Vocabulary.load(run / "vocab.json")
    net = MODELS[cfg["model"]][0](cfg["vocab_size"], image_size=cfg["image_size"])
    if not (run / "best.pt").exists():
        raise ValueError(f"{run}: no best.pt yet (the run has not finished a report-writing epoch).")
    net.to(device or torch.device("cpu"))
    load_checkpoint(net, run / "best.pt")
    if not cfg["labelled"]:
        net.unconditioned = True
    return net.eval(), vocab, cfg


def evaluate_run(run: str | os.PathLike, data: str | os.PathLike, *, split: str = "test",
                 meteor: bool | None = None) -> dict:
    """Every Part III score the data supports, for the run's best model on ``split``; NaN scores left out."""
    import math

    net, vocab, cfg = load_run(run)
    data = Path(data)
    if not data.exists():
        raise ValueError(f"{data}: no such data folder.")
    if split not in read_annotation(data):
        raise DatasetError(f"{data}: no split {split!r}.")
    tiles = _load_split(data, split, vocab, cfg)
    scores = evaluate_reports(net, tiles, vocab, meteor=meteor)
    if not bool((tiles.labels >= 0).any()):
        scores.pop("diagnosis")
    if not bool((tiles.grades >= 0).any()) and not bool((tiles.labels >= 0).any()):
        scores.pop("clinical")  # nothing to read the reports against
    if scores["attention"].get("all", {}).get("words", 0) == 0:
        scores.pop("attention")  # no masks, or no finding words

    def clean(x):
        if isinstance(x, dict):
            kept = {k: clean(v) for k, v in x.items()}
            return {k: v for k, v in kept.items() if v is not None and v != {}}
        return None if isinstance(x, float) and math.isnan(x) else x
    return clean(scores)
