"""Checkpoints: state_dicts that round-trip, say which model they hold, refuse what is not ours; cached stages."""
import pytest
import torch
from torch import nn

from mdnet_utils.models import ModelConfig, build_model
from mdnet_utils.training.checkpoint import cached_fit, load_checkpoint, read_checkpoint, save_checkpoint


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_checkpoint_round_trips_state_and_meta(tmp_path):
    model = tiny_model(1)
    path = save_checkpoint(model, tmp_path / "run" / "model.pt", {"epochs": 3})
    other = tiny_model(2)
    assert load_checkpoint(other, path) == {"epochs": 3}
    assert same(model, other)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_a_checkpoint_of_a_configured_model_says_which_model_it_holds(tmp_path):
    cfg = ModelConfig(backbone="resnet", depth=8, width=1)
    path = save_checkpoint(build_model(cfg), tmp_path / "m.pt")
    assert ModelConfig.from_dict(read_checkpoint(path)["meta"]["model_config"]) == cfg


def test_a_file_that_is_not_our_checkpoint_gets_one_sentence(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a checkpoint"):
        load_checkpoint(tiny_model(), junk)
    pickled_module = tmp_path / "module.pt"
    torch.save(tiny_model(), pickled_module)  # a whole pickled module: refused by weights_only
    with pytest.raises(ValueError, match="module.pt"):
        load_checkpoint(tiny_model(), pickled_module)
    other = save_checkpoint(nn.Linear(2, 2), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a checkpoint of this model"):
        load_checkpoint(tiny_model(), other)


def test_cached_fit_runs_once_per_key_then_loads_the_same_weights(tmp_path):
    calls = []

    def run(model):
        def go():
            calls.append(1)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1.0)
            return [{"epoch": 1}]
        return go
    first = tiny_model()
    h1 = cached_fit(tmp_path / "m.pt", first, {"tag": "v1"}, run(first))
    again = tiny_model(seed=5)  # other initial weights: loading must replace them all
    h2 = cached_fit(tmp_path / "m.pt", again, {"tag": "v1"}, run(again))
    assert h1 == h2 and len(calls) == 1 and same(first, again)
    cached_fit(tmp_path / "m.pt", tiny_model(), {"tag": "v2"}, run(tiny_model()))  # another key: runs again
    assert len(calls) == 2
    (tmp_path / "m.pt").write_bytes(b"broken")  # an unreadable cache: runs again and replaces it
    cached_fit(tmp_path / "m.pt", tiny_model(), {"tag": "v2"}, run(tiny_model()))
    assert len(calls) == 3 and read_checkpoint(tmp_path / "m.pt")["meta"]["key"] == {"tag": "v2"}
