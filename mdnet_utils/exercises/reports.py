"""Checks for notebooks 06 (a report's log-likelihood, Eq. 11; the context vector, Eq. 13; MDNet's attention,
Eq. 14) and 07 (how much of a map lies in a mask; the pointing game; the CAM as a log-prior)."""
from __future__ import annotations

import torch

from mdnet_utils.evaluation.localisation import mass_inside, pointing_game
from mdnet_utils.exercises.core import call, check, close, expect, expect_close
from mdnet_utils.models.attention import CamAttention, context, flatten_features, standardise_cam
from mdnet_utils.models.decoder import sequence_log_likelihood


def _tokens(gen: torch.Generator, lengths: list[int], vocab: int) -> torch.Tensor:
    """<bos>=1 ... <eos>=2 rows of the given lengths, padded with 0."""
    out = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        out[row, 0] = 1
        out[row, 1:n - 1] = torch.randint(3, vocab, (n - 2,), generator=gen)
        out[row, n - 1] = 2
    return out


@check
def check_report_log_likelihood(fn) -> str:
    """Notebook 06, Exercise A. ``fn(logits, tokens, pad_id) -> (B,)``: Eq. (11), log p(report | image) = sum over
    t of log p(x_t | I, x_<t), where logits (B, T-1, V) at step t predict tokens[:, t+1] and padding targets
    do not count."""

    gen = torch.Generator().manual_seed(9)
    for lengths, vocab in [([5, 8, 3], 12), ([6], 20), ([4, 4], 7)]:
        tokens = _tokens(gen, lengths, vocab)
        logits = torch.randn(len(lengths), tokens.shape[1] - 1, vocab, generator=gen)
        want = sequence_log_likelihood(logits, tokens)
        logp = logits.log_softmax(-1)
        with_pads = logp.gather(-1, tokens[:, 1:, None]).squeeze(-1).sum(1)
        case = f"reports of lengths {lengths}, {vocab} words"
        got = call(fn, logits.clone(), tokens.clone(), 0, case=case)

        def hint(g, with_pads=with_pads):
            if close(g, with_pads, 1e-4):
                return "the padding targets (id 0) must not count"
            if g.shape == want.shape and torch.all(g.detach() > 0):
                return "a log-likelihood is never positive: take log_softmax, not the raw logits"
            return "the logits at step t predict tokens[:, t + 1] (the first token, <bos>, is never predicted)"

        expect_close(got, want, case, atol=1e-4, hint=hint)
    return "3 batches, padding included"


@check
def check_context(fn) -> str:
    """Notebook 06, Exercise B. ``fn(alpha, features) -> z``: Eq. (13), z = sum_i alpha_i C_i with the positions i
    of the (B, K, H, W) feature maps numbered row by row; alpha (B, H W) -> z (B, K)."""

    gen = torch.Generator().manual_seed(10)
    for b, k, h, w in [(2, 6, 4, 4), (1, 3, 2, 5), (3, 8, 3, 3)]:
        features = torch.randn(b, k, h, w, generator=gen)
        alpha = torch.softmax(torch.randn(b, h * w, generator=gen) * 2, dim=-1)
        want = context(alpha, flatten_features(features))
        columnwise = context(alpha, features.transpose(2, 3).flatten(2).transpose(1, 2))
        case = f"features {(b, k, h, w)}"
        got = call(fn, alpha.clone(), features.clone(), case=case)
        expect_close(got, want, case, hint=lambda g, c=columnwise: (
            "number the positions row by row (features.flatten(2)), not column by column" if close(g, c) else None))
    return "3 shapes, a non-square grid among them"


@check
def check_cam_attention(fn) -> str:
    """Notebook 06, Exercise C. ``fn(h, cam, W_h, W_att) -> alpha``: Eq. (14) as this course implements it,
    alpha = softmax(W_att tanh(W_h h + c)) with c the CAM standardised per image (zero mean, unit standard
    deviation over the N positions, eps 1e-5 inside the square root); h (B, hidden), cam (B, N) -> (B, N)."""

    gen = torch.Generator().manual_seed(11)
    for b, hidden, n in [(2, 8, 16), (3, 5, 9)]:
        torch.manual_seed(hidden + n)
        attention = CamAttention(hidden, n)
        h = torch.randn(b, hidden, generator=gen)
        cam = 5 * torch.randn(b, n, generator=gen) + 3           # a raw CAM: arbitrary offset and scale
        with torch.no_grad():
            want = attention(None, h, cam)
            raw = torch.softmax(attention.W_att(torch.tanh(attention.W_h(h) + cam)), dim=-1)
        case = f"batch {b}, hidden {hidden}, {n} positions"
        with torch.no_grad():
            got = call(fn, h.clone(), cam.clone(), attention.W_h, attention.W_att, case=case)
        expect_close(got, want, case, atol=1e-5, hint=lambda g, raw=raw: (
            "standardise c per image before it enters tanh" if close(g, raw) else None))
        expect(torch.allclose(got.sum(-1), torch.ones(b), atol=1e-5), f"{case}: each alpha must sum to 1")
    return "2 sizes, raw CAMs of arbitrary scale"


