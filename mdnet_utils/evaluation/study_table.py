"""Part III's attention study as one table: each report generator's scores on a set of tiles as one flat row.

``VARIANTS`` names the study's variants by their registry names (``mdnet_utils.training.registry``), all on
one backbone (EcNet-20-4), one decoder, one recipe and the same seeds; only the attention differs.
``variant_row`` gathers every score of a generator on some tiles into one flat dict (the diagnosis and clinical
scores of ``evaluate_reports``, the like-for-like report scores, consistency, and the attention study's scores
per finding and for the sink), so a
table over variants and seeds is a ``pandas.DataFrame`` of rows. ``cam_as_attention`` turns the CAM itself into
"the attention of every word", so that what "just follow the diagnosis" achieves is scored exactly like an
attention map. ``study_record`` is both rows as a reference stores them in its JSON (``mdnet_utils.reference``:
computed once from the shipped weights on the whole test split), ``stored_rows`` reads them back, and
``rows_agree`` says whether a row recomputed here equals the stored one up to another CPU's rounding.
"""
from __future__ import annotations

import math

import torch

from mdnet_utils.data.grades import FEATURES
from mdnet_utils.data.loading import ReportTiles
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.evaluation.attention_study import study_scores
from mdnet_utils.evaluation.metrics import clinical_scores, consistency, leave_one_out_scores
from mdnet_utils.evaluation.reports import Generated, diagnosis_accuracy, generate_reports
from mdnet_utils.models.mdnet import ReportGenerator

__all__ = ["VARIANTS", "SCORES", "cam_as_attention", "finding_columns", "variant_row", "cam_row", "study_record",
           "stored_rows", "rows_agree"]

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


def _attention_columns(scores: dict) -> dict[str, float]:
    """``study_scores``'s output as flat columns: ``finding_columns`` and, when there is one, the sink's."""
    row = finding_columns(scores["findings"])
    if "attention sink" in scores:
        sink = scores["attention sink"]
        row.update({"sink · mass on the cell": sink["mass"], "sink · words whose top cell it is": sink["argmax_share"]})
    return row


def variant_row(model: ReportGenerator, tiles: ReportTiles, vocab: Vocabulary, *,
                generated: Generated | None = None) -> dict[str, float]:
    """Every score of the study for one generator on ``tiles`` (greedy reports unless ``generated`` is given):
    "diagnosis"; the like-for-like report scores ("BLEU-4", "ROUGE-L", "CIDEr", ...: each report against four of
    the five references, averaged over the five choices); "clinical · FEATURE", "clinical · conclusion",
    "clinical · features (mean)" and "clinical · worst feature"; "consistency"; ``finding_columns``; and the
    attention sink ("sink · mass on the cell", "sink · words whose top cell it is"). Only these are computed (not
    ``evaluate_reports``' teacher-forced loss or scores against all five references)."""
    gen = generated or generate_reports(model, tiles.images, vocab)
    hypotheses = dict(zip(tiles.ids, gen.texts))
    clinical = clinical_scores(hypotheses, tiles.truth())
    return {"diagnosis": diagnosis_accuracy(gen, tiles),
            **leave_one_out_scores(tiles.references(), hypotheses),
            **{f"clinical · {f}": clinical[f] for f in FEATURES},
            "clinical · conclusion": clinical["conclusion"],
            "clinical · features (mean)": clinical["features (mean)"],
            "clinical · worst feature": min(clinical[f] for f in FEATURES),
            "consistency": consistency(gen.texts)["consistency"],
            **_attention_columns(study_scores(gen.alphas, gen.words, tiles.masks, tiles.grades, grid=gen.grid))}


def cam_row(generated: Generated, tiles: ReportTiles) -> dict[str, float]:
    """The CAM of the predicted class scored as the attention of every word of ``generated``'s reports (the same
    finding sentences as the generator's own row): ``finding_columns`` and the sink columns."""
    maps = cam_as_attention(generated.cam, generated.words)
    return _attention_columns(study_scores(maps, generated.words, tiles.masks, tiles.grades, grid=generated.grid))


def study_record(model: ReportGenerator, tiles: ReportTiles, vocab: Vocabulary, *,
                 generated: Generated | None = None) -> dict[str, dict[str, float | None]]:
    """Both rows of one generator on ``tiles``, as a reference's JSON stores them under "study": {"tiles": how
    many, "model": ``variant_row``, "cam": ``cam_row`` of the same reports}; a score with nothing to score (NaN)
    is stored as None, since JSON has no NaN."""
    gen = generated or generate_reports(model, tiles.images, vocab)
    rows = {"model": variant_row(model, tiles, vocab, generated=gen), "cam": cam_row(gen, tiles)}
    return {"tiles": len(tiles),
            **{k: {c: None if math.isnan(v) else v for c, v in row.items()} for k, row in rows.items()}}


def stored_rows(meta: dict) -> dict[str, dict[str, float]]:
    """A reference JSON's "study" (``study_record``) back as its two rows of floats, "model" and "cam" (None is
    NaN again); a one-sentence
    ``ValueError`` when the JSON has none (a report generator trained before the study was stored: ``python -m
    mdnet_utils reference NAME`` adds it)."""
    if not isinstance(meta.get("study"), dict):
        raise ValueError(f"reference {meta.get('name')!r} seed {meta.get('seed')}: no stored study scores (add them: "
                         f"python -m mdnet_utils reference {meta.get('name')}).")
    return {k: {c: math.nan if v is None else float(v) for c, v in meta["study"][k].items()} for k in ("model", "cam")}


def rows_agree(a: dict[str, float], b: dict[str, float], *, atol: float = 0.01) -> bool:
    """The same columns, each equal within ``atol`` (NaN equals NaN): a row recomputed on another CPU may differ
    by a greedy word that rounding flipped in one report, never by more."""
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or abs(a[k] - b[k]) <= atol for k in a)
