"""A model as data: ``ModelConfig`` says everything needed to build a network of the course again.

A run folder's ``config.json`` and every checkpoint hold ``ModelConfig.to_dict()``; loading rebuilds the
network from it alone (``build_model``), never from today's defaults in code, so changing a default never
breaks a saved run.

    backbone      "resnet" (pre-activation CIFAR ResNet), "plain" (the same without shortcuts), "ecnet" (the
                  authors' released EcNet, Eq. (10)), "ecnet-literal" (Eq. (10) taken literally, notebook 05)
    depth, width  the backbone's depth and widen factor (ResNet-32: 32, 1; EcNet-20-4: 20, 4)
    head          "shared" (one classifier, Eqs. (7)-(8)), "eq9" (one per member of the last stage after the
                  shared head's one BN-ReLU: Eq. (9) exactly), "decoupled" (one per member, each after a BN-ReLU
                  of its own: the variant; "eq9" and "decoupled": ``DecoupledResNet``, "resnet" backbones and
                  image models only) or "grades" (a ``GradeReader``: the conclusion's classifier and one per
                  feature grade, sized by ``grade_sizes``; image models only)
    num_classes, image_size, stem_stride
    vocab_size    0 for an image model alone (notebooks 01-05); > 0 for a report generator (notebooks 06-08)
    attention     "cam" (MDNet's Eq. (14)), "soft" (Show-Attend-Tell, the baseline), "cam-content" (Eq. (14) with a
                  content term, our reading) or "cam-slot" (the authors' later code: the CAM pools a sentinel slot)
    embed_dim, hidden_dim, attention_dim (every attention but "cam"), dropout   the decoder
    conditioned   False: the attention's CAM is replaced by zeros (a run trained without labels has no
                  classifier whose CAM could steer it)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from torch import nn

from mdnet_utils.errors import ConfigError
from mdnet_utils.models.attention import CamAttention, CamContentAttention, CamSlotAttention, SoftAttention
from mdnet_utils.models.decoder import ReportDecoder
from mdnet_utils.models.decoupled import DecoupledResNet
from mdnet_utils.models.ecnet import ecnet, literal_ecnet
from mdnet_utils.models.grade_reader import GradeReader
from mdnet_utils.models.mdnet import ReportGenerator, feature_grid
from mdnet_utils.models.resnet import cifar_resnet

__all__ = ["ModelConfig", "build_model", "mdnet", "resnet_sat", "BACKBONES", "HEADS", "ATTENTIONS", "MODEL_PRESETS"]

BACKBONES = ("resnet", "plain", "ecnet", "ecnet-literal")
#: The largest image side a model takes: larger ones would need tens of GB for one batch on a CPU.
MAX_IMAGE_SIZE = 1024
HEADS = ("shared", "decoupled", "eq9", "grades")
#: The heads of a ``DecoupledResNet``, and how each normalises the members (``models.decoupled.NORMS``).
DECOUPLED_HEADS = {"eq9": "shared", "decoupled": "per-member"}
ATTENTIONS = ("cam", "soft", "cam-content", "cam-slot")


def check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(key, value, f"is not one of {', '.join(map(str, choices))}.")


def check_at_least(key: str, value, low) -> None:
    """A finite number of at least ``low`` (NaN and infinity are refused: they would train nothing, silently)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < float("inf"):
        raise ConfigError(key, value, f"is out of range: it must be a finite number of at least {low}.")


