"""Training loop and checkpoints: deterministic, learning, atomic, and safe to load."""
import pytest
import torch
from torch import nn

from mdnet_utils.train import accuracy, augment, fit, load_checkpoint, save_checkpoint


def tiny_problem(n=96, seed=0):
    """Bright tiles are class 1, dark tiles class 0: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    base = torch.where(labels[:, None, None, None] == 1, 180, 60)
    images = (base + torch.randint(-30, 30, (n, 3, 8, 8), generator=g)).clamp(0, 255).to(torch.uint8)
    return images, labels


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_fit_learns_and_reports_every_epoch():
    images, labels = tiny_problem()
    model = tiny_model()
    history = fit(model, images, labels, epochs=6, batch_size=16, lr=0.05, progress=False,
                  evaluate=lambda m: {"acc": accuracy(m, images, labels)})
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["acc"] > 0.9


def test_the_same_seed_gives_the_same_weights():
    images, labels = tiny_problem()
    a, b = tiny_model(), tiny_model()
    fit(a, images, labels, epochs=2, batch_size=16, seed=3, progress=False)
    fit(b, images, labels, epochs=2, batch_size=16, seed=3, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_augment_only_flips_and_turns():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    y = augment(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape
    assert sorted(y.flatten().tolist()) == sorted(x.flatten().tolist())


def test_zero_epochs_is_refused():
    images, labels = tiny_problem()
    with pytest.raises(ValueError, match="epochs=0"):
        fit(tiny_model(), images, labels, epochs=0)


def test_a_checkpoint_round_trips_state_and_meta(tmp_path):
    model = tiny_model(1)
    path = save_checkpoint(model, tmp_path / "run" / "model.pt", {"epochs": 3})
    other = tiny_model(2)
    assert load_checkpoint(other, path) == {"epochs": 3}
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), other.state_dict().values()))
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_a_file_that_is_not_our_checkpoint_gets_one_sentence(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a checkpoint"):
        load_checkpoint(tiny_model(), junk)
    pickled_module = tmp_path / "module.pt"
    torch.save(tiny_model(), pickled_module)  # a whole pickled module: refused by weights_only
    with pytest.raises(ValueError, match="module.pt"):
        load_checkpoint(tiny_model(), pickled_module)


def test_load_or_fit_trains_once_then_loads_the_same_weights(tmp_path):
    from mdnet_utils.train import load_or_fit
    images, labels = tiny_problem()
    first = tiny_model()
    h1 = load_or_fit(tmp_path / "m.pt", first, images, labels, epochs=2, batch_size=16, progress=False)
    stamp = (tmp_path / "m.pt").stat().st_mtime_ns
    again = tiny_model(seed=5)  # other initial weights: loading must replace them all
    h2 = load_or_fit(tmp_path / "m.pt", again, images, labels, epochs=2, batch_size=16, progress=False)
    assert h1 == h2 and (tmp_path / "m.pt").stat().st_mtime_ns == stamp
    assert all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), again.state_dict().values()))
    other = tiny_model()
    load_or_fit(tmp_path / "m.pt", other, images, labels, epochs=3, batch_size=16, progress=False)
    assert (tmp_path / "m.pt").stat().st_mtime_ns != stamp  # other settings: trained again


def test_load_or_fit_retrains_when_the_tag_changes(tmp_path):
    from mdnet_utils.train import load_or_fit
    images, labels = tiny_problem()
    load_or_fit(tmp_path / "m.pt", tiny_model(), images, labels, tag="v1", epochs=1, batch_size=16, progress=False)
    stamp = (tmp_path / "m.pt").stat().st_mtime_ns
    load_or_fit(tmp_path / "m.pt", tiny_model(), images, labels, tag="v2", epochs=1, batch_size=16, progress=False)
    assert (tmp_path / "m.pt").stat().st_mtime_ns != stamp


def test_load_or_fit_does_not_retrain_for_another_progress_bar(tmp_path):
    from mdnet_utils.train import load_or_fit
    images, labels = tiny_problem()
    load_or_fit(tmp_path / "m.pt", tiny_model(), images, labels, epochs=1, batch_size=16, progress=False)
    stamp = (tmp_path / "m.pt").stat().st_mtime_ns
    load_or_fit(tmp_path / "m.pt", tiny_model(), images, labels, epochs=1, batch_size=16, progress="label")
    assert (tmp_path / "m.pt").stat().st_mtime_ns == stamp
