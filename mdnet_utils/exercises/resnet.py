"""Checks for notebooks 01 (a pre-activation block by hand, a convolution's output size) and 02 (the
unrolled network as a sum over paths, Eq. (6)'s two gradient terms)."""
from __future__ import annotations

import itertools

import torch
from torch import nn

from mdnet_utils.exercises.core import Wrong, call, check, close, expect, expect_close
from mdnet_utils.models.blocks import PreActBasicBlock


def _randomise_bn(module: nn.Module, gen: torch.Generator) -> None:
    """Batch norms with non-trivial statistics and affine parameters, so that forgetting one shows."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.2)


def _refuse(*args, **kwargs):
    raise Wrong("your function called the block itself (block(x) or block.forward); compute x_{l+1} from its "
                "layers: bn1, relu, conv1, bn2, conv2 and, where the shape changes, downsample")


@check
def check_preact_forward(fn) -> str:
    """Notebook 01, Exercise A. ``fn(block, x) -> x_{l+1}``: a ``PreActBasicBlock``'s forward pass, Eq. (3),
    written from its layers (the block in eval mode)."""

    gen = torch.Generator().manual_seed(1)
    for c_in, c_out, stride in [(16, 16, 1), (16, 32, 2), (8, 8, 1)]:
        torch.manual_seed(c_in + c_out + stride)
        block = PreActBasicBlock(c_in, c_out, stride).eval()
        _randomise_bn(block, gen)
        x = torch.randn(2, c_in, 8, 8, generator=gen)
        with torch.no_grad():
            want = block(x)
            raw_projection = None if block.downsample is None else block.downsample(x) + block.branch(x)
            post_relu = torch.relu(x + block.branch(x)) if block.downsample is None else None
        block.forward = _refuse          # an instance attribute: nn.Module.__call__ now refuses
        case = f"block {c_in} -> {c_out} channels, stride {stride}"
        with torch.no_grad():
            got = call(fn, block, x.clone(), case=case)

        def hint(g, raw=raw_projection, post=post_relu):
            if raw is not None and close(g, raw):
                return "the projection h takes the pre-activated input relu(bn1(x)), as F_l does, not x itself"
            if post is not None and close(g, post):
                return "Eq. (3) has no activation after the sum: x_{l+1} = x_l + F_l(x_l)"
            return None

        expect_close(got, want, case, atol=1e-5, hint=hint)
    return "3 blocks: identity shortcuts and a strided projection"


@check
def check_conv_output_size(fn) -> str:
    """Notebook 01, Exercise B. ``fn(size, kernel, stride, padding) -> int``: the side of a convolution's output."""
    n = 0
    for size, kernel, stride, padding in itertools.product((7, 8, 32, 63, 64, 224), (1, 3, 7), (1, 2, 3), (0, 1, 3)):
        if size + 2 * padding < kernel:
            continue
        want = (size + 2 * padding - kernel) // stride + 1
        case = f"size {size}, kernel {kernel}, stride {stride}, padding {padding}"
        got = call(fn, size, kernel, stride, padding, case=case)
        expect(isinstance(got, int) or (hasattr(got, "is_integer") and float(got).is_integer()),
               f"{case}: expected an int, got {got!r} (sizes are whole numbers: round down with //)")
        expect(int(got) == want, f"{case}: expected {want}, got {got}")
        n += 1
    conv = nn.Conv2d(1, 1, 7, 2, 3)  # ImageNet ResNets' stem, as a last real check against PyTorch itself
    expect(int(call(fn, 224, 7, 2, 3, case="the 7x7 stem")) == conv(torch.zeros(1, 1, 224, 224)).shape[-1],
           "the 7x7 stride-2 stem on 224 pixels: your size differs from PyTorch's")
    return f"{n + 1} convolutions"


# ------------------------------------------------------------------------------------------ notebook 02

