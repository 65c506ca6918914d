"""DecoupledResNet: the backbone's last stage read member by member, one classifier each (Eq. (9))."""
import pytest
import torch

from mdnet_utils.models import cifar_resnet
from mdnet_utils.models.decoupled import DecoupledResNet


def test_the_members_add_up_to_the_backbones_last_feature():
    torch.manual_seed(0)
    backbone = cifar_resnet(20, num_classes=4, stem_stride=2).double().eval()
    model = DecoupledResNet(backbone, 4).double().eval()
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        members = model.members(x)
        y_L = backbone.blocks(backbone.stem(x))
    assert model.member_names == ["h_6", "F_6", "F_7", "F_8"]
    assert torch.allclose(sum(members), y_L, atol=1e-12)


def test_member_scores_sum_to_the_logits_minus_the_bias():
    torch.manual_seed(0)
    model = DecoupledResNet(cifar_resnet(20, num_classes=4, stem_stride=2), 4).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.member_scores(x).sum(1) + model.head.bias, model(x), atol=1e-5)
    assert model(x).shape == (2, 4)


def test_a_post_activation_or_plain_backbone_is_refused():
    with pytest.raises(ValueError, match="pre-activation"):
        DecoupledResNet(cifar_resnet(20, preact=False), 4)
    with pytest.raises(ValueError, match="pre-activation"):
        DecoupledResNet(cifar_resnet(20, plain=True), 4)
