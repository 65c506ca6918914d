"""Eqs. (13)-(14) on small random tensors in float64: attention maps are distributions over the positions, the
context vector is their weighted mean of features, the CAM attention is steered by c alone (and only by its shape),
the content-and-CAM reading is Show-Attend-Tell plus a CAM term, the authors' sentinel slot leaves the map's shape
to the features, and the doubly stochastic penalty vanishes where every position gets attention 1 in all."""
import pytest
import torch

from mdnet_utils.models.attention import (CamAttention, CamContentAttention, CamSlotAttention, SoftAttention, context,
                                          doubly_stochastic_penalty, flatten_features, standardise_cam)

torch.set_num_threads(1)

B, D, H, W, HIDDEN = 3, 5, 2, 3, 7
N = H * W


def inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(B, N, D, generator=gen, dtype=torch.float64)
    h = torch.randn(B, HIDDEN, generator=gen, dtype=torch.float64)
    cam = 3 * torch.randn(B, N, generator=gen, dtype=torch.float64)
    return features, h, cam


def attentions():
    torch.manual_seed(0)
    return {"cam": CamAttention(HIDDEN, N).double(), "soft": SoftAttention(D, HIDDEN, attention_dim=4).double(),
            "cam-content": CamContentAttention(D, HIDDEN, attention_dim=4).double(),
            "cam-slot": CamSlotAttention(D, HIDDEN, attention_dim=4).double()}


ALL = ["cam", "soft", "cam-content", "cam-slot"]


def test_flatten_features_is_row_major_over_positions():
    maps = torch.arange(2 * D * H * W, dtype=torch.float64).view(2, D, H, W)
    flat = flatten_features(maps)
    assert flat.shape == (2, N, D)
    assert torch.equal(flat[1, 1 * W + 2], maps[1, :, 1, 2])     # position i = h W + w holds the D channels at (h, w)


@pytest.mark.parametrize("name", ["cam", "soft", "cam-content"])
def test_attention_is_a_distribution_over_the_positions(name):
    features, h, cam = inputs()
    alpha = attentions()[name](features, h, cam)
    assert alpha.shape == (B, N)
    assert (alpha >= 0).all()
    assert torch.allclose(alpha.sum(dim=1), torch.ones(B, dtype=torch.float64))


@pytest.mark.parametrize("name", ALL)
def test_the_cache_gives_the_same_attention(name):
    features, h, cam = inputs()
    att = attentions()[name]
    assert torch.allclose(att(features, h, cam, cache=att.precompute(features, cam)), att(features, h, cam))


def test_context_is_the_attention_weighted_sum_of_features_eq13():
    features, _, _ = inputs()
    alpha = torch.softmax(torch.randn(B, N, dtype=torch.float64), dim=1)
    expected = torch.stack([sum(alpha[b, i] * features[b, i] for i in range(N)) for b in range(B)])
    assert context(alpha, features).shape == (B, D)
    assert torch.allclose(context(alpha, features), expected)
    one_hot = torch.zeros(B, N, dtype=torch.float64)
    one_hot[:, 4] = 1
    assert torch.equal(context(one_hot, features), features[:, 4])   # attention on one position reads just it


def test_cam_attention_is_eq14():
    features, h, cam = inputs()
    att = attentions()["cam"]
    c = (cam - cam.mean(dim=1, keepdim=True)) / torch.sqrt(cam.var(dim=1, unbiased=False, keepdim=True) + 1e-5)
    inner = torch.tanh(h @ att.W_h.weight.T + att.W_h.bias + c)            # W_h h_{t-1} + c
    expected = torch.softmax(inner @ att.W_att.weight.T + att.W_att.bias, dim=1)
    assert torch.allclose(att(features, h, cam), expected)
    assert att.W_h.weight.shape == (N, HIDDEN) and att.W_att.weight.shape == (N, N)


def test_cam_attention_is_steered_by_c_not_by_the_features():
    features, h, cam = inputs()
    other_features, _, other_cam = inputs(seed=1)
    att = attentions()["cam"]
    alpha = att(features, h, cam)
    assert torch.equal(att(other_features, h, cam), alpha)                     # the features' content: no effect
    assert not torch.allclose(att(features, h, other_cam), alpha)              # the class activation map: steers


