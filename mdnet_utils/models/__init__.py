"""The networks of the course, from residual blocks up to MDNet.

blocks.py  residual blocks, post- and pre-activation, basic and bottleneck, each with its plain twin
resnet.py  ImageNet-style ResNets (torchvision's layout and weights) and CIFAR-style ResNets
stream.py  the residual stream of any of them (x_l, F_l(x_l), x_{l+1} per block) and lesions
heads.py   class activation maps (Eq. (7)), the logit split into members (Eq. (8)), shared and decoupled heads (Eq. (9))
ecnet.py   the ensemble-connection (Eq. (10)): the authors' released EcNet and the literal every-block reading
attention.py  where the report generator looks (Eqs. (13)-(14)): the CAM attention and the soft-attention baseline
decoder.py    the LSTM that writes the report (Eqs. (11)-(12)), its losses, greedy and beam-search decoding
mdnet.py      the whole MDNet: image model + decoder (``ReportGenerator``), the CAM of the predicted class, its loss
config.py     a model as data (``ModelConfig``) and ``build_model``; the builders ``mdnet`` and ``resnet_sat``
"""
from mdnet_utils.models.attention import (CamAttention, CamContentAttention, CamSlotAttention, SoftAttention, context,
                                          doubly_stochastic_penalty, flatten_features, standardise_cam)
from mdnet_utils.models.blocks import (BasicBlock, Bottleneck, PostActBlock, PreActBasicBlock, PreActBlock,
                                       PreActBottleneck, ResidualBlock)
from mdnet_utils.models.decoder import (Decoded, ReportDecoder, beam_search, greedy_decode, sequence_log_likelihood,
                                        word_loss)
from mdnet_utils.models.ecnet import (BlockChannels, EcAddBlock, EcBlock, EcConcatBlock, EcNet, LiteralConcatBlock,
                                      LiteralEcNet, channel_table, ecnet, literal_ecnet, msr_init)
from mdnet_utils.models.config import MODEL_PRESETS, ModelConfig, build_model, mdnet, resnet_sat
from mdnet_utils.models.decoupled import DecoupledResNet
from mdnet_utils.models.mdnet import Encoded, ReportGenerator, feature_grid, mdnet_loss
from mdnet_utils.models.heads import (DecoupledHead, LogitDecomposition, SharedHead, class_activation_map, eq7_score,
                                      logit_decomposition, logits_from_cam, model_cam)
from mdnet_utils.models.resnet import (CifarResNet, PreActResNet, ResNet, cifar_resnet, init_weights, resnet18,
                                       resnet34, resnet50)
from mdnet_utils.models.stream import (StreamRecord, lesion, named_residual_blocks, read_stream, record_stream,
                                       residual_blocks)

__all__ = ["ResidualBlock", "PostActBlock", "PreActBlock", "BasicBlock", "Bottleneck", "PreActBasicBlock",
           "PreActBottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "CifarResNet", "cifar_resnet",
           "PreActResNet", "init_weights", "StreamRecord", "residual_blocks", "named_residual_blocks",
           "record_stream", "read_stream", "lesion",
           "class_activation_map", "logits_from_cam", "eq7_score", "model_cam", "SharedHead", "DecoupledHead",
           "LogitDecomposition", "logit_decomposition", "EcBlock", "EcAddBlock", "EcConcatBlock",
           "LiteralConcatBlock", "EcNet", "LiteralEcNet", "ecnet", "literal_ecnet", "msr_init", "BlockChannels",
           "channel_table",
           "flatten_features", "context", "standardise_cam", "CamAttention", "SoftAttention",
           "CamContentAttention", "CamSlotAttention", "doubly_stochastic_penalty", "ReportDecoder", "word_loss", "sequence_log_likelihood", "Decoded",
           "greedy_decode", "beam_search", "Encoded", "ReportGenerator", "feature_grid", "mdnet", "mdnet_loss",
           "resnet_sat", "ModelConfig", "MODEL_PRESETS", "build_model", "DecoupledResNet"]
