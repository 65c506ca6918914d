"""`make site`: the course as static HTML, opened in headless Chromium: figures, typeset equations, links.

Skips (with the reason) only when Debian's chromium (/usr/bin/chromium) or Playwright is missing;
the build itself and the offline check run everywhere.
"""
import json
import re
import time
from pathlib import Path

import nbformat
import pytest

from mdnet_utils.course.notebook import notebook_paths
from mdnet_utils.course.site import build_site, covered, describe, equations

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


@pytest.mark.slow  # the site fixture: the build takes 4-5 s
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