def test_only_the_shape_of_the_cam_counts():
    """Our choice: c standardised per image, so its scale and offset (arbitrary in a CAM) do not matter."""
    features, h, cam = inputs()
    att = attentions()["cam"]
    alpha = att(features, h, cam)
    assert torch.allclose(att(features, h, 10 * cam + 4), alpha, atol=1e-6)
    assert torch.allclose(att(features, h, 0.5 * cam - 2), alpha, atol=1e-6)
    c = standardise_cam(cam)
    assert torch.allclose(c.mean(dim=1), torch.zeros(B, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(c.std(dim=1, unbiased=False), torch.ones(B, dtype=torch.float64), atol=1e-4)


def test_cam_attention_needs_the_cam():
    features, h, _ = inputs()
    with pytest.raises(ValueError, match="class activation map"):
        attentions()["cam"](features, h)


def test_soft_attention_reads_the_features_and_ignores_the_cam():
    features, h, cam = inputs()
    other_features, _, other_cam = inputs(seed=1)
    att = attentions()["soft"]
    alpha = att(features, h, cam)
    assert torch.equal(att(features, h, other_cam), alpha)
    assert torch.equal(att(features, h), alpha)
    assert not torch.allclose(att(other_features, h), alpha)
    e = att.w(torch.tanh(att.W_a(features) + att.W_h(h).unsqueeze(1))).squeeze(-1)   # e_ti = w^T tanh(W_a a_i + W_h h)
    assert torch.allclose(alpha, torch.softmax(e, dim=1))


def test_doubly_stochastic_penalty_is_zero_when_every_position_gets_one_in_all():
    # T = N steps, step t looks only at position t: every position's total attention is exactly 1
    alphas = torch.eye(N, dtype=torch.float64).expand(2, N, N)
    assert doubly_stochastic_penalty(alphas).item() == 0
    # uniform attention over T steps: each position gets T / N; the paper's target 1 penalises, T / N does not
    T = 4
    uniform = torch.full((2, T, N), 1 / N, dtype=torch.float64)
    assert torch.isclose(doubly_stochastic_penalty(uniform), torch.tensor(N * (1 - T / N) ** 2, dtype=torch.float64))
    assert torch.isclose(doubly_stochastic_penalty(uniform, target=T / N), torch.tensor(0.0, dtype=torch.float64))


def test_doubly_stochastic_penalty_leaves_masked_steps_out():
    alphas = torch.eye(N, dtype=torch.float64).expand(2, N, N)
    padded = torch.cat([alphas, torch.full((2, 3, N), float("nan"), dtype=torch.float64)], dim=1)   # 3 padding steps
    mask = torch.arange(N + 3).expand(2, N + 3) < N
    assert doubly_stochastic_penalty(padded, mask).item() == 0
    # one sequence one step shorter: the position it never looked at gets 0 in all, (1 - 0)^2; mean over the batch
    mask[1, N - 1] = False
    assert torch.isclose(doubly_stochastic_penalty(padded, mask), torch.tensor(0.5, dtype=torch.float64))


@pytest.mark.parametrize("name", ALL)
def test_each_attention_says_whether_it_reads_the_cam(name):
    features, h, cam = inputs()
    _, _, other_cam = inputs(seed=1)
    att = attentions()[name]
    moved = not torch.allclose(att(features, h, other_cam), att(features, h, cam))
    assert att.uses_cam == moved == (name != "soft")


def test_the_content_reading_is_show_attend_tell_plus_a_cam_term():
    features, h, cam = inputs()
    att = attentions()["cam-content"]
    c = standardise_cam(cam)
    inner = att.W_a(features) + c.unsqueeze(-1) * att.U_c.weight.squeeze(-1) + att.W_h(h).unsqueeze(1)
    expected = torch.softmax(att.w(torch.tanh(inner)).squeeze(-1), dim=1)   # e_i = w^T tanh(W_a C_i + W_h h + u c_i)
    assert torch.allclose(att(features, h, cam), expected)
    # u = 0: exactly Show-Attend-Tell with the same weights
    soft = SoftAttention(D, HIDDEN, attention_dim=4).double()
    soft.load_state_dict({k: v for k, v in att.state_dict().items() if not k.startswith("U_c")})
    with torch.no_grad():
        att.U_c.weight.zero_()
    assert torch.allclose(att(features, h, cam), soft(features, h))
    other_features, _, _ = inputs(seed=1)
    assert not torch.allclose(att(other_features, h, cam), att(features, h, cam))   # it reads the features too
    with pytest.raises(ValueError, match="class activation map"):
        att(features, h)


def test_the_authors_slot_takes_a_share_and_leaves_the_positions_ratios_to_the_features():
    features, h, cam = inputs()
    _, _, other_cam = inputs(seed=1)
    att = attentions()["cam-slot"]
    alpha, share = att(features, h, cam), att.slot_share(features, h, cam)
    assert alpha.shape == (B, N) and share.shape == (B,) and (alpha > 0).all() and ((share > 0) & (share < 1)).all()
    assert torch.allclose(alpha.sum(dim=1) + share, torch.ones(B, dtype=torch.float64))   # not renormalised
    # by hand: the CAM's softmax pools the projected features into one more candidate, then one softmax over N + 1
    projected = features @ att.W_a.weight.T
    slot = (torch.softmax(cam, dim=1).unsqueeze(-1) * projected).sum(dim=1, keepdim=True)
    scores = att.w(torch.tanh(torch.cat([projected, slot], dim=1) + att.W_h(h).unsqueeze(1))).squeeze(-1)
    assert torch.allclose(alpha, torch.softmax(scores, dim=1)[:, :N])
    # another CAM changes how much the positions get, never how they share it
    other = att(features, h, other_cam)
    assert not torch.allclose(other.sum(dim=1), alpha.sum(dim=1))
    assert torch.allclose(other / other.sum(dim=1, keepdim=True), alpha / alpha.sum(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="positions"):
        att(features, h, cam[:, :-1])
