"""The Chinese edition (``make zh``): the course's notebooks with their markdown in Chinese, generated from the
English notebooks and the translations stored beside them, so that the two editions cannot drift apart.

``notebooks/zh/NN_slug.yml`` holds one entry per markdown cell of ``notebooks/NN_slug.ipynb``::

    cells:
    - cell: 4                # where the cell is now: its index and its id, a locator for humans only
      id: cell-04
      src: 1f3c5a9e0b2d      # the key: sha256 of the English source (stripped), first 12 hex digits
      en: |-                 # that English source, for reference (sync rewrites it; never edit it)
        ## 2. From grades to a conclusion: the rule
      zh: |-                 # the translation (empty: not translated yet)
        ## 2. 从等级到结论：规则

Entries are keyed by the hash of the English they translate, never by position or id: ids are positional
("cell-04") and shift when a cell is inserted. ``sync_translation`` (``python -m mdnet_utils zh sync NN``)
writes the file's skeleton: an entry with an empty ``zh`` for each new cell; when the English of a translated
cell changes, the translation moves to the new entry (the most similar English) with ``old_en``, the English
it was written for: the entry is *stale* until a translator updates ``zh`` and deletes ``old_en``. A
translation that fits no cell is kept under ``orphans:`` and reported, never deleted. ``translation_problems``
lists everything that is missing, stale, orphaned or unfaithful (``fidelity``), cell by cell, naming the
notebook, the cell's index and its first line. ``translated_notebook`` is the Chinese notebook: the same code
cells with their committed outputs, each markdown cell in Chinese (in English while it has no current
translation); ``build_zh`` writes them all into ``build/zh``.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import os
from pathlib import Path

import nbformat
import yaml

from mdnet_utils.course.fidelity import fidelity_problems, glossary_path, read_glossary
from mdnet_utils.course.notebook import cell_text, notebook_paths
from mdnet_utils.io import write_owned_folder, write_text

HEADER = """\
# The Chinese text of notebooks/{name}'s markdown cells (make zh builds the Chinese edition from it).
# Fill each empty `zh: |` with the translation, indented under it, each paragraph on one line (a line break
# shows as a space between Chinese characters). Keep math ($...$, $$...$$), `code`, link targets, numbers and
# HTML tags exactly as in `en`; use the renderings of notebooks/zh/glossary.yml (README.zh.md says more).
# `cell` and `id` only say where the cell is now. `src` (sha256 of `en`, 12 hex digits) is the key: never edit
# `src` or `en`. `old_en`: the English the translation was written for before the cell changed: update `zh`,
# then delete the `old_en` line(s). `orphans`: translations whose English changed beyond recognition or
# vanished: move what is useful into `zh` above, then delete them.
# After an English edit: python -m mdnet_utils zh sync {nn}; what is left: python -m mdnet_utils zh check {nn}
"""
CARRY_RATIO = 0.5   # a changed cell takes over the old translation whose English is this similar at least


def source_hash(text: str) -> str:
    """The key of a translation: sha256 of the English source (surrounding whitespace stripped), 12 hex digits."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:12]


def translation_path(notebook: str | os.PathLike) -> Path:
    """``notebooks/zh/NN_slug.yml`` for ``notebooks/NN_slug.ipynb``."""
    notebook = Path(notebook)
    return notebook.parent / "zh" / f"{notebook.stem}.yml"


def markdown_cells(nb) -> list[dict]:
    """The cells a translation covers: every markdown cell that is not blank, with its index, id, key, text."""
    return [{"cell": i, "id": c.get("id", ""), "src": source_hash(cell_text(c)), "en": cell_text(c).strip()}
            for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown" and cell_text(c).strip()]


def first_line(text: str) -> str:
    line = next((s for s in text.strip().splitlines() if s.strip()), "")
    return line if len(line) <= 70 else line[:67] + "..."


def read_translation(path: str | os.PathLike) -> dict:
    """A translation file as ``{"cells": [entry, ...], "orphans": [entry, ...]}`` (both empty when the file does
    not exist). Each entry has ``src``, ``en``, ``zh`` (stripped) and maybe ``cell``, ``id``, ``old_en``."""
    path = Path(path)
    if not path.exists():
        return {"cells": [], "orphans": []}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = {"cells": [], "orphans": []}
    for part in out:
        for entry in data.get(part) or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("src"), str):
                raise ValueError(f"{path}: every entry of `{part}` needs a `src` (the English's hash): {entry!r}")
            entry = dict(entry)
            for key in ("en", "zh", "old_en"):
                if entry.get(key) is not None:
                    entry[key] = str(entry[key]).strip()
            entry.setdefault("en", "")
            entry["zh"] = entry.get("zh") or ""
            out[part].append(entry)
    return out


class _Dumper(yaml.SafeDumper):
    """YAML with the text as literal blocks (``|``), so that a diff of a translation reads line by line."""


class _Text(str):
    """A text field (``en``, ``old_en``, ``zh``): a literal block even when it is one line."""


