"""Report metrics: captioning scores (BLEU-1..4, ROUGE-L, CIDEr, with Java METEOR) and clinical scores.

The scores are pycocoevalcap's, the toolkit the report-generation papers use, so the numbers
are comparable with theirs. Texts are prepared as its usual pipeline (``COCOEvalCap``) prepares
them: lowercased, tokenized (here by :func:`mdnet_utils.data.vocab.tokenize`), punctuation
tokens removed, joined by spaces, as pycocoevalcap's PTBTokenizer does, without needing Java.
A token is punctuation when it holds no letter or digit. On the reports of
:mod:`mdnet_utils.data.reports` this gives the PTB pipeline's tokens exactly (checked against
the Java tokenizer on 500 reports); the two differ only on what reports hardly use: the PTB
pipeline keeps brackets (as ``-lrb-``, ``-lsb-`` ...: it lowercases them before its
punctuation filter) and ``%``, keeps ``n/c`` or ``3/10`` whole, and splits ``'s`` off its word.
So a report scores the same with or without its periods, commas and colons.

``caption_scores`` computes METEOR whenever ``java`` is on the PATH (``meteor=None``, the default;
``meteor=False`` skips it); without Java, or if it fails (with a warning), the key is left out,
never filled with a made-up 0. It starts a Java process that loads a 60 MB paraphrase table
(about 15 s a call), so ``report_agreement`` and the training loops' scores leave it out unless
asked (``meteor=True``).

All scores are corpus scores: BLEU is the corpus BLEU (n-gram counts pooled over all images,
"closest" reference length for the brevity penalty); ROUGE-L, CIDEr (CIDEr-D, x10 scale) and
METEOR are means over images. CIDEr weighs n-grams by their rarity *across the references of
all the images scored*, so it is only meaningful for many images at once (for one image it is 0).

Clinical scores (:func:`clinical_scores`) ask instead whether a report *says the right thing*:
the pathology analogue of the labeler-based clinical-efficacy scores of radiology report
generation. Each generated report is read back with the grammar's parser
(:func:`mdnet_utils.data.reports.parse_report`) and its five grades and its conclusion are
compared with the image's ground truth: one accuracy per feature, one for the conclusion. A
fluent report with a wrong grade loses here what BLEU hardly notices (one word of 30).
:func:`clinical_truth` (in ``data.truth``) builds a ground-truth entry from grade names or from a data set
item's grade and label indices.
"""
from __future__ import annotations

import contextlib
import io
import math
import shutil
import warnings

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from mdnet_utils.data.grades import FEATURES, conclusion
from mdnet_utils.data.truth import clinical_truth
from mdnet_utils.data.reports import parse_report
from mdnet_utils.data.vocab import tokenize

__all__ = ["caption_scores", "leave_one_out_scores", "report_agreement", "java_available", "clinical_scores",
           "clinical_truth", "consistency"]


def _check_ids(expected: dict, hypotheses: dict, what: str) -> None:
    """One-sentence ValueError unless ``hypotheses`` has exactly the (non-empty) ids of ``expected``."""
    missing = sorted(map(str, set(expected) - set(hypotheses)))
    extra = sorted(map(str, set(hypotheses) - set(expected)))
    if missing or extra:
        raise ValueError(f"hypotheses and {what} differ: missing hypotheses for {missing}, "
                         f"hypotheses without {what} for {extra}.")
    if not expected:
        raise ValueError("nothing to score: no images.")


def java_available() -> bool:
    """True when a ``java`` executable is on the PATH (METEOR needs it)."""
    return shutil.which("java") is not None


def _is_punctuation(token: str) -> bool:
    """True for a token without a letter or digit (what the PTB pipeline strips)."""
    return not any(ch.isalnum() for ch in token)


