"""The residual stream: what every block reads and adds, and what the network does without some of them.

For each residual block l of a network, ``read_stream`` gives its input x_l, its branch output F_l(x_l)
and its output x_{l+1}: the terms of Eqs. (1)-(6), and later of (8)-(9). ``lesion`` runs the network
with chosen blocks' branches removed (Veit et al. 2016, "Residual networks behave like ensembles of
relatively shallow networks").

Both work by forward hooks on the blocks and on their ``tap`` (the identity F_l(x_l) passes through),
so they work on every network of ``mdnet_utils.models``, ImageNet- and CIFAR-style, and on any module
that contains them (a backbone inside a bigger model), and leave the model exactly as it was.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn

from mdnet_utils.models.blocks import ResidualBlock


@dataclass
class StreamRecord:
    """One block's terms in one forward pass: x_{l+1} = f(h(x_l) + F_l(x_l)) (pre-activation: x_l + F_l(x_l))."""

    block_index: int       # l, the block's position in residual_blocks(model)
    name: str              # its name in model.named_modules(), e.g. "layer2.0" or "blocks.3"
    x_in: torch.Tensor     # x_l
    branch: torch.Tensor   # F_l(x_l) (zeros when the block is lesioned)
    out: torch.Tensor      # x_{l+1}


def named_residual_blocks(model: nn.Module) -> list[tuple[str, ResidualBlock]]:
    """(name, block) for every ``ResidualBlock`` inside ``model``, in the order of ``model.named_modules()``."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ResidualBlock)]


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    """Every residual block of ``model``, in forward order; block l of the equations is ``residual_blocks(model)[l]``.

    The order is that of ``model.modules()`` (registration order), which is the forward order for every
    network of this package: layer1..layer4 of the ImageNet nets, ``blocks`` of the CIFAR nets.
    """
    return [block for _, block in named_residual_blocks(model)]


@contextmanager
def record_stream(model: nn.Module) -> Iterator[list[StreamRecord]]:
    """Within the ``with``, every forward pass of ``model`` appends one ``StreamRecord`` per block to the list.

    The tensors are the ones the forward pass computed, still in the autograd graph when gradients are
    on (Eq. (6) differentiates through them); run under ``torch.no_grad()`` to keep only the values.
    """
    records: list[StreamRecord] = []
    inputs: dict[int, torch.Tensor] = {}
    branches: dict[int, torch.Tensor] = {}
    handles = []

    def watch(index: int, name: str, block: ResidualBlock) -> None:
        def take_input(module, args):
            inputs[index] = args[0]

        def take_branch(module, args, out):
            branches[index] = out

        def take_output(module, args, out):
            records.append(StreamRecord(index, name, inputs.pop(index), branches.pop(index), out))

        handles.extend([block.register_forward_pre_hook(take_input),
                        block.tap.register_forward_hook(take_branch),
                        block.register_forward_hook(take_output)])

    try:
        for index, (name, block) in enumerate(named_residual_blocks(model)):
            watch(index, name, block)
        yield records
    finally:
        for handle in handles:
            handle.remove()


def read_stream(model: nn.Module, x: torch.Tensor) -> list[StreamRecord]:
    """One forward pass of ``model`` on ``x``; returns its blocks' records in forward order (see ``record_stream``)."""
    with record_stream(model) as records:
        model(x)
    return records


def _resolve(model: nn.Module, chosen: Iterable[int | str | ResidualBlock]) -> list[tuple[str, ResidualBlock]]:
    named = named_residual_blocks(model)
    found = []
    for c in chosen:
        if isinstance(c, int):
            if not -len(named) <= c < len(named):
                raise ValueError(f"block index {c} is out of range: the model has {len(named)} residual blocks.")
            found.append(named[c])
        else:
            match = [(n, b) for n, b in named if (n == c if isinstance(c, str) else b is c)]
            if not match:
                raise ValueError(f"{c if isinstance(c, str) else type(c).__name__!r} is not a residual block of this model.")
            found.append(match[0])
    return found


@contextmanager
def lesion(model: nn.Module, blocks: Iterable[int | str | ResidualBlock]) -> Iterator[list[ResidualBlock]]:
    """Run ``model`` with the residual branches of ``blocks`` removed (indices into ``residual_blocks(model)``,
    names, or the blocks themselves); the model is restored on leaving, even on an exception.

    A lesioned residual block returns f(h(x_l)): exactly x_l where h is the identity (pre-activation:
    f is the identity; post-activation: f = ReLU and x_l >= 0 already), its projection shortcut where it
    changes width or resolution, so every shape is kept. A plain block (no shortcut) has nothing to fall
    back on: lesioning it deletes the whole layer, x_{l+1} = x_l (Veit et al.'s "delete a layer of VGG"),
    which is possible only where it keeps width and resolution; otherwise ValueError.

    The branch still runs and its output is replaced by zeros, so use this in eval mode (in train mode
    its batch norms would still update their running statistics).
    """
    found = _resolve(model, blocks)
    for name, block in found:
        if block.plain and not block.keeps_shape:
            raise ValueError(f"block {name!r} is plain and changes shape ({block.in_channels} -> "
                             f"{block.out_channels} channels, stride {block.stride}): without a shortcut it "
                             f"cannot be removed.")
    handles = []
    try:
        for _, block in found:  # prepend: a record_stream entered before or after sees the lesioned values
            # F_l(x_l) = 0: a residual block returns f(h(x_l))
            handles.append(block.tap.register_forward_hook(lambda m, args, out: torch.zeros_like(out), prepend=True))
            if block.plain:  # the whole layer goes: the block hands its input on
                handles.append(block.register_forward_hook(lambda m, args, out: args[0], prepend=True))
        yield [block for _, block in found]
    finally:
        for handle in handles:
            handle.remove()
