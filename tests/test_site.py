"""`make site`: the course as static HTML, opened in headless Chromium: figures, typeset equations, links.

Skips (with the reason) only when Debian's chromium (/usr/bin/chromium) or Playwright is missing;
the build itself and the offline check run everywhere.
"""
import json
import re
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from mdnet_utils.course.notebook import notebook_paths
from mdnet_utils.course.site import build_site, covered, describe, equations, language_switch, localise
from mdnet_utils.course.translation import completeness_problems

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    start = time.perf_counter()
    out = build_site(tmp_path_factory.mktemp("site") / "site")
    seconds = time.perf_counter() - start
    assert seconds < 60, f"the site took {seconds:.0f} s to build"
    return out


def _has_images(path: Path) -> bool:
    nb = json.loads(path.read_text())
    return any(mime.startswith("image/") for c in nb["cells"] for o in c.get("outputs", []) for mime in o.get("data", {}))


def test_equation_mentions_are_parsed():
    assert equations("Eq. (1)–(2) and Eq. (3)") == [1, 2, 3]
    assert equations("Eqs. (13)-(14): the context; Eqs. (4) and (5); Eq. 7)") == [4, 5, 7, 13, 14]


def test_a_declared_list_of_equations_is_parsed():
    assert covered(" (1)–(3), all of them") == [1, 2, 3]
    assert covered("(9), (11)-(12)") == [9, 11, 12]
    assert covered("none: the data comes before the model") == []


def test_the_series_map_and_the_readme_course_map_name_the_same_equations():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = dict(re.findall(r"^\| \[\d\d · [^]]*\]\(notebooks/(\d\d)_\w+\.ipynb\) \|[^|]*\| ([^|]*) \|", readme, re.M))
    assert sorted(rows) == [p.name[:2] for p in notebook_paths()]
    for path in notebook_paths():
        listed = rows[path.name[:2]].strip()
        numbers = [] if listed == "(none)" else covered("".join(f"({n})" if n.isdigit() else n
                                                                 for n in re.split(r"(\d+)", listed)))
        assert describe(nbformat.read(path, as_version=4))["equations"] == numbers, path.name


@pytest.mark.slow  # the site fixture: the build takes 5-10 s (both languages)
def test_every_page_is_offline_and_the_index_links_every_notebook(site):
    pages = sorted(site.glob("*.html"))
    assert {p.name for p in pages} == {"index.html"} | {f"{p.stem}.html" for p in notebook_paths()}
    for page in pages:
        assert '<script src="http' not in page.read_text(), page.name
    index = (site / "index.html").read_text()
    for p in notebook_paths():
        assert f'href="{p.stem}.html"' in index
    assert (site / "mathjax" / "MathJax.js").is_file() and (site / "mathjax" / "config" / "offline.js").is_file()


@pytest.mark.slow
def test_rebuilding_replaces_a_site_of_ours_and_refuses_any_other_folder(tmp_path):
    out = tmp_path / "s"
    build_site(out, notebooks=notebook_paths()[:1])
    (out / "stale.html").write_text("old")                      # left in a site written before: replaced whole
    build_site(out, notebooks=notebook_paths()[:1])
    assert sorted(p.name for p in out.glob("*.html")) == ["00_the_data.html", "index.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"], "a temporary folder was left behind"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files this command did not write"):
        build_site(mine, notebooks=notebook_paths()[:1])
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    build_site(mine, notebooks=notebook_paths()[:1], force=True)
    assert not (mine / "notes.txt").exists() and (mine / "index.html").exists()


@pytest.mark.browser
def test_the_pages_render_in_chromium(site):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    start = time.perf_counter()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page()
        failed = []
        page.on("requestfailed", lambda r: failed.append(r.url))

        def load(path: Path):
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_function("window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0"
                                   " && MathJax.Hub.queue.running === 0", timeout=20_000)

        load(site / "index.html")
        hrefs = page.eval_on_selector_all("section.nb h2 a", "els => els.map(a => a.href)")
        assert [h.rsplit("/", 1)[-1] for h in hrefs] == [f"{p.stem}.html" for p in notebook_paths()]
        assert page.locator(".MathJax, .MathJax_CHTML").count() > 0, "the index's math is not typeset"
        for href, nb in zip(hrefs, notebook_paths()):
            load(Path(href.removeprefix("file://")))
            assert page.title(), nb.name
            if _has_images(nb):
                widths = page.eval_on_selector_all(".jp-OutputArea img", "els => els.map(i => i.naturalWidth)")
                assert widths and all(w > 0 for w in widths), f"{nb.name}: a figure did not load ({widths})"
            typeset = page.locator(".MathJax, .MathJax_CHTML").count()
            source = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "markdown")
            if "$" in source:
                assert typeset > 0, f"{nb.name}: no typeset equation"
                assert not page.locator(".MathJax_Error, .merror").count(), f"{nb.name}: MathJax reported an error"
            if "$$" in source:
                text = page.inner_text(".jp-Notebook")
                assert "$$" not in text, f"{nb.name}: raw $$ left in the rendered text"
        browser.close()
    # One request is known and harmless: the combined MathJax config declares an @font-face for the TeX
    # AMS font, which Chromium fetches although the STIX-Web fonts do the typesetting (not bundled).
    missing = [u for u in failed if u.startswith("file:") and "/mathjax/fonts/HTML-CSS/TeX/" not in u]
    assert not missing, f"files the pages asked for but the site lacks: {missing}"
    assert not re.findall(r"https?://", " ".join(failed)), f"requests to the network: {failed}"
    assert time.perf_counter() - start < 60


