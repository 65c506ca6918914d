"""Is a translated markdown cell faithful to its English? What must survive a translation byte for byte, and the
glossary's one rendering per term.

``fidelity_problems(en, zh, glossary)`` compares one cell's English source with its translation:

* kept exactly: math (``$...$`` and ``$$...$$``, each byte-identical), fenced code blocks, ``code`` spans, link
  targets, HTML tags (the questionnaire's ``<details>``), and the numbers of the prose (the same set: a figure
  the English quotes is quoted, and the translation quotes none the English does not);
* the same shape: heading levels in the same order, as many list items and table rows; the fixed headings
  (``### What you will learn``, ``### Exercise A · title``, ``<summary>Answer</summary>``, "Equations covered:")
  in the glossary's Chinese;
* the glossary: wherever a term occurs in the English prose (outside math, code, links, quoted English and the
  sections the glossary leaves unchecked), the translation uses its rendering; no translation uses a rendering
  the glossary marks ``avoid``.

The glossary is ``notebooks/zh/glossary.yml`` (``read_glossary``; its own consistency: ``glossary_problems``).
This module reads no notebook: the caller hands it the two texts.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import yaml

from mdnet_utils import config

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.M | re.S)
CODE = re.compile(r"`[^`\n]+`")
DISPLAY_MATH = re.compile(r"\$\$.+?\$\$", re.S)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)(?:\\.|[^$\\])+?\$")
LINK_TARGET = re.compile(r"\]\(([^)\s]+)\)")
HTML_TAG = re.compile(r"</?[A-Za-z][^>\n]*>")
QUOTED = re.compile(r"\"(?:[^\"\n]|\n(?!\n))*\"|“(?:[^”\n]|\n(?!\n))*”")  # quoted English, over a line break too
NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:[.,]\d+)*")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.M)
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s", re.M)
TABLE_ROW = re.compile(r"^\s*\|", re.M)
EXERCISE = re.compile(r"^Exercise\s+([A-Z])\s*·")
SUMMARY = re.compile(r"<summary>(.*?)</summary>")
CJK = re.compile("[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
BLOCK_START = re.compile(r"\s*(?:[-*+]\s|\d+\.\s|#|\||<|```|\$\$)")


def glossary_path(folder: str | os.PathLike | None = None) -> Path:
    """``notebooks/zh/glossary.yml`` (of ``folder``, default ``config.notebooks_dir``)."""
    return Path(config.notebooks_dir if folder is None else folder) / "zh" / "glossary.yml"


def read_glossary(path: str | os.PathLike | None = None) -> dict:
    """The glossary: ``headings`` (English -> Chinese), ``terms`` (each ``en``, ``zh``, optional ``forms``,
    ``also``, ``avoid``, ``note``, ``source``), ``unchecked_sections``, ``notes``."""
    path = Path(path) if path is not None else glossary_path()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data.get("headings"), dict) or not isinstance(data.get("terms"), list):
        raise ValueError(f"{path}: a glossary needs `headings` (a mapping) and `terms` (a list).")
    for term in data["terms"]:
        if not isinstance(term, dict) or not term.get("en") or not term.get("zh"):
            raise ValueError(f"{path}: every term needs `en` and `zh`, not {term!r}.")
    data.setdefault("unchecked_sections", [])
    return data


def glossary_problems(glossary: dict, required_headings=()) -> list[str]:
    """What is wrong with the glossary itself: a term listed twice, a rendering it also avoids, an avoided
    rendering that is another term's rendering, a fixed heading it lacks."""
    problems = [f"the heading {h!r} has no Chinese rendering"
                for h in required_headings if h not in glossary["headings"]]
    seen = Counter(t["en"].lower() for t in glossary["terms"])
    problems += [f"the term {en!r} is listed {n} times" for en, n in seen.items() if n > 1]
    renderings = {t["zh"] for t in glossary["terms"]} | {a for t in glossary["terms"] for a in t.get("also", [])}
    for t in glossary["terms"]:
        for bad in t.get("avoid", []):
            if bad in renderings:
                problems.append(f"{t['en']!r} avoids {bad!r}, which is a rendering of the glossary")
    return problems


def protected(text: str) -> tuple[str, dict[str, list[str]]]:
    """``text`` with what a translation keeps exactly taken out (each replaced by a space), and those parts:
    ``fences``, ``code``, ``math``, ``links`` (targets), ``html`` (tags)."""
    parts: dict[str, list[str]] = {"fences": [], "code": [], "math": [], "links": [], "html": []}

    def take(kind: str, pattern: re.Pattern, s: str, group: int = 0) -> str:
        def keep(m: re.Match) -> str:
            parts[kind].append(m.group(group))
            return " " if group == 0 else m.group(0).replace(m.group(group), " ")
        return pattern.sub(keep, s)

    text = take("fences", FENCE, text)
    text = take("code", CODE, text)
    text = take("math", DISPLAY_MATH, text)
    text = take("math", INLINE_MATH, text)
    text = take("links", LINK_TARGET, text, group=1)
    text = take("html", HTML_TAG, text)
    return text, parts


def _differ(kind: str, en: list[str], zh: list[str], *, as_set: bool = False) -> list[str]:
    a, b = (Counter(set(en)), Counter(set(zh))) if as_set else (Counter(en), Counter(zh))
    missing, extra = list((a - b).elements()), list((b - a).elements())
    out = []
    if missing:
        out.append(f"{kind} of the English missing from the translation: {', '.join(map(repr, missing))}")
    if extra:
        out.append(f"{kind} in the translation but not in the English: {', '.join(map(repr, extra))}")
    return out


