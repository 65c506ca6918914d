"""Eq. (10), both readings: the released EcNet (its parameter counts to the parameter, its layers, its shapes
at every block for several depths) and the literal every-block concatenation; both work with the stream tools."""
import pytest
import torch
from torch import nn

from mdnet_utils.models import (EcAddBlock, EcConcatBlock, LiteralConcatBlock, channel_table, cifar_resnet, ecnet,
                                lesion, literal_ecnet, read_stream, residual_blocks)

torch.set_num_threads(1)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_paper_and_the_released_log():
    counts = {(110, 4): n_params(ecnet(110, 4, 10)), (56, 12): n_params(ecnet(56, 12, 10))}
    print(f"\nEcNet-110-4: {counts[110, 4]:,} parameters; EcNet-56-12: {counts[56, 12]:,} parameters (10 classes)")
    assert counts[110, 4] == 1_841_818          # the paper's table: 1.8M
    assert round(counts[110, 4] / 1e6, 1) == 1.8
    assert counts[56, 12] == 7_918_362          # the authors' CIFAR-10 training log, exactly (table: 8.0M)
    # a CIFAR-100 head adds 90 classes x (768 weights + 1 bias)
    assert n_params(ecnet(56, 12, 100)) == 7_918_362 + 90 * 769


def test_the_released_layout():
    net = ecnet(29, 4)                         # n = 3, k = 4
    blocks = residual_blocks(net)
    assert len(blocks) == 9
    assert [type(b) for b in blocks] == [EcConcatBlock, EcAddBlock, EcAddBlock] * 3
    assert [(b.in_channels, b.branch_channels, b.out_channels, b.stride) for b in blocks[::3]] == \
        [(16, 64, 128, 1), (128, 128, 256, 2), (256, 128, 256, 2)]   # branch widths 16k, 32k, 64k / 2
    assert net.num_features == 64 * 4
    for b in blocks:                           # the stride on the first 1x1 conv, bottleneck = a quarter
        assert b.conv1.kernel_size == (1, 1) and b.conv1.stride == (b.stride, b.stride)
        assert b.conv2.stride == (1, 1) and b.conv2.out_channels == b.branch_channels // 4
    for b in blocks[::3]:                      # the projection: a strided 1x1 conv of the raw input
        assert b.downsample.kernel_size == (1, 1) and b.downsample.stride == (b.stride, b.stride)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)
    assert (net.stem.in_channels, net.stem.out_channels) == (3, 16)
    assert net.fc.bias is not None and torch.all(net.fc.bias == 0)
    assert isinstance(net.final_act[0], nn.BatchNorm2d) and isinstance(net.final_act[1], nn.ReLU)
    # MSR: N(0, 2 / fan_in) for every conv
    w = torch.cat([c.weight.flatten() / (2 / c.weight[0].numel()) ** 0.5 for c in convs])
    assert abs(w.std().item() - 1) < 0.02 and abs(w.mean().item()) < 0.02
    with pytest.raises(ValueError, match="9n\\+2"):
        ecnet(30, 1)


@pytest.mark.parametrize("depth,k", [(11, 1), (20, 2), (29, 1)])
def test_ecnet_shapes_at_every_block(depth, k):
    net = ecnet(depth, k).eval()
    n = (depth - 2) // 9
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        records = read_stream(net, x)
        out = net(x)
    assert out.shape == (1, 10) and len(records) == 3 * n
    table = channel_table(net)
    for r, row in zip(records, table):
        stage = r.block_index // n
        side = 16 >> stage                      # strides 1, 2, 2: 16, 8, 4
        first = r.block_index % n == 0
        assert row.connection == ("concat" if first else "add")
        assert r.out.shape == (1, row.out_channels, side, side)
        assert r.branch.shape == (1, row.branch_channels, side, side)
        assert r.x_in.shape[1] == row.in_channels
        assert row.out_channels == [32 * k, 64 * k, 64 * k][stage]
        if first:                               # Eq. (10) as released: F_l(x_l) (+) P_l(x_l)
            block = residual_blocks(net)[r.block_index]
            assert torch.allclose(r.out, torch.cat([r.branch, block.h(r.x_in)], dim=1))
        else:                                   # Eq. (3)
            assert torch.allclose(r.out, r.x_in + r.branch)
    assert net.features(x).shape == (1, 64 * k, 4, 4)


@pytest.mark.parametrize("depth,k", [(11, 1), (20, 1)])
def test_literal_ecnet_grows_at_every_block(depth, k):
    net = literal_ecnet(depth, k).eval()
    n = (depth - 2) // 9
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        records = read_stream(net, x)
    table = channel_table(net)
    ch = 16
    for r, row in zip(records, table):
        assert isinstance(residual_blocks(net)[r.block_index], LiteralConcatBlock)
        growth = [16 * k, 32 * k, 64 * k][r.block_index // n]
        assert (row.connection, row.in_channels, row.branch_channels, row.out_channels) == \
            ("concat", ch, growth, ch + growth)
        ch += growth
        assert r.out.shape[1] == ch
        assert torch.equal(r.out[:, :growth], r.branch)          # F_l(y_l) first ...
        if row.stride == 1:
            assert torch.equal(r.out[:, growth:], r.x_in)        # ... then y_l itself
        else:
            assert row.shortcut == "avgpool" and r.out.shape[-1] == r.x_in.shape[-1] // 2
    assert net.num_features == ch == 16 + 112 * n * k == sum(net.member_channels)


def test_stream_tools_and_lesions_work_on_both_readings():
    x = torch.randn(2, 3, 8, 8)
    for net in (ecnet(20, 1).eval(), literal_ecnet(11, 1).eval()):
        with torch.no_grad():
            full = net(x)
            with lesion(net, [0, -1]):
                lesioned = net(x)
                records = read_stream(net, x)
            assert lesioned.shape == full.shape and not torch.allclose(lesioned, full)
            assert torch.equal(records[0].branch, torch.zeros_like(records[0].branch))
            assert torch.equal(net(x), full)                     # restored


def test_channel_table_reads_resnets_too():
    rows = channel_table(cifar_resnet(20))
    assert [r.connection for r in rows] == ["add"] * 9
    assert [r.shortcut for r in rows].count("conv1x1") == 2
    assert [(r.in_channels, r.out_channels) for r in rows[3:4]] == [(16, 32)]
