"""The learnability probe of notebook 00 (``mdnet_utils.training.learnability``): a small CNN that reads the
conclusion and all five grades off a tile, trained with the course's engine."""
import math

import pytest
import torch

from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.data.loading import load_tiles, to_input
from mdnet_utils.evaluation.figures import grade_outputs
from mdnet_utils.models import PreActResNet
from mdnet_utils.training.config import Stage
from mdnet_utils.training.learnability import TASK_SIZES, TASKS, GradeReader, evaluate, train_grade_reader

torch.set_num_threads(1)


def test_the_learnability_grade_reader_still_works():
    torch.manual_seed(0)
    reader = GradeReader()
    assert isinstance(reader.backbone, PreActResNet) and reader.backbone.num_features == 64
    x = torch.randn(2, 3, 64, 64)
    outs = reader(x)
    assert [tuple(o.shape) for o in outs] == [(2, n) for n in TASK_SIZES] and len(outs) == 6
    assert reader.backbone.features(x).shape == (2, 64, 8, 8)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """48 train and 12 val tiles of 32 px, targets (N, 6): the conclusion, then the five grades."""
    root = make_synthetic_dataset(tmp_path_factory.mktemp("learnability") / "d", n_images=72, image_size=32,
                                  workers=1)
    split = {}
    for name in ("train", "val"):
        images, labels, grades = load_tiles(root, name)
        split[name] = images, torch.cat([labels[:, None], grades], dim=1)
    return split


EPOCHS = 4


def test_training_lowers_the_loss_and_records_each_epoch_with_the_validation_accuracies(tiles):
    model, history = train_grade_reader(*tiles["train"], epochs=EPOCHS, batch_size=16, seed=0, val=tiles["val"],
                                        progress=False)
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
    assert all({"train_loss", *(f"val_{t}" for t in TASKS)} <= set(r) for r in history), history[0]
    assert all(0 <= r[f"val_{t}"] <= 1 for r in history for t in TASKS)
    losses = [r["train_loss"] for r in history]
    # measured over seeds 0-7: the last epoch's loss is 0.74-0.91 of the first's, and below the loss of a uniform
    # guess on every task (sum of log(classes) = 6.47): 4.8-5.8
    chance = sum(math.log(n) for n in TASK_SIZES)
    assert losses[-1] < 0.95 * losses[0] and losses[-1] < chance, losses
    assert evaluate(model, *tiles["val"]) == {t: history[-1][f"val_{t}"] for t in TASKS}


def test_training_is_deterministic_for_a_seed_and_has_no_val_keys_without_val(tiles):
    runs = [train_grade_reader(*tiles["train"], epochs=2, batch_size=16, seed=seed, progress=False)
            for seed in (0, 0, 1)]
    (a, ha), (b, hb), (c, hc) = runs
    assert ha == hb and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert hc != ha
    assert not any(k.startswith("val_") for r in ha for k in r)


def test_a_given_stage_is_what_trains_with_its_epochs_replaced(tiles):
    slow = Stage("diagnosis", epochs=99, lr=1e-9, batch_size=16, augment=False)  # lr so low nothing moves
    _, history = train_grade_reader(*tiles["train"], epochs=2, seed=0, stage=slow, progress=False)
    _, default = train_grade_reader(*tiles["train"], epochs=2, batch_size=16, seed=0, progress=False)
    assert len(history) == 2 and history[1]["train_loss"] == pytest.approx(history[0]["train_loss"], rel=0.05)
    assert default[1]["train_loss"] < 0.98 * history[1]["train_loss"]


def test_the_batched_outputs_are_the_model_run_on_all_tiles_at_once(tiles):
    torch.manual_seed(0)
    reader = GradeReader().eval()
    images = tiles["val"][0]
    whole = reader(to_input(images, torch.device("cpu")))
    batched = grade_outputs(reader, images, batch_size=5)  # 12 tiles: batches of 5, 5 and 2
    assert [tuple(o.shape) for o in batched] == [(len(images), n) for n in TASK_SIZES]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(whole, batched))
