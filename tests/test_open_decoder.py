"""Notebook 06 writes one teacher-forced training step of the decoder and a greedy decode in the open, as below,
and asserts they are the package's: the engine's step (``training.engine.run_epoch`` on one batch) gives the same
loss, gradients and updated weights bit for bit, and ``generate_reports`` the same words and attention maps. Here
that is proven first, on a small MDNet and the Show-Attend-Tell baseline, with dropout on."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mdnet_utils.data.loading import Batch, flat_reports, to_input
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.evaluation.reports import generate_reports
from mdnet_utils.models import mdnet, resnet_sat
from mdnet_utils.training.config import Stage
from mdnet_utils.training.engine import make_optimizer, run_epoch

torch.set_num_threads(1)
VOCAB = Vocabulary([f"w{i}" for i in range(8)])


def small(kind):
    torch.manual_seed(0)
    if kind == "mdnet":
        return mdnet(len(VOCAB), depth=11, widen_factor=1, image_size=32, embed_dim=8, hidden_dim=16, dropout=0.3)
    return resnet_sat(len(VOCAB), depth=8, image_size=32, embed_dim=8, hidden_dim=16, attention_dim=8, dropout=0.3)


def batch(n=3, reports=2, seed=1):
    """n tiles, each with ``reports`` reports of different lengths (<bos> words <eos>, padded)."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(n, reports, 9, dtype=torch.long)
    for i in range(n):
        for r in range(reports):
            length = 2 + int(torch.randint(1, 6, (), generator=gen))
            tokens[i, r, 0], tokens[i, r, length - 1] = VOCAB.bos_id, VOCAB.eos_id
            tokens[i, r, 1:length - 1] = torch.randint(4, len(VOCAB), (length - 2,), generator=gen)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    return Batch(images, torch.zeros(n, dtype=torch.long), tokens)


def open_word_loss(model, images, tokens, *, mask_padding=True):
    """The teacher-forced word loss, written out: Eqs. (14), (13), (12) at every step, then cross-entropy."""
    dec = model.decoder
    with torch.no_grad():                                       # stage 2: the image model is frozen
        enc = model.encode(images)
    per_image = tokens.shape[0] // images.shape[0]
    C, cam = enc.features.repeat_interleave(per_image, 0), enc.cam.repeat_interleave(per_image, 0)
    h, c = torch.tanh(dec.init_h(C.mean(1))), torch.tanh(dec.init_c(C.mean(1)))
    cache = dec.attention.precompute(C, cam)                    # what does not depend on t, once
    Ex = dec.embedding(tokens[:, :-1])                          # E x_{t-1}, every step at once
    logits = []
    for t in range(Ex.shape[1]):
        a = dec.attention(C, h, cam, cache=cache)               # Eq. (14), from h_{t-1}
        z = (a.unsqueeze(1) @ C).squeeze(1)                     # Eq. (13)
        h, c = dec.lstm(torch.cat([Ex[:, t], z], dim=1), (h, c))  # Eq. (12)
        logits.append(dec.out(dec.dropout(h)))
    logits, targets = torch.stack(logits, 1), tokens[:, 1:]
    real = targets != VOCAB.pad_id if mask_padding else torch.ones_like(targets, dtype=torch.bool)
    return F.cross_entropy(logits[real], targets[real])


