"""Part III's attention study as one table: each report generator's scores on a set of tiles as one flat row.

``VARIANTS`` names the study's variants by their registry names (``mdnet_utils.training.registry``), all on
one backbone (EcNet-20-4), one decoder, one recipe and the same seeds; only the attention differs.
``variant_row`` gathers every score of a generator on some tiles into one flat dict (``evaluate_reports``, the
like-for-like report scores, consistency, and the attention study's scores per finding and for the sink), so a
table over variants and seeds is a ``pandas.DataFrame`` of rows. ``cam_as_attention`` turns the CAM itself into
"the attention of every word", so that what "just follow the diagnosis" achieves is scored exactly like an
attention map.
"""
from __future__ import annotations

import torch

from mdnet_utils.data.grades import FEATURES
from mdnet_utils.data.loading import ReportTiles
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.evaluation.attention_study import study_scores
from mdnet_utils.evaluation.metrics import consistency, leave_one_out_scores
from mdnet_utils.evaluation.reports import Generated, evaluate_reports, generate_reports
from mdnet_utils.models.mdnet import ReportGenerator

__all__ = ["VARIANTS", "SCORES", "cam_as_attention", "finding_columns", "variant_row", "cam_row"]

#: The study's variants: registry name -> how the course names it (the number is the issue's and the notebook's).
VARIANTS = {
    "mdnet": "1 · Eq. (14) as printed: CAM and h only",
    "sat-ecnet-20-4": "2 · Show-Attend-Tell: content only",
    "mdnet-cam-content": "3 · Eq. (14) + content (our reading)",
    "mdnet-cam-slot": "4 · the authors' later code: content + CAM slot",
}

#: The scores of each (mask, part) that ``finding_columns`` keeps.
SCORES = ("lift", "above_chance", "pointing / chance")


def cam_as_attention(cam: torch.Tensor, words: list[list[str]]) -> list[torch.Tensor]:
    """The CAM of each image as the map of every word of its report: ``cam`` (B, N), ``words`` the B token lists;
    returns B maps (L_i, N), each row ReLU(c) / sum ReLU(c) (uniform where the CAM has no positive mass)."""
    if len(cam) != len(words):
        raise ValueError(f"{len(cam)} CAMs and {len(words)} reports: need one CAM per report.")
    positive = torch.relu(torch.as_tensor(cam).detach().float())
    total = positive.sum(dim=1, keepdim=True)
    maps = torch.where(total > 0, positive / total.clamp_min(torch.finfo(positive.dtype).tiny),
                       torch.full_like(positive, 1 / positive.shape[1]))
    return [m.expand(len(w), -1) for m, w in zip(maps, words)]


def finding_columns(findings: dict) -> dict[str, float]:
    """``study_scores``'s "findings" as flat columns "MASK · PART · SCORE" (SCORE one of ``SCORES``), plus
    "MASK · share" (the mask's mean area share: 1 / share is the most lift any map can reach)."""
    out = {}
    for mask, parts in findings.items():
        for part, row in parts.items():
            out.update({f"{mask} · {part} · {score}": row[score] for score in SCORES})
            out[f"{mask} · share"] = row["pointing_chance"]
    return out


def _sink_columns(sink: dict) -> dict[str, float]:
    return {"sink · mass on the cell": sink["mass"], "sink · words whose top cell it is": sink["argmax_share"]}


def variant_row(model: ReportGenerator, tiles: ReportTiles, vocab: Vocabulary, *,
                generated: Generated | None = None) -> dict[str, float]:
    """Every score of the study for one generator on ``tiles`` (greedy reports unless ``generated`` is given):
    "diagnosis"; the like-for-like report scores ("BLEU-4", "ROUGE-L", "CIDEr", ...: each report against four of
    the five references, averaged over the five choices); "clinical · FEATURE", "clinical · conclusion",
    "clinical · features (mean)" and "clinical · worst feature"; "consistency"; ``finding_columns``; and the
    attention sink ("sink · mass on the cell", "sink · words whose top cell it is")."""
    gen = generated or generate_reports(model, tiles.images, vocab)
    s = evaluate_reports(model, tiles, vocab, generated=gen)
    clinical = s["clinical"]
    row = {"diagnosis": s["diagnosis"],
           **leave_one_out_scores(tiles.references(), dict(zip(tiles.ids, gen.texts))),
           **{f"clinical · {f}": clinical[f] for f in FEATURES},
           "clinical · conclusion": clinical["conclusion"],
           "clinical · features (mean)": clinical["features (mean)"],
           "clinical · worst feature": min(clinical[f] for f in FEATURES),
           "consistency": consistency(gen.texts)["consistency"],
           **finding_columns(s["findings"])}
    if "attention sink" in s:
        row.update(_sink_columns(s["attention sink"]))
    return row


def cam_row(generated: Generated, tiles: ReportTiles) -> dict[str, float]:
    """The CAM of the predicted class scored as the attention of every word of ``generated``'s reports (the same
    finding sentences as the generator's own row): ``finding_columns`` and the sink columns."""
    maps = cam_as_attention(generated.cam, generated.words)
    s = study_scores(maps, generated.words, tiles.masks, tiles.grades, grid=generated.grid)
    row = finding_columns(s["findings"])
    if "attention sink" in s:
        row.update(_sink_columns(s["attention sink"]))
    return row
