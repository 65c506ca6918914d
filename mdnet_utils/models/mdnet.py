"""The whole MDNet: an image model that diagnoses, and a language model that writes the report while
looking where the diagnosis points.

``ReportGenerator(image_model, decoder)`` joins any of the course's image models (``features`` then
global average pooling and ``fc``: ``CifarResNet``, ``EcNet``) to a ``ReportDecoder``. Per image:

    y_L = image_model.features(I)          (B, D, H, W), C(I) of Eq. (13) once flattened to N = H W positions
    logits = fc(GAP(y_L))                  the diagnosis (Eq. (7)); its arg-max is the predicted class c
    c = M_c                                the class activation map of the *predicted* class (Eq. (14)),
                                           with the gradient stopped through it
    report ~ decoder(C(I), c)              Eqs. (11)-(14)

``models.config.mdnet(...)`` builds MDNet (the released EcNet, ``CamAttention``); ``resnet_sat(...)`` the
baseline (a pre-activation ResNet with Show-Attend-Tell's ``SoftAttention``); both through ``ModelConfig``.

What the paper leaves open and we chose, after the authors' later code (see equations.md): c is the CAM of
the predicted class, not of the true one (at test time the true class is unknown, so training on it would
teach the attention to follow a map it never gets), and ``detach``-ed, so the word loss shapes the
features the decoder reads but not the classifier through the map.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from mdnet_utils.models.attention import doubly_stochastic_penalty, flatten_features
from mdnet_utils.models.decoder import Decoded, ReportDecoder, beam_search, greedy_decode, word_loss
from mdnet_utils.models.heads import class_activation_map

__all__ = ["Encoded", "ReportGenerator", "mdnet_loss", "feature_grid"]


@dataclass
class Encoded:
    """What the image model hands the language model: ``class_logits`` (B, C), ``features`` (B, N, D),
    ``cam`` (B, N) of the predicted class (detached), ``grid`` (H, W) with N = H W."""
    class_logits: torch.Tensor
    features: torch.Tensor
    cam: torch.Tensor
    grid: tuple[int, int]

    def repeat(self, times: int) -> "Encoded":
        """Each image ``times`` times in a row (one copy per reference report)."""
        r = lambda t: t.repeat_interleave(times, dim=0)  # noqa: E731
        return Encoded(r(self.class_logits), r(self.features), r(self.cam), self.grid)

    def __getitem__(self, index) -> "Encoded":
        return Encoded(self.class_logits[index], self.features[index], self.cam[index], self.grid)


def feature_grid(image_size: int, stem_stride: int = 2, stages: int = 3) -> tuple[int, int]:
    """The feature grid of a CIFAR-style net (strides stem, 1, 2, 2): 64 px, stride-2 stem -> (8, 8)."""
    side = image_size // (stem_stride * 2 ** (stages - 1))
    if side < 1:
        raise ValueError(f"image_size={image_size} is too small for a stem stride of {stem_stride} and {stages} stages.")
    return side, side


class ReportGenerator(nn.Module):
    """An image model (diagnosis) plus a ``ReportDecoder`` (report), as described in the module docstring.

    ``conditioned=False``: the attention's c is zeros (Eq. (14) without c), for a model trained without labels,
    whose classifier never learned anything its CAM could point at. Fixed when the model is built (it is part of
    ``ModelConfig``), never switched afterwards."""

    def __init__(self, image_model: nn.Module, decoder: ReportDecoder, *, conditioned: bool = True):
        super().__init__()
        if getattr(image_model, "fc", None) is None:
            raise ValueError("the image model needs a linear head 'fc' (the classifier whose weights make the CAM).")
        self.image_model = image_model
        self.decoder = decoder
        self._conditioned = bool(conditioned)

    @property
    def conditioned(self) -> bool:
        """False when the attention's CAM is replaced by zeros (a model trained without labels)."""
        return self._conditioned

    @property
    def uses_cam(self) -> bool:
        """True for an attention that reads the CAM (Eq. (14) and its variants), False for the Show-Attend-Tell
        baseline."""
        return bool(getattr(self.decoder.attention, "uses_cam", False))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The image model's last feature maps y_L, (B, D, h, w). Several views of one case, (B, V, 3, H, W) (IU
        X-Ray's frontal and lateral images), are encoded one by one and fused by averaging their feature maps
        position by position (our choice: the simplest fusion that keeps the grid, so the CAM and the attention
        still have one map per case)."""
        if images.dim() == 5:
            b, v = images.shape[:2]
            y = self.image_model.features(images.flatten(0, 1))
            return y.unflatten(0, (b, v)).mean(dim=1)
        return self.image_model.features(images)

    def encode(self, images: torch.Tensor) -> Encoded:
        """Diagnose ``images`` (B, 3, H, W) and hand over features and the predicted class's CAM."""
        y = self.features(images)
        logits = self.image_model.fc(y.mean(dim=(2, 3)))
        cam = class_activation_map(y, self.image_model.fc.weight, logits.argmax(1)).flatten(1).detach()
        if not self._conditioned:
            cam = torch.zeros_like(cam)
        return Encoded(logits, flatten_features(y), cam, tuple(y.shape[-2:]))

    def forward(self, images: torch.Tensor, tokens: torch.Tensor | None, *,
                stage: str = "end_to_end") -> dict[str, torch.Tensor]:
        """Teacher forcing. ``tokens`` (B R, T) holds R reports per image, in image order (R = 1 for one).

        Returns ``class_logits`` (B, C), ``word_logits`` (B R, T-1, V) and ``alphas`` (B R, T-1, N).
        ``stage`` says what trains, so that one call serves every stage (a DistributedDataParallel wrapper
        only synchronises what goes through ``forward``): ``"diagnosis"`` returns the class logits alone (the
        image model's own forward for one view per case, so the stage trains exactly what the image model
        alone would), ``"decoder"`` encodes without gradient (the image model frozen), ``"end_to_end"`` everything.
        """
        if stage == "diagnosis":
            if images.dim() == 4:
                return {"class_logits": self.image_model(images)}
            return {"class_logits": self.image_model.fc(self.features(images).mean(dim=(2, 3)))}
        if stage == "decoder":
            with torch.no_grad():
                enc = self.encode(images)
        else:
            enc = self.encode(images)
        if tokens.shape[0] % images.shape[0]:
            raise ValueError(f"{tokens.shape[0]} reports for {images.shape[0]} images: need the same number per image.")
        return self.decode_teacher_forced(enc, tokens)

    def decode_teacher_forced(self, enc: Encoded, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """The decoder half of ``forward`` on an already encoded batch (the CNN-frozen stage reuses it)."""
        per_image = tokens.shape[0] // enc.features.shape[0]
        rep = enc.repeat(per_image) if per_image > 1 else enc
        word_logits, alphas = self.decoder(rep.features, tokens, rep.cam)
        return {"class_logits": enc.class_logits, "word_logits": word_logits, "alphas": alphas}

    @torch.no_grad()
    def generate(self, images: torch.Tensor, *, max_len: int = 60, beam_size: int = 1,
                 length_penalty: float = 0.0) -> tuple[Encoded, Decoded]:
        """Diagnose and write a report per image, free-running: greedy (``beam_size=1``) or beam search.
        Puts the model in eval mode."""
        self.eval()
        enc = self.encode(images)
        return enc, self.decode(enc, max_len=max_len, beam_size=beam_size, length_penalty=length_penalty)

    @torch.no_grad()
    def decode(self, enc: Encoded, *, max_len: int = 60, beam_size: int = 1, length_penalty: float = 0.0) -> Decoded:
        """Free-running decoding of an encoded batch."""
        if beam_size == 1:
            return greedy_decode(self.decoder, enc.features, enc.cam, max_len=max_len)
        return beam_search(self.decoder, enc.features, enc.cam, beam_size=beam_size, max_len=max_len,
                           length_penalty=length_penalty)

    @torch.no_grad()
    def query_log_likelihood(self, enc: Encoded, prefixes: list[list[int]], query: list[int]) -> torch.Tensor:
        """log p(query | image, <bos> prefix) for each image: Eq. (11) summed over the query's words only.

        Retrieval by symptom description ranks images by this. ``prefixes[i]`` are the words of image i's
        report before the query (empty for a query that starts a report), ``query`` the query's token ids.
        """
        bos, pad = self.decoder.bos_id, self.decoder.pad_id
        tokens = pad_sequence([torch.tensor([bos, *p, *query]) for p in prefixes], batch_first=True,
                              padding_value=pad).to(enc.features.device)
        logits, _ = self.decoder(enc.features, tokens, enc.cam)
        logp = F.log_softmax(logits.float(), dim=-1).gather(2, tokens[:, 1:].unsqueeze(2)).squeeze(2)
        keep = torch.zeros_like(logp, dtype=torch.bool)
        for i, p in enumerate(prefixes):
            keep[i, len(p):len(p) + len(query)] = True  # target t predicts token t+1: the query's positions
        return (logp * keep).sum(dim=1)


def mdnet_loss(out: dict[str, torch.Tensor], tokens: torch.Tensor, labels: torch.Tensor | None, *,
               class_weight: float = 0.1, attention_weight: float = 0.0,
               pad_id: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """L_words + class_weight * L_class (+ attention_weight * the doubly stochastic penalty).

    The authors' end-to-end loss is L_words + 0.1 L_class (their later code). L_words is the mean negative
    log-likelihood per word (Eq. (11), padding masked); L_class the cross-entropy of the diagnosis, left out
    when ``labels`` is None or ``class_weight`` is 0. ``attention_weight`` > 0 adds Show-Attend-Tell's doubly
    stochastic regulariser (``doubly_stochastic_penalty``, padding steps masked), an option, off by default.
    Returns the loss and its parts as floats.
    """
    l_words = word_loss(out["word_logits"], tokens, pad_id=pad_id)
    parts = {"words": float(l_words.detach())}
    loss = l_words
    if attention_weight:
        penalty = doubly_stochastic_penalty(out["alphas"], tokens[:, 1:] != pad_id)
        parts["attention"] = float(penalty.detach())
        loss = loss + attention_weight * penalty
    if labels is not None and class_weight:
        l_class = F.cross_entropy(out["class_logits"], labels)
        parts["class"] = float(l_class.detach())
        loss = loss + class_weight * l_class
    return loss, parts
