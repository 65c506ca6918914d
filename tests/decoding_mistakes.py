"""Typical mistakes in notebook 06's exercises B (one decoder step, Eqs. 12-14) and C (beam search), for
tests/test_exercises.py; and the right answers, written as a learner would (tests/test_decoding_exercises.py)."""
import torch


def _eq14(decoder, h, cam, standardise=True):
    att = decoder.attention
    if standardise:
        cam = (cam - cam.mean(1, keepdim=True)) / torch.sqrt(cam.var(1, unbiased=False, keepdim=True) + 1e-5)
    return torch.softmax(att.W_att(torch.tanh(att.W_h(h) + cam)), dim=-1)


def decoder_step(decoder, prev, state, features, cam, *, mistake=None):
    """Eqs. (12)-(14), one step; ``mistake`` one of None, "no context", "attends with h_t", "raw cam",
    "state swapped", "calls step"."""
    if mistake == "calls step":
        return decoder.step(prev, state, features, cam)
    h, c = state
    if mistake == "state swapped":
        c, h = state
    emb = decoder.embedding(prev)
    if mistake == "attends with h_t":      # Luong's order: the LSTM first, then the attention from h_t
        h, c = decoder.lstm(torch.cat([emb, torch.zeros_like(features[:, 0])], -1), (h, c))
        alpha = _eq14(decoder, h, cam)
        return decoder.out(h), (h, c), alpha
    alpha = _eq14(decoder, h, cam, standardise=mistake != "raw cam")
    z = (alpha.unsqueeze(1) @ features).squeeze(1)
    if mistake == "no context":
        z = torch.zeros_like(z)
    h, c = decoder.lstm(torch.cat([emb, z], -1), (h, c))
    return decoder.out(h), (h, c), alpha


def beam_search(decoder, features, cam, beam_size, max_len, *, mistake=None):
    """Beam search as the package's (length_penalty 0); ``mistake`` one of None, "no backpointers", "state not
    reordered", "beams mixed across images", "finished beams not stopped", "greedy"."""
    if mistake == "greedy":
        beam_size = 1
    B, k, V, eos = features.shape[0], beam_size, decoder.vocab_size, decoder.eos_id
    features, cam = features.repeat_interleave(k, 0), cam.repeat_interleave(k, 0)
    state = decoder.init_state(features)
    scores = torch.full((B, k), float("-inf"))
    scores[:, 0] = 0.0
    prev = torch.full((B * k,), decoder.bos_id)
    history = [[] for _ in range(B * k)]
    best = [None] * B

    def top(cand):
        if mistake == "beams mixed across images":      # all images' extensions ranked together
            s, i = cand.reshape(-1).topk(B * k)
            return s.view(B, k), i.view(B, k) % (k * V)
        return cand.topk(k, dim=1)

    for _ in range(max_len):
        logits, state, _ = decoder.step(prev, state, features, cam)
        logp = logits.log_softmax(-1)
        logp[:, [decoder.pad_id, decoder.bos_id]] = float("-inf")
        cand = (scores.unsqueeze(-1) + logp.view(B, k, V)).view(B, k * V)
        if mistake != "finished beams not stopped":
            top_s, top_i = top(cand)
            for b in range(B):
                for s, i in zip(top_s[b].tolist(), top_i[b].tolist()):
                    if i % V == eos and (best[b] is None or s > best[b][0]):
                        best[b] = (s, history[b * k + i // V])
            cand.view(B, k, V)[:, :, eos] = float("-inf")
        scores, idx = top(cand)
        source = idx // V if mistake != "no backpointers" else torch.arange(k).expand(B, k)
        rows = (torch.arange(B).unsqueeze(1) * k + source).view(-1)
        prev = (idx % V).view(-1)
        if mistake != "state not reordered":
            state = (state[0][rows], state[1][rows])
        history = [history[r] + [w] for r, w in zip(rows.tolist(), prev.tolist())]
    for b in range(B):
        if best[b] is None:
            j = int(scores[b].argmax())
            best[b] = (scores[b, j].item(), history[b * k + j])
    return [hyp[1] for hyp in best], torch.tensor([hyp[0] for hyp in best])


def mistaken(fn, mistake):
    def learner(*args):
        return fn(*args, mistake=mistake)
    return learner
