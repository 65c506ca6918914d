"""Checks for notebooks 03 (a class activation map, Eq. 7; logits read off it), 04 (Eq. (9)'s decoupled scores;
one linear layer split into per-member classifiers) and 05 (an ensemble-connection block, Eq. 10; the literal
net's channel growth)."""
from __future__ import annotations

import torch
from torch import nn

from mdnet_utils.exercises.core import Wrong, call, check, close, expect, expect_close
from mdnet_utils.models.ecnet import LiteralConcatBlock, channel_table, literal_ecnet
from mdnet_utils.models.heads import DecoupledHead, class_activation_map


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


@check
def check_logits_from_cam(fn) -> str:
    """Notebook 03, Exercise B. ``fn(cams, bias) -> logits``: the logits of GAP + linear, read off the class
    activation maps alone (cams (B, C, H, W), bias (C,) -> (B, C))."""
    gen = torch.Generator().manual_seed(5)
    for b, k, c, h, w in [(2, 8, 4, 4, 4), (3, 6, 2, 3, 5)]:
        features = torch.relu(torch.randn(b, k, h, w, generator=gen))
        fc = nn.Linear(k, c)
        with torch.no_grad():
            fc.bias.copy_(torch.randn(c, generator=gen))
            want = fc(features.mean(dim=(2, 3)))                          # what the network computes
            cams = torch.einsum("ck,bkhw->bchw", fc.weight, features)
        case = f"maps {(b, c, h, w)}"
        got = call(fn, cams.clone(), fc.bias.detach().clone(), case=case)

        def hint(g, cams=cams, bias=fc.bias.detach(), hw=h * w):
            if close(g, cams.sum(dim=(2, 3)) + bias, 1e-4):
                return f"that is the sum over the {hw} positions (Eq. 7 as printed); GAP takes their mean"
            if close(g, cams.mean(dim=(2, 3)), 1e-4):
                return "add the bias b_c"
            return None

        expect_close(got, want, case, atol=1e-5, hint=hint)
    return "2 shapes; equal to the network's own GAP + linear"


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
def check_split_linear(fn) -> str:
    """Notebook 04, Exercise B. ``fn(fc, member_channels) -> weights``: the per-member classifiers w_m (C, K_m) hidden
    in one ``nn.Linear`` over the concatenated members, so that sum_m w_m . GAP(member_m) + b = fc(GAP(concat))."""

    gen = torch.Generator().manual_seed(7)
    for widths in [(4, 4), (2, 5, 3), (7,)]:
        fc = nn.Linear(sum(widths), 3)
        members = [torch.randn(2, k, 4, 4, generator=gen) for k in widths]
        with torch.no_grad():
            whole = fc(torch.cat(members, dim=1).mean(dim=(2, 3)))
        case = f"members of widths {list(widths)}"
        with torch.no_grad():
            got = call(fn, fc, list(widths), case=case)
        expect(isinstance(got, (list, tuple)) and len(got) == len(widths),
               f"{case}: expected a list of {len(widths)} weight tensors, got {type(got).__name__}")
        want = DecoupledHead.from_linear(fc, widths).classifiers
        for m, (k, w, clf) in enumerate(zip(widths, got, want)):
            expect_close(w, clf.weight.detach(), f"{case}, member {m}'s weight",
                         hint=lambda g: ("split the columns of fc.weight (input channels), not its rows (classes)"
                                         if g.shape == (k, 3) or g.shape[0] != 3 else None))
        with torch.no_grad():
            summed = sum(m.mean(dim=(2, 3)) @ w.T for m, w in zip(members, got)) + fc.bias
        expect(torch.allclose(summed, whole, atol=1e-5), f"{case}: the members' scores do not add up to fc's logits")
    return "3 heads; the members' scores add up to the linear layer's logits"


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
