"""Eqs. (11)-(12) and decoding, on small random decoders in float64: the teacher-forced log-likelihood is the sum of
the step-by-step log-probabilities, the loss ignores padding, and greedy and beam search return sequences whose
scores and attention maps are what teacher forcing gives for them (beam search: the best one, when it searches
everything)."""
import itertools

import pytest
import torch

from mdnet_utils.models.attention import CamAttention, CamContentAttention, CamSlotAttention, SoftAttention
from mdnet_utils.models.decoder import ReportDecoder, beam_search, greedy_decode, sequence_log_likelihood, word_loss

torch.set_num_threads(1)

PAD, BOS, EOS = 0, 1, 2
V, D, N, HIDDEN = 9, 6, 4, 12
KINDS = ["cam", "soft", "cam-content", "cam-slot"]


# per attention, a seed whose random decoder writes reports of several lengths for images(5) (the premise of
# the decoding tests: a batch of equal lengths would hide a bookkeeping slip)
SEEDS = {"cam": 0, "soft": 0, "cam-content": 1, "cam-slot": 7}


def make_decoder(kind, seed=None, vocab_size=V, sharpen=3.0):
    """A random decoder in eval mode; ``sharpen`` scales the output layer so that the next word is a clear choice,
    and a larger initial state lets the image decide more (here: how long the reports get)."""
    torch.manual_seed(SEEDS[kind] if seed is None else seed)
    attention = CamAttention(HIDDEN, N) if kind == "cam" else \
        {"soft": SoftAttention, "cam-content": CamContentAttention, "cam-slot": CamSlotAttention}[kind](
            D, HIDDEN, attention_dim=5)
    decoder = ReportDecoder(vocab_size, D, attention, embed_dim=5, hidden_dim=HIDDEN).double().eval()
    with torch.no_grad():
        decoder.out.weight.mul_(sharpen)
        decoder.init_h.weight.mul_(3)
        decoder.init_c.weight.mul_(3)
    return decoder


def images(batch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, N, D, generator=gen, dtype=torch.float64),
            torch.randn(batch, N, generator=gen, dtype=torch.float64))


def batch_of(words, extra_pad=0):
    """Rows <bos> words <eos>, padded to one length (plus ``extra_pad`` columns)."""
    T = max(len(w) for w in words) + 2 + extra_pad
    return torch.tensor([[BOS, *w, EOS] + [PAD] * (T - len(w) - 2) for w in words])


SENTENCES = [[4, 5, 6, 7], [3], [8, 8, 4]]


def stepped_log_likelihood(decoder, features, cam, row):
    """Eq. (11) by hand for one image: step the LSTM along ``row`` (<bos> ... <eos>), summing log p of each target."""
    state, total = decoder.init_state(features), 0.0
    for prev, target in zip(row[:-1], row[1:]):
        logits, state, _ = decoder.step(torch.tensor([prev]), state, features, cam)
        total = total + logits.log_softmax(dim=-1)[0, target]
    return total


@pytest.mark.parametrize("kind", KINDS)
def test_teacher_forcing_shapes(kind):
    decoder = make_decoder(kind)
    features, cam = images(3)
    tokens = batch_of(SENTENCES)
    logits, alphas = decoder(features, tokens, cam)
    assert logits.shape == (3, tokens.shape[1] - 1, V)
    assert alphas.shape == (3, tokens.shape[1] - 1, N)
    assert_maps(decoder, alphas)
    assert decoder.lstm.input_size == 5 + D           # Eq. (12): the input is [E x_{t-1}; z_t]


@pytest.mark.parametrize("kind", KINDS)
def test_sequence_log_likelihood_is_the_stepped_sum_eq11(kind):
    """Batched, padded teacher forcing gives each report the log-likelihood of stepping it alone, unpadded."""
    decoder = make_decoder(kind)
    features, cam = images(3)
    tokens = batch_of(SENTENCES)
    with torch.no_grad():
        ll = sequence_log_likelihood(decoder(features, tokens, cam)[0], tokens)
        by_hand = [stepped_log_likelihood(decoder, features[b:b + 1], cam[b:b + 1], [BOS, *s, EOS])
                   for b, s in enumerate(SENTENCES)]
    assert ll.shape == (3,)
    assert torch.allclose(ll, torch.stack(by_hand))