# ------------------------------------------------------------------------------------------ notebook 07

def _maps(gen: torch.Generator) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 3:7] = True
    peak = torch.zeros(8, 8)
    peak[3, 4] = 1.0
    miss = torch.zeros(8, 8)
    miss[7, 0] = 2.0
    tie = torch.zeros(8, 8)
    tie[3, 4] = tie[7, 7] = 1.0
    return [
        ("a random map with negative values", torch.randn(8, 8, generator=gen), mask),
        ("a positive random map", torch.rand(8, 8, generator=gen), mask),
        ("a single peak inside the mask", peak, mask),
        ("a single peak outside the mask", miss, mask),
        ("an all-zero map", torch.zeros(8, 8), mask),
        ("two equal peaks, one inside", tie, mask),
        ("a constant map", torch.full((8, 8), 0.3), mask),
    ]


def _number(got, case: str) -> float:
    expect(isinstance(got, (int, float)) or (isinstance(got, torch.Tensor) and got.numel() == 1),
           f"{case}: expected one number, got {type(got).__name__}"
           f"{tuple(got.shape) if isinstance(got, torch.Tensor) else ''}")
    return float(got)


@check
def check_mass_inside(fn) -> str:
    """Notebook 07, Exercise A. ``fn(saliency, mask) -> float``: the share of ReLU(saliency) that lies inside the
    mask, sum(s m) / sum(s); for a map with no positive mass, the mask's area share (what a uniform map scores)."""

    gen = torch.Generator().manual_seed(12)
    for case, saliency, mask in _maps(gen):
        want = float(mass_inside(saliency, mask))
        got = _number(call(fn, saliency.clone(), mask.clone(), case=case), case)
        note = ""
        if saliency.min() < 0:
            note = " (negative values are evidence against, not mass: take ReLU first)"
        elif saliency.max() == 0:
            note = " (no mass at all: score the mask's area share, what a uniform map would)"
        expect(abs(got - want) < 1e-5, f"{case}: expected {want:.4f}, got {got:.4f}{note}")
    return "7 maps: random, peaked, all-zero, constant"


@check
def check_pointing_game(fn) -> str:
    """Notebook 07, Exercise B. ``fn(saliency, mask) -> float``: 1.0 when the maximum of the map lies in the mask,
    0.0 when not; with several equal maxima, the share of them inside the mask."""

    gen = torch.Generator().manual_seed(13)
    for case, saliency, mask in _maps(gen):
        want = float(pointing_game(saliency, mask))
        got = _number(call(fn, saliency.clone(), mask.clone(), case=case), case)
        note = " (ties: count every maximal point, score the share inside)" if 0 < want < 1 else ""
        expect(abs(got - want) < 1e-5, f"{case}: expected {want:.4f}, got {got:.4f}{note}")
    return "7 maps, ties and constant maps included"


@check
def check_cam_prior(fn) -> str:
    """Notebook 07, Exercise C. ``fn(e, cam, lam) -> alpha``: the CAM as a log-prior on content scores (the study's
    variant 5), alpha = softmax(e + lam c) over the N positions, c the CAM standardised per image as in Eq. (14)
    (``standardise_cam``); e and cam (B, N), lam a number -> (B, N)."""

    gen = torch.Generator().manual_seed(14)
    for b, n, lam in [(2, 16, 1.5), (3, 9, 0.0), (1, 64, -0.7)]:
        e = torch.randn(b, n, generator=gen)
        cam = 4 * torch.randn(b, n, generator=gen) - 2             # a raw CAM: arbitrary offset and scale
        want = torch.softmax(e + lam * standardise_cam(cam), dim=-1)
        raw = torch.softmax(e + lam * cam, dim=-1)
        case = f"batch {b}, {n} positions, lam {lam}"
        got = call(fn, e.clone(), cam.clone(), lam, case=case)
        expect_close(got, want, case, atol=1e-5, hint=lambda g, raw=raw: (
            "standardise the CAM per image before it is added" if close(g, raw) else None))
    return "3 cases: lam positive, zero (the content attention alone) and negative"
