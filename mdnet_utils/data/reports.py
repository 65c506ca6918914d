"""The report grammar of the synthetic BCIDR stand-in, and the parser that reads it back.

Grammar
-------
Every image gets five paraphrased reports. A report is six sentences: one per feature, in the
fixed order of :data:`~mdnet_utils.data.grades.FEATURES` (pleomorphism, crowding, polarity,
mitosis, nucleoli), then the conclusion, which names one of
:data:`~mdnet_utils.data.grades.CLASSES`. Each sentence is drawn independently from
:data:`PHRASES`:

* a *frame* (a sentence with a ``{g}`` slot): the first, canonical frame with probability
  :data:`P_CANONICAL_FRAME`, otherwise one of the others, uniformly;
* a *wording* of the grade to put in the slot: the grade's own name (the first wording) with
  probability :data:`P_CANONICAL_WORDING`, otherwise one of its synonyms, uniformly.

So the five reports of an image say the same thing in different words, as five pathologists
do. Text is lowercase and in the normal form of :mod:`mdnet_utils.data.vocab`
(``detokenize(tokenize(r)) == r``): single spaces, punctuation attached to the word before it,
every sentence ending with ``"."``; no hyphens. No wording of one grade is a wording of another
grade of the same feature, and no frame contains a wording, so the grade can always be read back.

Calibration
-----------
The variety is tuned to the agreement of five real pathologists on the authors' public bladder
reports (report 1 scored against the other 4 with pycocoevalcap's usual pipeline, whose PTB
tokenizer lowercases and drops punctuation): BLEU-1..4 0.871 / 0.792 / 0.730 / 0.682, ROUGE-L
0.684, CIDEr 1.741, 112 distinct words, 34 words a report. This grammar, measured the same way
with :func:`mdnet_utils.evaluation.metrics.report_agreement` (which drops punctuation likewise) on 500
images (grades and focus from ``grades.sample_case`` with ``numpy.random.default_rng(0)``,
conclusion from ``grades.conclusion``, then ``write_reports(..., rng)`` with the same generator)
gives

    BLEU-1..4 0.901 / 0.817 / 0.745 / 0.682, ROUGE-L 0.706, CIDEr 1.74, METEOR 0.395,
    95 distinct words, 32.2 words a report.

Seeds 1 and 2 give BLEU-4 0.693 / 0.682, ROUGE-L 0.714 / 0.707, CIDEr 1.80 / 1.74. BLEU-1..3
come out 0.01-0.03 above the real ones; BLEU-4 was the target. With punctuation marks counted
as tokens (39.1 a report) the same reports would give BLEU-4 0.749, ROUGE-L 0.744, CIDEr 2.14.

How the knobs act: BLEU counts an n-gram as matched when *any* of the 4 references has it,
ROUGE-L takes the best *single* reference, CIDEr *averages* over them. So alternatives drawn
about evenly cost BLEU least and CIDEr most, while rare ones (the synonyms) cost every score,
BLEU-4 most (one swapped word breaks four 4-grams but only one word of the longest common
subsequence); rare n-grams weigh most in CIDEr, so the synonyms are what bring it down. Two
things kept ROUGE-L well above BLEU-4 in earlier versions: frames of one section sharing words
(the subsequence still gets credit for them, 4-grams do not), and, with the periods gone,
4-grams running across two sentences, which match only when one reference chose the same
frames on both sides. Hence three frames a feature with few words in common, drawn 0.4 / 0.3 /
0.3 (:data:`P_CANONICAL_FRAME`; the conclusion has six short ones), and the grade's own name
82% of the time (:data:`P_CANONICAL_WORDING`). The real reports' word counts are taken to be
words only.

Parser
------
:func:`parse_report` reads the grades and the conclusion back with the same phrase bank. It
works sentence by sentence, so it also reads text that is not the grammar's (a generated report
with a missing, repeated or garbled sentence): a sentence is about a feature when it contains
one of that feature's :data:`KEYWORDS` (word prefixes), and its grade is the one whose wordings
occur in it; a sentence naming no feature is read as the conclusion when it contains exactly one
class name. Whatever cannot be told (no sentence, no wording, contradictory readings) is None.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mdnet_utils.data.grades import CLASSES, FEATURES, GRADES
from mdnet_utils.data.vocab import tokenize

__all__ = [
    "PHRASES",
    "KEYWORDS",
    "P_CANONICAL_FRAME",
    "P_CANONICAL_WORDING",
    "BCIDR_AGREEMENT",
    "write_reports",
    "parse_report",
    "all_sentences",
]

#: The agreement of BCIDR's five real pathologists (report 1 against the other four, pycocoevalcap's pipeline):
#: the figures the grammar is tuned to (see Calibration above; the datasheet, data/README.md, prints them too).
BCIDR_AGREEMENT = {"BLEU-1": 0.871, "BLEU-2": 0.792, "BLEU-3": 0.730, "BLEU-4": 0.682, "ROUGE-L": 0.684,
                   "CIDEr": 1.741}

#: Probability of drawing a section's first (canonical) frame; the other frames share the rest.
P_CANONICAL_FRAME = 0.4
#: Probability of writing a grade by its own name; its synonyms share the rest.
P_CANONICAL_WORDING = 0.82

_MILD = ("mild", "slight", "minimal", "minor", "subtle")
_MODERATE = ("moderate", "considerable", "appreciable", "distinct")
_SEVERE = ("severe", "marked", "pronounced", "striking", "extreme", "extensive")

#: The phrase bank. One section per feature, in report order, then ``"conclusion"``. Each
#: section has ``"frames"`` (sentences without the final period, with a ``{g}`` slot; the first
#: is canonical) and ``"wordings"`` (grade -> ways to write it; the first is the grade's name).
#: The conclusion's "grades" are the classes, always written by their names.
#: The frames of a section share as few words as they can (see "Calibration").
PHRASES: dict[str, dict] = {
    "pleomorphism": {
        "frames": (
            "there is {g} pleomorphism of the nuclei",
            "the urothelial cells show {g} nuclear pleomorphism",
            "{g} nuclear pleomorphism is seen throughout the tissue",
        ),
        "wordings": {"mild": _MILD, "moderate": _MODERATE, "severe": _SEVERE},
    },
    "crowding": {
        "frames": (
            "there is {g} crowding of the nuclei",
            "the urothelium shows {g} nuclear crowding",
            "{g} nuclear crowding is seen throughout the urothelium",
        ),
        "wordings": {"mild": _MILD, "moderate": _MODERATE, "severe": _SEVERE},
    },
    "polarity": {
        "frames": (
            "the polarity of the cells is {g}",
            "polarity toward the luminal surface is {g}",
            "polarity {g}",
        ),
        "wordings": {
            "preserved": ("preserved", "maintained", "retained", "intact", "well preserved",
                          "undisturbed"),
            "partially lost": ("partially lost", "partly lost", "focally lost", "lost in places",
                               "partially disturbed"),
            "completely lost": ("completely lost", "entirely lost", "totally lost", "lost throughout",
                                "completely disrupted", "absent"),
        },
    },
    "mitosis": {
        "frames": (
            "mitotic figures are {g}",
            "there are {g} mitoses",
            "{g} mitoses are seen on high power examination",
        ),
        "wordings": {
            "rare": ("rare", "very rare", "few", "scant"),
            "infrequent": ("infrequent", "occasional", "scattered", "sporadic"),
            "frequent": ("frequent", "numerous", "abundant", "plentiful"),
        },
    },
    "nucleoli": {
        "frames": (
            "the nucleoli are {g}",
            "nucleoli appear {g} at high magnification",
            "{g} nucleoli",
        ),
        "wordings": {
            "inconspicuous": ("inconspicuous", "indistinct", "small", "tiny"),
            "prominent": ("prominent", "conspicuous", "large", "enlarged"),
        },
    },
    "conclusion": {
        "frames": ("conclusion: {g}", "{g}", "impression: {g}", "in summary, {g}", "overall, {g}",
                   "assessment: {g}"),
        "wordings": {c: (c,) for c in CLASSES},
    },
}

#: Word prefixes that tell which feature a sentence is about (used by :func:`parse_report`).
KEYWORDS: dict[str, tuple[str, ...]] = {
    "pleomorphism": ("pleomorph",),
    "crowding": ("crowd",),
    "polarity": ("polar",),
    "mitosis": ("mitos", "mitot"),
    "nucleoli": ("nucleol",),
}

_SECTIONS = (*FEATURES, "conclusion")


def _sentence(section: str, frame: int, grade: str, wording: int) -> str:
    entry = PHRASES[section]
    return entry["frames"][frame].format(g=entry["wordings"][grade][wording]) + "."


def _pick(rng: np.random.Generator, n: int, p_first: float) -> int:
    """Index 0 with probability ``p_first``, else one of 1..n-1 uniformly (0 when n == 1)."""
    if n == 1 or rng.random() < p_first:
        return 0
    return int(rng.integers(1, n))


def write_reports(grades: dict[str, str], conclusion: str, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` paraphrased reports of one image with these ``grades`` and this ``conclusion``.

    Deterministic given the state of ``rng`` (which it advances). Raises ``ValueError`` for an
    unknown grade or conclusion.
    """
    for f in FEATURES:
        if grades.get(f) not in GRADES[f]:
            raise ValueError(f"unknown grade {grades.get(f)!r} for feature {f!r}")
    if conclusion not in CLASSES:
        raise ValueError(f"unknown conclusion {conclusion!r}")
    values = {**{f: grades[f] for f in FEATURES}, "conclusion": conclusion}
    reports = []
    for _ in range(n):
        sentences = []
        for section in _SECTIONS:
            entry, grade = PHRASES[section], values[section]
            frame = _pick(rng, len(entry["frames"]), P_CANONICAL_FRAME)
            wording = _pick(rng, len(entry["wordings"][grade]), P_CANONICAL_WORDING)
            sentences.append(_sentence(section, frame, grade, wording))
        reports.append(" ".join(sentences))
    return reports


