"""Residual blocks and networks: Eqs. (1)-(3) in each block, the CIFAR nets' shapes, and the proof that
``mdnet_utils.models.resnet18/34/50`` are torchvision's ResNets (same keys, same init, same function)."""
import pytest
import torch
import torchvision
from torch import nn

from mdnet_utils.models import (BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck, cifar_resnet, resnet18,
                                resnet34, resnet50)

torch.set_num_threads(1)

BLOCKS = (BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck)
LAST_OF_BRANCH = {BasicBlock: "bn2", Bottleneck: "bn3", PreActBasicBlock: "conv2", PreActBottleneck: "conv3"}


def make(block, *, project: bool, plain: bool = False):
    """A block that keeps the shape of its 8x8 input (project=False) or halves it and doubles the width."""
    torch.manual_seed(0)
    planes = 4
    in_ch = planes * block.expansion if not project else planes * block.expansion // 2
    b = block(in_ch, planes, stride=2 if project else 1, plain=plain).eval()
    for m in b.modules():  # non-trivial batch norms, so that "equals x" means something
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.normal_(0, 0.2)
            m.running_mean.normal_(0, 0.2), m.running_var.uniform_(0.5, 1.5)
    return b, torch.randn(2, in_ch, 8, 8)


def zero_branch(b):
    last = getattr(b, LAST_OF_BRANCH[type(b)])
    for p in last.parameters():
        p.data.zero_()


@pytest.mark.parametrize("block", BLOCKS, ids=lambda c: c.__name__)
def test_a_block_with_its_branch_zeroed_is_its_shortcut(block):
    # pre-activation: x_{l+1} = x_l exactly (Eq. (3) with F = 0); post-activation: f(h(x_l)) = ReLU(x_l)
    for project in (False, True):
        b, x = make(block, project=project)
        zero_branch(b)
        with torch.no_grad():
            assert torch.count_nonzero(b.branch(x)) == 0
            expected = b.h(x) if block.preact else torch.relu(b.h(x))
            assert torch.equal(b(x), expected)
            if not project:
                assert torch.equal(b(x), x if block.preact else torch.relu(x))
            else:
                assert b(x).shape == (2, b.out_channels, 4, 4) and b.downsample is not None


@pytest.mark.parametrize("block", BLOCKS, ids=lambda c: c.__name__)
def test_the_block_is_eq_1_2_and_its_plain_twin_has_no_shortcut(block):
    for project in (False, True):
        b, x = make(block, project=project)
        p, _ = make(block, project=project, plain=True)
        with torch.no_grad():
            y = b.branch(x) + b.h(x)
            assert torch.allclose(b(x), y if block.preact else torch.relu(y), atol=1e-6)
            assert p.downsample is None
            assert torch.allclose(p(x), p.branch(x) if block.preact else torch.relu(p.branch(x)), atol=1e-6)
            zero_branch(p)
            assert torch.count_nonzero(p(x)) == 0  # nothing to fall back on
    n_res = sum(t.numel() for t in make(block, project=True)[0].parameters())
    n_plain = sum(t.numel() for t in make(block, project=True, plain=True)[0].parameters())
    assert n_res > n_plain  # the projection shortcut is the only difference


def call_order(b, x):
    order = []
    hooks = [m.register_forward_hook(lambda m, a, o: order.append(type(m).__name__))
             for m in b.modules() if not list(m.children()) and m is not b.tap]
    with torch.no_grad():
        b(x)
    for h in hooks:
        h.remove()
    return order


def test_pre_activation_puts_bn_relu_before_each_conv_and_post_activation_after():
    C, B, R = "Conv2d", "BatchNorm2d", "ReLU"
    assert call_order(*make(BasicBlock, project=False)) == [C, B, R, C, B, R]
    assert call_order(*make(Bottleneck, project=False)) == [C, B, R, C, B, R, C, B, R]
    assert call_order(*make(PreActBasicBlock, project=False)) == [B, R, C, B, R, C]
    assert call_order(*make(PreActBottleneck, project=False)) == [B, R, C, B, R, C, B, R, C]
    # with a projection, pre-activation: h sees the pre-activated input too; post-activation: h = conv-BN of x
    assert call_order(*make(PreActBasicBlock, project=True)) == [B, R, C, C, B, R, C]
    assert call_order(*make(BasicBlock, project=True)) == [C, B, R, C, B, C, B, R]
    # what the ordering means: a post-activation block's output went through ReLU, a pre-activation one's did not
    for block in BLOCKS:
        b, x = make(block, project=False)
        with torch.no_grad():
            assert bool(b(x).min() < 0) == block.preact


@pytest.mark.parametrize("name, ours_fn", [("resnet18", resnet18), ("resnet34", resnet34), ("resnet50", resnet50)])
def test_ours_is_torchvisions_resnet(name, ours_fn):
    torch.manual_seed(0)
    ours = ours_fn()
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in b)
    assert all(torch.equal(a[k], b[k]) for k in b)  # same initialisation, draw for draw
    for m in theirs.modules():  # trained-looking batch norms, so that eval mode exercises them
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-5, rtol=0)
    assert len(ours.blocks) == (8 if name == "resnet18" else 16)


def test_cifar_depths_are_checked_with_one_sentence():
    with pytest.raises(ValueError, match=r"^depth=21 is not 6n\+2 .*\.$"):
        cifar_resnet(21)
    with pytest.raises(ValueError, match=r"depth=32 is not 9n\+2"):
        cifar_resnet(32, block="bottleneck")
    with pytest.raises(ValueError, match="depth=2 "):
        cifar_resnet(2)
    with pytest.raises(ValueError, match="block='wide'"):
        cifar_resnet(20, block="wide")
    with pytest.raises(ValueError, match="widen_factor=0"):
        cifar_resnet(20, widen_factor=0)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_cifar_resnets_have_the_papers_sizes_and_shapes():
    assert abs(n_params(cifar_resnet(20, preact=False)) - 0.27e6) < 0.01e6    # He et al. 2015: 0.27M
    assert abs(n_params(cifar_resnet(110, preact=False)) - 1.7e6) < 0.05e6    # 1.7M
    assert abs(n_params(cifar_resnet(164, block="bottleneck")) - 1.7e6) < 0.05e6  # He et al. 2016 / MDNet table
    x = torch.randn(2, 3, 32, 32)
    for kwargs, width in [({}, 64), ({"widen_factor": 2}, 128), ({"block": "bottleneck"}, 256),
                          ({"preact": False}, 64), ({"plain": True}, 64)]:
        depth = 29 if kwargs.get("block") == "bottleneck" else 20
        net = cifar_resnet(depth, **kwargs)
        assert net.num_features == width and len(net.blocks) == 9
        assert net.features(x).shape == (2, width, 8, 8) and net(x).shape == (2, 10)
    pre, post = cifar_resnet(20), cifar_resnet(20, preact=False)
    assert isinstance(pre.final_act[0], nn.BatchNorm2d) and isinstance(post.final_act, nn.Identity)
    assert isinstance(post.stem[1], nn.BatchNorm2d) and len(pre.stem) == 1  # the first block pre-activates
    assert not any(b.downsample is not None for b in cifar_resnet(20, plain=True).blocks)