def soft_breaks(text: str) -> list[str]:
    """Line breaks inside a Chinese paragraph or list item ("字⏎字"). Chromium (and so JupyterLab and the site)
    renders such a break as a space between two Chinese characters: a translation keeps a paragraph on one line."""
    found, lines = [], text.split("\n")
    for prev, line in zip(lines, lines[1:]):
        list_item = re.match(r"\s*(?:[-*+]|\d+\.)\s", prev)   # its next line may continue it
        if not prev.strip() or not line.strip() or BLOCK_START.match(prev) and not list_item:
            continue
        if BLOCK_START.match(line) or not CJK.search(prev.rstrip()[-1]):
            continue
        if CJK.match(line.lstrip().lstrip("*_`")[:1] or " "):
            found.append(f"{prev.rstrip()[-1]}⏎{line.strip()[0]}")
    return found


def _headings(text: str) -> list[tuple[int, str]]:
    return [(len(m.group(1)), m.group(2)) for m in HEADING.finditer(text)]


def structure_problems(en: str, zh: str, headings: dict[str, str]) -> list[str]:
    """The shape of the cell (headings, lists, tables) and its fixed headings in the glossary's Chinese."""
    problems = []
    en_h, zh_h = _headings(en), _headings(zh)
    if [lvl for lvl, _ in en_h] != [lvl for lvl, _ in zh_h]:
        problems.append(f"heading levels {[lvl for lvl, _ in zh_h]}, not the English {[lvl for lvl, _ in en_h]}")
    else:
        for (_, en_text), (_, zh_text) in zip(en_h, zh_h):
            ex = EXERCISE.match(en_text)
            if ex and not re.match(rf"^{re.escape(headings['Exercise'])}\s+{ex.group(1)}\s*·", zh_text):
                problems.append(f"the heading {en_text!r} must read '{headings['Exercise']} {ex.group(1)} · ...', "
                                f"not {zh_text!r}")
            elif en_text in headings and zh_text != headings[en_text]:
                problems.append(f"the heading {en_text!r} must read {headings[en_text]!r}, not {zh_text!r}")
    for name, pattern in (("list items", LIST_ITEM), ("table rows", TABLE_ROW)):
        n_en, n_zh = len(pattern.findall(en)), len(pattern.findall(zh))
        if n_en != n_zh:
            problems.append(f"{n_zh} {name}, the English has {n_en}")
    en_summaries, zh_summaries = SUMMARY.findall(en), SUMMARY.findall(zh)
    wanted = [headings.get(s, s) for s in en_summaries]
    if zh_summaries != wanted:
        problems.append(f"<summary> labels {zh_summaries}, expected {wanted}")
    breaks = soft_breaks(protected(zh)[0] if "$$" in zh or "```" in zh else zh)
    if breaks:
        problems.append(f"a line break inside a paragraph shows as a space between Chinese characters: join the "
                        f"lines at {', '.join(breaks)}")
    if "Equations covered:" in en and f"{headings['Equations covered']}：" not in zh:
        problems.append(f"'Equations covered:' must read '{headings['Equations covered']}：' (full-width colon)")
    return problems


def _term_pattern(term: dict) -> re.Pattern:
    """The English of a term as it may occur: any case, a plural in -s/-es or one of its ``forms``, a space or
    a hyphen between its words (or neither: "data set" is "dataset" too)."""
    forms = []
    for form in [term["en"], *term.get("forms", [])]:
        forms.append(r"[\s-]*".join(re.escape(w) for w in re.split(r"[\s-]+", form.strip())))
    return re.compile(r"\b(?:" + "|".join(forms) + r")(?:s|es)?\b", re.I)


def _unchecked(en: str, glossary: dict) -> bool:
    first = _headings(en)
    return bool(first) and first[0][1] in glossary["unchecked_sections"]


def term_problems(en_prose: str, zh_prose: str, glossary: dict, *, check_terms: bool = True) -> list[str]:
    """The glossary in one cell: the renderings its English terms call for, and no avoided rendering."""
    problems = []
    if check_terms:
        text = QUOTED.sub(" ", en_prose)
        for term in sorted(glossary["terms"], key=lambda t: -len(t["en"])):  # a longer term shadows a shorter
            pattern = _term_pattern(term)
            if not pattern.search(text):
                continue
            text = pattern.sub(" ", text)
            accepted = [term["zh"], *term.get("also", [])]
            if not any(a in zh_prose for a in accepted):
                problems.append(f"the English says {term['en']!r}: the glossary's rendering "
                                f"{' or '.join(accepted)} is not in the translation")
    for term in glossary["terms"]:
        for bad in term.get("avoid", []):
            if bad in zh_prose:
                problems.append(f"{bad!r} is not the glossary's rendering: write {term['zh']!r} ({term['en']})")
    return problems


def fidelity_problems(en: str, zh: str, glossary: dict) -> list[str]:
    """Every way the translation ``zh`` of the English markdown ``en`` is unfaithful (empty when none)."""
    en_prose, en_parts = protected(en)
    zh_prose, zh_parts = protected(zh)
    problems = []
    problems += _differ("math", en_parts["math"], zh_parts["math"])
    problems += _differ("code blocks", en_parts["fences"], zh_parts["fences"])
    problems += _differ("code spans", en_parts["code"], zh_parts["code"], as_set=True)
    problems += _differ("link targets", en_parts["links"], zh_parts["links"], as_set=True)
    problems += _differ("HTML tags", en_parts["html"], zh_parts["html"])
    problems += _differ("numbers", NUMBER.findall(en_prose), NUMBER.findall(zh_prose), as_set=True)
    problems += structure_problems(en, zh, glossary["headings"])
    problems += term_problems(en_prose, zh_prose, glossary, check_terms=not _unchecked(en, glossary))
    return problems
