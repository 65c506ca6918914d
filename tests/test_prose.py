"""Prose held to outputs: every decimal figure a notebook's markdown quotes is in that notebook's stored outputs,
or is a constant of ``notebooks/prose_constants.yml`` with its source (``mdnet_utils.course.prose``).

The figures that break the rule today are listed in ``KNOWN_UNBACKED``, notebook by notebook: the test fails
on any figure that is not listed (a new one), and on a listed one that is backed by now (the prose was fixed:
remove it from the list). So the list can only shrink, and it says what to fix.
"""
import json
from collections import Counter

import pytest
import yaml

from mdnet_utils.course.notebook import notebook_paths
from mdnet_utils.course.prose import (CONSTANTS_FILE, figure_in_outputs, output_text, quoted_figures, read_constants,
                                      runtime_allowances, unbacked_figures, unused_allowances)

NOTEBOOKS = notebook_paths()

# Figures of the course's runs that the prose quotes but no output prints (rounded, or computed in the head
# from printed figures), once per markdown cell that quotes them. The fix: quote the figure as printed, or
# have the cell print the sentence.
KNOWN_UNBACKED: dict[str, list[str]] = {
}


def _notebook(*cells: tuple[str, str, list[dict] | None]) -> dict:
    """A notebook as nbformat's JSON: (cell type, source, outputs) per cell."""
    return {"cells": [{"cell_type": kind, "source": source, "metadata": {},
                       **({"outputs": outputs or [], "execution_count": None} if kind == "code" else {})}
                      for kind, source, outputs in cells]}


def _stream(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text.splitlines(keepends=True)}


# --- what counts as a quoted figure -------------------------------------------------------------------------
def test_decimal_figures_are_quoted_as_written_and_integers_are_not():
    text = ("Agreement 0.679; accuracy 95.5 % (seeds spread 62 % to 70 %); 1.87× faster; 3,024 tiles;\n"
            "norm 8.988e-01, lr 1e-3; a change of −0.3 and (-0.25); 1,234.5 s; **0.75** and _0.25_; 2.6.")
    assert quoted_figures(text) == ["0.679", "95.5", "1.87", "8.988e-01", "1e-3", "−0.3", "-0.25", "1,234.5",
                                    "0.75", "0.25", "2.6"]


def test_a_range_is_two_figures_and_its_hyphen_no_minus():
    assert quoted_figures("between 0.3-0.5, or 0.3–0.5, or 3.4-5.1 %") == ["0.3", "0.5", "0.3", "0.5", "3.4", "5.1"]


@pytest.mark.parametrize("text", [
    r"the loss is $L = L_w + 0.1\,L_c$ here",               # inline math
    "$$\nx = 0.5 y\n$$",                                    # display math
    r"\(a = 0.5\) and \[b = 1.5\]",                         # LaTeX's other delimiters
    "call `fit(lr=0.1)` now",                               # inline code
    "```python\nlr = 0.1\nprint(0.25)\n```",               # fenced code
    "see [the log](runs/seed-0.5/log.txt) and <https://arxiv.org/abs/1707.02485>",   # link target, URL
    "read https://example.org/v0.5/page",                   # bare URL
    '<img src="x.png" width="0.5"> <!-- 0.25 -->',          # HTML attribute, comment
    "torch 2.14.1, Python 3.11, torch >= 2.4",              # versions
    "Eq. (1.2), Section 3.1, §4.2, Table 2.1 and Fig. 3.2",  # references to parts of a text
    "resnet-32, EcNet-20-4, ResNet-14x2, v2.1, fc_0.5_out",  # names
    "CVPR 2017 (arXiv:1707.02485)",                         # a paper's identifier
])
def test_what_is_not_prose_or_not_a_figure_is_left_out(text):
    assert quoted_figures(text) == []


def test_a_figure_next_to_an_exclusion_is_still_quoted():
    assert quoted_figures("`lr` 0.1 and $x$ 0.25, [0.5](a.md), Table 1 lists 5.46") == ["0.1", "0.25", "0.5", "5.46"]
    assert quoted_figures("accuracy >= 0.98 (torch >= 2.4), 1.5x faster, 0.5s") == ["0.98", "1.5", "0.5"]


