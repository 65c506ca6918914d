"""Checks for notebooks 01 (a pre-activation block by hand, a training step with gradient clipping) and 02 (the
unrolled network as a sum over paths, Eq. (6)'s two gradient terms, a lesion study)."""
from __future__ import annotations

import copy
import itertools
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import clip_grad

from mdnet_utils.data.loading import Batch, to_input
from mdnet_utils.exercises.core import Wrong, call, check, close, expect, expect_close
from mdnet_utils.models.blocks import PreActBasicBlock
from mdnet_utils.models.resnet import cifar_resnet
from mdnet_utils.models.stream import lesion, residual_blocks
from mdnet_utils.training.config import Stage
from mdnet_utils.training.engine import run_epoch


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


def _clip_net(seed: int) -> nn.Module:
    """A small convolutional net without batch norm: in training mode on a batch of 6, batch norm would turn the
    last bits of rounding into visible differences a step later."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))


def _sgd(net: nn.Module):
    """Plain SGD with a decaying rate: unlike Adam, it moves the weights by the gradient itself, so a gradient
    clipped wrongly shows in them."""
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (1 + step))


def _global_norm(net: nn.Module) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters()])))


def _clipped_steps(net: nn.Module, steps, max_norm: float, mistake: str | None = None):
    """The steps with the gradient clipped by hand, or with one known ``mistake``: (the net after them, the norms
    before clipping). The truth is the engine's ``run_epoch``; these name what a wrong answer did."""
    net = copy.deepcopy(net)
    opt, sched = _sgd(net)
    norms = []
    for x, y in steps:
        if mistake != "no zero_grad":
            opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        norms.append(_global_norm(net))
        for p in net.parameters():
            if mistake == "per tensor":
                p.grad.mul_(min(1.0, max_norm / float(p.grad.norm())))
            elif mistake == "always rescale":
                p.grad.mul_(max_norm / norms[-1])
            elif mistake is None:
                p.grad.mul_(min(1.0, max_norm / norms[-1]))
        opt.step()
        if mistake != "no schedule":
            sched.step()
    return net, norms