def _paths(x: torch.Tensor, matrices: list[torch.Tensor], reverse: bool = False) -> list[torch.Tensor]:
    """Sum over the paths that take k residual branches, k = 0..n, of x_n = prod (I + A_i) x."""
    n = len(matrices)
    out = [torch.zeros_like(x) for _ in range(n + 1)]
    for taken in itertools.product((0, 1), repeat=n):
        v = x
        order = range(n - 1, -1, -1) if reverse else range(n)
        for i in order:
            if taken[i]:
                v = matrices[i] @ v
        out[sum(taken)] = out[sum(taken)] + v
    return out


@check
def check_paths_by_length(fn) -> str:
    """Notebook 02, Exercise A. ``fn(x, matrices) -> [s_0, ..., s_n]``: for linear residual branches
    F_i(x) = A_i x, the sum of the paths that take k branches (s_0 = x itself); s_0 + ... + s_n = x_n."""
    gen = torch.Generator().manual_seed(2)
    for n in (1, 2, 3, 4):
        x = torch.randn(3, generator=gen, dtype=torch.float64)
        mats = [0.5 * torch.randn(3, 3, generator=gen, dtype=torch.float64) for _ in range(n)]
        case = f"{n} block{'s' if n > 1 else ''}"
        got = call(fn, x.clone(), [m.clone() for m in mats], case=case)
        expect(isinstance(got, (list, tuple)) and len(got) == n + 1,
               f"{case}: expected a list of {n + 1} tensors (paths taking 0..{n} branches), got "
               f"{type(got).__name__} of length {len(got) if hasattr(got, '__len__') else '?'}")
        want = _paths(x, mats)
        wrong_order = _paths(x, mats, reverse=True)
        x_n = x
        for m in mats:
            x_n = x_n + m @ x_n
        for k in range(n + 1):
            expect_close(got[k], want[k], f"{case}, paths taking {k} branches", atol=1e-9,
                         hint=lambda g, k=k: ("the block applied first must be the rightmost factor: "
                                              "A_j A_i x for i < j" if close(g, wrong_order[k], 1e-9) else None))
        expect(torch.allclose(sum(got), x_n, atol=1e-9), f"{case}: the terms do not add up to x_n")
    return "1 to 4 blocks; every path length adds up to x_n"


def _branch(w: torch.Tensor):
    return lambda v: 0.5 * torch.tanh(v @ w.T)


@check
def check_gradient_split(fn) -> str:
    """Notebook 02, Exercise B. ``fn(x_l, branches, grad_L) -> (direct, through_residuals)``: Eq. (6)'s two terms
    of dLoss/dx_l for x_L = x_l + sum_i F_i(x_i), given dLoss/dx_L = grad_L."""
    gen = torch.Generator().manual_seed(3)
    for n in (1, 2, 4):
        x_l = torch.randn(3, 4, generator=gen, dtype=torch.float64)
        branches = [_branch(torch.randn(4, 4, generator=gen, dtype=torch.float64)) for _ in range(n)]
        grad_L = torch.randn(3, 4, generator=gen, dtype=torch.float64)
        x = x_l.clone().requires_grad_(True)
        v = x
        for f in branches:
            v = v + f(v)
        full, = torch.autograd.grad(v, x, grad_outputs=grad_L)
        case = f"{n} block{'s' if n > 1 else ''}"
        out = call(fn, x_l.clone(), list(branches), grad_L.clone(), case=case)
        expect(isinstance(out, tuple) and len(out) == 2,
               f"{case}: expected a pair (direct, through_residuals), got {type(out).__name__}")
        direct, through = out
        expect_close(direct, grad_L, f"{case}, the direct term", atol=1e-9,
                     hint=lambda g: "the direct term is dLoss/dx_L itself: the '1' of Eq. (6)")
        expect_close(through, full - grad_L, f"{case}, the term through the residuals", atol=1e-9,
                     hint=lambda g: ("that is the whole gradient; leave the direct term out of this one"
                                     if close(g, full, 1e-9) else None))
    return "1, 2 and 4 blocks; direct + through the residuals = autograd's gradient"
