"""The one training loop: every stage, deterministic, resumable, learning, and what each stage trains."""
import pytest
import torch
from torch import nn

from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.data.dataset import training_vocab
from mdnet_utils.data.loading import TensorCases, load_report_tiles
from mdnet_utils.errors import ConfigError
from mdnet_utils.evaluation.diagnosis import accuracy
from mdnet_utils.models import mdnet
from mdnet_utils.training.checkpoint import load_training, save_training
from mdnet_utils.training.config import Stage
from mdnet_utils.training.engine import augment, train


def tiny_problem(n=96, seed=0):
    """Bright tiles are class 1, dark tiles class 0: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    base = torch.where(labels[:, None, None, None] == 1, 180, 60)
    images = (base + torch.randint(-30, 30, (n, 3, 8, 8), generator=g)).clamp(0, 255).to(torch.uint8)
    return TensorCases(images, labels)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def diagnosis(epochs=2, **kw):
    return Stage("diagnosis", epochs=epochs, lr=kw.pop("lr", 0.05), batch_size=kw.pop("batch_size", 16), **kw)


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_training_learns_and_records_every_epoch():
    cases, model = tiny_problem(), tiny_model()
    history = train(model, cases, [diagnosis(6)], progress=False,
                    evaluate=lambda m: {"acc": accuracy(m, cases.images, cases.labels)})
    assert [(h["stage"], h["epoch"]) for h in history] == [("diagnosis", e) for e in range(1, 7)]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["acc"] > 0.9


def test_the_same_seed_gives_the_same_weights_and_another_seed_others():
    a, b, c = tiny_model(), tiny_model(), tiny_model()
    for model, seed in ((a, 3), (b, 3), (c, 4)):
        train(model, tiny_problem(), [diagnosis(2)], seed=seed, progress=False)
    assert same_weights(a, b) and not same_weights(a, c)


def test_augment_only_flips_and_turns():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    y = augment(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape
    assert sorted(y.flatten().tolist()) == sorted(x.flatten().tolist())


def test_bad_stage_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="epochs=0"):
        diagnosis(0)
    with pytest.raises(ConfigError, match="lr=-1"):
        diagnosis(lr=-1)
    with pytest.raises(ConfigError, match="name='cnn'"):
        Stage("cnn", epochs=1, lr=1e-3)


def test_an_image_model_trains_only_the_diagnosis_and_needs_every_label():
    with pytest.raises(ConfigError, match="report generator"):
        train(tiny_model(), tiny_problem(), [Stage("decoder", epochs=1, lr=1e-3)], progress=False)
    cases = tiny_problem()
    cases.labels[3] = -1
    with pytest.raises(ValueError, match="needs a label for every training case"):
        train(tiny_model(), cases, [diagnosis(1)], progress=False)


def test_clipping_is_applied_with_the_stages_norm_and_only_when_asked(monkeypatch):
    seen = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        original(params, max_norm, *a, **k)
        seen.append((max_norm, float(torch.stack([p.grad.norm() for p in params if p.grad is not None]).norm())))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    train(tiny_model(), tiny_problem(), [diagnosis(1, clip=1e-3)], progress=False)
    assert len(seen) == 6 and all(limit == 1e-3 and norm <= 1e-3 * 1.0001 for limit, norm in seen)
    train(tiny_model(), tiny_problem(), [diagnosis(1)], progress=False)  # no clip: never called
    assert len(seen) == 6


def test_a_custom_loss_replaces_the_cross_entropy():
    calls = []

    def loss_fn(logits, labels):
        calls.append(tuple(logits.shape))
        return nn.functional.cross_entropy(logits, labels)
    train(tiny_model(), tiny_problem(), [diagnosis(1)], loss_fn=loss_fn, progress=False)
    assert calls == [(16, 2)] * 6


def test_stopping_after_any_epoch_and_resuming_from_the_saved_state_is_exact(tmp_path):
    stages = [Stage("diagnosis", epochs=3, lr=0.05, batch_size=16)]
    whole = tiny_model()
    train(whole, tiny_problem(), stages, seed=2, progress=False)
    for stop in (1, 2):
        parts = tiny_model()
        path = tmp_path / f"state-{stop}.pt"
        train(parts, tiny_problem(), stages, seed=2, progress=False, stop_after=stop,
              on_epoch=lambda end, m=parts, p=path: save_training(p, m, end, {}))
        resumed = tiny_model(seed=9)                     # other weights: loading must replace them all
        at, _ = load_training(path, resumed)
        assert (at.stage, at.epoch) == (0, stop)
        train(resumed, tiny_problem(), stages, seed=2, progress=False, resume=at)
        assert same_weights(whole, resumed)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = make_synthetic_dataset(tmp_path_factory.mktemp("engine") / "ds", n_images=36, image_size=32, seed=5,
                                  workers=1)
    vocab = training_vocab(root)
    return vocab, load_report_tiles(root, "train", vocab).cases()


def small_mdnet(vocab):
    torch.manual_seed(0)
    return mdnet(len(vocab), depth=11, widen_factor=1, image_size=32, hidden_dim=32)


def test_the_frozen_stage_trains_the_decoder_and_leaves_the_image_model_alone(reports):
    vocab, cases = reports
    model = small_mdnet(vocab)
    cnn_before = {k: v.clone() for k, v in model.image_model.state_dict().items()}
    dec_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    history = train(model, cases, [Stage("decoder", epochs=2, lr=2e-3, batch_size=8, augment=False)], progress=False)
    assert len(history) == 2 and history[1]["words_loss"] < history[0]["words_loss"]
    assert all(torch.equal(v, model.image_model.state_dict()[k]) for k, v in cnn_before.items())  # BN stats too
    assert any(not torch.equal(v, model.decoder.state_dict()[k]) for k, v in dec_before.items())


def test_end_to_end_trains_both_and_records_the_class_loss(reports):
    vocab, cases = reports
    model = small_mdnet(vocab)
    fc_before = model.image_model.fc.weight.clone()
    [record] = train(model, cases, [Stage("end_to_end", epochs=1, lr=2e-3, batch_size=8, clip=5.0)], progress=False)
    assert {"train_loss", "words_loss", "class_loss"} <= set(record)
    assert record["train_loss"] == pytest.approx(record["words_loss"] + 0.1 * record["class_loss"], rel=1e-5)
    assert not torch.equal(fc_before, model.image_model.fc.weight)


def test_the_diagnosis_stage_of_a_report_generator_trains_only_its_image_model(reports):
    vocab, cases = reports
    model = small_mdnet(vocab)
    dec_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    train(model, cases, [Stage("diagnosis", epochs=1, lr=3e-3, batch_size=8)], progress=False)
    assert all(torch.equal(v, model.decoder.state_dict()[k]) for k, v in dec_before.items())


def test_report_stages_are_deterministic_and_bf16_autocast_keeps_losses_finite(reports):
    vocab, cases = reports
    stage = Stage("end_to_end", epochs=1, lr=2e-3, batch_size=8, clip=5.0, reports_per_tile=2)
    runs = []
    for _ in range(2):
        model = small_mdnet(vocab)
        train(model, cases, [stage], progress=False)
        runs.append(model)
    assert same_weights(*runs)
    [record] = train(small_mdnet(vocab), cases, [stage], bf16=True, progress=False)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in record.items() if k.endswith("_loss"))
