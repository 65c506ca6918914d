"""The course as a static web site (``make site``): a series map plus every notebook as HTML, in English and
in Chinese.

``build_site`` renders each committed notebook with its outputs (nbconvert's HTMLExporter) and
writes ``index.html``, a map of the series: per notebook its title, what it teaches (the "What
you will learn" bullets), the equations it covers (its "Equations covered:" line, which the README's
course map repeats) and its runtime. ``zh/`` holds the same pages and map for the Chinese edition
(``translation.translated_notebook``: the same code cells and outputs, the markdown in Chinese; a cell not
translated yet stays English and its page says so). Every page carries a language switch (English / 中文) to
the same page in the other language; a Chinese page declares ``lang="zh-CN"`` (so the browser picks the
simplified-Chinese glyphs) and lists CJK fonts. Links between notebooks (``NN_slug.ipynb``) point to the page of
the same language. Equations are typeset by a
copy of MathJax 2.7 from the ``jupyter-server-mathjax`` package under ``mathjax/`` (one copy, both languages): the
site works offline and loads no script from the network. The folder is written next to ``out`` and
renamed into place, so ``out`` is either the old site or the complete new one.
"""
from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import jupyter_server_mathjax
import nbformat
from nbconvert import HTMLExporter
from nbconvert.filters.markdown import markdown2html

from mdnet_utils.course.fidelity import glossary_path, read_glossary
from mdnet_utils.course.notebook import cell_text, notebook_paths, opening
from mdnet_utils.course.translation import current_translations, translated_notebook
from mdnet_utils.io import write_owned_folder

# The MathJax config: the package ships MathJax 2.7's combined TeX-AMS-MML_HTMLorMML-full config
# (no TeX-AMS_CHTML-full) and only the STIX-Web fonts; offline.js (written below) says so.
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe,offline"
MATHJAX_URL = f"mathjax/MathJax.js?config={MATHJAX_CONFIG}"
# What MathJax needs for that config; left out: the SVG output (2.9 MB), the a11y extensions
# (3.7 MB, loaded only from the math menu) and the translations (the locale is pinned to English).
_MATHJAX_SKIP = ("jax/output/SVG", "extensions/a11y", "localization")
_OFFLINE_JS = """\
/* Written by mdnet_utils.course.site: the bundled fonts are STIX-Web (no TeX web fonts, no image fonts),
   output is HTML-CSS (no fast CommonHTML preview: its TeX fonts are not bundled), the menu stays in English (no translations are bundled). */
MathJax.Hub.Config({
  menuSettings: {locale: "en", CHTMLpreview: false},
  "fast-preview": {disabled: true},
  MMLorHTML: {prefer: "HTML"},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
});
MathJax.Ajax.loadComplete("[MathJax]/config/offline.js");
"""

_EQ = re.compile(r"\bEqs?\.\s*((?:\(?\d+\)?(?:\s*(?:[-–,]|and|to)\s*)?)+)")


def _mathjax_source() -> Path:
    return Path(jupyter_server_mathjax.__file__).resolve().parent / "static"


def copy_mathjax(dest: Path) -> Path:
    """Copy the MathJax files the site's config needs into ``dest`` (``.../mathjax``)."""
    src = _mathjax_source()
    for name in MATHJAX_CONFIG.split(",")[:2]:
        if not (src / "config" / f"{name}.js").is_file():
            raise OSError(f"jupyter-server-mathjax has no config/{name}.js; reinstall jupyter-server-mathjax>=0.2.")

    def ignore(folder, names):
        rel = Path(folder).relative_to(src).as_posix()
        return [n for n in names if (f"{rel}/{n}" if rel != "." else n) in _MATHJAX_SKIP]

    shutil.copytree(src, dest, ignore=ignore)
    (dest / "config" / "offline.js").write_text(_OFFLINE_JS)
    return dest


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^#+\s*{heading}\s*\n(.*?)(?=^#|\Z)", text, re.M | re.S | re.I)
    return m.group(1).strip() if m else ""


def equations(text: str) -> list[int]:
    """Equation numbers mentioned as "Eq. (N)", "Eq. N", "Eqs. (N)-(M)", "Eqs. (N) and (M)"."""
    found = set()
    for m in _EQ.finditer(text):
        span = m.group(1)
        numbers = [int(n) for n in re.findall(r"\d+", span)]
        found.update(numbers)
        for a, b in re.findall(r"(\d+)\)?\s*(?:[-–]|to)\s*\(?(\d+)", span):  # a range: every number in it
            found.update(range(int(a), int(b) + 1))
    return sorted(found)


def covered(text: str) -> list[int]:
    """Equation numbers from a list such as "(1)–(3), (7)" ("none" gives [])."""
    found = set()
    for a, b in re.findall(r"\((\d+)\)(?:\s*[-–]\s*\((\d+)\))?", text):
        found.update(range(int(a), int(b or a) + 1))
    return sorted(found)