def test_the_cam_steers_the_cam_decoder():
    decoder = make_decoder("cam")
    features, cam = images(3)
    tokens = batch_of(SENTENCES)
    with torch.no_grad():
        assert not torch.allclose(decoder(features, tokens, cam)[0], decoder(features, tokens, cam.flip(1))[0])
    with pytest.raises(ValueError, match="class activation map"):
        decoder(features, tokens)


@pytest.mark.parametrize("kind", KINDS)
def test_word_loss_is_the_mean_over_real_targets_and_ignores_padding(kind):
    decoder = make_decoder(kind)
    features, cam = images(3)
    tokens = batch_of(SENTENCES)
    logits, _ = decoder(features, tokens, cam)
    loss = word_loss(logits, tokens)
    n_targets = sum(len(s) + 1 for s in SENTENCES)              # the words and <eos>
    assert torch.allclose(loss, -sequence_log_likelihood(logits, tokens).sum() / n_targets)
    # extra padding columns: more (meaningless) steps, the same loss
    longer = batch_of(SENTENCES, extra_pad=3)
    assert torch.allclose(word_loss(decoder(features, longer, cam)[0], longer), loss)
    # whatever the logits at padding targets hold, the loss is the same
    garbage = logits.detach().clone()
    garbage[tokens[:, 1:] == PAD] = float("nan")
    assert torch.allclose(word_loss(garbage, tokens), loss)
    assert torch.allclose(sequence_log_likelihood(garbage, tokens), sequence_log_likelihood(logits, tokens))
    loss.backward()                                              # and it trains the decoder
    assert decoder.lstm.weight_ih.grad.abs().sum() > 0


def rescored(decoder, features, cam, decoded):
    """Teacher-force each decoded sequence (with <eos> where it finished): its log-likelihood and attention maps."""
    out = []
    for b, words in enumerate(decoded.tokens):
        row = torch.tensor([[BOS, *words] + ([EOS] if decoded.finished[b] else [])])
        with torch.no_grad():
            logits, alphas = decoder(features[b:b + 1], row, cam[b:b + 1])
        out.append((sequence_log_likelihood(logits, row)[0], alphas[0, :len(words)]))
    return out


def assert_maps(decoder, alphas):
    """Attention maps over the positions: each sums to 1, or, for the authors' sentinel slot, to less (the slot
    takes the rest)."""
    totals = alphas.sum(dim=-1)
    if isinstance(decoder.attention, CamSlotAttention):
        assert (alphas >= 0).all() and ((totals > 0) & (totals < 1)).all()
    else:
        assert torch.allclose(totals, torch.ones_like(totals))


def check_decoded(decoder, features, cam, decoded, max_len):
    """The specification every decoded batch meets."""
    assert len(decoded.tokens) == len(decoded.alphas) == features.shape[0]
    for b, (words, alphas) in enumerate(zip(decoded.tokens, decoded.alphas)):
        assert EOS not in words and BOS not in words and PAD not in words
        assert len(words) < max_len if decoded.finished[b] else len(words) == max_len
        assert alphas.shape == (len(words), N)                   # one map per emitted word
        assert_maps(decoder, alphas)
    for b, (score, alphas) in enumerate(rescored(decoder, features, cam, decoded)):
        assert torch.allclose(decoded.scores[b], score)          # the score is the sequence's log-likelihood
        assert torch.allclose(decoded.alphas[b], alphas)         # row j: the attention used for word j


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("search", ["greedy", "beam", "beam_lp"])
def test_decoded_sequences_are_scored_and_attended_as_teacher_forcing_says(kind, search):
    decoder = make_decoder(kind)
    features, cam = images(5)
    decode = {"greedy": lambda: greedy_decode(decoder, features, cam, max_len=6),
              "beam": lambda: beam_search(decoder, features, cam, beam_size=3, max_len=6),
              "beam_lp": lambda: beam_search(decoder, features, cam, beam_size=3, max_len=6, length_penalty=1.0)}
    decoded = decode[search]()
    check_decoded(decoder, features, cam, decoded, max_len=6)
    assert len({len(w) for w in decoded.tokens}) > 1            # the batch holds sequences of different lengths
    again = decode[search]()                                    # deterministic
    assert again.tokens == decoded.tokens and torch.equal(again.scores, decoded.scores)


