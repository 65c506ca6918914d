"""Captioning metrics for reports: BLEU-1..4, ROUGE-L, CIDEr and (with Java) METEOR.

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

METEOR is computed only when asked (``meteor=True``) and ``java`` is on the PATH; if it fails
anyway the key is left out with a warning, never filled with a made-up 0. It starts a Java
process that loads a 60 MB paraphrase table (about 15 s a call), hence off by default.

All scores are corpus scores: BLEU is the corpus BLEU (n-gram counts pooled over all images,
"closest" reference length for the brevity penalty); ROUGE-L, CIDEr (CIDEr-D, x10 scale) and
METEOR are means over images. CIDEr weighs n-grams by their rarity *across the references of
all the images scored*, so it is only meaningful for many images at once (for one image it is 0).
"""
from __future__ import annotations

import contextlib
import io
import shutil
import warnings

from mdnet_utils.data.vocab import tokenize

__all__ = ["caption_scores", "report_agreement", "java_available"]


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
        from pycocoevalcap.meteor.meteor import Meteor

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
    meteor: bool = False,
) -> dict[str, float]:
    """Score one hypothesis per image against that image's reference texts.

    ``references`` maps an image id to its reference reports (at least one), ``hypotheses`` maps
    the same ids to one report each. Texts are lowercased, tokenized with
    :func:`mdnet_utils.data.vocab.tokenize` and stripped of punctuation tokens before scoring, as
    pycocoevalcap's PTBTokenizer does, without needing Java: case, spacing and punctuation do not
    change the scores. Returns python floats under ``"BLEU-1"`` .. ``"BLEU-4"``, ``"ROUGE-L"``,
    ``"CIDEr"``, plus ``"METEOR"`` when ``meteor`` is true (it is not by default: about 15 s of
    Java start-up a call) and Java is available and works. Raises ``ValueError`` when the two
    dicts do not hold the same ids, or when an image has no reference.
    """
    missing = sorted(map(str, set(references) - set(hypotheses)))
    extra = sorted(map(str, set(hypotheses) - set(references)))
    if missing or extra:
        raise ValueError(f"hypotheses and references differ: missing hypotheses for {missing}, "
                         f"hypotheses without references for {extra}")
    if not references:
        raise ValueError("nothing to score: no images")
    empty = sorted(str(k) for k, refs in references.items() if len(refs) == 0)
    if empty:
        raise ValueError(f"images without references: {empty}")

    gts = {k: [_prepare(r) for r in refs] for k, refs in references.items()}
    res = {k: [_prepare(hypotheses[k])] for k in references}

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its n-gram stats
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if meteor and java_available():
        value = _meteor(gts, res)
        if value is not None:
            scores["METEOR"] = value
    return scores


def report_agreement(reports_per_image: list[list[str]], *, meteor: bool = False) -> dict[str, float]:
    """How much the reports of one image agree: the human ceiling of a report generator.

    For each image, its first report is the hypothesis and its other reports the references
    ("report 1 scored against the other 4" for BCIDR's five reports); the scores are those of
    :func:`caption_scores`. Every image needs at least two reports.
    """
    short = [i for i, reps in enumerate(reports_per_image) if len(reps) < 2]
    if short:
        raise ValueError(f"images with fewer than two reports: {short[:10]}")
    references = {str(i): list(reps[1:]) for i, reps in enumerate(reports_per_image)}
    hypotheses = {str(i): reps[0] for i, reps in enumerate(reports_per_image)}
    return caption_scores(references, hypotheses, meteor=meteor)
