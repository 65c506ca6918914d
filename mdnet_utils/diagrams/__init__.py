"""Schematic diagrams of the course's networks, drawn by code with matplotlib alone, one function per picture.

Each returns a ``matplotlib.figure.Figure`` outside pyplot (a notebook shows it once, as a cell's value). What it
shows is read from the models (a block's layer order from its forward pass, channel counts from the built network),
so it cannot silently disagree with the code. A colour means one kind of operation in every diagram (``COLOURS``).

    residual_block   Eqs. (1)-(3): the post- and the pre-activation residual block                  (resnet.py)
    unrolled_paths   Eqs. (4)-(5): n blocks unroll into 2^n paths, of binomially distributed lengths  (resnet.py)
    ensemble_heads   Eqs. (8)-(9): one shared classifier; Eq. (9) exactly, the shared BN-ReLU and one
                     classifier per member; and the variant with a BN-ReLU per member               (heads.py)
    ecnet_stage      Eq. (10): a stage of the released EcNet or of the literal reading, with its channel counts
                                                                                                     (heads.py)
    mdnet_pipeline   Eqs. (11)-(14): image, EcNet, diagnosis and CAM, attention, LSTM, report       (mdnet.py)

``drawing.py`` holds what they are drawn with: the canvas, boxes, arrows, the colours, a model's layers as boxes.
"""
from mdnet_utils.diagrams.drawing import COLOURS
from mdnet_utils.diagrams.heads import ecnet_stage, ensemble_heads
from mdnet_utils.diagrams.mdnet import mdnet_pipeline
from mdnet_utils.diagrams.resnet import residual_block, unrolled_paths

__all__ = ["COLOURS", "residual_block", "unrolled_paths", "ensemble_heads", "ecnet_stage", "mdnet_pipeline"]
