"""Inside a greedy decode (``evaluation.decoder_trace``): the replay writes the package's reports with the package's
attention maps, bit for bit; the recorded gates recompute Eq. (12)'s c_t and h_t; the recorded context is what the
LSTM read."""
import pytest
import torch

from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.evaluation.decoder_trace import lstm_gates, trace_greedy, trace_reports
from mdnet_utils.evaluation.reports import generate_reports
from mdnet_utils.models import CamAttention, ReportDecoder, SoftAttention, context, greedy_decode, mdnet

torch.set_num_threads(1)


def tiny_decoder(kind="cam", seed=0, eos_bias=0.0):
    """A random float64 decoder in eval mode, 10 words, whose reports end after a few words or run to max_len."""
    torch.manual_seed(seed)
    attention = CamAttention(8, 9) if kind == "cam" else SoftAttention(6, 8, attention_dim=5)
    decoder = ReportDecoder(10, 6, attention, embed_dim=5, hidden_dim=8).double().eval()
    with torch.no_grad():
        decoder.out.weight.mul_(1.5)
        decoder.out.bias[decoder.eos_id] += eos_bias
        decoder.init_h.weight.mul_(3)
        decoder.init_c.weight.mul_(3)
    return decoder


def images(batch, seed=104):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 9, 6, generator=gen, dtype=torch.float64),
            4 * torch.randn(batch, 9, generator=gen, dtype=torch.float64) + 1)


# per attention, a decoder that writes reports of several lengths for images(5), one of them unfinished
SETTINGS = {"cam": dict(seed=5, eos_bias=0.3), "soft": dict(seed=29, eos_bias=0.0)}


@pytest.fixture(params=sorted(SETTINGS))
def traced(request):
    decoder = tiny_decoder(request.param, **SETTINGS[request.param])
    features, cam = images(5)
    return decoder, features, cam, trace_greedy(decoder, features, cam, max_len=12)


def test_the_replay_writes_greedy_decodes_words_and_attention_maps_bit_for_bit(traced):
    decoder, features, cam, trace = traced
    alone = greedy_decode(decoder, features, cam, max_len=12)
    assert trace.decoded.tokens == alone.tokens
    lengths = {len(t) for t in alone.tokens}
    assert len(lengths) > 1 and not bool(alone.finished.all()), "the premise: several lengths, one unfinished"
    for b, words in enumerate(alone.tokens):
        assert int(trace.steps[b]) == len(words) + int(alone.finished[b])
        assert torch.equal(trace[b]["alphas"][:len(words)], alone.alphas[b])


def test_the_recorded_gates_recompute_the_cells_c_t_and_h_t_eq12(traced):
    decoder, _, _, trace = traced
    for b in range(len(trace.steps)):
        r = trace[b]
        c_prev = torch.cat([trace.initial[1][b:b + 1], r["cells"][:-1]])
        assert torch.allclose(r["forget"] * c_prev + r["input"] * r["candidate"], r["cells"], atol=1e-12)
        assert torch.allclose(r["output"] * torch.tanh(r["cells"]), r["hidden"], atol=1e-12)
        for gate in ("input", "forget", "output"):
            assert bool(((r[gate] > 0) & (r[gate] < 1)).all())


def test_a_wrong_gate_order_would_not_recompute_c_t():
    """The check above can fail: PyTorch's order is (i, f, g, o); read as (i, f, o, g), c_t is not recomputed."""
    decoder = tiny_decoder()
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(3, 5 + 6, generator=gen, dtype=torch.float64)
    h, c = (torch.randn(3, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    _, c1 = decoder.lstm(u, (h, c))
    g = lstm_gates(decoder.lstm, u, h)
    assert torch.allclose(g["forget"] * c + g["input"] * g["candidate"], c1, atol=1e-12)
    cell = decoder.lstm
    i, f, o, g_ = (u @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh).chunk(4, dim=-1)
    assert not torch.allclose(torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g_), c1, atol=1e-3)


def test_the_recorded_context_is_what_the_lstm_read(traced):
    """Eq. (13) z_t = a_t C(I), and fed with E x_{t-1} into the LSTM it gives the recorded (h_t, c_t) exactly (the
    whole batch replayed, as the rows of a batch are computed alike only at the same batch size)."""
    decoder, features, _, trace = traced
    S = trace.alphas.shape[1]
    prev = torch.full((len(features), S), decoder.pad_id)
    prev[:, 0] = decoder.bos_id
    for b, words in enumerate(trace.decoded.tokens):
        prev[b, 1:1 + len(words)] = torch.tensor(words[:S - 1])
    h, c = trace.initial
    for t in range(S):
        z = trace.contexts[:, t]
        assert torch.equal(z, context(trace.alphas[:, t], features))
        h, c = decoder.lstm(torch.cat([decoder.embedding(prev[:, t]), z], dim=-1), (h, c))
        real = trace.steps > t
        assert torch.equal(h[real], trace.hidden[real, t]) and torch.equal(c[real], trace.cells[real, t])


def test_a_report_that_never_ends_is_traced_for_max_len_steps():
    decoder = tiny_decoder(eos_bias=-50.0)
    features, cam = images(2)
    trace = trace_greedy(decoder, features, cam, max_len=7)
    assert trace.steps.tolist() == [7, 7] and not bool(trace.decoded.finished.any())
    assert trace.alphas.shape == (2, 7, 9) and trace.gates["input"].shape == (2, 7, 8)
    assert trace.contexts.shape == (2, 7, 6) and trace[1]["cells"].shape == (7, 8)


def test_trace_reports_replays_generate_reports_on_tiles():
    torch.manual_seed(0)
    model = mdnet(12, depth=11, widen_factor=1, image_size=32, embed_dim=8, hidden_dim=16)
    with torch.no_grad():
        model.decoder.out.bias[2] += 2.0           # reports that end
    vocab = Vocabulary([f"w{i}" for i in range(8)])
    tiles = torch.randint(0, 256, (3, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    generated = generate_reports(model, tiles, vocab, max_len=9)
    trace = trace_reports(model, tiles, max_len=9)
    assert [[vocab.itos[t] for t in words] for words in trace.decoded.tokens] == generated.words
    for b, alphas in enumerate(generated.alphas):
        assert torch.equal(trace[b]["alphas"][:len(alphas)], alphas)