# --- what counts as present in the outputs ------------------------------------------------------------------
@pytest.mark.parametrize("figure, outputs, present", [
    ("0.7", "accuracy 0.75", False),          # not a prefix of a longer number
    ("0.7", "accuracy 0.70", False),          # exactly as written: not the same precision
    ("0.7", "accuracy 10.7", False),          # not a suffix either
    ("0.7", "accuracy 0.7\n", True),
    ("95.5", "test accuracy 95.5 %", True),
    ("95.5", "95.5±1.0", True),
    ("95.5", "0.955", False),                 # the same value in another unit is not the figure
    ("1.87", "1.87e-01", False),              # a mantissa is not the number
    ("8.988e-01", "norm 8.988e-01.", True),
    ("2.14", "torch 2.14.1", False),          # a version's first part is not a number
    ("1,234.5", "took 1,234.5 s", True),
    ("234.5", "took 1,234.5 s", False),
    ("0.3", "difference -0.3", True),         # prose may drop a printed minus...
    ("-0.3", "difference 0.3", False),        # ...never add one
    ("−0.3", "difference -0.3", True),        # the typographic minus is the ASCII one
    ("0.01", "within 0.0100", False),
])
def test_figure_in_outputs_is_exact_and_token_based(figure, outputs, present):
    assert figure_in_outputs(figure, outputs) is present


def test_output_text_reads_streams_and_text_of_results_but_not_images_or_errors():
    nb = _notebook(("code", "x", [
        _stream("loss 0.394\n"),
        {"output_type": "execute_result", "execution_count": 1, "metadata": {},
         "data": {"text/plain": ["0.5", "1"], "text/html": "<td>0.25</td>"}},
        {"output_type": "display_data", "metadata": {},
         "data": {"text/markdown": "**0.125**", "image/png": "0.875", "text/latex": "$0.0625$"}},
        {"output_type": "error", "ename": "E", "evalue": "0.03125", "traceback": ["0.03125"]}]),
        ("markdown", "0.875", None))
    text = output_text(nb)
    assert all(f in text for f in ("loss 0.394", "0.51", "<td>0.25</td>", "**0.125**"))
    assert "0.875" not in text and "0.0625" not in text and "0.03125" not in text


# --- a notebook's unbacked figures --------------------------------------------------------------------------
def test_unbacked_figures_name_the_cell_and_the_figure_once_per_cell():
    nb = _notebook(("markdown", "# Title\nThe paper reports 0.679.", None),
                   ("code", "print(...)", [_stream("accuracy 0.955, loss 0.394\n")]),
                   ("markdown", "Accuracy 0.955 and loss 0.39 (0.39 again), $0.5$.", None),
                   ("markdown", "Loss 0.39 once more, 0.394 as printed.", None))
    assert unbacked_figures(nb, {}) == [(0, "0.679"), (2, "0.39"), (3, "0.39")]
    assert unbacked_figures(nb, {"0.679": "the paper's Table 1", "0.39": "x"}) == []


def test_a_figure_printed_only_by_another_notebook_is_unbacked():
    prose = ("markdown", "BLEU-4 0.682, as notebook 00 prints.", None)
    printing = _notebook(("code", "print(bleu)", [_stream("BLEU-4 0.682\n")]), prose)
    quoting = _notebook(("code", "print(other)", [_stream("BLEU-4 0.759\n")]), prose)
    assert unbacked_figures(printing, {}) == []
    assert unbacked_figures(quoting, {}) == [(1, "0.682")]


def test_a_phrase_allows_its_figure_there_only():
    nb = _notebook(("markdown", "the decoder (embedding 64, dropout\n0.3), and", None),
                   ("markdown", "its accuracy rose by 0.3 points", None))
    allowed = {"dropout 0.3": "ModelConfig.dropout"}
    assert unbacked_figures(nb, allowed) == [(1, "0.3")]
    assert unused_allowances(nb, allowed) == []
    assert unbacked_figures(nb, {"0.3": "a bare figure allows it everywhere"}) == []


def test_an_allowance_that_allows_nothing_is_reported():
    nb = _notebook(("markdown", "dropout 0.3, as printed", None), ("code", "x", [_stream("0.3\n")]))
    assert unused_allowances(nb, {"dropout 0.3": "used even where printed", "0.679": "gone",
                                  "lr 3e-3": "rephrased away"}) == ["0.679", "lr 3e-3"]


def test_read_constants_refuses_a_figure_yaml_read_as_a_number(tmp_path):
    (tmp_path / CONSTANTS_FILE).write_text('a.ipynb:\n  "0.30": the paper\n')
    assert read_constants(tmp_path) == {"a.ipynb": {"0.30": "the paper"}}
    (tmp_path / CONSTANTS_FILE).write_text("a.ipynb:\n  0.30: the paper\n")
    with pytest.raises(ValueError, match=r"a\.ipynb: \[0\.3\]: quote each figure"):
        read_constants(tmp_path)
    assert read_constants(tmp_path / "none") == {}


