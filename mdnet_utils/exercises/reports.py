"""Checks for notebooks 06 (a report's log-likelihood, Eq. 11; one full decoder step, Eqs. 12-14; beam search with
backpointers) and 07 (how much of a map lies in a mask; the pointing game; the CAM as a log-prior)."""
from __future__ import annotations

import copy

import torch

from mdnet_utils.evaluation.localisation import mass_inside, pointing_game
from mdnet_utils.exercises.core import Wrong, call, check, close, expect, expect_close
from mdnet_utils.models.attention import CamAttention, context, standardise_cam
from mdnet_utils.models.decoder import ReportDecoder, beam_search, sequence_log_likelihood


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


def _tiny_decoder(seed: int, *, embed_dim: int = 5, eos_bias: float = 0.0, sharpen: float = 1.5) -> ReportDecoder:
    """A seeded random MDNet decoder (CamAttention; 10 words, 6 channels, 9 positions, hidden 8), in eval mode.
    ``sharpen`` scales the output layer, so the next word is a clear choice; ``eos_bias`` moves <eos>'s odds."""
    torch.manual_seed(seed)
    decoder = ReportDecoder(10, 6, CamAttention(8, 9), embed_dim=embed_dim, hidden_dim=8).eval()
    with torch.no_grad():
        decoder.out.weight.mul_(sharpen)
        decoder.out.bias[decoder.eos_id] += eos_bias
        decoder.init_h.weight.mul_(3)     # a larger initial state: the image decides more
        decoder.init_c.weight.mul_(3)
    return decoder


