"""The attention study's scores (mdnet_utils.evaluation.attention_study): each finding sentence's keyword, grade
words and mean map against the finding's mask, as lift, chance-corrected mass and pointing game; and the sink."""
import json

import pytest
import torch

from mdnet_utils.data.grades import FEATURES
from mdnet_utils.evaluation.attention_study import (
    attention_sink,
    finding_attention,
    study_scores,
    summarise_finding_attention,
)
from mdnet_utils.evaluation.localisation import finding_sentences, finding_words

GRID = (2, 2)
# "there are numerous mitoses ." then the conclusion: the keyword is "mitoses", the grade words "numerous"
TOKENS = ["there", "are", "numerous", "mitoses", ".", "high", "grade"]


def one_hot(cell, n=4):
    row = torch.zeros(n)
    row[cell] = 1.0
    return row


def masks(b=1):
    """An 8 x 8 tile whose mitosis mask is its top-left quarter (cell 0 of the 2 x 2 grid, share 0.25)."""
    m = torch.zeros(b, 1, 8, 8)
    m[:, :, :4, :4] = 1
    return {"mitosis": m}


def grades(mitosis):
    g = torch.zeros(1, len(FEATURES), dtype=torch.long)
    g[0, FEATURES.index("mitosis")] = mitosis
    return g


def test_a_finding_sentence_knows_its_keyword_and_its_grade_words():
    [s] = finding_sentences(TOKENS)
    assert (s.feature, s.mask, s.start, s.end, s.keyword, s.grade) == ("mitosis", "mitosis", 0, 4, (3,), (2,))
    assert finding_words(TOKENS) == [(2, "mitosis", "mitosis"), (3, "mitosis", "mitosis")]


def test_each_part_is_scored_against_the_findings_mask_with_its_chance_level():
    uniform = torch.full((4,), 0.25)
    # the keyword's map on the mitosis cell, the grade words' spread evenly, the other words on cell 3
    alphas = torch.stack([one_hot(3), one_hot(3), uniform, one_hot(0), one_hot(3), one_hot(3), one_hot(3)])
    rows = finding_attention([alphas], [TOKENS], masks(), grades(2), grid=GRID).set_index("part")
    assert list(rows.index) == ["keyword", "grade words", "sentence"] and (rows["share"] == 0.25).all()
    # bilinear upsampling spreads a one-cell map a little: the keyword is nearly all inside, never all of it
    assert 3.0 < rows.loc["keyword", "lift"] <= 4.0 and rows.loc["keyword", "pointing"] == 1.0
    assert rows.loc["grade words", "lift"] == pytest.approx(1.0) and rows.loc["grade words", "above_chance"] == pytest.approx(0.0, abs=1e-6)
    assert rows.loc["grade words", "pointing"] == pytest.approx(0.25)    # a flat map: the tie split, chance
    assert 1.0 < rows.loc["sentence", "lift"] < rows.loc["keyword", "lift"]
    k = rows.loc["keyword"]
    assert k["above_chance"] == pytest.approx((k["lift"] * 0.25 - 0.25) / 0.75)
    summary = summarise_finding_attention(rows.reset_index())
    assert summary.loc[("mitosis", "keyword"), "pointing / chance"] == pytest.approx(4.0)
    assert summary.loc[("mitosis", "keyword"), "sentences"] == 1


def test_a_finding_the_tile_does_not_have_or_cannot_show_is_not_scored():
    alphas = torch.stack([one_hot(0)] * len(TOKENS))
    assert finding_attention([alphas], [TOKENS], masks(), grades(0), grid=GRID).empty   # rare mitoses: grade 0
    empty = {"mitosis": torch.zeros(1, 1, 8, 8)}
    assert finding_attention([alphas], [TOKENS], empty, grades(1), grid=GRID).empty      # nothing to point at
    with pytest.raises(ValueError, match="one row per token"):
        finding_attention([alphas[:-1]], [TOKENS], masks(), grades(1), grid=GRID)
    with pytest.raises(ValueError, match="one of each per image"):
        finding_attention([alphas], [TOKENS, TOKENS], masks(), grades(1), grid=GRID)


def test_a_sink_is_one_cell_that_most_words_attend_whatever_the_image():
    gen = torch.Generator().manual_seed(0)
    spread = [torch.softmax(torch.randn(5, 9, generator=gen), dim=1) for _ in range(20)]
    calm = attention_sink(spread)
    assert not calm["sink"] and calm["uniform"] == pytest.approx(1 / 9) and calm["words"] == 100
    assert calm["mass"] < 0.3 and calm["argmax_share"] < 0.5
    stuck = [0.2 * m + 0.8 * one_hot(4, 9) for m in spread]          # every word sends most of its map to cell 4
    found = attention_sink(stuck)
    assert found["sink"] and found["cell"] == 4 and found["argmax_share"] == 1.0 and found["mass"] > 0.8
    # a map that sums to less than 1 (a sentinel slot took the rest) is read by its shape
    assert attention_sink([0.5 * m for m in stuck])["mass"] == pytest.approx(found["mass"])
    with pytest.raises(ValueError, match="at least one word"):
        attention_sink([torch.zeros(0, 9)])


def test_the_study_scores_are_plain_data_as_evaluate_writes_them():
    alphas = torch.stack([one_hot(3), one_hot(3), one_hot(0), one_hot(0), one_hot(3), one_hot(3), one_hot(3)])
    scores = study_scores([alphas], [TOKENS], masks(), grades(1), grid=GRID)
    assert set(scores) == {"findings", "attention sink"} and set(scores["findings"]) == {"mitosis"}
    assert set(scores["findings"]["mitosis"]) == {"keyword", "grade words", "sentence"}
    assert scores["findings"]["mitosis"]["keyword"]["sentences"] == 1
    assert json.loads(json.dumps(scores)) == scores                      # JSON as it is
    assert scores["attention sink"]["cell"] == 3                         # 5 of the 7 words look at cell 3
    assert study_scores([torch.zeros(0, 4)], [[]], masks(), grades(1), grid=GRID) == {"findings": {}}
