"""Eqs. (11)-(12): the LSTM that writes the report.

Eq. (11): log p(x_{0:T} | I) = sum_t log p(x_t | I, x_{0:t-1}), the report's log-likelihood; training maximises it
(``word_loss``, ``sequence_log_likelihood``). Here x_0 is <bos>, given and not predicted: the sum runs over the
predicted tokens x_1..x_T, <eos> included.

Eq. (12): h_t = LSTM(E x_{t-1}, h_{t-1}, z_t), the LSTM's input the embedded previous word next to the context
vector z_t of Eq. (13), whose attention (Eq. (14) or the baseline) reads h_{t-1}: ``ReportDecoder``.

Writing a report for a new image: ``greedy_decode`` and ``beam_search``, both returning ``Decoded``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mdnet_utils.models.attention import context

__all__ = ["ReportDecoder", "word_loss", "sequence_log_likelihood", "Decoded", "greedy_decode", "beam_search"]


class ReportDecoder(nn.Module):
    """Eq. (12) with attention, in the layout of Show, Attend and Tell (Xu et al. 2015).

    embedding  E, ``nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)``
    init_h, init_c  the LSTM's initial state, tanh(Linear(mean feature vector)) each
    attention  a module with ``forward(features, h, cam=None, cache=None) -> alpha`` and ``precompute(features,
               cam)``: ``CamAttention`` (Eq. (14)) or ``SoftAttention`` (the baseline)
    lstm       ``nn.LSTMCell(embed_dim + feature_dim, hidden_dim)``, input [E x_{t-1}; z_t]
    out        ``nn.Linear(hidden_dim, vocab_size)``, after dropout on h_t: the logits of x_t

    features are (B, N, D) (``flatten_features``), cam (B, N) or None (only ``CamAttention`` needs it).
    """

    def __init__(self, vocab_size: int, feature_dim: int, attention: nn.Module, *, embed_dim: int = 64,
                 hidden_dim: int = 256, dropout: float = 0.0, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2):
        super().__init__()
        self.vocab_size, self.feature_dim, self.hidden_dim = vocab_size, feature_dim, hidden_dim
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.attention = attention
        self.lstm = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def init_state(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_0, c_0) from the mean feature vector over the positions, (B, hidden_dim) each."""
        mean = features.mean(dim=1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def precompute(self, features: torch.Tensor, cam: torch.Tensor | None = None) -> torch.Tensor:
        """The attention's part that does not depend on t, to pass as ``cache`` to every ``step``."""
        return self.attention.precompute(features, cam)

    def _step(self, embedded, state, features, cam, cache):
        h, c = state
        alpha = self.attention(features, h, cam, cache=cache)         # Eq. (14) (or the baseline), from h_{t-1}
        z = context(alpha, features)                                   # Eq. (13)
        h, c = self.lstm(torch.cat([embedded, z], dim=-1), (h, c))     # Eq. (12)
        return self.out(self.dropout(h)), (h, c), alpha

    def step(self, prev_tokens: torch.Tensor, state, features: torch.Tensor, cam: torch.Tensor | None = None,
             cache: torch.Tensor | None = None):
        """One time step: prev_tokens (B,) the x_{t-1}, state (h_{t-1}, c_{t-1}) ->
        (logits of x_t (B, V), (h_t, c_t), alpha_t (B, N), the attention z_t was read with)."""
        return self._step(self.embedding(prev_tokens), state, features, cam, cache)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor, cam: torch.Tensor | None = None):
        """Teacher forcing: tokens (B, T), each row <bos> ... <eos> then padding; the inputs are tokens[:, :-1],
        the targets tokens[:, 1:]. -> (logits (B, T-1, V), alphas (B, T-1, N)). The steps after a row's <eos>
        compute something meaningless, which the losses mask out."""
        if tokens.dim() != 2 or tokens.shape[1] < 2:
            raise ValueError(f"tokens must be (B, T) with T >= 2 (<bos> and at least one target); "
                             f"got {tuple(tokens.shape)}.")
        embedded = self.embedding(tokens[:, :-1])                      # all inputs at once
        state, cache = self.init_state(features), self.precompute(features, cam)
        logits, alphas = [], []
        for t in range(embedded.shape[1]):
            step_logits, state, alpha = self._step(embedded[:, t], state, features, cam, cache)
            logits.append(step_logits)
            alphas.append(alpha)
        return torch.stack(logits, dim=1), torch.stack(alphas, dim=1)


