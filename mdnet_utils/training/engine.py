"""The one training loop: every stage of every recipe of the course, for notebooks, the CLI and the benchmarks.

``train(model, source, stages, seed=...)`` runs the stages in order. Per stage:

* the parameters that learn (``trainable``): an image model's all; a report generator's image model
  (``"diagnosis"``), decoder (``"decoder"``, the image model frozen in eval mode) or all (``"end_to_end"``);
* one AdamW with a one-cycle schedule over the stage's steps (``make_optimizer``; a stage too short for one, with
  at most one warm-up step, keeps its peak learning rate throughout instead, and the log says so);
* the data order of each epoch from a ``DistributedSampler`` (shuffled from ``seed`` and the epoch; one process
  takes all of it, and under torchrun each process its share of every global batch, so N processes see the
  batches one process would);
* a generator seeded with ``seed`` that draws the reports picked per case and the augmentation (a random flip
  and right-angle turn per batch: none of the findings depends on orientation);
* per batch (``run_epoch``): the stage's loss (``stage_loss``), backward, optional gradient clipping, a step
  of the optimizer and of the schedule; bfloat16 autocast in the forward pass when asked.

After every epoch the record {"stage", "epoch" (within the stage), "train_loss" (the mean objective), its
parts ("words_loss", "class_loss", "attention_loss"), and ``evaluate(model)``'s dict} goes to ``on_epoch`` with
the optimizer, schedule and generator, which is all a checkpoint needs (``checkpoint.save_training``); a run
resumed from it (``resume=``) continues exactly where it stopped. Budgets are epochs, never seconds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mdnet_utils.data.loading import Batch, FileCases, TensorCases, batches, flat_reports, to_input
from mdnet_utils.errors import ConfigError
from mdnet_utils.models.mdnet import ReportGenerator, mdnet_loss
from mdnet_utils.training.config import STAGES, Stage, TrainConfig
from mdnet_utils.training.distributed import SINGLE, Distributed

__all__ = ["augment", "trainable", "make_optimizer", "stage_loss", "run_epoch", "train", "Resume", "EpochEnd",
           "ResumeMismatch", "one_cycle_fits"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
log = logging.getLogger(__name__)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random flip and a random right-angle turn, the same for the whole batch (and every view of a case)."""
    if torch.rand((), generator=gen) < 0.5:
        x = x.flip(-1)
    k = int(torch.randint(0, 4, (), generator=gen))
    return torch.rot90(x, k, dims=(-2, -1))


def trainable(model: nn.Module, stage: Stage) -> list[nn.Parameter]:
    """The parameters stage ``stage`` trains (see the module docstring)."""
    if not isinstance(model, ReportGenerator):
        if stage.name != "diagnosis":
            raise ConfigError("stages", stage.name, "needs a report generator: an image model alone trains only "
                                                     "the 'diagnosis' stage.")
        return list(model.parameters())
    part = {"image_model": model.image_model, "decoder": model.decoder, "all": model}[stage.trains]
    return list(part.parameters())


def one_cycle_fits(steps: int, warmup: float) -> bool:
    """Whether ``steps`` are enough for a one-cycle schedule with ``warmup`` of them warming up. PyTorch's
    ``OneCycleLR`` divides by ``warmup * steps - 1``: at 0 it raises ZeroDivisionError, below 0 its rates are
    nonsense (one step: 4e-9, measured), so it needs more than one warm-up step."""
    return warmup * steps > 1


def make_optimizer(params: list[nn.Parameter], stage: Stage, steps: int):
    """AdamW at ``stage.lr`` with ``stage.weight_decay``, and a one-cycle schedule peaking at ``stage.lr`` after
    ``stage.warmup`` of its ``steps`` (the whole stage); when the steps are too few for that
    (``one_cycle_fits``), a constant rate ``stage.lr``, with a log line saying so."""
    opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
    if not one_cycle_fits(steps, stage.warmup):
        log.info("stage %s has %d optimizer step%s, too few for a one-cycle schedule (warm-up %g of them): it "
                 "keeps the learning rate %g throughout.", stage.name, steps, "" if steps == 1 else "s",
                 stage.warmup, stage.lr)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=stage.lr, total_steps=steps, pct_start=stage.warmup)
    return opt, sched


