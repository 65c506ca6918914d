"""The networks of the course, from residual blocks up to MDNet.

blocks.py  residual blocks, post- and pre-activation, basic and bottleneck, each with its plain twin
resnet.py  ImageNet-style ResNets (torchvision's layout and weights) and CIFAR-style ResNets
stream.py  the residual stream of any of them (x_l, F_l(x_l), x_{l+1} per block) and lesions
"""
from mdnet_utils.models.blocks import (BasicBlock, Bottleneck, PostActBlock, PreActBasicBlock, PreActBlock,
                                       PreActBottleneck, ResidualBlock)
from mdnet_utils.models.resnet import (CifarResNet, PreActResNet, ResNet, cifar_resnet, init_weights, resnet18,
                                       resnet34, resnet50)
from mdnet_utils.models.stream import (StreamRecord, lesion, named_residual_blocks, read_stream, record_stream,
                                       residual_blocks)

__all__ = ["ResidualBlock", "PostActBlock", "PreActBlock", "BasicBlock", "Bottleneck", "PreActBasicBlock",
           "PreActBottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "CifarResNet", "cifar_resnet",
           "PreActResNet", "init_weights", "StreamRecord", "residual_blocks", "named_residual_blocks",
           "record_stream", "read_stream", "lesion"]
