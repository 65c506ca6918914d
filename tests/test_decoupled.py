"""DecoupledResNet: the backbone's last stage read member by member, one classifier each (Eq. (9)); behind the shared
head's one BN-ReLU it is Eq. (9) exactly (with equal weights: the shared network), behind one BN-ReLU per member
it is a variant that is not."""
import copy

import pytest
import torch

from mdnet_utils.models import cifar_resnet
from mdnet_utils.models.decoupled import DecoupledResNet, shared_bn_relu

NORMS = ["shared", "per-member"]


def trained_looking(model):
    """``model`` with batch norms that look trained (running statistics and affine maps away from 0 and 1): with
    fresh ones (mean 0, variance 1, gamma 1, beta 0) a wrong shift or scale could go unnoticed."""
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            k = bn.num_features
            bn.running_mean.copy_(0.3 * torch.randn(k, generator=gen))
            bn.running_var.copy_(0.5 + torch.rand(k, generator=gen))
            bn.weight.copy_(0.5 + torch.rand(k, generator=gen))
            bn.bias.copy_(0.3 * torch.randn(k, generator=gen))
    return model


@pytest.fixture
def shared():
    """A small shared pre-activation network (ResNet-20, stride-2 stem), in float64 and eval mode."""
    torch.manual_seed(0)
    return trained_looking(cifar_resnet(20, num_classes=4, stem_stride=2)).double().eval()


@pytest.mark.parametrize("norm", NORMS)
def test_the_members_add_up_to_the_backbones_last_feature(norm):
    torch.manual_seed(0)
    backbone = cifar_resnet(20, num_classes=4, stem_stride=2).double().eval()
    model = DecoupledResNet(backbone, 4, norm=norm).double().eval()
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        members = model.members(x)
        y_L = backbone.blocks(backbone.stem(x))
    assert model.member_names == ["h_6", "F_6", "F_7", "F_8"]
    assert torch.allclose(sum(members), y_L, atol=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_member_scores_sum_to_the_logits_minus_the_bias(norm):
    torch.manual_seed(0)
    model = trained_looking(DecoupledResNet(cifar_resnet(20, num_classes=4, stem_stride=2), 4, norm=norm)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.member_scores(x).sum(1) + model.head.bias, model(x), atol=1e-5)
    assert model(x).shape == (2, 4)


@pytest.mark.parametrize("train", [False, True])
def test_the_shared_bn_relu_carried_member_by_member_adds_up_to_the_bn_relu_of_the_sum(train):
    gen = torch.Generator().manual_seed(1)
    members = [torch.randn(4, 6, 5, 5, generator=gen, dtype=torch.float64) for _ in range(3)]
    bn = trained_looking(torch.nn.BatchNorm2d(6)).double().train(train)
    ref = copy.deepcopy(bn)
    parts = shared_bn_relu(members, bn)
    assert torch.allclose(sum(parts), torch.relu(ref(sum(members))), atol=1e-12)
    # in training the statistics are the batch's, and the running ones move as the shared head's would
    assert torch.equal(bn.running_mean, ref.running_mean) and torch.equal(bn.running_var, ref.running_var)
    gate = (ref(sum(members)) > 0).double()
    assert torch.all(parts[1][gate == 0] == 0) and torch.all(parts[2][gate == 0] == 0)  # the sum's mask gates all
    # BN's shift rides with the first member only: the others are the members scaled (a * m) where the gate is on
    assert not torch.allclose(parts[1], torch.relu(ref(members[1])), atol=1e-3)


def test_eq9_with_equal_weights_is_the_shared_network_and_with_distinct_weights_it_is_not(shared):
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    eq9 = DecoupledResNet.from_shared(shared)
    with torch.no_grad():
        assert torch.allclose(eq9(x), shared(x), atol=1e-10)
        eq9.head.classifiers[0].weight.mul_(2.0)                 # h's classifier on its own weights
        assert (eq9(x) - shared(x)).abs().max() > 1e-3


def test_eq9_with_equal_weights_trains_like_the_shared_network(shared):
    """In training mode too (batch statistics): the same logits and the same gradients for every backbone weight."""
    x = torch.rand(6, 3, 32, 32, dtype=torch.float64)
    eq9 = DecoupledResNet.from_shared(shared).train()
    shared.train()
    a, b = shared(x), eq9(x)
    assert torch.allclose(a, b, atol=1e-10)
    (a ** 2).sum().backward()
    (b ** 2).sum().backward()
    grads = dict(eq9.named_parameters())
    assert torch.allclose(shared.stem[0].weight.grad, grads["stem.0.weight"].grad, atol=1e-10)
    assert torch.allclose(shared.final_act[0].weight.grad, grads["bn.weight"].grad, atol=1e-10)
    assert torch.allclose(shared.fc.weight.grad, sum(c.weight.grad for c in eq9.head.classifiers), atol=1e-10)
    assert torch.equal(shared.final_act[0].running_mean, eq9.bn.running_mean)   # copies, updated alike


def test_the_per_member_variant_with_equal_weights_is_not_the_shared_network(shared):
    """Each member its own BN-ReLU, even one equal to the shared head's: BN's shift counts once per member and
    each member has its own mask, so equal weights do not give Eq. (8) back."""
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    variant = DecoupledResNet.from_shared(shared, norm="per-member")
    assert all(torch.equal(seq[0].running_mean, shared.final_act[0].running_mean) for seq in variant.norms)
    with torch.no_grad():
        assert (variant(x) - shared(x)).abs().max() > 1e-2


def test_the_two_norms_differ_only_in_the_head_and_keep_the_callers_random_stream(shared):
    eq9, variant = (set(DecoupledResNet.from_shared(shared, norm=n).state_dict()) for n in NORMS)
    assert {k for k in eq9 if not k.startswith("bn.")} == {k for k in variant if not k.startswith("norms.")}
    assert "bn.running_mean" in eq9 and "norms.3.0.running_mean" in variant   # the shipped variant's names
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    DecoupledResNet.from_shared(shared)
    assert torch.equal(torch.rand(2), expected)


def test_a_post_activation_or_plain_backbone_or_an_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="pre-activation"):
        DecoupledResNet(cifar_resnet(20, preact=False), 4)
    with pytest.raises(ValueError, match="pre-activation"):
        DecoupledResNet(cifar_resnet(20, plain=True), 4)
    with pytest.raises(ValueError, match="norm='both'"):
        DecoupledResNet(cifar_resnet(20), 4, norm="both")
