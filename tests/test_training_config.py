"""A recipe as data: Stage and TrainConfig are checked, JSON/YAML round-trip, and partial files refine a base."""
import json

import pytest

from mdnet_utils.errors import ConfigError
from mdnet_utils.training.config import Stage, TrainConfig, read_config_file
from mdnet_utils.training.recipes import course_recipe


def test_the_course_recipes_are_data():
    full, fast = course_recipe("mdnet"), course_recipe("mdnet", fast=True)
    assert [(s.name, s.epochs, s.lr, s.batch_size) for s in full.stages] == [
        ("diagnosis", 8, 3e-3, 64), ("decoder", 4, 3e-3, 32), ("end_to_end", 4, 2e-3, 32)]
    assert [s.limit for s in full.stages] == [1536, None, None] and [s.limit for s in fast.stages] == [256] * 3
    assert full.stage("end_to_end").reports_per_tile == 2 and full.stage("diagnosis").clip is None
    assert course_recipe("diagnosis").stages == (full.stage("diagnosis"),)
    with pytest.raises(ValueError, match="unknown recipe 'vgg'"):
        course_recipe("vgg")


def test_a_recipe_round_trips_through_json():
    recipe = course_recipe("mdnet", fast=True)
    assert TrainConfig.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_a_partial_dict_changes_only_what_it_names():
    base = course_recipe("mdnet")
    cfg = TrainConfig.from_dict({"seed": 3, "stages": [{"name": "decoder", "lr": 1e-3}]}, base=base)
    assert cfg.seed == 3 and [s.name for s in cfg.stages] == ["decoder"]
    assert cfg.stages[0] == base.stage("decoder").replace(lr=1e-3)
    assert TrainConfig.from_dict({"bf16": True}, base=base).stages == base.stages


@pytest.mark.parametrize("data, key", [
    ({"stages": [{"name": "decoder", "epochs": 0}]}, "stages[0].epochs"),
    ({"stages": [{"name": "decoder", "lr": "fast"}]}, "stages[0].lr"),
    ({"stages": [{"name": "decoder", "epoch": 3}]}, "stages[0].epoch"),
    ({"stages": [{"name": "end_to_end"}, {"name": "decoder"}]}, "stages"),
    ({"stages": []}, "stages"),
    ({"seed": -1}, "seed"),
    ({"max_len": 2}, "max_len"),
    ({"learning_rate": 1}, "learning_rate"),
])
def test_bad_values_are_refused_naming_them_as_the_file_does(data, key):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data, base=course_recipe("mdnet"))
    assert info.value.key == key


def test_total_epochs_are_shared_as_the_recipe_shares_them():
    recipe = course_recipe("mdnet")  # 8 + 4 + 4
    assert [s.epochs for s in recipe.with_total_epochs(16).stages] == [8, 4, 4]
    assert [s.epochs for s in recipe.with_total_epochs(8).stages] == [4, 2, 2]
    assert [s.epochs for s in recipe.with_total_epochs(3).stages] == [1, 1, 1]
    assert [s.name for s in recipe.with_total_epochs(1).stages] == ["end_to_end"]
    for total in range(1, 40):
        assert recipe.with_total_epochs(total).epochs == total
    with pytest.raises(ConfigError, match="epochs=0"):
        recipe.with_total_epochs(0)


def test_config_files_are_json_or_yaml_and_a_broken_one_is_named(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"training": {"seed": 1}}))
    (tmp_path / "b.yaml").write_text("training:\n  seed: 1\n  stages:\n    - name: decoder\n      lr: 0.001\n")
    assert read_config_file(tmp_path / "a.json") == {"training": {"seed": 1}}
    assert read_config_file(tmp_path / "b.yaml")["training"]["stages"][0]["lr"] == 0.001
    (tmp_path / "c.yaml").write_text("training: [unclosed\n")
    (tmp_path / "d.json").write_text("[1, 2]")
    for name, message in (("c.yaml", "not valid YAML"), ("d.json", "does not hold a mapping"),
                          ("missing.json", "cannot be read")):
        with pytest.raises(ConfigError, match=message) as info:
            read_config_file(tmp_path / name)
        assert name in str(info.value)


def test_a_stage_knows_what_it_trains():
    assert [Stage(n, epochs=1, lr=1e-3).trains for n in ("diagnosis", "decoder", "end_to_end")] == [
        "image_model", "decoder", "all"]