def test_runtime_allowances_are_the_phrases_of_the_recorded_times(tmp_path):
    (tmp_path / "runtimes.json").write_text(json.dumps({"a.ipynb": {"full": 86.1, "fast": 18.0}}))
    allowed = runtime_allowances("a.ipynb", tmp_path)
    assert list(allowed) == ["~1.5 min", "~20 s"] and runtime_allowances("b.ipynb", tmp_path) == {}
    nb = _notebook(("markdown", "### Runtime\n**~1.5 min** in full mode; the loss fell by 1.5", None))
    assert unbacked_figures(nb, allowed) == [(0, "1.5")]


# --- the course ---------------------------------------------------------------------------------------------
CONSTANTS = read_constants()


def _allowed(name: str) -> dict[str, str]:
    return {**runtime_allowances(name), **CONSTANTS.get(name, {})}


def _unbacked(path) -> Counter:
    return Counter(figure for _, figure in unbacked_figures(json.loads(path.read_text()), _allowed(path.name)))


def test_the_allow_list_names_notebooks_of_the_course_and_a_source_for_each_constant():
    names = {p.name for p in NOTEBOOKS} | {DATASHEET_KEY}
    assert set(CONSTANTS) <= names, f"{CONSTANTS_FILE} names no such notebook: {sorted(set(CONSTANTS) - names)}"
    assert set(KNOWN_UNBACKED) <= names
    # every source names something: a word, not a placeholder
    short = [(name, key) for name, entries in CONSTANTS.items() for key, src in entries.items() if len(src) < 10]
    assert not short, f"constants without a source worth the name: {short}"
    raw = yaml.safe_load((NOTEBOOKS[0].parent / CONSTANTS_FILE).read_text())
    assert all(isinstance(k, str) for entries in raw.values() for k in entries)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_constant_on_the_allow_list_allows_a_figure_of_its_notebook(path):
    stale = unused_allowances(json.loads(path.read_text()), CONSTANTS.get(path.name, {}))
    assert not stale, (f"notebooks/{CONSTANTS_FILE}, {path.name}: these entries allow no figure of its prose "
                       f"(reworded or removed: update or drop them): {stale}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_prose_quotes_no_figure_its_outputs_do_not_hold_but_the_known_ones(path):
    new = _unbacked(path) - Counter(KNOWN_UNBACKED.get(path.name, []))
    found = [(i, f) for i, f in unbacked_figures(json.loads(path.read_text()), _allowed(path.name)) if f in new]
    assert not new, (f"{path.name} quotes figures that none of its outputs prints, (markdown cell, figure): "
                     f"{found}. Print them (the cell prints the sentence), quote them as printed, or, for a "
                     f"constant, list it with its source in notebooks/{CONSTANTS_FILE}.")


@pytest.mark.parametrize("name", sorted(KNOWN_UNBACKED))
def test_a_known_unbacked_figure_that_is_backed_by_now_leaves_the_list(name):
    fixed = Counter(KNOWN_UNBACKED[name]) - _unbacked(NOTEBOOKS[0].parent / name)
    assert not fixed, (f"{name}: no longer unbacked, remove from KNOWN_UNBACKED in tests/test_prose.py: "
                       f"{sorted(fixed.elements())}")


# --- the datasheet ------------------------------------------------------------------------------------------
DATASHEET_KEY = "data/README.md"   # its constants sit in the same allow-list, under this key


def _datasheet_with_notebook_00s_outputs() -> dict:
    """The datasheet as one markdown cell, followed by notebook 00's code cells with their stored outputs."""
    root = NOTEBOOKS[0].parent.parent
    nb = json.loads((NOTEBOOKS[0].parent / "00_the_data.ipynb").read_text())
    sheet = {"cell_type": "markdown", "metadata": {}, "source": (root / DATASHEET_KEY).read_text()}
    return {"cells": [sheet] + [c for c in nb["cells"] if c["cell_type"] == "code"]}


def test_the_datasheet_quotes_what_notebook_00_prints_and_names_the_source_of_its_constants():
    sheet, allowed = _datasheet_with_notebook_00s_outputs(), CONSTANTS.get(DATASHEET_KEY, {})
    unbacked = [figure for _, figure in unbacked_figures(sheet, allowed)]
    assert not unbacked, (f"{DATASHEET_KEY} quotes figures that notebook 00 does not print: {unbacked}. Quote "
                          f"them as printed, or list a constant with its source in notebooks/{CONSTANTS_FILE}.")
    assert not unused_allowances(sheet, allowed)
