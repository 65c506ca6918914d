"""Prose held to outputs: every decimal figure a notebook's markdown quotes appears in that notebook's stored
outputs, or is a constant on an allow-list that names its source.

A figure typed into prose goes stale the day the notebook is re-run: the cell prints 0.681 and the sentence
still says 0.679. So a figure of a run is printed by the cell (the cell prints the sentence), and what the prose
may quote unprinted is a constant: the paper's Table 1, a cited figure, a hyper-parameter the package defines.
``notebooks/prose_constants.yml`` lists those per notebook, each with its source (``read_constants``): a key
is a figure, allowed wherever the notebook quotes it, or a phrase of the prose that holds one ("dropout 0.3"),
allowed there only. The openings' runtimes ("~1.5 min") are figures of runs held to ``runtimes.json`` instead
(``runtime_allowances``). ``tests/test_prose.py`` holds every notebook to both.

What counts as a quoted figure (``quoted_figures``): a number written with a decimal point ("0.679", "95.5",
"1,234.5") or in scientific notation ("8.988e-01", "1e-3"), with its minus sign when it has one ("-0.3",
"−0.3"). Integers are not figures here: counts, epochs, seeds and sizes ("3,024 images", "62 %") are too often
definitions to be worth the noise. What is not prose is left out (each exclusion is commented below).

A figure is in the outputs (``figure_in_outputs``) when the outputs hold it as a whole number token, exactly as
written: "0.7" is not in "0.75" nor in "0.70", "95.5" is not "0.955". The one latitude is the sign: prose may
quote a printed "-0.3" without its minus ("a drop of 0.3"), never the other way round.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from mdnet_utils import config
from mdnet_utils.course.notebook import cell_text
from mdnet_utils.course.runtimes import MODES, phrase, read_runtimes

__all__ = ["CONSTANTS_FILE", "quoted_figures", "output_text", "figure_in_outputs", "unbacked_figures",
           "unused_allowances", "read_constants", "runtime_allowances"]

CONSTANTS_FILE = "prose_constants.yml"

MINUS = "−"   # U+2212, the typographic minus some prose uses; outputs print the ASCII one

# A number token: thousands groups only where a decimal part follows (a figure); the look-ahead keeps a longer
# number from being cut short to fit ("0.75" never yields "0.7"; no atomic group: Python 3.10 has none). Used on
# prose and outputs alike.
_NUMBER = re.compile(r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+\.\d+|\d+(?:\.\d+)*(?:[eE][-+" + MINUS + r"]?\d+)?)(?![\d])")

# What markdown holds that is not prose, removed before figures are read (replaced by a space, so that the
# text on either side does not join into one number):
_NOT_PROSE = [
    # fenced code: code and its printed output, not a claim of the prose
    re.compile(r"^[ \t]*(`{3,}|~{3,}).*?^[ \t]*\1", re.M | re.S),
    # inline code: names and literals (`lr=0.1`, `resnet_0.5`)
    re.compile(r"(`+).+?\1", re.S),
    # LaTeX math, display and inline: equations are not measurements ($\alpha = 0.5$ is notation)
    re.compile(r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)", re.S),
    re.compile(r"(?<![\\$])\$(?!\s)[^$]+?(?<![\s\\])\$"),
    # HTML comments and tags: not shown, or attributes (<img width="0.5">), not text
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"</?[A-Za-z][^<>]*>"),
    # link targets and bare URLs: addresses (arxiv.org/abs/1707.02485), not figures; the link text stays
    re.compile(r"(?<=\])\([^()\s]*(?:\s+\"[^\"]*\")?\)|^\s*\[[^\]]+\]:\s*\S+.*$", re.M),
    re.compile(r"\b(?:https?://|www\.)\S+"),
]

# Just before a number, these make it something other than a measurement:
_NOT_A_FIGURE_BEFORE = re.compile(
    r"(?:"
    # part of an identifier or a word: resnet-32, EcNet-20-4, v2.1, fc_0.5 (a hyphen after a digit is a range,
    # "0.3-0.5", so only a letter before the hyphen makes a name)
    r"[A-Za-z][-_]?|[A-Za-z0-9]_"
    # a version: Python 3.11, torch >= 2.4, after the name of what it versions (a comparison alone is not
    # one: "accuracy >= 0.98" is a target; a three-part version, 2.14.1, is dropped in _figures)
    r"|(?i:python|pytorch|torch|torchvision|cuda|numpy|version)\s*(?:[<>=!~]=?\s*)?"
    # a reference to a part of a text: Eq. (1.2), Section 3.1, §4.2, Table 2.1, Fig. 3.2
    r"|(?:§|\b(?i:eqs?\.|equations?|sections?|sec\.|tables?|figs?\.|figures?|chapters?|appendix|algorithm))"
    r"\s*\(?"
    # a paper's identifier: arXiv:1707.02485, doi:10.1109/...
    r"|\b(?i:arxiv|doi):\s*"
    r")$")


def _prose(markdown: str) -> str:
    """``markdown`` without what is not prose, its whitespace runs made one space (so that an allow-list's
    phrase matches across the source's line breaks)."""
    for pattern in _NOT_PROSE:
        markdown = pattern.sub(" ", markdown)
    return " ".join(markdown.split())


def _signed(text: str, start: int) -> bool:
    """Whether the number at ``start`` carries a minus sign: a minus right before it that follows no letter,
    digit or point (in "0.3-0.5" and "EcNet-0.5" the hyphen joins, it does not negate)."""
    return start > 0 and text[start - 1] in "-" + MINUS and (start < 2 or not re.match(r"[\w.]", text[start - 2]))


def _figures(text: str) -> list[tuple[int, int, str]]:
    """(start, end, figure) of each figure of ``text``, prose already (see ``_prose``)."""
    found = []
    for m in _NUMBER.finditer(text):
        number = m.group()
        if number.count(".") > 1 and "," not in number:
            continue   # a version (2.14.1) or a dotted section number (1.2.3), not a figure
        if "." not in number and "e" not in number.lower():
            continue   # an integer: a count, not a figure (see the module's docstring)
        if _NOT_A_FIGURE_BEFORE.search(text, 0, m.start()) or re.match(r"_\w", text[m.end():m.end() + 2]):
            continue   # part of a name (fc_0.5_x), a version or a reference
        start = m.start() - 1 if _signed(text, m.start()) else m.start()
        found.append((start, m.end(), text[start:m.end()]))
    return found


def quoted_figures(markdown: str) -> list[str]:
    """The decimal figures ``markdown`` quotes, as written and in order (a figure quoted twice is listed twice):
    numbers with a decimal point or an exponent, with their minus sign, outside code, math, HTML, links and
    URLs, and not part of a name, a version or a section reference."""
    return [figure for _, _, figure in _figures(_prose(markdown))]


def output_text(nb) -> str:
    """All the text of a notebook's stored outputs: printed streams, and the text/plain, text/html and
    text/markdown of results and displays (images are no text)."""
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            if out["output_type"] == "stream":
                parts.append(_joined(out.get("text", "")))
            elif out["output_type"] in ("execute_result", "display_data"):
                data = out.get("data", {})
                parts += [_joined(data[kind]) for kind in ("text/plain", "text/html", "text/markdown") if kind in data]
    return "\n".join(parts)


def _joined(text: str | list[str]) -> str:
    return text if isinstance(text, str) else "".join(text)   # nbformat's files store text as a list of lines


def _tokens(outputs: str) -> set[str]:
    """The number tokens of ``outputs``, each with its minus sign when it has one, the typographic minus read
    as ASCII."""
    outputs = outputs.replace(MINUS, "-")
    return {("-" if _signed(outputs, m.start()) else "") + m.group() for m in _NUMBER.finditer(outputs)}


def _present(figure: str, tokens: set[str]) -> bool:
    figure = figure.replace(MINUS, "-")
    return figure in tokens or (not figure.startswith("-") and "-" + figure in tokens)


def figure_in_outputs(figure: str, outputs: str) -> bool:
    """Whether ``figure`` (as ``quoted_figures`` gives it) is a number token of ``outputs``, exactly as written:
    "0.7" is not in "0.75", "95.5" is in "95.5 %" and "95.5±1.0"; an unsigned figure is in "-0.3" too."""
    return _present(figure, _tokens(outputs))


# An allow-list's key is a figure ("0.682"), allowed wherever the notebook quotes it, or a phrase of the prose
# that holds one ("dropout 0.3"), allowed there only: a small constant (0.1, 0.3, 1.0) is often also the value
# of some measurement, which a bare key would let through unseen.
def _allowed_spans(text: str, allowed: dict[str, str]) -> list[tuple[int, int]]:
    phrases = [" ".join(key.split()) for key in allowed if quoted_figures(key) != [key]]
    return [(m.start(), m.end()) for phrase in phrases for m in re.finditer(re.escape(phrase), text)]


def _quoted(nb, allowed: dict[str, str]):
    """(cell index, figure, the allow-list's key that allows it or None) for each figure of the markdown."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = _prose(cell_text(cell))
        spans = _allowed_spans(text, allowed)
        for start, end, figure in _figures(text):
            key = figure if figure in allowed else next(
                (text[a:b] for a, b in spans if a <= start and end <= b), None)
            yield i, figure, key


def unbacked_figures(nb, allowed: dict[str, str]) -> list[tuple[int, str]]:
    """(markdown cell's index, figure) for each figure its prose quotes that the notebook's own outputs do not
    hold and ``allowed`` (a figure or a phrase holding one -> its source) does not cover; once per cell, in
    the order quoted."""
    tokens = _tokens(output_text(nb))
    found = [(i, figure) for i, figure, key in _quoted(nb, allowed) if key is None and not _present(figure, tokens)]
    return list(dict.fromkeys(found))


def unused_allowances(nb, allowed: dict[str, str]) -> list[str]:
    """The keys of ``allowed`` that allow no figure of the notebook's prose: stale, to be removed (a phrase
    that the prose no longer reads exactly so, or a figure it no longer quotes)."""
    normal = {" ".join(key.split()): key for key in allowed}
    used = {" ".join(key.split()) for _, _, key in _quoted(nb, allowed) if key is not None}
    return [key for phrase, key in normal.items() if phrase not in used]


def read_constants(folder: str | os.PathLike | None = None) -> dict[str, dict[str, str]]:
    """``folder/prose_constants.yml`` (default ``config.notebooks_dir``): notebook name -> {figure or phrase:
    its source}; {} when there is none. A key or source that YAML did not read as a string is refused: an
    unquoted 0.30 would arrive as the float 0.3, no longer the figure as the prose writes it."""
    path = Path(config.notebooks_dir if folder is None else folder) / CONSTANTS_FILE
    data = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    for name, entries in data.items():
        bad = [k for k, v in (entries or {}).items() if not (isinstance(k, str) and isinstance(v, str) and v.strip())]
        if bad:
            raise ValueError(f"{path}: {name}: {bad!r}: quote each figure, and name its source as text.")
    return {name: dict(entries or {}) for name, entries in data.items()}


def runtime_allowances(name: str, folder: str | os.PathLike | None = None) -> dict[str, str]:
    """The opening's runtime phrases of notebook ``name`` ("~1.5 min"), allowed as phrases: a figure of the
    course's runs, but one held to ``notebooks/runtimes.json`` (by tests/test_notebooks.py), not to outputs."""
    times = read_runtimes(config.notebooks_dir if folder is None else folder).get(name, {})
    return {phrase(times[mode]): f"notebooks/runtimes.json, {name} in {mode} mode" for mode in MODES if mode in times}