def all_sentences() -> Iterator[tuple[str, str, str]]:
    """Every sentence the grammar can write, as ``(section, grade or class, sentence)``."""
    for section in _SECTIONS:
        entry = PHRASES[section]
        for grade, wordings in entry["wordings"].items():
            for frame in range(len(entry["frames"])):
                for wording in range(len(wordings)):
                    yield section, grade, _sentence(section, frame, grade, wording)


# --- parsing ---------------------------------------------------------------------------------

def _find_phrases(tokens: list[str], phrases: dict[str, str]) -> set[str]:
    """Labels of the ``phrases`` (text -> label) found in ``tokens``, longest match first."""
    patterns = sorted(((p.split(), label) for p, label in phrases.items()), key=lambda x: -len(x[0]))
    found, i = set(), 0
    while i < len(tokens):
        for words, label in patterns:
            if tokens[i:i + len(words)] == words:
                found.add(label)
                i += len(words)
                break
        else:
            i += 1
    return found


_WORDING_TO_GRADE = {
    f: {w: g for g, ws in PHRASES[f]["wordings"].items() for w in ws} for f in FEATURES
}
_CLASS_NAMES = {c: c for c in CLASSES}


def _read_sentence(tokens: list[str]) -> tuple[str, str | None] | None:
    """``(section, value or None)`` for one sentence, or None when it is about nothing known."""
    features = [f for f in FEATURES if any(t.startswith(KEYWORDS[f]) for t in tokens)]
    if len(features) == 1:
        f = features[0]
        found = _find_phrases(tokens, _WORDING_TO_GRADE[f])
        return f, (found.pop() if len(found) == 1 else None)
    if len(features) > 1:  # several features in one sentence: cannot tell which grade is whose
        return None
    found = _find_phrases(tokens, _CLASS_NAMES)
    return ("conclusion", found.pop()) if len(found) == 1 else None


def parse_report(report: str) -> dict:
    """Read the grades and the conclusion out of a report.

    Returns ``{"grades": {feature: grade or None, ...}, "conclusion": class or None}``. Recovers
    everything from the grammar's own reports. For other text it reads each sentence on its
    own (sentences end at ``"."``) and gives None for a feature or the conclusion that no
    sentence states, or that sentences state differently. Never raises on a string.
    """
    readings: dict[str, set[str]] = {s: set() for s in _SECTIONS}
    sentence: list[str] = []
    for tok in [*tokenize(str(report)), "."]:
        if tok != ".":
            sentence.append(tok)
            continue
        if sentence:
            read = _read_sentence(sentence)
            if read is not None and read[1] is not None:
                readings[read[0]].add(read[1])
        sentence = []
    value = {s: (next(iter(r)) if len(r) == 1 else None) for s, r in readings.items()}
    return {"grades": {f: value[f] for f in FEATURES}, "conclusion": value["conclusion"]}
