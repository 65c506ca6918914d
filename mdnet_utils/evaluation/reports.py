"""Writing reports with a trained report generator, and every score of Part III on a set of tiles.

``generate_reports`` diagnoses and writes a report per tile, free-running (greedy or beam search), with the
attention map of every word. ``evaluate_reports`` gathers the scores: diagnosis accuracy; the teacher-forced word
loss (not a performance measure: the model is handed the true previous words) kept apart from the free-running
report scores (``metrics.caption_scores`` against all reference reports); the clinical score
(``metrics.clinical_scores``); attention localisation for the words that name a finding
(``localisation.attention_localisation``), and per finding sentence and the attention sink
(``attention_study.study_scores``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mdnet_utils.data.loading import ReportTiles, flat_reports, to_input
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.evaluation.attention_study import study_scores
from mdnet_utils.evaluation.localisation import attention_localisation
from mdnet_utils.evaluation.metrics import caption_scores, clinical_scores
from mdnet_utils.models.decoder import word_loss
from mdnet_utils.models.mdnet import Encoded, ReportGenerator

__all__ = ["encode_tiles", "Generated", "generate_reports", "teacher_forced_loss", "diagnosis_accuracy",
           "evaluate_reports"]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_tiles(model: ReportGenerator, images: torch.Tensor, batch_size: int = 128) -> Encoded:
    """The image model's half for uint8 tiles, in eval mode, on the model's device."""
    model.eval()
    device = _device(model)
    parts = [model.encode(to_input(images[i:i + batch_size], device))
             for i in range(0, len(images), batch_size)]
    return Encoded(*(torch.cat([getattr(p, k) for p in parts]) for k in ("class_logits", "features", "cam")),
                   parts[0].grid)


@dataclass
class Generated:
    """Free-running output for a set of tiles: ``class_logits`` (N, C), ``cam`` (N, positions), ``texts``,
    ``words`` (the tokens of each report as strings), ``alphas`` (one (L_i, positions) map per report: row j is
    where the model looked while writing word j), ``finished`` (N,) and the feature ``grid``."""
    class_logits: torch.Tensor
    cam: torch.Tensor
    texts: list[str]
    words: list[list[str]]
    alphas: list[torch.Tensor]
    finished: torch.Tensor
    grid: tuple[int, int]


@torch.no_grad()
def generate_reports(model: ReportGenerator, images: torch.Tensor, vocab: Vocabulary, *, beam_size: int = 1,
                     max_len: int = 60, length_penalty: float = 0.0, batch_size: int = 128) -> Generated:
    """Diagnose and write a report for each uint8 tile (greedy for ``beam_size=1``, else beam search)."""
    logits, cams, words, alphas, finished, grid = [], [], [], [], [], None
    device = _device(model)
    for i in range(0, len(images), batch_size):
        enc, dec = model.generate(to_input(images[i:i + batch_size], device), max_len=max_len,
                                  beam_size=beam_size, length_penalty=length_penalty)
        logits.append(enc.class_logits.cpu())
        cams.append(enc.cam.cpu())
        words += [[vocab.itos[t] for t in seq] for seq in dec.tokens]
        alphas += [a.cpu() for a in dec.alphas]
        finished.append(dec.finished.cpu())
        grid = enc.grid
    texts = [vocab.decode([vocab.stoi[w] for w in ws]) for ws in words]
    return Generated(torch.cat(logits), torch.cat(cams), texts, words, alphas, torch.cat(finished), grid)


@torch.no_grad()
def teacher_forced_loss(model: ReportGenerator, tiles: ReportTiles, batch_size: int = 64) -> float:
    """Mean word loss with the true previous words given: a training signal, not a performance score."""
    model.eval()
    device = _device(model)
    total, count = 0.0, 0
    for i in range(0, len(tiles), batch_size):
        tokens = flat_reports(tiles.tokens[i:i + batch_size]).to(device)
        out = model(to_input(tiles.images[i:i + batch_size], device), tokens)
        n = int((tokens[:, 1:] != 0).sum())
        total += float(word_loss(out["word_logits"], tokens)) * n
        count += n
    return total / count


def diagnosis_accuracy(generated: Generated, tiles: ReportTiles) -> float:
    """The share of the labelled tiles (label >= 0) whose predicted class is their label."""
    labelled = tiles.labels >= 0
    return float((generated.class_logits.argmax(1) == tiles.labels)[labelled].float().mean())


def evaluate_reports(model: ReportGenerator, tiles: ReportTiles, vocab: Vocabulary, *,
                     generated: Generated | None = None, beam_size: int = 1, max_len: int = 60,
                     meteor: bool | None = False) -> dict:
    """Every score of Part III on ``tiles``: {"diagnosis", "teacher-forced loss", "report", "clinical",
    "attention", "findings", "attention sink"} (the last two: ``attention_study.study_scores``). ``generated`` reuses reports already written for these tiles. ``meteor`` as in
    ``caption_scores``, but off by default here (15 s of Java a call); None: whenever Java is there."""
    gen = generated or generate_reports(model, tiles.images, vocab, beam_size=beam_size, max_len=max_len)
    hyps = dict(zip(tiles.ids, gen.texts))
    return {
        "diagnosis": diagnosis_accuracy(gen, tiles),
        "teacher-forced loss": teacher_forced_loss(model, tiles),
        "report": caption_scores(tiles.references(), hyps, meteor=meteor),
        "clinical": clinical_scores(hyps, tiles.truth()),
        "attention": attention_localisation(gen.alphas, gen.words, tiles.masks, grid=gen.grid),
        **study_scores(gen.alphas, gen.words, tiles.masks, tiles.grades, grid=gen.grid),
    }