def _prepare(text: str) -> str:
    """Lowercase words of ``text`` joined by single spaces, punctuation tokens removed."""
    return " ".join(t for t in tokenize(text) if not _is_punctuation(t))


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float | None:
    """pycocoevalcap's METEOR, or None (with a warning) when it cannot be computed."""
    try:
        scorer = Meteor()
    except Exception as exc:  # noqa: BLE001 - any failure means "no METEOR", said loudly
        warnings.warn(f"METEOR left out: could not start it ({exc!r})", RuntimeWarning, stacklevel=3)
        return None
    try:
        score, _ = scorer.compute_score(gts, res)
        return float(score)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"METEOR left out: it failed ({exc!r})", RuntimeWarning, stacklevel=3)
        return None
    finally:
        # The wrapper holds a lock while scoring and its destructor waits for it: release it if
        # scoring broke off, or closing the Java process would hang.
        if scorer.lock.locked():
            scorer.lock.release()
        del scorer


def caption_scores(
    references: dict[str, list[str]],
    hypotheses: dict[str, str],
    *,
    meteor: bool | None = None,
) -> dict[str, float]:
    """Score one hypothesis per image against that image's reference texts.

    ``references`` maps an image id to its reference reports (at least one), ``hypotheses`` maps
    the same ids to one report each. Texts are lowercased, tokenized with
    :func:`mdnet_utils.data.vocab.tokenize` and stripped of punctuation tokens before scoring, as
    pycocoevalcap's PTBTokenizer does, without needing Java: case, spacing and punctuation do not
    change the scores. Returns python floats under ``"BLEU-1"`` .. ``"BLEU-4"``, ``"ROUGE-L"``,
    ``"CIDEr"``, plus ``"METEOR"`` when Java is on the PATH and works (``meteor=None``, the
    default; about 15 s of Java start-up a call). ``meteor=False`` leaves it out whatever is
    installed; without Java the key is absent, never a made-up 0. Raises ``ValueError`` when the two
    dicts do not hold the same ids, or when an image has no reference.
    """
    _check_ids(references, hypotheses, "references")
    empty = sorted(str(k) for k, refs in references.items() if len(refs) == 0)
    if empty:
        raise ValueError(f"images without references: {empty}")

    gts = {k: [_prepare(r) for r in refs] for k, refs in references.items()}
    res = {k: [_prepare(hypotheses[k])] for k in references}


    with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its n-gram stats
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if meteor is not False and java_available():
        value = _meteor(gts, res)
        if value is not None:
            scores["METEOR"] = value
    return scores


def leave_one_out_scores(references: dict[str, list[str]], hypotheses: dict[str, str], *,
                         meteor: bool | None = False) -> dict[str, float]:
    """``caption_scores`` like for like with ``report_agreement(..., every_choice=True)``: each hypothesis
    against R - 1 of its image's R references, every score averaged over the R choices of the one left out.

    Scored against all R references, a generated report has one reference more than a reference report has in
    the agreement ceiling, and more references raise BLEU; here both are scored against R - 1. Every image needs
    the same number R >= 2 of references (the k-th left out is the same for all images)."""
    _check_ids(references, hypotheses, "references")
    counts = {len(refs) for refs in references.values()}
    if len(counts) != 1 or min(counts) < 2:
        raise ValueError(f"every image needs the same number (at least 2) of references, not {sorted(counts)}.")
    n = counts.pop()
    runs = [caption_scores({i: refs[:k] + refs[k + 1:] for i, refs in references.items()}, hypotheses, meteor=meteor)
            for k in range(n)]
    return {key: sum(r[key] for r in runs) / n for key in runs[0] if all(key in r for r in runs)}


def report_agreement(reports_per_image: list[list[str]], *, meteor: bool = False,
                     every_choice: bool = False) -> dict[str, float]:
    """How much the reports of one image agree: the ceiling of a report generator on these references.

    For each image, its first report is the hypothesis and its other reports the references
    ("report 1 scored against the other 4" for BCIDR's five reports); the scores are those of
    :func:`caption_scores`, METEOR only with ``meteor=True`` (15 s). With ``every_choice``, each of an image's
    R reports takes the hypothesis's place in turn, and every score is the mean over the R choices (what
    ``leave_one_out_scores`` compares a generator with). Every image needs at least two reports.
    """
    short = [i for i, reps in enumerate(reports_per_image) if len(reps) < 2]
    if short:
        raise ValueError(f"images with fewer than two reports: {short[:10]}")
    choices = range(min(len(reps) for reps in reports_per_image)) if every_choice else range(1)
    runs = []
    for k in choices:
        references = {str(i): reps[:k] + reps[k + 1:] for i, reps in enumerate(reports_per_image)}
        hypotheses = {str(i): reps[k] for i, reps in enumerate(reports_per_image)}
        runs.append(caption_scores(references, hypotheses, meteor=meteor))
    return {key: sum(r[key] for r in runs) / len(runs) for key in runs[0] if all(key in r for r in runs)}