def open_step(model, data, stage, **kw):
    model.train()
    model.image_model.eval()
    params = list(model.decoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
    loss = open_word_loss(model, to_input(data.images, "cpu"), flat_reports(data.tokens), **kw)
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(params, stage.clip)
    optimizer.step()
    return loss


def engine_step(model, data, stage):
    optimizer, schedule = make_optimizer(list(model.decoder.parameters()), stage, steps=1)
    return run_epoch(model, [data], stage, optimizer, schedule, torch.Generator().manual_seed(0))


STAGE = Stage("decoder", epochs=1, lr=3e-3, batch_size=3, weight_decay=1e-4, clip=5.0, augment=False)


@pytest.mark.parametrize("kind", ["mdnet", "sat"])
@pytest.mark.parametrize("clip", [5.0, 1e-3])       # the second clips: the gradients' norm is above it
def test_the_open_training_step_is_the_engines_bit_for_bit(kind, clip):
    stage = STAGE.replace(clip=clip)
    theirs, data = small(kind), batch()
    ours = copy.deepcopy(theirs)
    before = copy.deepcopy(theirs.image_model.state_dict())
    torch.manual_seed(7)                                       # the dropout masks
    record = engine_step(theirs, data, stage)
    torch.manual_seed(7)
    loss = open_step(ours, data, stage)
    assert loss.item() == record["words_loss"]
    mine, package = dict(ours.decoder.named_parameters()), dict(theirs.decoder.named_parameters())
    for name, p in package.items():
        assert torch.equal(mine[name].grad, p.grad), name
        assert torch.equal(mine[name], p), name
    assert not torch.equal(mine["out.weight"], small(kind).decoder.out.weight), "the step changed the weights"
    assert all(torch.equal(v, before[k]) for k, v in theirs.image_model.state_dict().items()), "image model frozen"


def test_the_comparison_can_fail():
    """Padding left in the loss, or other dropout masks, and the loss is not the engine's."""
    data, models = batch(), [small("mdnet") for _ in range(4)]
    torch.manual_seed(7)
    record = engine_step(models[0], data, STAGE)
    torch.manual_seed(7)
    assert open_step(models[1], data, STAGE).item() == record["words_loss"]
    torch.manual_seed(7)
    assert open_step(models[2], data, STAGE, mask_padding=False).item() != record["words_loss"]
    torch.manual_seed(8)
    assert open_step(models[3], data, STAGE).item() != record["words_loss"]


def open_greedy(model, images, max_len):
    """Greedy decoding, written out: the most likely word at every step (never <pad> or <bos>), until <eos>."""
    dec = model.decoder
    with torch.no_grad():
        enc = model.encode(images)
        C, cam = enc.features, enc.cam
        h, c = torch.tanh(dec.init_h(C.mean(1))), torch.tanh(dec.init_c(C.mean(1)))
        prev = torch.full((len(C),), VOCAB.bos_id)
        words, maps = [], []
        for _ in range(max_len):
            a = dec.attention(C, h, cam)
            z = (a.unsqueeze(1) @ C).squeeze(1)
            h, c = dec.lstm(torch.cat([dec.embedding(prev), z], dim=1), (h, c))
            logp = dec.out(h).log_softmax(dim=-1)
            logp[:, [VOCAB.pad_id, VOCAB.bos_id]] = float("-inf")
            prev = logp.argmax(dim=-1)
            words.append(prev)
            maps.append(a)
            if (torch.stack(words, 1) == VOCAB.eos_id).any(1).all():
                break
    words, maps = torch.stack(words, 1).tolist(), torch.stack(maps, 1)
    ends = [row.index(VOCAB.eos_id) if VOCAB.eos_id in row else len(row) for row in words]
    return [[VOCAB.itos[w] for w in row[:n]] for row, n in zip(words, ends)], [m[:n] for m, n in zip(maps, ends)]


# per model, a sharper output layer and an <eos> bias with which the untrained model writes reports of several
# lengths for batch(n=6) (the premise: a batch of one length would hide a bookkeeping slip)
ENDING = {"mdnet": (3.0, 0.0), "sat": (3.0, 0.6)}


@pytest.mark.parametrize("kind", ["mdnet", "sat"])
def test_the_open_greedy_decode_is_generate_reports_bit_for_bit(kind):
    model = small(kind).eval()
    sharpen, eos_bias = ENDING[kind]
    with torch.no_grad():
        model.decoder.out.weight.mul_(sharpen)
        model.decoder.out.bias[VOCAB.eos_id] += eos_bias
    tiles = batch(n=6).images
    generated = generate_reports(model, tiles, VOCAB, max_len=12)
    words, maps = open_greedy(model, to_input(tiles, "cpu"), max_len=12)
    assert len({len(w) for w in generated.words}) > 1, "the premise: reports of several lengths"
    assert words == generated.words
    assert all(torch.equal(a, b) for a, b in zip(maps, generated.alphas))
