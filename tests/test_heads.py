"""Eqs. (7)-(9) in float64 on small random tensors and networks: the CAM sum identity, the logit split into
members adding up to the logit, and a linear layer over a concatenation equalling one classifier per member."""
import pytest
import torch
from torch import nn

from mdnet_utils.models import (DecoupledHead, PreActResNet, SharedHead, cifar_resnet, class_activation_map, ecnet,
                                eq7_score, literal_ecnet, logit_decomposition, logits_from_cam, model_cam, read_stream)
from tests.helpers import randomized as _randomized

torch.set_num_threads(1)


def randomized(net, seed=0):
    """float64, eval mode, random batch-norm statistics and affine parameters, random linear biases."""
    return _randomized(net, seed, linear_bias=True)


def test_cam_sum_identity_eq7():
    torch.manual_seed(0)
    y = torch.randn(2, 6, 5, 7, dtype=torch.float64)            # y_L: (B, K, H, W)
    fc = nn.Linear(6, 4).double()
    logits = fc(y.mean(dim=(2, 3)))                              # GAP + linear
    cam = class_activation_map(y, fc.weight)                     # (B, C, H, W)
    assert cam.shape == (2, 4, 5, 7)
    assert torch.allclose(logits_from_cam(cam, fc.bias), logits)            # (1/HW) sum_ij M_c + b_c
    assert torch.allclose(eq7_score(y, fc.weight), 5 * 7 * (logits - fc.bias))  # p^c of Eq. (7)
    assert torch.allclose(cam.sum(dim=(2, 3)), eq7_score(y, fc.weight))
    # one class for all, one class per image, upsampled to the image
    assert torch.equal(class_activation_map(y, fc.weight, classes=2), cam[:, 2])
    assert torch.equal(class_activation_map(y, fc.weight, classes=[3, 1]), torch.stack([cam[0, 3], cam[1, 1]]))
    assert class_activation_map(y, fc.weight, classes=1, size=(20, 28)).shape == (2, 20, 28)
    assert class_activation_map(y, fc.weight, size=(20, 28)).shape == (2, 4, 20, 28)


@pytest.mark.parametrize("make", [lambda: cifar_resnet(20), lambda: ecnet(11, 2)], ids=["resnet20", "ecnet11"])
def test_model_cam_gives_back_the_logits(make):
    net = randomized(make())
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        cam = model_cam(net, x, upsample=False)
        assert torch.allclose(logits_from_cam(cam, net.fc.bias), net(x))
        assert model_cam(net, x, classes=0).shape == (2, 16, 16)


def test_shared_head_weighs_every_member_alike_eq8():
    torch.manual_seed(0)
    members = [torch.randn(3, 8, 4, 4, dtype=torch.float64) for _ in range(4)]   # y_1, F_1(y_1), ...
    head = SharedHead(8, 5).double()
    scores = head.member_scores(members)
    assert scores.shape == (3, 4, 5)
    assert torch.allclose(scores.sum(dim=1) + head.fc.bias, head(sum(members)))
    assert torch.allclose(logits_from_cam(head.cam(sum(members)), head.fc.bias), head(sum(members)))


def test_one_linear_over_a_concatenation_is_one_classifier_per_member_eq9():
    torch.manual_seed(0)
    widths = [3, 5, 2]
    parts = [torch.randn(4, c, 3, 3, dtype=torch.float64) for c in widths]
    cat = torch.cat(parts, dim=1)
    linear = nn.Linear(sum(widths), 6).double()
    head = DecoupledHead.from_linear(linear, widths)
    expected = linear(cat.mean(dim=(2, 3)))                      # W^T [a; b; c] + bias
    assert torch.allclose(head(cat), expected)
    assert torch.allclose(head(parts), expected)                 # the members given separately
    assert torch.allclose(head.member_scores(parts).sum(dim=1) + linear.bias, expected)
    for m, (w, p) in enumerate(zip(torch.split(linear.weight, widths, dim=1), parts)):
        assert torch.allclose(head.member_scores(parts)[:, m], p.mean(dim=(2, 3)) @ w.T)   # W_m^T member_m
    back = head.to_linear()
    assert torch.equal(back.weight, linear.weight) and torch.equal(back.bias, linear.bias)
    # per-member biases: only their sum reaches the logits
    own = DecoupledHead(widths, 6, per_member_bias=True).double()
    assert torch.allclose(own.to_linear()(cat.mean(dim=(2, 3))), own(cat))
    with pytest.raises(ValueError):
        head(torch.randn(4, 9, 3, 3, dtype=torch.float64))