def _weights(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


@contextmanager
def _refusing(owner, name: str, message: str):
    """``owner.name`` raises ``Wrong(message)`` within the ``with`` (a library call the exercise writes by hand)."""
    original = getattr(owner, name)

    def refuse(*args, **kwargs):
        raise Wrong(message)

    setattr(owner, name, refuse)
    try:
        yield
    finally:
        setattr(owner, name, original)


@check
def check_clipped_step(fn) -> str:
    """Notebook 01, Exercise B. ``fn(model, optimizer, schedule, x, y, max_norm) -> float``: one step of the open
    training loop with the gradient clipped to a global norm of ``max_norm``, as the engine's ``run_epoch`` does
    with ``Stage.clip``; returns the gradient's global norm before clipping. Checked against ``run_epoch`` itself,
    three steps a case, on a small convolutional net with plain SGD (which, unlike Adam, shows a wrong clipping)."""
    gen = torch.Generator().manual_seed(4)
    net = _clip_net(4)
    tiles = [(torch.randint(0, 256, (6, 3, 8, 8), generator=gen, dtype=torch.uint8),
              torch.randint(0, 3, (6,), generator=gen)) for _ in range(3)]
    steps = [(to_input(images, "cpu"), labels) for images, labels in tiles]
    first = _clipped_steps(net, steps[:1], float("inf"))[1][0]
    mistakes = {"no zero_grad": "zero the gradients before backward: they accumulate across steps otherwise",
                "per tensor": "clip the norm of all gradients together (one global norm), not each tensor's",
                "always rescale": "rescale only when the norm is above max_norm; a smaller gradient stays as it is",
                "unclipped": "the gradient was not clipped before the optimizer's step (clip between backward "
                             "and step)",
                "no schedule": "advance the schedule once per step (schedule.step())"}
    for case, max_norm in [("max_norm far above every gradient's norm", 1e4 * first),
                           ("max_norm below every gradient's norm", first / 4),
                           ("max_norm between the gradients' norms", first / 2)]:
        truth = copy.deepcopy(net)
        opt, sched = _sgd(truth)
        stage = Stage("diagnosis", epochs=1, lr=0.1, clip=max_norm, augment=False)
        run_epoch(truth, [Batch(images, labels) for images, labels in tiles], stage, opt, sched, torch.Generator())
        want_norms = _clipped_steps(net, steps, max_norm)[1]
        wrong = {m: _clipped_steps(net, steps, float("inf") if m == "unclipped" else max_norm,
                                   None if m == "unclipped" else m)[0] for m in mistakes}
        learner = copy.deepcopy(net)
        opt, sched = _sgd(learner)
        got_norms = []
        message = "your function called clip_grad_norm_; compute the global norm and rescale the gradients by hand"
        with _refusing(nn.utils, "clip_grad_norm_", message), _refusing(clip_grad, "clip_grad_norm_", message):
            for k, (x, y) in enumerate(steps):
                got = call(fn, learner, opt, sched, x.clone(), y.clone(), max_norm, case=f"{case}, step {k + 1}")
                expect(isinstance(got, (float, int, torch.Tensor)) and torch.as_tensor(got).numel() == 1,
                       f"{case}, step {k + 1}: expected the gradient's norm as a float, got {type(got).__name__}")
                got_norms.append(float(got))
        lr, want_lr = opt.param_groups[0]["lr"], 0.1 / (1 + len(steps))
        expect(abs(lr - want_lr) < 1e-12, f"{case}: after {len(steps)} steps the learning rate is {lr:.4g}, expected "
                                          f"{want_lr:.4g}; " + mistakes["no schedule"])
        expect_close(_weights(learner), _weights(truth), f"{case}: the weights after {len(steps)} steps", atol=1e-6,
                     hint=lambda g: next((why for m, why in mistakes.items() if close(g, _weights(wrong[m]), 1e-6)),
                                         None))
        expect_close(torch.tensor(got_norms), torch.tensor(want_norms), f"{case}: the norms returned", atol=1e-6,
                     hint=lambda g: ("return the norm before clipping" if close(
                         g, torch.tensor(want_norms).clamp(max=max_norm), 1e-6) else None))
    return "3 cases of 3 steps, as the engine's run_epoch: never clipped, always clipped, clipped at some steps"

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


def _lesion_net(seed: int) -> nn.Module:
    """A pre-activation ResNet-14 (two blocks a stage; blocks 2 and 4 downsample) in eval mode, its batch norms
    random so that a forgotten or misplaced one shows."""
    torch.manual_seed(seed)
    net = cifar_resnet(14, num_classes=4).eval()
    _randomise_bn(net, torch.Generator().manual_seed(seed))
    return net


def _lesioned_logits(net: nn.Module, images: torch.Tensor, deleted, mistake: str) -> torch.Tensor:
    """The logits of a known wrong answer (the hints' references)."""
    x = images.float() / (1 if mistake == "not scaled" else 255)
    x = net.stem(x)
    for i, block in enumerate(net.blocks):
        if (i + 1 if mistake == "counted from 1" else i) not in deleted:
            x = block(x)
        elif mistake == "branch kept":
            x = block.branch(x)
        elif mistake == "raw projection" and block.downsample is not None:
            x = block.downsample(x)
        else:
            x = block.h(x)
    x = x if mistake == "no final BN-ReLU" else net.final_act(x)
    return net.fc(x.mean((2, 3)))


@check
def check_lesion_accuracy(fn) -> str:
    """Notebook 02, Exercise C. ``fn(model, images, labels, deleted) -> float``: the accuracy of a pre-activation
    CIFAR ResNet (in eval mode) on uint8 ``images`` with the residual branches of the blocks ``deleted`` (indices
    into ``model.blocks``) removed, walking its parts (stem, blocks, final BN-ReLU, pooling, fc) without calling
    the model or ``lesion``; checked against ``lesion``, the model left as it was."""
    gen = torch.Generator().manual_seed(5)
    hints = {"branch kept": "a deleted block loses its residual branch F_l and keeps its shortcut: x_{l+1} = h(x_l)",
             "raw projection": "where a deleted block downsamples, h projects the pre-activated input relu(bn1(x)), "
                               "as in the block's forward pass",
             "no final BN-ReLU": "after the blocks comes the final BN-ReLU (model.final_act), then the pooling and fc",
             "counted from 1": "block indices start at 0: deleted=[0] is the first block",
             "not scaled": "the tiles are uint8: divide by 255 first, as the package's accuracy does"}
    cases = [[], [0], [2], [1, 3, 5], [2, 4], [0, 1, 2, 3, 4, 5]]
    want, got, wrong = [], [], {m: [] for m in hints}
    for deleted in cases:
        net = _lesion_net(len(deleted))
        images = torch.randint(0, 256, (32, 3, 16, 16), generator=gen, dtype=torch.uint8)
        with torch.no_grad(), lesion(net, deleted):
            logits = net(images.float() / 255)
            mean, sd = logits.mean(0), logits.std(0)
            net.fc.weight.div_(sd[:, None])      # standardised logits: a random net predicts every class, not one
            net.fc.bias.sub_(mean).div_(sd)
            predicted = net(images.float() / 255).argmax(1)
        labels = torch.where(torch.arange(32) % 4 == 0, (predicted + 1) % 4, predicted)   # 24 of 32 right
        want.append(float((predicted == labels).float().mean()))
        with torch.no_grad():
            for m in hints:
                wrong[m].append(float((_lesioned_logits(net, images, deleted, m).argmax(1) == labels).float().mean()))
        before = {k: v.clone() for k, v in net.state_dict().items()}
        net.forward = _refuse_model
        for block in residual_blocks(net):
            for module in (block, block.tap):
                for hook in ("register_forward_hook", "register_forward_pre_hook"):
                    setattr(module, hook, _refuse_hooks)
        case = f"deleted={deleted}"
        out = call(fn, net, images.clone(), labels.clone(), list(deleted), case=case)
        expect(isinstance(out, (float, int, torch.Tensor)) and torch.as_tensor(out).numel() == 1,
               f"{case}: expected the accuracy as a float, got {type(out).__name__}")
        got.append(float(out))
        changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
        expect(not changed and not net.training, f"{case}: your function changed the model "
               f"({'now in training mode' if net.training else 'its ' + ', '.join(changed[:3])}); leave it as it was")
    same = lambda a, b: all(abs(x - y) < 1e-9 for x, y in zip(a, b))   # noqa: E731
    if not same(got, want):
        k = next(i for i, (g, w) in enumerate(zip(got, want)) if abs(g - w) >= 1e-9)
        # a known mistake is recognised by its accuracies on all the cases at once, not on one by chance
        known = "the accuracy, not the error rate" if same(got, [1 - w for w in want]) else next(
            (why for m, why in hints.items() if same(got, wrong[m])), None)
        raise Wrong(f"deleted={cases[k]}: expected accuracy {want[k]:.4f}, got {got[k]:.4f}"
                    + (f"; {known}" if known else ""))
    return f"{len(cases)} lesions of a ResNet-14: none, an identity block, a downsampling block, several, all"


def _refuse_model(*args, **kwargs):
    raise Wrong("your function called the model itself (model(x), or the package's accuracy); walk its parts: "
                "model.stem, model.blocks (deleting the chosen ones), model.final_act, pooling, model.fc")


def _refuse_hooks(*args, **kwargs):
    raise Wrong("your function put hooks on the blocks (lesion does): delete the branch yourself, in the walk "
                "through model.blocks")