def _ranges(numbers: list[int]) -> str:
    out, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(f"({numbers[i]})" if i == j else f"({numbers[i]})–({numbers[j]})")
        i = j + 1
    return ", ".join(out)


def describe(nb, headings: dict[str, str] | None = None) -> dict:
    """A notebook's entry in the series map, read from its fixed opening (see ``check_structure``); ``headings``
    maps the fixed headings to those of a translation (the glossary's, for the Chinese edition)."""
    cells = nb["cells"]
    text = opening(nb)
    heading = (headings or {}).get
    title = cell_text(cells[0]).splitlines()[0].lstrip("#").strip() if cells else ""
    learn = _section(text, heading("What you will learn", "What you will learn"))
    bullets = [re.sub(r"^[-*]\s+", "", line).strip() for line in learn.splitlines() if re.match(r"\s*[-*]\s", line)]
    # The equations it covers: its own line "Equations covered: (a)–(b), ..." (README's course map says the
    # same, and a test holds the two together); without one, what its "What you will learn" names.
    declared = re.search(r"Equations covered:(.*)", text)
    eqs = covered(declared.group(1)) if declared else equations(learn)
    runtime = _section(text, heading("Runtime", "Runtime"))
    return {"title": title, "learn": bullets, "equations": eqs, "runtime": runtime}


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_EXTERNAL_SCRIPT = re.compile(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>\s*')


def offline(nb):
    """The notebook without live widgets: their renderer (and require.js) come from a CDN, so each
    widget output keeps its text/plain form (a progress bar's text, a control's repr)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if _WIDGET_VIEW in data and len(data) > 1:
                del data[_WIDGET_VIEW]
    return nb


LANGUAGES = {  # the label of each language in the switch, and the words of its series map
    "en": {"name": "English", "html": "en", "title": "MDNet, step by step", "learn": "What you will learn",
           "equations": "Equations:", "eqs": "Eqs. ", "none": "none of the paper's numbered equations",
           "runtime": "Runtime:", "pending": "",
           "intro": "The series map: {n} notebooks, read in order, each rendered with its outputs. Equation numbers "
                    "are those of the MDNet paper."},
    "zh": {"name": "中文", "html": "zh-CN", "title": "MDNet 循序渐进", "learn": "你将学到", "equations": "公式：",
           "eqs": "", "none": "不涉及论文中编号的公式", "runtime": "运行时间：",
           "pending": "本页有 {n} 个 markdown 单元格尚未翻译，暂以英文显示。",
           "intro": "系列地图：共 {n} 个笔记本，请按顺序阅读，每个都连同其输出一并呈现。公式编号即 MDNet 论文中的编号。"},
}
# A Chinese page lists CJK fonts after the notebook's own: the browser takes each character from the first font
# that has it (Noto CJK and WenQuanYi are Debian's packages; the others those of macOS and Windows).
_CJK_FONTS = '"Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "PingFang SC", "Microsoft YaHei"'
_SWITCH_CSS = """<style>
nav.mdnet-lang { position: fixed; top: .4rem; right: .8rem; z-index: 1000; background: #fff; border: 1px solid #bbb;
  border-radius: 4px; padding: .15rem .55rem; font: 14px system-ui, sans-serif; }
nav.mdnet-lang a { text-decoration: none; } nav.mdnet-lang span { font-weight: 600; }
p.mdnet-pending { background: #fff6d5; padding: .4rem .8rem; }
</style>"""
_ZH_CSS = f"""<style>
:root {{ --jp-content-font-family: system-ui, -apple-system, "Segoe UI", {_CJK_FONTS}, sans-serif;
  --jp-ui-font-family: system-ui, -apple-system, "Segoe UI", {_CJK_FONTS}, sans-serif; }}
body {{ font-family: system-ui, -apple-system, "Segoe UI", {_CJK_FONTS}, sans-serif; }}
</style>"""
_NB_LINK = re.compile(r'href="(\d\d_[\w-]+)\.ipynb(#[^"]*)?"')


def language_switch(lang: str, href: str, languages) -> str:
    """The switch at the top of a page: the other languages' version of ``href`` (one folder per language but
    English, which sits at the top), the current one named but not linked."""
    items = []
    for other in languages:
        name = html.escape(LANGUAGES[other]["name"])
        if other == lang:
            items.append(f'<span aria-current="page">{name}</span>')
        else:
            target = ("../" if lang != "en" else "") + ("" if other == "en" else f"{other}/") + href
            code = LANGUAGES[other]["html"]
            items.append(f'<a href="{html.escape(target)}" hreflang="{code}" lang="{code}">{name}</a>')
    return f'<nav class="mdnet-lang" aria-label="language / 语言">{" · ".join(items)}</nav>'


def localise(page: str, lang: str, href: str, languages, pending: int = 0) -> str:
    """A rendered page in ``lang``: its ``lang`` attribute, the language switch, CJK fonts for Chinese, links to
    other notebooks pointing to their pages, and a note when some of its cells are not translated yet."""
    page = re.sub(r"<html[^>]*>", f'<html lang="{LANGUAGES[lang]["html"]}">', page, count=1)
    style = _SWITCH_CSS + (_ZH_CSS if lang == "zh" else "")
    page = page.replace("</head>", style + "\n</head>", 1)
    note = f'<p class="mdnet-pending">{LANGUAGES[lang]["pending"].format(n=pending)}</p>' if pending else ""
    page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + language_switch(lang, href, languages) + note, page, count=1)
    return _NB_LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', page)


def _index(entries: list[dict], lang: str = "en", mathjax: str = MATHJAX_URL) -> str:
    words = LANGUAGES[lang]
    items = []
    for e in entries:
        learn = "".join(f"<li>{markdown2html(b).strip().removeprefix('<p>').removesuffix('</p>')}</li>"
                        for b in e["learn"])
        eqs = f"{words['eqs']}{_ranges(e['equations'])}" if e["equations"] else words["none"]
        pending = f'<p class="mdnet-pending">{words["pending"].format(n=e["pending"])}</p>' if e.get("pending") else ""
        items.append(f"""
<section class="nb">
  <h2><a href="{html.escape(e['href'])}">{html.escape(e['title'])}</a></h2>{pending}
  <h3>{words['learn']}</h3><ul>{learn}</ul>
  <p class="eqs"><strong>{words['equations']}</strong> {html.escape(eqs)}</p>
  <div class="runtime"><strong>{words['runtime']}</strong> {markdown2html(e['runtime'])}</div>
</section>""")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{words['title']}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }}
section.nb {{ border-top: 1px solid #ccc; padding: .5rem 0 1rem; }}
h2 a {{ text-decoration: none; }} h3 {{ font-size: 1rem; margin-bottom: .2rem; }}
.runtime p {{ display: inline; }}
</style>
<script type="text/x-mathjax-config">
MathJax.Hub.Config({{tex2jax: {{inlineMath: [['$','$'], ['\\\\(','\\\\)']], processEscapes: true}}, messageStyle: "none"}});
</script>
<script src="{mathjax}"></script>
</head><body>
<h1>{words['title']}</h1>
<p>{words['intro'].format(n=len(entries))}</p>
{''.join(items)}
</body></html>
"""


def _render(folder: Path, paths: list[Path], lang: str, languages) -> None:
    """The pages and the series map of one language into ``folder``."""
    up = "" if lang == "en" else "../"
    exporter = HTMLExporter(mathjax_url=up + MATHJAX_URL)
    headings = read_glossary(glossary_path(paths[0].parent))["headings"] if lang == "zh" else None
    entries = []
    for path in paths:
        english = nbformat.read(path, as_version=4)
        nb, left = translated_notebook(english, current_translations(path)) if lang == "zh" else (english, [])
        described = describe(english)
        own = describe(nb, headings) if lang != "en" else {}  # a section not translated yet: the English
        entry = {**described, **{k: v for k, v in own.items() if v and k != "equations"},
                 "href": f"{path.stem}.html", "pending": len(left)}
        body, _ = exporter.from_notebook_node(offline(nb), resources={"metadata": {"name": entry["title"]}})
        body = _EXTERNAL_SCRIPT.sub("", body)  # require.js: only widgets and JavaScript outputs use it
        if re.search(r'<script[^>]*\bsrc="https?:', body):
            raise OSError(f"{path.name}: the rendered page still loads a script from the network.")
        (folder / entry["href"]).write_text(localise(body, lang, entry["href"], languages, len(left)), encoding="utf-8")
        entries.append(entry)
    index = localise(_index(entries, lang, up + MATHJAX_URL), lang, "index.html", languages)
    (folder / "index.html").write_text(index, encoding="utf-8")


def build_site(out="build/site", notebooks=None, *, force: bool = False, languages=("en", "zh")) -> Path:
    """Render the course (default: every notebook of ``config.notebooks_dir``) into ``out``: ``index.html``, one
    page per notebook, ``mathjax/``, and the same in ``zh/`` for the Chinese edition (``languages``: which to
    render; English first, at the top). ``out`` is replaced when it is a site written before (or with ``force``);
    another non-empty folder is refused."""
    paths = [Path(p) for p in (notebooks if notebooks is not None else notebook_paths())]
    if not paths:
        raise ValueError("build_site: no notebooks to render.")
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown or not languages or languages[0] != "en":
        raise ValueError(f"build_site: languages {languages!r}: English first, then any of {sorted(LANGUAGES)}.")

    def fill(tmp: Path) -> None:
        copy_mathjax(tmp / "mathjax")
        for lang in languages:
            folder = tmp if lang == "en" else tmp / lang
            folder.mkdir(exist_ok=True)
            _render(folder, paths, lang, languages)

    return write_owned_folder(out, fill, marker=".mdnet-site", force=force)
