"""The networks of the course, from residual blocks up to MDNet."""
from mdnet_utils.models.resnet import PreActBasicBlock, PreActResNet

__all__ = ["PreActBasicBlock", "PreActResNet"]
