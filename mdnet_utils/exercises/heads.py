"""Checks for notebooks 03 (a class activation map, Eq. 7; Eq. (8)'s members through the head's BN-ReLU), 04
(Eq. (9)'s decoupled scores; Eq. (9) exactly, behind the shared BN-ReLU) and 05 (an ensemble-connection block,
Eq. 10; the literal net's channel growth)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from mdnet_utils.exercises.core import Wrong, call, check, close, expect, expect_close
from mdnet_utils.models.ecnet import LiteralConcatBlock, channel_table, literal_ecnet
from mdnet_utils.models.decoupled import shared_bn_relu
from mdnet_utils.models.heads import class_activation_map


@check
def check_cam(fn) -> str:
    """Notebook 03, Exercise A. ``fn(features, fc_weight) -> cams``: Eq. (7)'s map M_c(i, j) = sum_k w_k^c y^(k)(i, j)
    for every image and class, features (B, K, H, W) and fc_weight (C, K) -> (B, C, H, W)."""

    gen = torch.Generator().manual_seed(4)
    for b, k, c, h, w in [(2, 8, 4, 4, 4), (1, 16, 3, 2, 5), (3, 5, 10, 7, 7)]:
        features = torch.relu(torch.randn(b, k, h, w, generator=gen))
        weight = torch.randn(c, k, generator=gen)
        case = f"features {(b, k, h, w)}, weight {(c, k)}"
        got = call(fn, features.clone(), weight.clone(), case=case)
        expect_close(got, class_activation_map(features, weight), case)
    return "3 shapes, non-square maps among them"


def _trained_bn(k: int, gen: torch.Generator) -> nn.BatchNorm2d:
    """A batch norm that looks trained: running statistics and an affine map away from 0 and 1."""
    bn = nn.BatchNorm2d(k)
    with torch.no_grad():
        bn.running_mean.copy_(0.5 * torch.randn(k, generator=gen))
        bn.running_var.copy_(0.5 + torch.rand(k, generator=gen))
        bn.weight.copy_(0.5 + torch.rand(k, generator=gen))
        bn.bias.copy_(0.5 * torch.randn(k, generator=gen))
    return bn


def _parts(members, bn, *, shift="first", relu="sum", stats=None, unbiased=False) -> list[torch.Tensor]:
    """The members through a BN-ReLU as ``shared_bn_relu`` carries them (the defaults), or in a typical wrong way,
    to recognise a mistake: BN's shift on no member or on each (``shift``), a ReLU per member (``relu="each"``),
    the running statistics in training mode (``stats="running"``), the unbiased variance."""
    y = sum(members)
    if (stats or ("batch" if bn.training else "running")) == "batch":
        mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=unbiased)
    else:
        mean, var = bn.running_mean, bn.running_var
    a = bn.weight / torch.sqrt(var + bn.eps)
    a, s = a.view(1, -1, 1, 1), (bn.bias - mean * a).view(1, -1, 1, 1)
    scaled = [a * m + (s if shift == "each" or (shift == "first" and i == 0) else 0) for i, m in enumerate(members)]
    if relu == "each":
        return [torch.relu(p) for p in scaled]
    gate = (a * y + s > 0).to(y.dtype)
    return [gate * p for p in scaled]


def _scores(parts, weight) -> torch.Tensor:
    """(B, M, C): w . GAP(part) for each part."""
    return torch.stack([p.mean(dim=(2, 3)) @ weight.T for p in parts], dim=1)


def _known(got, mistakes) -> str | None:
    """The message of the first known mistake ``got`` equals, if any."""
    return next((message for result, message in mistakes if close(got, result)), None)


@check
def check_member_scores(fn) -> str:
    """Notebook 03, Exercise B. ``fn(members, bn, w) -> (B, M, C)``: Eq. (8) through the head's BN-ReLU, member by
    member. ``bn`` in eval mode is BN(y) = a * y + s per channel (a = gamma / sqrt(running_var + eps),
    s = beta - a * running_mean); g = 1[BN(y) > 0] is the ReLU's mask of the whole sum y. Member m's part of the
    class scores is w . GAP(g * a * member_m), the first member's also carries g * s; they add up to
    w . GAP(ReLU(BN(y)))."""
    gen = torch.Generator().manual_seed(9)
    for n, k, c, h, w in [(2, 6, 3, 4, 4), (4, 8, 4, 3, 5), (6, 5, 2, 6, 6)]:
        members = [torch.randn(2, k, h, w, generator=gen) for _ in range(n)]
        bn = _trained_bn(k, gen).eval()
        weight = torch.randn(c, k, generator=gen)
        with torch.no_grad():
            want = _scores(shared_bn_relu(members, bn), weight)
            whole = torch.relu(bn(sum(members))).mean(dim=(2, 3)) @ weight.T
            mistakes = [
                (_scores(_parts(members, bn, shift="none"), weight),
                 "BN's shift s = beta - a * running_mean is missing: the first member carries it"),
                (_scores(_parts(members, bn, shift="each"), weight),
                 f"BN's shift s goes with one member, the first: added to each, it counts {n} times"),
                (_scores([torch.relu(bn(m)) for m in members], weight),
                 "that is a BN-ReLU per member; here one BN-ReLU acts on the sum: carry its a, s and mask to each"),
                (_scores(_parts(members, bn, relu="each"), weight),
                 "a ReLU per member: the mask g = 1[BN(y) > 0] is set by the whole sum y and gates every member"),
                (torch.stack([p.sum(dim=(2, 3)) @ weight.T for p in shared_bn_relu(members, bn)], dim=1),
                 f"that is the sum over the {h * w} positions; GAP takes their mean")]
        case = f"{n} members of {k} channels, {c} classes, {h}x{w} maps"
        with torch.no_grad():
            got = call(fn, [m.clone() for m in members], copy.deepcopy(bn), weight.clone(), case=case)

        def hint(g, mistakes=mistakes, whole=whole):
            if _known(g, mistakes) is None and close(g.sum(dim=1), whole):
                return "your parts add up to the score but are split otherwise: member m gets g * a * member_m"
            return _known(g, mistakes)

        expect_close(got, want, case, hint=hint)
    return "3 ensembles of 2 to 6 members; the parts add up to w . GAP(ReLU(BN(y)))"


# ------------------------------------------------------------------------------------------ notebook 04

@check
def check_decoupled_scores(fn) -> str:
    """Notebook 04, Exercise A. ``fn(members, weights, bias) -> scores``: Eq. (9), p^c = sum_m w_m^c . GAP(member_m)
    + b_c, members a list of (B, K_m, H, W), weights a list of (C, K_m), bias (C,) -> (B, C)."""
    gen = torch.Generator().manual_seed(6)
    for widths in [(4, 4), (8, 3, 5), (6,)]:
        members = [torch.randn(2, k, 4, 4, generator=gen) for k in widths]
        weights = [torch.randn(3, k, generator=gen) for k in widths]
        bias = torch.randn(3, generator=gen)
        want = sum(m.mean(dim=(2, 3)) @ w.T for m, w in zip(members, weights)) + bias
        case = f"{len(widths)} member(s) of widths {list(widths)}"
        got = call(fn, [m.clone() for m in members], [w.clone() for w in weights], bias.clone(), case=case)
        expect_close(got, want, case, atol=1e-5,
                     hint=lambda g, want=want, bias=bias: "add the bias b_c once" if close(g, want - bias) else None)
    return "3 ensembles of 1 to 3 members"


@check
def check_eq9_head(fn) -> str:
    """Notebook 04, Exercise B. ``fn(members, bn, weights, bias) -> (B, C)``: Eq. (9) exactly on a real head. One
    BN-ReLU for the sum y of the members, BN(y) = a * y + s (a = gamma / sqrt(var + eps), s = beta - a * mean;
    the batch's mean and biased variance over (B, H, W) when ``bn`` is in training mode, the running ones in eval),
    g = 1[BN(y) > 0]; member m's classifier weights (C, K) score GAP(g * a * member_m), the first member's also
    g * s; the scores summed, plus the bias once. With equal weights that is the shared head's logits."""
    gen = torch.Generator().manual_seed(10)
    cases = [(2, 6, 3, False, False), (3, 8, 4, True, False), (5, 4, 2, True, False), (4, 6, 3, True, True),
             (3, 5, 4, False, True)]
    for n, k, c, train, equal in cases:
        members = [torch.randn(2, k, 4, 4, generator=gen) for _ in range(n)]
        bn = _trained_bn(k, gen).train(train)
        weights = [torch.randn(c, k, generator=gen) for _ in range(1 if equal else n)] * (n if equal else 1)
        bias = torch.randn(c, generator=gen)

        def logits(parts, biases=1, weights=weights, bias=bias):
            return sum(p.mean(dim=(2, 3)) @ w.T for p, w in zip(parts, weights)) + biases * bias

        with torch.no_grad():
            want = logits(shared_bn_relu(members, copy.deepcopy(bn)))
            mistakes = [
                (logits([torch.relu(copy.deepcopy(bn)(m)) for m in members]),
                 "that is the per-member BN-ReLU variant (each member its own statistics and mask); Eq. (9) carries "
                 "the sum's one BN-ReLU to every member"),
                (logits(_parts(members, bn, stats="running")),
                 "bn is in training mode here: BN normalises with the batch's mean and variance over (B, H, W)"),
                (logits(_parts(members, bn, unbiased=True)),
                 "BN divides by the biased variance (var(..., unbiased=False))"),
                (logits(_parts(members, bn, shift="none")), "BN's shift s is missing: the first member carries it"),
                (logits(shared_bn_relu(members, copy.deepcopy(bn)), biases=n), "add the bias once")]
        mode = "training mode (batch statistics)" if train else "eval mode (running statistics)"
        case = f"{n} members, {mode}, " + ("equal weights: must give the shared head's logits (Eq. (8))" if equal
                                           else "a classifier each")
        with torch.no_grad():
            got = call(fn, [m.clone() for m in members], copy.deepcopy(bn), [w.clone() for w in weights],
                       bias.clone(), case=case)
        expect_close(got, want, case, hint=lambda g, mistakes=mistakes: _known(g, mistakes))
    return f"{len(cases)} heads in eval and training mode; with equal weights, the shared head's logits"


# ------------------------------------------------------------------------------------------ notebook 05

def _refuse(*args, **kwargs):
    raise Wrong("your function called the block itself (block(y) or block.forward); build y_{l+1} from "
                "block.branch and block.h")


@check
def check_concat_forward(fn) -> str:
    """Notebook 05, Exercise A. ``fn(block, y) -> y_{l+1}``: a ``LiteralConcatBlock``'s forward pass, Eq. (10),
    y_{l+1} = F_l(y_l) (+) h(y_l), concatenated along the channels with F_l's channels first."""

    gen = torch.Generator().manual_seed(8)
    for c_in, growth, stride in [(16, 16, 1), (32, 8, 2), (8, 24, 1)]:
        torch.manual_seed(c_in + growth)
        block = LiteralConcatBlock(c_in, growth, stride).eval()
        y = torch.randn(2, c_in, 8, 8, generator=gen)
        with torch.no_grad():
            want = block(y)
            swapped = torch.cat([block.h(y), block.branch(y)], dim=1)
        block.forward = _refuse
        case = f"block {c_in} channels + {growth}, stride {stride}"
        with torch.no_grad():
            got = call(fn, block, y.clone(), case=case)
        expect_close(got, want, case, hint=lambda g, s=swapped: (
            "F_l(y_l)'s channels come first, then h(y_l)" if close(g, s) else None))
    return "3 blocks, one of them halving the resolution"


@check
def check_literal_channels(fn) -> str:
    """Notebook 05, Exercise B. ``fn(depth, widen_factor) -> [out channels of each block]`` of
    ``literal_ecnet(depth, widen_factor)``: a 16-channel stem, 3 stages of n = (depth - 2) / 9 blocks, each
    concatenating 16k, 32k, 64k new channels (stage 1, 2, 3)."""

    n = 0
    for depth in (11, 20, 29, 56):
        for k in (1, 2, 4):
            want = [r.out_channels for r in channel_table(literal_ecnet(depth, k))]
            case = f"depth {depth}, widen factor {k}"
            got = call(fn, depth, k, case=case)
            expect(isinstance(got, (list, tuple)) and len(got) == len(want),
                   f"{case}: expected {len(want)} blocks ({len(want) // 3} per stage), got "
                   f"{len(got) if hasattr(got, '__len__') else type(got).__name__}")
            for i, (g, w) in enumerate(zip(got, want)):
                expect(g == w, f"{case}: block {i} (stage {i // (len(want) // 3) + 1}) should output {w} channels, "
                               f"got {g}")
            n += 1
    return f"{n} literal networks, depth 11 to 56"