# --- clinical scores ------------------------------------------------------------------------

def clinical_scores(hypotheses: dict[str, str], truth: dict[str, dict]) -> dict[str, float]:
    """How often the generated reports state the right grades and conclusion.

    Each hypothesis is read back with :func:`mdnet_utils.data.reports.parse_report`; ``truth``
    maps the same ids to ``{"grades": {feature: grade}, "conclusion": class}`` (names as in
    ``GRADES`` and ``CLASSES``; see :func:`clinical_truth`). Returns python floats:

    * under each feature's name (``FEATURES`` order), the share of images whose report states
      that feature's true grade;
    * ``"conclusion"``: the same for the conclusion;
    * ``"features (mean)"``: the mean of the five feature accuracies (of those that have any
      ground truth);
    * ``"read"``: the share of reports from which all six sections could be read at all,
      right or wrong (how often the generator writes a well-formed report).

    A section the parser cannot read (missing, contradictory, garbled) counts as wrong. A
    feature or conclusion that is missing or None in an image's truth is skipped for that
    image, so each accuracy is over the images that have that ground truth; a key with none
    at all is NaN. Raises ``ValueError`` when the id sets differ or are empty, or for a feature,
    grade or class that does not exist (truth is read as :func:`clinical_truth` reads it, so
    indices are accepted too).
    """
    _check_ids(truth, hypotheses, "truth")

    sections = (*FEATURES, "conclusion")
    right = dict.fromkeys(sections, 0)
    counted = dict.fromkeys(sections, 0)
    fully_read = 0
    for key, entry in truth.items():
        read = parse_report(hypotheses[key])
        said = {**read["grades"], "conclusion": read["conclusion"]}
        # Through clinical_truth, so that a misspelt name is an error rather than a silent 0.
        grades = entry.get("grades")
        t = clinical_truth({} if grades is None else grades, entry.get("conclusion"))
        want = {**t["grades"], "conclusion": t["conclusion"]}
        for section in sections:
            if want[section] is not None:
                counted[section] += 1
                right[section] += said[section] == want[section]
        fully_read += all(v is not None for v in said.values())

    scores = {s: (right[s] / counted[s] if counted[s] else math.nan) for s in sections}
    features = [scores[f] for f in FEATURES if counted[f]]
    scores["features (mean)"] = sum(features) / len(features) if features else math.nan
    scores["read"] = fully_read / len(truth)
    return {k: float(v) for k, v in scores.items()}


def consistency(reports: list[str]) -> dict[str, float]:
    """Whether each report agrees with itself: the share of reports whose stated conclusion is the conclusion
    rule (``data.grades.conclusion``) applied to the grades the same report states.

    "insufficient information" agrees with any grades (the rule gives it to an out-of-focus tile whatever its
    grades). A report whose five grades and conclusion cannot all be read counts as inconsistent: a report that
    does not say what it concludes from is not consistent. Returns {"consistency": over all reports,
    "read": the share read in full, "consistency (read)": over those}."""
    if not reports:
        raise ValueError("nothing to score: no reports.")
    read = agree = 0
    for report in reports:
        said = parse_report(report)
        if said["conclusion"] is None or any(g is None for g in said["grades"].values()):
            continue
        read += 1
        agree += said["conclusion"] in ("insufficient information", conclusion(said["grades"]))
    return {"consistency": agree / len(reports), "read": read / len(reports),
            "consistency (read)": agree / read if read else math.nan}
