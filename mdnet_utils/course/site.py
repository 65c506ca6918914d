"""The course as a static web site (``make site``): a series map plus every notebook as HTML.

``build_site`` renders each committed notebook with its outputs (nbconvert's HTMLExporter) and
writes ``index.html``, a map of the series: per notebook its title, what it teaches (the "What
you will learn" bullets), the equations it covers (its "Equations covered:" line, which the README's
course map repeats) and its runtime. Equations are typeset by a
copy of MathJax 2.7 from the ``jupyter-server-mathjax`` package under ``mathjax/``: the site
works offline and loads no script from the network. The folder is written next to ``out`` and
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

from mdnet_utils.course.notebook import cell_text, notebook_paths, opening
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


def describe(nb) -> dict:
    """A notebook's entry in the series map, read from its fixed opening (see ``check_structure``)."""
    cells = nb["cells"]
    text = opening(nb)
    title = cell_text(cells[0]).splitlines()[0].lstrip("#").strip() if cells else ""
    learn = _section(text, "What you will learn")
    bullets = [re.sub(r"^[-*]\s+", "", line).strip() for line in learn.splitlines() if re.match(r"\s*[-*]\s", line)]
    # The equations it covers: its own line "Equations covered: (a)–(b), ..." (README's course map says the
    # same, and a test holds the two together); without one, what its "What you will learn" names.
    declared = re.search(r"Equations covered:(.*)", text)
    eqs = covered(declared.group(1)) if declared else equations(learn)
    return {"title": title, "learn": bullets, "equations": eqs, "runtime": _section(text, "Runtime")}


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


def _index(entries: list[dict]) -> str:
    items = []
    for e in entries:
        learn = "".join(f"<li>{markdown2html(b).strip().removeprefix('<p>').removesuffix('</p>')}</li>"
                        for b in e["learn"])
        eqs = f"Eqs. {_ranges(e['equations'])}" if e["equations"] else "none of the paper's numbered equations"
        items.append(f"""
<section class="nb">
  <h2><a href="{html.escape(e['href'])}">{html.escape(e['title'])}</a></h2>
  <h3>What you will learn</h3><ul>{learn}</ul>
  <p class="eqs"><strong>Equations:</strong> {html.escape(eqs)}</p>
  <div class="runtime"><strong>Runtime:</strong> {markdown2html(e['runtime'])}</div>
</section>""")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>MDNet, step by step</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }}
section.nb {{ border-top: 1px solid #ccc; padding: .5rem 0 1rem; }}
h2 a {{ text-decoration: none; }} h3 {{ font-size: 1rem; margin-bottom: .2rem; }}
.runtime p {{ display: inline; }}
</style>
<script type="text/x-mathjax-config">
MathJax.Hub.Config({{tex2jax: {{inlineMath: [['$','$'], ['\\\\(','\\\\)']], processEscapes: true}}, messageStyle: "none"}});
</script>
<script src="{MATHJAX_URL}"></script>
</head><body>
<h1>MDNet, step by step</h1>
<p>The series map: {len(entries)} notebooks, read in order, each rendered with its outputs.
Equation numbers are those of the MDNet paper.</p>
{''.join(items)}
</body></html>
"""


def build_site(out="build/site", notebooks=None, *, force: bool = False) -> Path:
    """Render the course (default: every notebook of ``config.notebooks_dir``) into ``out``: ``index.html``, one
    page per notebook, ``mathjax/``. ``out`` is replaced when it is a site written before (or with ``force``);
    another non-empty folder is refused."""
    paths = [Path(p) for p in (notebooks if notebooks is not None else notebook_paths())]
    if not paths:
        raise ValueError("build_site: no notebooks to render.")

    def fill(tmp: Path) -> None:
        copy_mathjax(tmp / "mathjax")
        exporter = HTMLExporter(mathjax_url=MATHJAX_URL)
        entries = []
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            body, _ = exporter.from_notebook_node(offline(nb), resources={"metadata": {"name": describe(nb)["title"]}})
            body = _EXTERNAL_SCRIPT.sub("", body)  # require.js: only widgets and JavaScript outputs use it
            if re.search(r'<script[^>]*\bsrc="https?:', body):
                raise OSError(f"{path.name}: the rendered page still loads a script from the network.")
            href = f"{path.stem}.html"
            (tmp / href).write_text(body, encoding="utf-8")
            entries.append({**describe(nb), "href": href})
        (tmp / "index.html").write_text(_index(entries), encoding="utf-8")

    return write_owned_folder(out, fill, marker=".mdnet-site", force=force)
