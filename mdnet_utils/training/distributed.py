"""Which process am I: one place that knows the rank, the world size and the device, under torchrun or not.

``Distributed.from_env()`` reads torchrun's variables (WORLD_SIZE, RANK, LOCAL_RANK) and starts the process
group when there is more than one process (gloo on CPUs, nccl on GPUs). Everything that depends on the rank
asks this object: ``is_main`` (only the main process writes files, validates and logs), ``device``, ``wrap``
(DistributedDataParallel), ``mean`` (losses averaged over the processes), ``order`` (a ``DistributedSampler``'s
share of each epoch).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

__all__ = ["Distributed", "SINGLE"]


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Distributed":
        """This process's place under torchrun (a single process otherwise); starts the process group."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        """True for the one process that writes, validates and logs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def device(self) -> torch.device:
        """This process's GPU when there are GPUs (one per local rank), else the CPU."""
        if torch.cuda.is_available():
            return torch.device(f"cuda:{self.local_rank % torch.cuda.device_count()}")
        return torch.device("cpu")

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel when there are several processes, else itself. Unused parameters
        are expected: a stage trains only part of a report generator."""
        if not self.active:
            return model
        return nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the processes (every process gets the result)."""
        if not self.active or not values:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world).tolist()))

    def order(self, n: int, *, seed: int, epoch: int) -> torch.Tensor:
        """This process's share of epoch ``epoch``: a ``DistributedSampler`` over ``n`` cases, shuffled from
        ``seed`` and ``epoch``; one process takes them all, several drop the tail that would not give every
        process the same number of steps. Process r takes cases r, r + N, ... of the shuffled order, so the
        k-th batches of all processes together are the k-th global batch one process would take."""
        sampler = DistributedSampler(range(n), num_replicas=self.world, rank=self.rank, shuffle=True, seed=seed,
                                     drop_last=self.active)
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def agree(self, ok: bool) -> bool:
        """Whether every process is ``ok`` (each passes its own flag; every process gets the answer): a step only
        one process takes (the main process locking and writing the run folder) cannot fail in that process
        alone while the others wait for it in a collective."""
        if not self.active:
            return ok
        flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())


#: One process, no process group: what notebooks and tests run as.
SINGLE = Distributed()