def check_whole(key: str, value, low: int, high: int | None = None) -> None:
    """A whole number in [low, high] (no upper bound for None); a bool is not one."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"of at least {low}" if high is None else f"from {low} to {high}"
        raise ConfigError(key, value, f"is out of range: it must be a whole number {span}.")


def from_dict(cls, data: dict, where: str = ""):
    """``cls(**data)`` for a config dataclass, refusing keys it does not have (a typo would otherwise be
    silently ignored)."""
    if not isinstance(data, dict):
        raise ConfigError(where or cls.__name__, data, "is not a mapping of settings.")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}", data[unknown[0]],
                          f"is not a setting of {cls.__name__} (known: {', '.join(sorted(known))}).")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that builds a network of the course (see the module docstring). Checked when made."""
    backbone: str = "ecnet"
    depth: int = 20
    width: int = 4
    head: str = "shared"
    num_classes: int = 4
    image_size: int = 64
    stem_stride: int = 2
    vocab_size: int = 0
    attention: str = "cam"
    embed_dim: int = 64
    hidden_dim: int = 128
    attention_dim: int = 128
    dropout: float = 0.3
    conditioned: bool = True
    grade_sizes: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "grade_sizes", tuple(self.grade_sizes))  # a JSON list reads back as a tuple
        check_choice("backbone", self.backbone, BACKBONES)
        check_choice("head", self.head, HEADS)
        check_choice("attention", self.attention, ATTENTIONS)
        for key in ("depth", "width", "num_classes", "stem_stride", "embed_dim", "hidden_dim", "attention_dim"):
            check_at_least(key, getattr(self, key), 1)
        check_at_least("vocab_size", self.vocab_size, 0)
        if self.vocab_size and self.vocab_size < 4:
            raise ConfigError("vocab_size", self.vocab_size, "is too small: a vocabulary has at least the four "
                                                              "special tokens.")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) \
                or not 16 <= self.image_size <= MAX_IMAGE_SIZE or self.image_size % 8:
            raise ConfigError("image_size", self.image_size, f"is out of range: use a multiple of 8 from 16 to "
                                                             f"{MAX_IMAGE_SIZE}.")
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout", self.dropout, "is out of range: it must be in [0, 1).")
        if self.head in DECOUPLED_HEADS and (self.backbone != "resnet" or self.vocab_size):
            raise ConfigError("head", self.head, "needs backbone 'resnet' and an image model (vocab_size 0).")
        if (self.head == "grades") != bool(self.grade_sizes) or self.vocab_size and self.grade_sizes:
            raise ConfigError("grade_sizes", list(self.grade_sizes), "goes with head 'grades' (an image model), "
                                                                      "and head 'grades' needs it.")
        for n in self.grade_sizes:
            check_whole("grade_sizes", n, 2)

    @property
    def reports(self) -> bool:
        """True for a report generator, False for an image model alone."""
        return self.vocab_size > 0

    @property
    def name(self) -> str:
        """A short name: ResNet-32, plain-8, EcNet-20-4, ResNet-32-decoupled, ResNet-32-eq9 (plus "+cam"/"+soft"
        with a decoder)."""
        base = {"resnet": f"ResNet-{self.depth}", "plain": f"plain-{self.depth}",
                "ecnet": f"EcNet-{self.depth}-{self.width}",
                "ecnet-literal": f"literal-EcNet-{self.depth}-{self.width}"}[self.backbone]
        if not self.backbone.startswith("ecnet") and self.width != 1:
            base += f"x{self.width}"
        if self.head != "shared":
            base += f"-{self.head}"
        return base + (f"+{self.attention}" if self.reports else "")

    def replace(self, **changes) -> "ModelConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """As JSON holds it (so a dict read back from a file equals the one written)."""
        return {**asdict(self), "grade_sizes": list(self.grade_sizes)}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return from_dict(cls, data)


#: The two report generators of the course, by the name the CLI's ``--model`` takes.
MODEL_PRESETS = {
    "mdnet": ModelConfig(backbone="ecnet", depth=20, width=4, attention="cam"),
    "resnet-sat": ModelConfig(backbone="resnet", depth=32, width=1, attention="soft"),
}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network ``cfg`` describes, freshly initialised from the global torch RNG (seed it first). The image
    model is built before the decoder, so a report generator starts from the same image model as the image
    model alone under the same seed. The result carries ``cfg`` as ``.config``."""
    classes = 0 if cfg.head == "grades" else cfg.num_classes  # a grade reader's heads sit beside the backbone
    if cfg.backbone == "ecnet":
        image_model = ecnet(cfg.depth, cfg.width, classes, stem_stride=cfg.stem_stride)
    elif cfg.backbone == "ecnet-literal":
        image_model = literal_ecnet(cfg.depth, cfg.width, classes, stem_stride=cfg.stem_stride)
    else:
        image_model = cifar_resnet(cfg.depth, preact=True, plain=cfg.backbone == "plain", widen_factor=cfg.width,
                                   num_classes=classes, stem_stride=cfg.stem_stride)
    feature_grid(cfg.image_size, cfg.stem_stride)  # refuses an image too small for the strides
    if not cfg.reports:
        if cfg.head == "grades":
            model = GradeReader(image_model, (cfg.num_classes,) + cfg.grade_sizes)
        else:
            model = (DecoupledResNet(image_model, cfg.num_classes, norm=DECOUPLED_HEADS[cfg.head])
                     if cfg.head in DECOUPLED_HEADS else image_model)
        model.config = cfg
        return model
    h, w = feature_grid(cfg.image_size, cfg.stem_stride)
    d = image_model.num_features
    if cfg.attention == "cam":
        attention = CamAttention(cfg.hidden_dim, h * w)
    else:
        kind = {"soft": SoftAttention, "cam-content": CamContentAttention, "cam-slot": CamSlotAttention}[cfg.attention]
        attention = kind(d, cfg.hidden_dim, cfg.attention_dim)
    decoder = ReportDecoder(cfg.vocab_size, d, attention, embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim,
                            dropout=cfg.dropout)
    model = ReportGenerator(image_model, decoder, conditioned=cfg.conditioned)
    model.config = cfg
    return model


def mdnet(vocab_size: int, *, depth: int = 20, widen_factor: int = 4, num_classes: int = 4, image_size: int = 64,
          stem_stride: int = 2, embed_dim: int = 64, hidden_dim: int = 128, dropout: float = 0.3,
          conditioned: bool = True) -> ReportGenerator:
    """MDNet: the released EcNet (``ecnet(depth, widen_factor)``) and the CAM-steered attention of Eq. (14)."""
    return build_model(MODEL_PRESETS["mdnet"].replace(
        depth=depth, width=widen_factor, num_classes=num_classes, image_size=image_size, stem_stride=stem_stride,
        vocab_size=vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, dropout=dropout, conditioned=conditioned))


def resnet_sat(vocab_size: int, *, depth: int = 32, num_classes: int = 4, image_size: int = 64, stem_stride: int = 2,
               embed_dim: int = 64, hidden_dim: int = 128, attention_dim: int = 128,
               dropout: float = 0.3) -> ReportGenerator:
    """The baseline: a pre-activation ResNet and Show-Attend-Tell's soft attention over its feature vectors."""
    return build_model(MODEL_PRESETS["resnet-sat"].replace(
        depth=depth, num_classes=num_classes, image_size=image_size, stem_stride=stem_stride, vocab_size=vocab_size,
        embed_dim=embed_dim, hidden_dim=hidden_dim, attention_dim=attention_dim, dropout=dropout))