_Dumper.add_representer(_Text, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|"))
_ORDER = ("cell", "id", "src", "en", "old_en", "zh")
_TEXT = ("en", "old_en", "zh")


def dump_translation(data: dict, name: str) -> str:
    """The text of a translation file (``HEADER``, then ``cells`` and ``orphans``); an empty ``zh`` is written
    as ``zh: |`` followed by nothing, ready to be filled."""
    tidy = {part: [{k: _Text(e[k]) if k in _TEXT else e[k] for k in _ORDER
                    if e.get(k) is not None and (k != "old_en" or e[k])}
                   for e in data.get(part, [])] for part in ("cells", "orphans")}
    if not tidy["orphans"]:
        del tidy["orphans"]
    body = yaml.dump(tidy, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=10**6)
    body = "\n".join("  zh: |" if line in ("  zh: ''", '  zh: ""') else line for line in body.splitlines()) + "\n"
    return HEADER.format(name=name, nn=name[:2]) + body


def carry_over(entries: list[dict], unused: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs (an entry without a translation, a translated entry whose English is gone): a changed cell and the
    translation of its former English, the most similar one left (``CARRY_RATIO`` at least). The paired entries
    leave ``unused``."""
    pairs = []
    for entry in entries:
        candidates = [e for e in unused if e["zh"]]
        if entry["zh"] or not candidates:
            continue
        ratio, was = max(((difflib.SequenceMatcher(None, e.get("old_en") or e["en"], entry["en"]).ratio(), k)
                          for k, e in enumerate(candidates)), key=lambda rk: rk[0])
        if ratio >= CARRY_RATIO:
            unused.remove(candidates[was])
            pairs.append((entry, candidates[was]))
    return pairs


def sync_translation(notebook: str | os.PathLike) -> dict:
    """Write ``notebooks/zh/NN_slug.yml`` for the notebook as it is now (creating it if needed) and say what
    changed: ``new`` (cells to translate), ``carried`` (translations moved to a changed cell, now stale),
    ``orphans`` (translations that fit no cell, kept in the file), ``dropped`` (untranslated entries of cells
    that are gone: nothing is lost). Entries whose key still matches a cell keep their text."""
    notebook = Path(notebook)
    path = translation_path(notebook)
    old = read_translation(path)
    cells = markdown_cells(nbformat.read(notebook, as_version=4))
    by_src = {}
    for entry in old["cells"] + old["orphans"]:
        by_src.setdefault(entry["src"], entry)
    report = {"new": [], "carried": [], "orphans": [], "dropped": []}
    entries, used = [], set()
    for cell in cells:
        if any(e["src"] == cell["src"] for e in entries):  # a repeated cell: one entry translates every copy
            continue
        known = by_src.get(cell["src"])
        entry = {**cell, "zh": known["zh"] if known else "", "old_en": known.get("old_en") if known else None}
        if known:
            used.add(cell["src"])
        entries.append(entry)
    unused = [e for src, e in by_src.items() if src not in used]
    for entry, was in carry_over(entries, unused):
        entry["zh"], entry["old_en"] = was["zh"], was.get("old_en") or was["en"]
        report["carried"].append(entry)
    for entry in entries:
        if not entry["zh"]:
            report["new"].append(entry)
    orphans = [e for e in unused if e["zh"]]
    report["orphans"] = orphans
    report["dropped"] = [e for e in unused if not e["zh"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, dump_translation({"cells": entries, "orphans": orphans}, notebook.name))
    return report


def word_diff(old: str, new: str, context: int = 3) -> str:
    """What changed from ``old`` to ``new``, word by word, on one line: ``[-removed-]{+added+}``, with a few words
    of context around each change ("..." for the words left out)."""
    a, b = old.split(), new.split()
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    parts = []
    for k, (tag, i1, i2, j1, j2) in enumerate(ops):
        if tag != "equal":
            removed, added = " ".join(a[i1:i2]), " ".join(b[j1:j2])
            parts.append((f"[-{removed}-]" if removed else "") + (f"{{+{added}+}}" if added else ""))
            continue
        words, first, last = a[i1:i2], k == 0, k == len(ops) - 1
        if len(words) > (1 if first or last else 2) * context:
            words = (["..."] if first else words[:context] + ["..."]) + ([] if last else words[-context:])
        parts.append(" ".join(words))
    return " ".join(parts)


def _where(notebook: Path, entry: dict) -> str:
    return f"{notebook.stem}: cell {entry.get('cell', '?')} ({first_line(entry.get('old_en') or entry['en'])!r})"


def completeness_problems(notebook: str | os.PathLike, translation: dict | None = None,
                          cells: list[dict] | None = None) -> list[str]:
    """What keeps the notebook's translation from being complete and current, one line per cell: no translation
    file, a cell without a translation of its current English, an empty ``zh``, a stale entry (``old_en``), an
    orphan. Each line names the notebook, the cell's index and its first line, and what to do. ``translation``
    and ``cells`` (``markdown_cells``) are read from disk unless the caller has them."""
    notebook = Path(notebook)
    path = translation_path(notebook)
    sync = f"python -m mdnet_utils zh sync {notebook.name[:2]}"
    if not path.exists():
        return [f"{notebook.stem}: no translation ({path.parent.name}/{path.name} is missing; create it: {sync})"]
    data = translation if translation is not None else read_translation(path)
    by_src = {e["src"]: e for e in data["cells"]}
    cells = cells if cells is not None else markdown_cells(nbformat.read(notebook, as_version=4))
    problems = []
    current = {c["src"] for c in cells}
    gone = [e for e in data["cells"] + data["orphans"] if e["src"] not in current]
    changed = {new["src"] for new, _ in carry_over([{**c, "zh": ""} for c in cells if c["src"] not in by_src], gone)}
    for cell in cells:
        entry = by_src.get(cell["src"])
        if entry is None:
            what = "its English changed since it was translated" if cell["src"] in changed else "its English is new"
            problems.append(f"{_where(notebook, cell)}: {what}: no translation of it yet (run {sync})")
        elif not entry["zh"]:
            problems.append(f"{_where(notebook, cell)}: not translated yet (fill its `zh`)")
        elif entry.get("old_en"):
            problems.append(f"{_where(notebook, cell)}: its English changed since it was translated: "
                            f"{word_diff(entry['old_en'], cell['en'])} (update `zh`, then delete `old_en`)")
    for entry in gone:
        if entry["zh"]:
            problems.append(f"{notebook.stem}: orphan translation of {first_line(entry['en'])!r} (src {entry['src']}, "
                            f"was cell {entry.get('cell', '?')}): its English changed or vanished; move its text "
                            f"where it belongs or delete it ({sync} moves it under `orphans`)")
    return problems


def translation_problems(notebook: str | os.PathLike, glossary: dict | None = None, *,
                         completeness: bool = True) -> list[str]:
    """Everything wrong with the notebook's translation: ``completeness_problems`` (unless ``completeness`` is
    False), and for every current, translated cell what ``fidelity_problems`` finds, one line each."""
    notebook = Path(notebook)
    glossary = glossary if glossary is not None else read_glossary(glossary_path(notebook.parent))
    data = read_translation(translation_path(notebook))
    cells = markdown_cells(nbformat.read(notebook, as_version=4))
    problems = completeness_problems(notebook, data, cells) if completeness else []
    current = {c["src"]: c for c in cells}
    for entry in data["cells"]:
        cell = current.get(entry["src"])
        if cell is None or not entry["zh"] or entry.get("old_en"):
            continue
        problems += [f"{_where(notebook, cell)}: {p}" for p in fidelity_problems(cell["en"], entry["zh"], glossary)]
    return problems


def current_translations(notebook: str | os.PathLike) -> dict[str, str]:
    """English hash -> Chinese text, for the entries that are translated and current (not stale)."""
    data = read_translation(translation_path(notebook))
    return {e["src"]: e["zh"] for e in data["cells"] if e["zh"] and not e.get("old_en")}


def translated_notebook(nb, translations: dict[str, str]) -> tuple[object, list[int]]:
    """The Chinese notebook (a copy; ``nb`` is not changed) and the indices of the markdown cells left in
    English (no current translation). Code cells, outputs, ids and metadata are the English notebook's."""
    nb = copy.deepcopy(nb)
    left = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown" or not cell_text(cell).strip():
            continue
        zh = translations.get(source_hash(cell_text(cell)))
        if zh is None:
            left.append(i)
        else:
            cell["source"] = zh
    return nb, left


README = """# 中文版笔记本（自动生成）

由 `make zh` 从 `notebooks/` 生成（{count} 个笔记本）：请勿在此编辑。英文笔记本在 `notebooks/`，译文在 `notebooks/zh/NN_slug.yml`；修改后重新运行 `make zh`。代码单元格及其输出与英文版完全相同，代码注释保持英文。
{missing}"""


def build_zh(out: str | os.PathLike = "build/zh", notebooks: list[Path] | None = None, *,
             force: bool = False) -> tuple[Path, dict[str, list[int]]]:
    """Write the Chinese edition of every notebook (``config.notebooks_dir`` by default) into ``out``,
    atomically; returns ``out`` and, per notebook, the markdown cells left in English. ``out`` is replaced when it
    is an edition written before (or with ``force``); another non-empty folder is refused."""
    paths = [Path(p) for p in (notebooks if notebooks is not None else notebook_paths())]
    left: dict[str, list[int]] = {}

    def fill(tmp: Path) -> None:
        for path in paths:
            nb, left[path.name] = translated_notebook(nbformat.read(path, as_version=4), current_translations(path))
            nbformat.write(nb, tmp / path.name)
        pending = [f"- `{name}`：{len(cells)} 个 markdown 单元格尚未翻译（保留英文）" for name, cells in left.items() if cells]
        (tmp / "README.md").write_text(README.format(count=len(paths), missing="\n".join(
            ["", "尚未完成的翻译：", *pending, ""] if pending else [])), encoding="utf-8")

    return write_owned_folder(out, fill, marker=".mdnet-zh", force=force), left