@pytest.mark.parametrize("kind", KINDS)
def test_batched_decoding_decodes_each_image_as_alone(kind):
    decoder = make_decoder(kind)
    features, cam = images(5)
    for decode in (lambda f, c: greedy_decode(decoder, f, c, max_len=6),
                   lambda f, c: beam_search(decoder, f, c, beam_size=3, max_len=6)):
        batched = decode(features, cam)
        assert len({len(w) for w in batched.tokens}) > 1
        for b in range(5):
            alone = decode(features[b:b + 1], cam[b:b + 1])
            assert alone.tokens[0] == batched.tokens[b]
            assert torch.allclose(alone.scores[0], batched.scores[b])
            assert torch.allclose(alone.alphas[0], batched.alphas[b])


@pytest.mark.parametrize("kind", KINDS)
def test_beam_of_one_is_greedy(kind):
    decoder = make_decoder(kind)
    features, cam = images(5)
    greedy = greedy_decode(decoder, features, cam, max_len=6)
    beam = beam_search(decoder, features, cam, beam_size=1, max_len=6)
    assert greedy.finished.any() and not greedy.finished.all()   # both ways of ending are covered
    assert beam.tokens == greedy.tokens
    assert torch.equal(beam.finished, greedy.finished)
    assert torch.allclose(beam.scores, greedy.scores)


def test_beam_search_finds_the_best_sequence_when_it_searches_everything():
    """Vocabulary <pad> <bos> <eos> a b, at most 3 steps: 7 finished sequences ([], a, b, aa, ab, ba, bb);
    a beam as wide as the whole tree keeps them all, so it returns the most likely one (and, where greedy finished,
    one at least as likely as greedy's: here greedy ends every report and is beaten)."""
    decoder = make_decoder("cam", seed=4, vocab_size=5)
    features, cam = images(3)
    candidates = [list(w) for n in range(3) for w in itertools.product([3, 4], repeat=n)]
    greedy = greedy_decode(decoder, features, cam, max_len=3)
    for length_penalty in (0.0, 1.0):
        beam = beam_search(decoder, features, cam, beam_size=27, max_len=3, length_penalty=length_penalty)
        for b in range(3):
            rows = torch.tensor([[BOS, *w, EOS] + [PAD] * (2 - len(w)) for w in candidates])
            with torch.no_grad():
                logits, _ = decoder(features[b:b + 1].expand(len(rows), N, D), rows, cam[b:b + 1].expand(len(rows), N))
            ll = sequence_log_likelihood(logits, rows)
            normalised = ll / torch.tensor([len(w) + 1.0 for w in candidates]) ** length_penalty
            assert beam.finished[b]
            assert beam.tokens[b] == candidates[int(normalised.argmax())]
            assert torch.allclose(beam.scores[b], ll.max() if length_penalty == 0 else ll[normalised.argmax()])
            if length_penalty == 0:
                assert greedy.finished[b] and beam.scores[b] > greedy.scores[b]


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_that_never_ends_writes_max_len_words(kind):
    decoder = make_decoder(kind)
    with torch.no_grad():
        decoder.out.weight[EOS] = 0
        decoder.out.bias[EOS] = -1e9
    features, cam = images(3)
    for decoded in (greedy_decode(decoder, features, cam, max_len=5),
                    beam_search(decoder, features, cam, beam_size=3, max_len=5),
                    beam_search(decoder, features, cam, beam_size=3, max_len=5, length_penalty=1.0)):
        assert [len(w) for w in decoded.tokens] == [5, 5, 5]
        assert not decoded.finished.any()
        assert torch.isfinite(decoded.scores).all()
        check_decoded(decoder, features, cam, decoded, max_len=5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_that_ends_at_once_writes_nothing(kind):
    decoder = make_decoder(kind)
    with torch.no_grad():
        decoder.out.weight[EOS] = 0
        decoder.out.bias[EOS] = 1e3
    features, cam = images(2)
    for decoded in (greedy_decode(decoder, features, cam, max_len=5),
                    beam_search(decoder, features, cam, beam_size=3, max_len=5)):
        assert decoded.tokens == [[], []]
        assert decoded.finished.all()
        assert all(a.shape == (0, N) for a in decoded.alphas)
        assert torch.allclose(decoded.scores, torch.zeros(2, dtype=torch.float64))   # log p(<eos>) = 0