def _targets(logits: torch.Tensor, tokens: torch.Tensor, pad_id: int):
    """The targets tokens[:, 1:] (B, T-1) and the mask of the real (non-pad) ones."""
    targets = tokens[:, 1:]
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match the targets tokens[:, 1:] {tuple(targets.shape)}.")
    return targets, targets != pad_id


def word_loss(logits: torch.Tensor, tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """The training loss: the mean cross-entropy over the real (non-pad) targets tokens[:, 1:]; minimising it
    maximises Eq. (11). Padding targets are left out, so neither extra pad columns nor the logits there count."""
    targets, mask = _targets(logits, tokens, pad_id)
    return F.cross_entropy(logits[mask], targets[mask])           # only the real positions are even read


def sequence_log_likelihood(logits: torch.Tensor, tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Eq. (11): sum_t log p(x_t | I, x_{0:t-1}) over each row's real targets tokens[:, 1:] (<eos> included), (B,)."""
    targets, mask = _targets(logits, tokens, pad_id)
    logp = logits.log_softmax(dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, logp, torch.zeros_like(logp)).sum(dim=1)


@dataclass
class Decoded:
    """What a decoder wrote for a batch of B images.

    tokens: B lists of token ids, without <bos> and <eos>. alphas: B tensors (L_i, N), row j the attention used
    when emitting token j (the <eos> step's is not included). scores: (B,), the sum of the log-probabilities of
    the chosen tokens, <eos> included if emitted (raw, not length-normalised). finished: (B,) bool, True where
    <eos> was emitted within max_len steps.
    """

    tokens: list[list[int]]
    alphas: list[torch.Tensor]
    scores: torch.Tensor
    finished: torch.Tensor


def _emittable(log_probs: torch.Tensor, decoder: ReportDecoder) -> torch.Tensor:
    """<pad> and <bos> are never written: their log-probabilities set to -inf (the others not renormalised, so a
    score stays the model's log-likelihood of the sequence)."""
    log_probs = log_probs.clone()
    log_probs[:, [decoder.pad_id, decoder.bos_id]] = float("-inf")
    return log_probs


@torch.no_grad()
def greedy_decode(decoder: ReportDecoder, features: torch.Tensor, cam: torch.Tensor | None = None, *,
                  max_len: int) -> Decoded:
    """The most likely next word at every step, until every row has written <eos> or after max_len steps
    (tokens, <eos> included: an unfinished row has max_len words, a finished one fewer). <pad> and <bos> are
    never written. Runs under no_grad and leaves the mode alone: put the decoder in eval mode first (dropout)."""
    B = features.shape[0]
    state, cache = decoder.init_state(features), decoder.precompute(features, cam)
    prev = torch.full((B,), decoder.bos_id, dtype=torch.long, device=features.device)
    finished = torch.zeros(B, dtype=torch.bool, device=features.device)
    lengths = torch.full((B,), max_len, dtype=torch.long, device=features.device)
    scores = features.new_zeros(B)
    chosen, alphas = [], []
    for t in range(max_len):
        logits, state, alpha = decoder.step(prev, state, features, cam, cache)
        best, prev = _emittable(logits.log_softmax(dim=-1), decoder).max(dim=-1)
        scores += torch.where(finished, torch.zeros_like(best), best)
        ends = ~finished & (prev == decoder.eos_id)
        lengths[ends] = t
        finished |= ends
        chosen.append(prev)
        alphas.append(alpha)
        if finished.all():
            break
    chosen = torch.stack(chosen, 1) if chosen else prev.new_zeros(B, 0)
    alphas = torch.stack(alphas, 1) if alphas else features.new_zeros(B, 0, features.shape[1])
    return Decoded([chosen[b, :lengths[b]].tolist() for b in range(B)], [alphas[b, :lengths[b]] for b in range(B)],
                   scores, finished)


@torch.no_grad()
def beam_search(decoder: ReportDecoder, features: torch.Tensor, cam: torch.Tensor | None = None, *,
                beam_size: int = 3, max_len: int, length_penalty: float = 0.0) -> Decoded:
    """Beam search, batched over the B images (B * beam_size rows), for at most max_len steps (as greedy_decode).

    Each step ranks all beam_size * V extensions of an image's beams by their summed log-probability. An <eos>
    extension within the top beam_size is a finished hypothesis; the best beam_size extensions that are not
    <eos> are the next beams. At step 0 only the first beam is live (the others at -inf), so beams do not repeat.
    The answer is the finished hypothesis maximising score / length ** length_penalty (length in tokens, <eos>
    included; 0 = the raw sum); where none finished, the best beam alive at max_len (finished False).
    An image stops early once no live beam can beat its best finished hypothesis (log-probabilities only add
    negative terms), which does not change the answer. beam_size=1 gives greedy_decode's tokens.
    <pad> and <bos> are never written. Runs under no_grad and leaves the mode alone: put the decoder in eval mode first.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1; got {beam_size}.")
    B, N, _ = features.shape
    k, V, eos = beam_size, decoder.vocab_size, decoder.eos_id
    rep = lambda x: None if x is None else x.repeat_interleave(k, dim=0)   # image b's beams: rows b*k .. b*k+k-1
    cache = rep(decoder.precompute(features, cam))
    features, cam = rep(features), rep(cam)
    state = decoder.init_state(features)
    scores = features.new_full((B, k), float("-inf"))
    scores[:, 0] = 0.0
    prev = torch.full((B * k,), decoder.bos_id, dtype=torch.long, device=features.device)
    history = prev.new_zeros(B * k, 0)                                     # the beams' tokens so far
    attention = features.new_zeros(B * k, 0, N)                            # and their attention maps
    base = (torch.arange(B, device=features.device) * k).unsqueeze(1)     # (B, 1): each image's first row
    best: list[tuple | None] = [None] * B                                  # (normalised, raw, tokens, alphas)
    done = [False] * B
    for t in range(max_len):
        logits, state, alpha = decoder.step(prev, state, features, cam, cache)
        cand = (scores.unsqueeze(-1) + _emittable(logits.log_softmax(-1), decoder).view(B, k, V)).view(B, k * V)
        # finished hypotheses: <eos> among the top k extensions
        top_s, top_i = cand.topk(k, dim=1)
        for b, j in ((top_i % V == eos) & torch.isfinite(top_s)).nonzero().tolist():
            if done[b]:
                continue
            raw, row = top_s[b, j].item(), b * k + top_i[b, j].item() // V
            norm = raw / (t + 1) ** length_penalty
            if best[b] is None or norm > best[b][0]:
                best[b] = (norm, raw, history[row].tolist(), attention[row])
        # the next beams: the top k extensions that are not <eos>
        cand.view(B, k, V)[:, :, eos] = float("-inf")
        scores, idx = cand.topk(k, dim=1)
        rows = (base + torch.div(idx, V, rounding_mode="floor")).view(-1)  # backpointers into the B*k rows
        prev = (idx % V).view(-1)
        state = (state[0][rows], state[1][rows])
        history = torch.cat([history[rows], prev.unsqueeze(1)], dim=1)
        attention = torch.cat([attention[rows], alpha[rows].unsqueeze(1)], dim=1)
        # the most a live beam can still reach: its raw sum only falls, and it ends within max_len tokens
        longest = max_len if length_penalty > 0 else t + 2
        bound = (scores.max(dim=1).values / longest ** length_penalty).tolist()
        done = [done[b] or (best[b] is not None and best[b][0] >= bound[b]) for b in range(B)]
        if all(done):
            break
    finished = torch.tensor([hyp is not None for hyp in best], device=features.device)
    for b in range(B):
        if best[b] is None:                                                # nothing finished: the best live beam
            row = b * k + int(scores[b].argmax())
            best[b] = (None, scores.view(-1)[row].item(), history[row].tolist(), attention[row])
    return Decoded([hyp[2] for hyp in best], [hyp[3] for hyp in best],
                   torch.tensor([hyp[1] for hyp in best], dtype=features.dtype, device=features.device), finished)