NETS = {
    "preact-resnet20": lambda: cifar_resnet(20),
    "preact-resnet29-bottleneck": lambda: cifar_resnet(29, block="bottleneck"),
    "learnability-net": lambda: PreActResNet(2, (8, 16, 32), num_classes=4),
    "ecnet20-2": lambda: ecnet(20, 2),
    "literal-ecnet20": lambda: literal_ecnet(20, 1),
}


@pytest.mark.parametrize("name", NETS)
def test_the_members_contributions_add_up_to_the_logit_eq8(name):
    net = randomized(NETS[name]())
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    d = logit_decomposition(net, x)
    with torch.no_grad():
        assert torch.allclose(d.logits, net(x))
    assert d.contributions.shape == (2, len(d.names), d.logits.shape[1])
    assert torch.allclose(d.total(), d.logits, atol=1e-10, rtol=0)
    if name.startswith("preact"):
        # Eq. (5) holds from the last projection on: h_l carries everything before the last stage
        n = len(net.blocks) // 3
        assert d.names == [f"h_{2 * n}"] + [f"F_{l}" for l in range(2 * n, 3 * n)]
    if "ecnet" in name:
        # the EcNet stream is linear from the stem on: x_0 and every block's F, in forward order
        assert d.names == ["x_0"] + [f"F_{l}" for l in range(len(net.blocks))]
    assert d.contributions.abs().sum() > 0


def test_decomposition_of_a_plain_sum_without_the_relu_is_the_shared_head():
    # with the final BN-ReLU removed, Eq. (8) is the shared classifier over the members, rest = bias only
    net = randomized(ecnet(11, 2))
    net.final_act = nn.Identity()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    d = logit_decomposition(net, x)
    assert torch.allclose(d.rest, net.fc.bias.expand_as(d.rest))
    assert torch.allclose(d.total(), d.logits)


def test_literal_ecnet_realises_eq9_with_one_linear_layer():
    net = randomized(literal_ecnet(11, 1))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        feats = net.features(x)
        head = DecoupledHead.from_linear(net.fc, net.member_channels)
        assert torch.allclose(head(feats), net(x))
        last = read_stream(net, x)[-1]
    # the members sit in separate channels of the last output, [F_{L-1}; ...; F_0; x_0]
    assert torch.equal(last.out[:, :net.member_channels[0]], last.branch)
    # so each member's share of the logit is its own classifier's score on its own channels (Eq. (9)):
    # the decomposition's contribution plus the final BN's shift on that member's channels
    d = logit_decomposition(net, x)
    bn = net.final_act[0]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias - bn.running_mean * scale).view(1, -1, 1, 1)
    gated_shift = ((feats > 0) * shift).mean(dim=(2, 3))                    # (B, channels)
    own_shift = torch.stack([s @ w.T for s, w in zip(torch.split(gated_shift, net.member_channels, dim=1),
                                                      torch.split(net.fc.weight, net.member_channels, dim=1))], 1)
    with torch.no_grad():
        own_scores = head.member_scores(feats)                              # channel order: F_{L-1} ... x_0
    assert torch.allclose((d.contributions + own_shift.flip(1)), own_scores.flip(1))
    assert torch.allclose(d.rest, own_shift.sum(dim=1) + net.fc.bias)


def test_decomposition_refuses_train_mode_and_non_additive_streams():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="eval"):
        logit_decomposition(cifar_resnet(20).train(), x)
    with pytest.raises(ValueError, match="post-activation"):
        logit_decomposition(cifar_resnet(20, preact=False).eval(), x)