# --- the Chinese edition: a language switch on every page, a Chinese series map, pages a CJK font draws ---------
def test_a_page_gets_its_language_the_switch_and_links_to_notebook_pages():
    page = ('<html lang="en"><head></head><body class="jp-Notebook"><a href="01_resnet.ipynb#2.-x">01</a>'
            '<a href="https://x.org/a.ipynb">x</a></body></html>')
    zh = localise(page, "zh", "00_the_data.html", ("en", "zh"), pending=3)
    assert zh.startswith('<html lang="zh-CN">') and "Noto Sans CJK SC" in zh
    assert '<a href="../00_the_data.html" hreflang="en" lang="en">English</a>' in zh
    assert '<span aria-current="page">中文</span>' in zh and "3 个 markdown 单元格尚未翻译" in zh
    assert 'href="01_resnet.html#2.-x"' in zh and 'href="https://x.org/a.ipynb"' in zh
    en = localise(page, "en", "00_the_data.html", ("en", "zh"))
    assert '<a href="zh/00_the_data.html" hreflang="zh-CN" lang="zh-CN">中文</a>' in en and "CJK" not in en
    assert "mdnet-pending\">" not in en
    assert language_switch("en", "index.html", ("en",)) == \
        '<nav class="mdnet-lang" aria-label="language / 语言"><span aria-current="page">English</span></nav>'


@pytest.mark.slow  # the site fixture
def test_every_page_switches_to_the_same_page_in_the_other_language_and_the_chinese_map_lists_every_notebook(site):
    names = ["index.html"] + [f"{p.stem}.html" for p in notebook_paths()]
    assert sorted(p.name for p in (site / "zh").glob("*.html")) == sorted(names)
    for name in names:
        en, zh = (site / name).read_text(encoding="utf-8"), (site / "zh" / name).read_text(encoding="utf-8")
        assert f'<a href="zh/{name}" hreflang="zh-CN" lang="zh-CN">中文</a>' in en, name
        assert f'<a href="../{name}" hreflang="en" lang="en">English</a>' in zh, name
        assert '<html lang="zh-CN">' in zh and '<script src="http' not in zh, name
        assert 'src="../mathjax/MathJax.js' in zh, name
    index = (site / "zh" / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'<h2><a href="([^"]+)">', index) == names[1:]
    assert "你将学到" in index and "MDNet 循序渐进" in index
    for path in notebook_paths():
        page = (site / "zh" / f"{path.stem}.html").read_text(encoding="utf-8")
        assert ('<p class="mdnet-pending">' in page) == bool(completeness_problems(path)), path.name
    assert "00 · 数据" in (site / "zh" / "00_the_data.html").read_text(encoding="utf-8")


def _cjk_font_families() -> set[str]:
    """The font families fontconfig says cover Chinese (what Chromium falls back to for Han characters)."""
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {name.strip() for line in out.splitlines() for name in line.split(",") if name.strip()}


@pytest.mark.browser
def test_a_chinese_page_is_drawn_in_a_cjk_font_and_its_switch_leads_to_the_english_page(site):
    """Chromium reports, per element, the fonts it drew its text with and how many glyphs each (DevTools'
    CSS.getPlatformFontsForNode): every Han character of the title and of the first paragraph must come from a
    font that covers Chinese, not from a font that would draw it as an empty box."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    families = _cjk_font_families()
    if not families:
        pytest.skip("no CJK font (fc-list :lang=zh is empty): apt-get install fonts-noto-cjk (or fonts-wqy-zenhei)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto((site / "zh" / "00_the_data.html").as_uri(), wait_until="load")
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        page.wait_for_function("window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0"
                               " && MathJax.Hub.queue.running === 0", timeout=20_000)   # ../mathjax/ is found
        assert page.locator(".MathJax").count() > 0 and not page.locator(".MathJax_Error, .merror").count()
        cdp = page.context.new_cdp_session(page)
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
        for selector in ("h1", ".jp-RenderedMarkdown p"):
            own_text = page.eval_on_selector(selector, "e => Array.from(e.childNodes).filter(n => n.nodeType === 3)"
                                                       ".map(n => n.textContent).join('')")
            han = len(re.findall(r"[\u4e00-\u9fff]", own_text))
            assert han > 5, f"{selector}: {own_text!r} is not Chinese"
            node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
            fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
            drawn = sum(f["glyphCount"] for f in fonts if f["familyName"] in families)
            assert drawn >= han, f"{selector}: {han} Han characters, {drawn} glyphs from a CJK font ({fonts})"
        page.click("nav.mdnet-lang a[hreflang=en]")
        page.wait_for_load_state("load")
        assert page.url == (site / "00_the_data.html").as_uri()
        assert page.locator("html").get_attribute("lang") == "en"
        page.click("nav.mdnet-lang a[hreflang=zh-CN]")
        page.wait_for_load_state("load")
        assert page.url == (site / "zh" / "00_the_data.html").as_uri()
        browser.close()
