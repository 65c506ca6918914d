"""A model as data: ModelConfig rebuilds every network of the course, is checked, and survives JSON."""
import json

import pytest
import torch

from mdnet_utils.errors import ConfigError
from mdnet_utils.models import (MODEL_PRESETS, DecoupledResNet, ModelConfig, ReportGenerator, build_model, ecnet,
                                literal_ecnet, mdnet, resnet_sat)
from mdnet_utils.models.resnet import cifar_resnet


def same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_config_round_trips_through_json_and_names_the_network():
    cfg = MODEL_PRESETS["mdnet"].replace(vocab_size=50, image_size=32)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.name == "EcNet-20-4+cam" and MODEL_PRESETS["resnet-sat"].replace(vocab_size=9).name == "ResNet-32+soft"
    assert ModelConfig(backbone="plain", depth=8, width=1).name == "plain-8"


@pytest.mark.parametrize("changes, key", [
    ({"backbone": "vgg"}, "backbone"), ({"depth": 0}, "depth"), ({"image_size": 30}, "image_size"),
    ({"dropout": 1.0}, "dropout"), ({"attention": "hard"}, "attention"), ({"vocab_size": 2}, "vocab_size"),
    ({"head": "decoupled", "backbone": "ecnet"}, "head"), ({"head": "eq9", "backbone": "plain"}, "head"),
    ({"head": "eq9", "vocab_size": 40}, "head"),
    ({"head": "grades"}, "grade_sizes"), ({"grade_sizes": (3, 2)}, "grade_sizes"),
    ({"head": "grades", "grade_sizes": (3, 1)}, "grade_sizes"),
    ({"head": "grades", "grade_sizes": (3,), "vocab_size": 40}, "grade_sizes"),
])
def test_bad_values_are_refused_naming_the_setting(changes, key):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**changes)
    assert info.value.key == key and f"{key}=" in str(info.value)


def test_a_grade_reader_is_a_backbone_with_one_head_per_task_and_survives_json():
    cfg = ModelConfig(backbone="resnet", depth=14, width=1, head="grades", grade_sizes=(3, 3, 3, 3, 2))
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg and cfg.name == "ResNet-14-grades"
    torch.manual_seed(3)
    model = build_model(cfg)
    torch.manual_seed(3)  # the backbone first, with no classifier of its own: the same weights as built alone
    assert same(cifar_resnet(14, preact=True, num_classes=0, stem_stride=2), model.backbone)
    assert [o.shape[1] for o in model(torch.rand(2, 3, 64, 64))] == [4, 3, 3, 3, 3, 2]


def test_an_unknown_setting_is_refused_not_ignored():
    with pytest.raises(ConfigError, match="hiden_dim"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "hiden_dim": 64})


def test_build_model_draws_the_same_weights_as_the_builders_it_replaces():
    torch.manual_seed(0)
    a = mdnet(40, image_size=32)
    torch.manual_seed(0)
    b = build_model(MODEL_PRESETS["mdnet"].replace(vocab_size=40, image_size=32))
    assert isinstance(b, ReportGenerator) and same(a, b) and a.config == b.config
    torch.manual_seed(0)
    c = ecnet(20, 4, 4, stem_stride=2)
    assert same(c, a.image_model)  # the image model first: notebook 05's EcNet-20-4 starts the same
    torch.manual_seed(1)
    d = cifar_resnet(32, preact=True, num_classes=4, stem_stride=2)
    torch.manual_seed(1)
    e = build_model(ModelConfig(backbone="resnet", depth=32, width=1, head="decoupled"))
    assert isinstance(e, DecoupledResNet) and same(d.stem, e.stem) and e.norm == "per-member"  # the variant
    torch.manual_seed(1)
    eq9 = build_model(ModelConfig(backbone="resnet", depth=32, width=1, head="eq9"))  # Eq. (9) exactly
    assert eq9.norm == "shared" and eq9.config.name == "ResNet-32-eq9" and same(d.stem, eq9.stem)
    assert same(e.head, eq9.head)  # both heads drawn after the same backbone: the same start
    assert isinstance(resnet_sat(40).config, ModelConfig)
    torch.manual_seed(2)
    f = literal_ecnet(11, 6, 4, stem_stride=2)  # notebook 05's literal ensemble-connection net
    torch.manual_seed(2)
    g = build_model(ModelConfig(backbone="ecnet-literal", depth=11, width=6))
    assert same(f, g) and g.config.name == "literal-EcNet-11-6"


def test_an_unconditioned_model_gives_a_zero_cam_and_cannot_be_switched_afterwards():
    model = build_model(MODEL_PRESETS["mdnet"].replace(vocab_size=40, image_size=32, conditioned=False))
    assert not model.conditioned and torch.all(model.encode(torch.rand(2, 3, 32, 32)).cam == 0)
    with pytest.raises(AttributeError):
        model.conditioned = True
    assert build_model(MODEL_PRESETS["mdnet"].replace(vocab_size=40, image_size=32)).conditioned
