"""The residual stream: block enumeration, Eq. (5) (the unrolled identity) and Eq. (6) (its gradient) on
random pre-activation networks in float64, and lesions (shapes kept, model restored)."""
import pytest
import torch
from torch import nn

from mdnet_utils.models import cifar_resnet, lesion, read_stream, record_stream, residual_blocks, resnet18, resnet50
from tests.helpers import randomized

torch.set_num_threads(1)


def stages(blocks):
    """Runs of consecutive blocks l..L-1 with identity shortcuts: Eq. (5) holds for every l < L in one."""
    runs, run = [], []
    for i, b in enumerate(blocks):
        if b.downsample is not None:  # a projection: the unrolled sum starts again after it
            runs.append(run)
            run = []
        else:
            run.append(i)
    return [r for r in runs + [run] if r]


def test_residual_blocks_enumerates_every_family_in_forward_order():
    from mdnet_utils.training.learnability import GradeReader

    r18 = resnet18()
    assert residual_blocks(r18) == r18.blocks
    assert [r.name for r in read_stream(r18.eval(), torch.randn(1, 3, 32, 32))] == \
        [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert len(residual_blocks(resnet50())) == 16
    net = cifar_resnet(20)
    assert residual_blocks(net) == list(net.blocks)
    reader = GradeReader()  # a backbone inside a bigger model
    assert [r.name for r in read_stream(reader, torch.randn(1, 3, 32, 32))] == [f"backbone.blocks.{i}" for i in range(6)]


def test_records_chain_block_to_block_and_add_up():
    for net in (cifar_resnet(20), cifar_resnet(20, preact=False)):
        net = randomized(net)
        x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
        with torch.no_grad():
            records = read_stream(net, x)
        assert [r.block_index for r in records] == list(range(9))
        for r, nxt in zip(records, records[1:]):
            assert nxt.x_in is r.out  # x_{l+1} is the next block's input
        for r, b in zip(records, net.blocks):
            with torch.no_grad():
                y = r.branch + b.h(r.x_in)
            assert torch.allclose(r.out, y if b.preact else torch.relu(y), atol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(depth=20), dict(depth=29, block="bottleneck"), dict(depth=20, widen_factor=2)],
                         ids=["basic-20", "bottleneck-29", "basic-20-k2"])
def test_eq_5_unrolled_identity_on_random_preact_networks(kwargs):
    torch.manual_seed(1)
    net = randomized(cifar_resnet(**kwargs))
    with torch.no_grad():
        rec = read_stream(net, torch.randn(2, 3, 16, 16, dtype=torch.float64))
    x = [r.x_in for r in rec] + [rec[-1].out]  # x_0 .. x_L
    runs = stages(net.blocks)
    assert sum(len(r) for r in runs) >= 6
    for run in runs:
        for l in run:
            for L in range(l + 1, run[-1] + 2):  # x_L for L up to the output of the run's last block
                unrolled = x[l] + sum(rec[i].branch for i in range(l, L))
                assert (x[L] - unrolled).abs().max() < 1e-10, (l, L)


def test_eq_5_fails_for_post_activation():
    torch.manual_seed(1)
    net = randomized(cifar_resnet(20, preact=False))
    with torch.no_grad():
        rec = read_stream(net, torch.randn(2, 3, 16, 16, dtype=torch.float64))
    assert (rec[2].out - rec[0].x_in - rec[0].branch - rec[1].branch - rec[2].branch).abs().max() > 1e-3


def test_eq_6_gradient_is_the_direct_term_plus_the_branches():
    torch.manual_seed(2)
    net = randomized(cifar_resnet(20))
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 3, 5, 9])
    with record_stream(net) as rec:
        loss = nn.functional.cross_entropy(net(x), y)
    for l, L in [(0, 3), (1, 3), (3 + 1, 6), (6 + 1, 9)]:  # within stage 1, 2 and 3 (no projection between)
        x_l, x_L = rec[l].x_in, (rec[L].x_in if L < len(rec) else rec[-1].out)
        g_l, g_L = torch.autograd.grad(loss, [x_l, x_L], retain_graph=True)  # dLoss/dx_l, dLoss/dx_L
        sum_f = sum(rec[i].branch for i in range(l, L))
        (through_branches,) = torch.autograd.grad(sum_f, x_l, grad_outputs=g_L, retain_graph=True)
        assert torch.allclose(g_l, g_L + through_branches, atol=1e-10, rtol=0)  # Eq. (6)
        assert g_L.abs().max() > 1e-6 and through_branches.abs().max() > 1e-6  # both terms are there


def outputs(net, x):
    with torch.no_grad():
        return net(x)


def test_a_lesioned_block_hands_on_its_shortcut_and_the_model_comes_back():
    for net in (cifar_resnet(20), cifar_resnet(20, preact=False)):
        net = randomized(net)
        x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
        before = outputs(net, x)
        blocks = residual_blocks(net)
        with torch.no_grad(), lesion(net, [1, "blocks.3", blocks[4]]) as hit:
            assert hit == [blocks[1], blocks[3], blocks[4]]
            rec = read_stream(net, x)
            assert torch.equal(rec[1].out, rec[1].x_in) and torch.equal(rec[4].out, rec[4].x_in)  # identity: x_l
            assert torch.count_nonzero(rec[3].branch) == 0
            h = blocks[3].h(rec[3].x_in)  # a projection: the shape is kept
            assert torch.equal(rec[3].out, h if blocks[3].preact else torch.relu(h))
            assert rec[3].out.shape == (2, 32, 8, 8) and net(x).shape == before.shape
            assert not torch.allclose(net(x), before)
        assert torch.equal(outputs(net, x), before)


def test_lesion_restores_the_model_on_an_exception_and_lesions_every_block_of_resnet18():
    net = resnet18().eval()
    x = torch.randn(1, 3, 32, 32)
    before = outputs(net, x)
    with pytest.raises(KeyError):
        with lesion(net, range(8)):
            assert outputs(net, x).shape == (1, 1000)
            raise KeyError("boom")
    assert all(not b._forward_hooks and not b.tap._forward_hooks for b in residual_blocks(net))
    assert torch.equal(outputs(net, x), before)


def test_lesion_of_a_plain_network_deletes_the_layer_where_it_can():
    net = randomized(cifar_resnet(20, plain=True))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad(), lesion(net, [1]):
        rec = read_stream(net, x)
        assert torch.equal(rec[1].out, rec[1].x_in) and torch.count_nonzero(rec[1].branch) == 0
    with pytest.raises(ValueError, match="'blocks.3' is plain and changes shape"):
        with lesion(net, [1, 3]):
            pass
    assert all(not b._forward_hooks and not b.tap._forward_hooks for b in net.blocks)
    with pytest.raises(ValueError, match="out of range"):
        with lesion(net, [9]):
            pass