def _image_batch(seed: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (B, 9, 6) and a raw CAM (B, 9) of arbitrary offset and scale."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 9, 6, generator=gen), 4 * torch.randn(batch, 9, generator=gen) + 1


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise Wrong(f"your function called {what}: write the step from the decoder's layers (embedding, "
                    "attention.W_h, attention.W_att, lstm, out)")
    return refuse


def _eq14(decoder: ReportDecoder, h: torch.Tensor, cam: torch.Tensor, *, standardise: bool = True) -> torch.Tensor:
    att = decoder.attention
    c = standardise_cam(cam) if standardise else cam
    return torch.softmax(att.W_att(torch.tanh(att.W_h(h) + c)), dim=-1)


@check
def check_decoder_step(fn) -> str:
    """Notebook 06, Exercise B. ``fn(decoder, prev_tokens, state, features, cam) -> (logits, (h, c), alpha)``: one
    step of MDNet's decoder, Eqs. (12)-(14) together, from its layers: alpha = softmax(W_att tanh(W_h h_{t-1} + c))
    with c the CAM standardised per image, z = alpha C(I), (h_t, c_t) = lstm([E x_{t-1}; z], (h_{t-1}, c_{t-1})),
    logits = out(h_t); as ``decoder.step`` computes it (in eval mode), without calling it."""

    cases = [(21, 5, 3), (22, 6, 2)]          # (seed, embedding width, batch); width 6 = the features' width
    for seed, embed_dim, b in cases:
        decoder = _tiny_decoder(seed, embed_dim=embed_dim)
        features, cam = _image_batch(seed, b)
        gen = torch.Generator().manual_seed(seed + 1)
        prev = torch.randint(3, 10, (b,), generator=gen)
        state = (torch.randn(b, 8, generator=gen), torch.randn(b, 8, generator=gen))
        case = f"batch {b}, embedding width {embed_dim}"
        with torch.no_grad():
            want_logits, (want_h, want_c), want_alpha = decoder.step(prev, state, features, cam)
            theirs = copy.deepcopy(decoder)
            theirs.step = theirs.forward = _refuse("decoder.step (or the decoder itself)")
            theirs.attention.forward = _refuse("decoder.attention (the module's forward)")
            got = call(fn, theirs, prev.clone(), (state[0].clone(), state[1].clone()), features.clone(), cam.clone(),
                       case=case)
        expect(isinstance(got, (tuple, list)) and len(got) == 3 and isinstance(got[1], (tuple, list))
               and len(got[1]) == 2, f"{case}: return (logits, (h, c), alpha), got {type(got).__name__}")
        logits, (h, c), alpha = got
        emb = decoder.embedding(prev)
        with torch.no_grad():
            def hint_alpha(g):
                if close(g, _eq14(decoder, state[0], cam, standardise=False)):
                    return "standardise the CAM per image before it enters tanh (section 4)"
                if isinstance(h, torch.Tensor) and h.shape == want_h.shape and close(g, _eq14(decoder, h, cam)):
                    return ("this is the attention of the h_t your step returns: Eq. (14) reads h_{t-1}, the state "
                            "handed in")
                if close(g, _eq14(decoder, state[1], cam)):
                    return "the state is (h_{t-1}, c_{t-1}): the attention reads h, the first"
                return None

            def hint_state(g):
                z = context(want_alpha, features)
                lstm = decoder.lstm
                for u, why in [(torch.cat([emb, torch.zeros_like(z)], -1),
                                "the context z_t = a_t C(I) never reached the LSTM: its input is [E x_{t-1}; z_t]"),
                               (torch.cat([emb, features.mean(1)], -1),
                                "z_t weighs the positions by a_t; the plain mean of the features is not it"),
                               (torch.cat([z, emb], -1) if embed_dim == z.shape[1] else None,
                                "the LSTM's input is [E x_{t-1}; z_t], the embedded word first")]:
                    if u is not None and any(close(g, s) for s in lstm(u, state)):
                        return why
                if any(close(g, s) for s in lstm(torch.cat([emb, z], -1), (state[1], state[0]))):
                    return "the state is (h_{t-1}, c_{t-1}), h first"
                return None

        expect_close(alpha, want_alpha, f"{case}, alpha", hint=hint_alpha)
        expect_close(h, want_h, f"{case}, h_t", hint=hint_state)
        expect_close(c, want_c, f"{case}, c_t", hint=hint_state)
        expect_close(logits, want_logits, f"{case}, logits", hint=lambda g: (
            "the logits are out(h_t), from the new hidden state" if close(g, decoder.out(state[0])) else None))
    return "2 random decoders, raw CAMs, without calling decoder.step"


def _beam_answer(got, b: int, case: str) -> tuple[list[list[int]], list[float]]:
    expect(isinstance(got, (tuple, list)) and len(got) == 2, f"{case}: return (tokens, scores), got "
                                                               f"{type(got).__name__}")
    tokens, scores = got
    expect(isinstance(tokens, (list, tuple)) and len(tokens) == b and all(isinstance(t, (list, tuple)) for t in tokens),
           f"{case}: tokens must be a list of {b} lists of token ids, one per image")
    scores = [float(s) for s in (scores.tolist() if isinstance(scores, torch.Tensor) else scores)]
    expect(len(scores) == b, f"{case}: expected {b} scores, one per image, got {len(scores)}")
    return [[int(w) for w in t] for t in tokens], scores


def _log_likelihoods(decoder: ReportDecoder, features: torch.Tensor, cam: torch.Tensor, words: list[int]):
    """log p(words) and log p(words <eos>) for one image (Eq. 11, by teacher forcing)."""
    row = torch.tensor([[decoder.bos_id, *words, decoder.eos_id]])
    logits, _ = decoder(features, row, cam)
    logp = logits.log_softmax(-1)[0].gather(1, row[0, 1:, None]).squeeze(1)
    return float(logp[:-1].sum()), float(logp.sum())


@check
def check_beam_search(fn) -> str:
    """Notebook 06, Exercise C. ``fn(decoder, features, cam, beam_size, max_len) -> (tokens, scores)``: beam search
    as ``mdnet_utils.models.decoder.beam_search`` does it (length_penalty 0): per image the best finished report's
    words (no <bos>, no <eos>) and its summed log-probability, <eos> included; the best live beam where none
    finished within max_len steps."""

    cases = [(4, -0.3, 3, 3, 12), (23, -0.6, 3, 3, 12), (0, -0.3, 2, 3, 12), (5, 0.3, 3, 3, 4)]
    for seed, eos_bias, beam_size, b, max_len in cases:
        decoder = _tiny_decoder(seed, eos_bias=eos_bias)
        features, cam = _image_batch(100 + seed, b)
        case = f"{b} images, beam {beam_size}, max_len {max_len}"
        with torch.no_grad():
            want = beam_search(decoder, features, cam, beam_size=beam_size, max_len=max_len)
            tokens, scores = _beam_answer(call(fn, decoder, features.clone(), cam.clone(), beam_size, max_len,
                                               case=case), b, case)
        for i in range(b):
            right = tokens[i] == want.tokens[i] and abs(scores[i] - float(want.scores[i])) < 1e-4
            if right:
                continue
            where = f"{case}, image {i}"
            words = tokens[i]
            if decoder.eos_id in words[:-1]:
                raise Wrong(f"{where}: <eos> in the middle of {words}: a beam that writes <eos> is finished; "
                            "record it and take it out of the beams, do not extend it")
            if words[-1:] == [decoder.eos_id] or decoder.bos_id in words:
                raise Wrong(f"{where}: return the words without <bos> and <eos> (got {words})")
            if b > 1:
                with torch.no_grad():
                    alone = call(fn, decoder, features[i:i + 1].clone(), cam[i:i + 1].clone(), beam_size, max_len,
                                 case=f"{where} alone")
                if _beam_answer(alone, 1, f"{where} alone")[0] == [want.tokens[i]]:
                    raise Wrong(f"{where}: right when it is alone, wrong in a batch of {b}: rank each image's "
                                "beam_size x V extensions on its own, and offset its backpointers by the image's "
                                "first row (b x beam_size)")
            with torch.no_grad():
                likelihoods = _log_likelihoods(decoder, features[i:i + 1], cam[i:i + 1], words)
            if min(abs(scores[i] - ll) for ll in likelihoods) > 1e-4:
                raise Wrong(f"{where}: your score {scores[i]:.4f} is not the log-probability of the words you "
                            f"return ({likelihoods[1]:.4f} with <eos>): follow the backpointers, each new beam "
                            "continues the words and the (h, c) state of the beam it extends")
            raise Wrong(f"{where}: expected the words {want.tokens[i]} (score {float(want.scores[i]):.4f}), "
                        f"got {words} (score {scores[i]:.4f})")
    return f"{len(cases)} random decoders, batches of 2-3 images, finished and unfinished reports"


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
