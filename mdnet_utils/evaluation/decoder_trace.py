"""Inside a greedy decode: what the LSTM's gates, cell state and context vector did at every word.

``trace_greedy(decoder, features, cam, max_len=...)`` writes the reports with the package's ``greedy_decode``,
then replays each report through ``decoder.step`` along the words it wrote, and records per step what
Eqs. (12)-(14) computed: the attention a_t (Eq. 14) and the context z_t = a_t C(I) (Eq. 13) it gives, the LSTM's
four gates, its cell state c_t and hidden state h_t (Eq. 12). ``trace_reports(model, tiles, ...)`` does the same
for uint8 tiles and a ``ReportGenerator``, as ``generate_reports`` writes them.

The replay runs the same calls on the same batch as the decode, so its words and attention maps are the
decode's, bit for bit; c_t and h_t are ``nn.LSTMCell``'s own. The gates are recomputed from the cell's weights
(PyTorch's order: input i, forget f, cell candidate g, output o), so they equal what the fused cell computed up
to rounding: c_t = f c_{t-1} + i g and h_t = o tanh(c_t) hold to about 1e-7, which the tests check.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mdnet_utils.data.loading import to_input
from mdnet_utils.models.attention import context
from mdnet_utils.models.decoder import Decoded, ReportDecoder, greedy_decode
from mdnet_utils.models.mdnet import ReportGenerator

__all__ = ["DecoderTrace", "lstm_gates", "trace_greedy", "trace_reports"]


@dataclass
class DecoderTrace:
    """Per image b and step t (row t: the step that wrote word t, the <eos> step last where one was written):
    ``alphas`` (B, S, N) a_t, ``contexts`` (B, S, D) z_t, ``gates`` {"input", "forget", "candidate", "output"}
    each (B, S, hidden), ``cells`` (B, S, hidden) c_t and ``hidden`` (B, S, hidden) h_t, after the step;
    ``initial`` (h_0, c_0), each (B, hidden); ``steps`` (B,) how many rows of image b are real (its words, plus
    one for <eos> if it was written); ``decoded`` what ``greedy_decode`` returned. Rows past ``steps[b]`` are
    computed on padding and mean nothing."""
    alphas: torch.Tensor
    contexts: torch.Tensor
    gates: dict[str, torch.Tensor]
    cells: torch.Tensor
    hidden: torch.Tensor
    initial: tuple[torch.Tensor, torch.Tensor]
    steps: torch.Tensor
    decoded: Decoded

    def __getitem__(self, b: int) -> dict[str, torch.Tensor]:
        """Image b's real steps: {"alphas", "contexts", "input", "forget", "candidate", "output", "cells",
        "hidden"}, each (steps[b], ...)."""
        s = int(self.steps[b])
        rows = {"alphas": self.alphas, "contexts": self.contexts, **self.gates, "cells": self.cells,
                "hidden": self.hidden}
        return {k: v[b, :s] for k, v in rows.items()}

    def cpu(self) -> "DecoderTrace":
        """The same trace with every tensor on the CPU."""
        d = self.decoded
        return DecoderTrace(self.alphas.cpu(), self.contexts.cpu(), {k: v.cpu() for k, v in self.gates.items()},
                            self.cells.cpu(), self.hidden.cpu(), (self.initial[0].cpu(), self.initial[1].cpu()),
                            self.steps.cpu(), Decoded(d.tokens, [a.cpu() for a in d.alphas], d.scores.cpu(),
                                                      d.finished.cpu()))


def lstm_gates(cell: nn.LSTMCell, u: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
    """Eq. (12)'s gates from ``nn.LSTMCell``'s weights: i, f, o = sigmoid(...), g = tanh(...) of
    W_ih u + b_ih + W_hh h_{t-1} + b_hh, split in PyTorch's order (i, f, g, o)."""
    pre = u @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = pre.chunk(4, dim=-1)
    return {"input": torch.sigmoid(i), "forget": torch.sigmoid(f), "candidate": torch.tanh(g),
            "output": torch.sigmoid(o)}


@torch.no_grad()
def trace_greedy(decoder: ReportDecoder, features: torch.Tensor, cam: torch.Tensor | None = None, *,
                 max_len: int) -> DecoderTrace:
    """``greedy_decode``'s reports, replayed step by step with everything recorded (see ``DecoderTrace``).
    features (B, N, D), cam (B, N) or None, as for ``greedy_decode``; put the decoder in eval mode first."""
    decoded = greedy_decode(decoder, features, cam, max_len=max_len)
    B = features.shape[0]
    steps = torch.tensor([len(w) + int(f) for w, f in zip(decoded.tokens, decoded.finished.tolist())],
                         device=features.device)
    S = int(steps.max()) if B else 0
    prev = torch.full((B, max(S, 1)), decoder.pad_id, dtype=torch.long, device=features.device)
    prev[:, 0] = decoder.bos_id
    for b, words in enumerate(decoded.tokens):            # step t is fed the word written at step t - 1
        prev[b, 1:1 + len(words)] = torch.tensor(words[:S - 1], dtype=torch.long)
    state, cache = decoder.init_state(features), decoder.precompute(features, cam)
    initial = state
    record: dict[str, list[torch.Tensor]] = {k: [] for k in ("alphas", "contexts", "cells", "hidden", "input",
                                                               "forget", "candidate", "output")}
    for t in range(S):
        h_prev = state[0]
        _, state, alpha = decoder.step(prev[:, t], state, features, cam, cache)
        z = context(alpha, features)                      # Eq. (13), as the step computed it
        u = torch.cat([decoder.embedding(prev[:, t]), z], dim=-1)
        for k, v in {"alphas": alpha, "contexts": z, "cells": state[1], "hidden": state[0],
                     **lstm_gates(decoder.lstm, u, h_prev)}.items():
            record[k].append(v)
    stacked = {k: torch.stack(v, dim=1) if v else features.new_zeros(B, 0, 0) for k, v in record.items()}
    gates = {k: stacked.pop(k) for k in ("input", "forget", "candidate", "output")}
    return DecoderTrace(stacked["alphas"], stacked["contexts"], gates, stacked["cells"], stacked["hidden"],
                        initial, steps, decoded)


@torch.no_grad()
def trace_reports(model: ReportGenerator, images: torch.Tensor, *, max_len: int = 60) -> DecoderTrace:
    """``trace_greedy`` for uint8 tiles (B, 3, H, W), returned on the CPU: the model in eval mode, its image half
    encodes them as ``generate_reports`` does (in one batch: pass at most its ``batch_size`` tiles, 128, to replay
    its reports exactly)."""
    model.eval()
    enc = model.encode(to_input(images, next(model.parameters()).device))
    return trace_greedy(model.decoder, enc.features, enc.cam, max_len=max_len).cpu()
