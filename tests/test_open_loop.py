"""The training loop written in the open (notebook 01, section 5) is the engine's: a dozen lines of batches,
augmentation, forward, loss, backward, optimizer step and schedule give ``mdnet_utils.training.engine.train``'s
weights bit for bit, on the recipe the reference models were trained with. Each ingredient the loop copies from
the engine (the data order, the augmentation's draws, the schedule, the optimizer's settings) matters: a loop
that gets any one of them wrong ends elsewhere."""
import copy

import pytest
import torch
from torch import nn

from mdnet_utils.data.loading import TensorCases
from mdnet_utils.models import cifar_resnet
from mdnet_utils.training.distributed import SINGLE
from mdnet_utils.training.engine import train
from mdnet_utils.training.registry import REGISTRY

torch.set_num_threads(1)


def open_loop(model, images, labels, stage, seed, *, mistake=None):
    """Notebook 01's loop, line for line (``mistake`` names one deliberate deviation from the engine)."""
    n = min(stage.limit or len(images), len(images))                  # the stage's first `limit` cases
    steps = stage.epochs * -(-n // stage.batch_size)                   # batches per epoch, the last one short
    optimizer = torch.optim.AdamW(model.parameters(), lr=stage.lr,
                                  weight_decay=0.0 if mistake == "no weight decay" else stage.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=stage.lr, total_steps=steps,
                                                   pct_start=stage.warmup)
    draws = torch.Generator().manual_seed(seed)                         # the augmentation's coin flips and turns
    model.train()
    for epoch in range(stage.epochs):
        shuffle = seed + (0 if mistake == "one order for every epoch" else epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(shuffle))   # DistributedSampler's
        for i in range(0, n, stage.batch_size):
            idx = order[i:i + stage.batch_size]
            x, y = images[idx].float() / 255, labels[idx]
            if mistake != "turn before flip" and torch.rand((), generator=draws) < 0.5:
                x = x.flip(-1)
            x = torch.rot90(x, int(torch.randint(0, 4, (), generator=draws)), dims=(-2, -1))
            if mistake == "turn before flip" and torch.rand((), generator=draws) < 0.5:
                x = x.flip(-1)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if mistake != "no schedule":
                schedule.step()
    return model


def tiles(n=40, size=16, seed=0):
    """uint8 tiles and labels of four classes, made up: the loops are compared, not what they learn."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return images, torch.randint(0, 4, (n,), generator=g)


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return cifar_resnet(8, num_classes=4, stem_stride=2)


@pytest.fixture(scope="module")
def stage():
    """The references' recipe (AdamW, one-cycle, augmentation, no clipping), cut to 2 epochs of 32 cases in
    batches of 12: 3 batches an epoch, the last one short, 6 steps of which 1.5 warm up (more than one: a
    one-cycle schedule, not the engine's constant-rate fallback)."""
    return REGISTRY["resnet-32"].recipe.stages[0].replace(epochs=2, limit=32, batch_size=12)


@pytest.fixture(scope="module")
def engine_net(stage):
    images, labels = tiles()
    net = tiny_net()
    train(net, TensorCases(images, labels), [stage], seed=3, progress=False)
    return net


def test_the_recipe_is_the_one_the_loop_is_written_for(stage):
    assert stage.name == "diagnosis" and stage.augment and stage.clip is None
    assert stage.warmup * stage.epochs * 3 > 1            # engine.one_cycle_fits: a real one-cycle schedule


def test_the_open_loops_data_order_is_the_engines_distributed_sampler():
    for epoch in (0, 1, 7):
        order = torch.randperm(50, generator=torch.Generator().manual_seed(3 + epoch))
        assert torch.equal(order, SINGLE.order(50, seed=3, epoch=epoch))


def test_the_open_loop_gives_the_engines_weights_bit_for_bit(stage, engine_net):
    images, labels = tiles()
    ours = open_loop(tiny_net(), images, labels, stage, seed=3)
    mine, theirs = ours.state_dict(), engine_net.state_dict()
    assert list(mine) == list(theirs)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)        # parameters and batch-norm statistics
    assert not torch.equal(mine["fc.weight"], tiny_net().state_dict()["fc.weight"])   # and it did train


@pytest.mark.parametrize("mistake", ["one order for every epoch", "turn before flip", "no schedule",
                                     "no weight decay"])
def test_a_loop_that_deviates_from_the_engine_in_one_ingredient_ends_elsewhere(stage, engine_net, mistake):
    images, labels = tiles()
    ours = open_loop(tiny_net(), images, labels, stage, seed=3, mistake=mistake)
    assert not torch.equal(ours.fc.weight, engine_net.fc.weight)


def test_a_copy_trained_by_the_engine_is_the_same_as_a_fresh_net_with_the_same_seed(stage):
    """The notebook trains a deep copy with the engine and the original with the loop: a copy starts equal."""
    images, labels = tiles()
    net = tiny_net()
    a, b = copy.deepcopy(net), open_loop(net, images, labels, stage, seed=3)
    train(a, TensorCases(images, labels), [stage], seed=3, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