def stage_loss(net: nn.Module, model: nn.Module, stage: Stage, batch: Batch, gen: torch.Generator,
               device: torch.device, loss_fn: LossFn | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The objective of ``stage`` on one batch, and its parts as floats. ``net`` is what to call (``model``, or
    its DistributedDataParallel wrapper). The generator draws, in this order, the reports each case brings
    (``reports_per_tile``) and the augmentation."""
    if stage.name == "diagnosis":
        x = to_input(batch.images, device)
        x = augment(x, gen) if stage.augment else x
        targets = batch.labels.to(device)
        logits = net(x, None, stage="diagnosis")["class_logits"] if isinstance(model, ReportGenerator) else net(x)
        if loss_fn is not None:
            return loss_fn(logits, targets), {}
        if bool((targets < 0).any()):
            raise ValueError("the diagnosis stage needs a label for every training case; this data has cases "
                             "without one (leave the stage out to train without labels).")
        return F.cross_entropy(logits.float(), targets), {}
    if batch.tokens is None:
        raise ValueError(f"the {stage.name!r} stage needs reports; these cases have none.")
    tokens = batch.tokens
    if stage.reports_per_tile is not None and stage.reports_per_tile < tokens.shape[1]:
        pick = torch.rand(tokens.shape[:2], generator=gen).argsort(dim=1)[:, :stage.reports_per_tile]
        tokens = tokens.gather(1, pick.unsqueeze(2).expand(-1, -1, tokens.shape[2]))
    tokens = flat_reports(tokens).to(device)
    x = to_input(batch.images, device)
    if stage.name == "decoder":
        return mdnet_loss(net(x, tokens, stage="decoder"), tokens, None, attention_weight=stage.attention_weight)
    labels = batch.labels.to(device)
    labels = labels if bool((labels >= 0).all()) else None  # no labels: the words alone
    out = net(augment(x, gen) if stage.augment else x, tokens)
    return mdnet_loss(out, tokens, labels, class_weight=stage.class_weight, attention_weight=stage.attention_weight)


def run_epoch(model: nn.Module, data, stage: Stage, optimizer, scheduler, gen: torch.Generator, *,
              net: nn.Module | None = None, device: torch.device | None = None, bf16: bool = False,
              loss_fn: LossFn | None = None) -> dict[str, float]:
    """One pass over ``data`` (an iterable of ``Batch``), one optimizer step per batch; the mean losses."""
    device = device or next(model.parameters()).device
    net = net or model
    params = [p for group in optimizer.param_groups for p in group["params"]]
    model.train()
    if stage.name == "decoder":
        model.image_model.eval()  # frozen means its batch-norm statistics too
    sums, n = {}, 0
    for batch in data:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, parts = stage_loss(net, model, stage, batch, gen, device, loss_fn)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if stage.clip is not None:
            nn.utils.clip_grad_norm_(params, stage.clip)
        optimizer.step()
        scheduler.step()
        b = len(batch)
        for k, v in {"train": float(loss.detach()), **parts}.items():
            sums[k] = sums.get(k, 0.0) + v * b
        n += b
    return {f"{k}_loss": v / n for k, v in sums.items()}


@dataclass
class Resume:
    """Where an interrupted run stands: ``stage`` (index of the stage to continue), ``epoch`` (its epochs
    done), and, when ``epoch`` > 0, the state dicts of its optimizer and schedule and its generator's state."""
    stage: int = 0
    epoch: int = 0
    optimizer: dict | None = None
    scheduler: dict | None = None
    generator: torch.Tensor | None = None


class ResumeMismatch(ValueError):
    """A ``Resume`` whose saved optimizer, schedule or generator state does not fit the stage it continues."""


@dataclass
class EpochEnd:
    """What ``on_epoch`` receives after every epoch: enough to checkpoint the run and resume it exactly."""
    stage_index: int
    stage: Stage
    epoch: int
    record: dict
    optimizer: torch.optim.Optimizer
    scheduler: object
    generator: torch.Generator
    last_of_stage: bool = field(default=False)


def train(model: nn.Module, source: TensorCases | FileCases, stages: TrainConfig | Sequence[Stage], *,
          seed: int | None = None, device: torch.device | None = None, dist: Distributed = SINGLE,
          bf16: bool | None = None, loss_fn: LossFn | None = None,
          evaluate: Callable[[nn.Module], dict] | None = None, on_epoch: Callable[[EpochEnd], None] | None = None,
          resume: Resume | None = None, stop_after: int | None = None, num_workers: int = 0,
          progress: bool | str = True) -> list[dict]:
    """Train ``model`` in place through ``stages`` (a ``TrainConfig``, whose seed and bf16 are used unless given,
    or a list of ``Stage``s) on the cases of ``source``; returns the records of the epochs run (see the module
    docstring). ``device``: where the model is (default: its parameters'). ``loss_fn(logits, labels)`` replaces
    the diagnosis stage's cross-entropy (the grade reader of notebook 00 has six heads). ``stop_after`` ends the
    call after that many epochs, as an interruption would. ``num_workers``: processes reading a ``FileCases``."""
    if isinstance(stages, TrainConfig):
        seed = stages.seed if seed is None else seed
        bf16 = stages.bf16 if bf16 is None else bf16
        stages = stages.stages
    seed, bf16, resume = seed or 0, bool(bf16), resume or Resume()
    device = device or next(model.parameters()).device
    net = dist.wrap(model)
    history, done = [], 0
    for index in range(resume.stage, len(stages)):
        stage = stages[index]
        data = source.subset(stage.limit)
        local_batch = stage.batch_size // dist.world
        if stage.batch_size % dist.world:
            raise ConfigError(f"stages[{index}].batch_size", stage.batch_size,
                              f"is not a multiple of the {dist.world} processes (it is the global batch).")
        per_process = len(data) // dist.world  # the tail that does not fill every process is dropped
        if per_process == 0:
            raise ValueError(f"{len(data)} training cases are too few for {dist.world} processes.")
        steps = (per_process + local_batch - 1) // local_batch
        opt, sched = make_optimizer(trainable(model, stage), stage, stage.epochs * steps)
        gen = torch.Generator().manual_seed(seed)
        first = 0
        if index == resume.stage and resume.epoch:
            try:
                opt.load_state_dict(resume.optimizer)
                sched.load_state_dict(resume.scheduler)
                gen.set_state(resume.generator)
            except (ValueError, KeyError, TypeError, RuntimeError) as err:
                raise ResumeMismatch(f"its optimizer, schedule or generator state does not fit stage {stage.name!r} "
                                     f"({type(err).__name__}).") from None
            first = resume.epoch
        label = stage.name if not isinstance(progress, str) else progress if len(stages) == 1 else \
            f"{progress} ({stage.name})"
        bar = tqdm(range(first, stage.epochs), desc=label, initial=first, total=stage.epochs,
                   disable=not progress or not dist.is_main)
        for epoch in bar:
            # The order depends on the stage's name, not its place in this call: a recipe run stage by stage (the
            # notebooks) and in one go (the CLI) see the same batches.
            key = STAGES.index(stage.name) * 1000 + epoch
            order = dist.order(len(data), seed=seed, epoch=key)
            loader = batches(data, order, local_batch, num_workers=num_workers, pin_memory=device.type == "cuda",
                             seed=seed * 10_000 + key)
            losses = dist.mean(run_epoch(model, loader, stage, opt, sched, gen, net=net, device=device, bf16=bf16,
                                         loss_fn=loss_fn))
            record = {"stage": stage.name, "epoch": epoch + 1, **losses}
            if evaluate is not None:
                record.update(evaluate(model))
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if isinstance(v, float)})
            history.append(record)
            if on_epoch is not None:
                on_epoch(EpochEnd(index, stage, epoch + 1, record, opt, sched, gen,
                                  last_of_stage=epoch + 1 == stage.epochs))
            done += 1
            if stop_after is not None and done >= stop_after:
                bar.close()
                return history
        bar.close()
    return history
