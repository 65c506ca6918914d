"""Localisation scores on hand-made maps and masks: all mass inside gives 1, a uniform map the mask's area
share; the pointing game, its chance level, ties, tolerance; empty masks, all-zero maps, upsampling, batches.
Then the words of a report that name a finding, and the attention used to write them, scored the same way."""
import math

import numpy as np
import pytest
import torch

from mdnet_utils.data.reports import KEYWORDS, PHRASES, all_sentences
from mdnet_utils.data.vocab import tokenize
from mdnet_utils.evaluation.localisation import (FINDING_MASKS, attention_localisation, finding_words,
                                                 localisation_scores, mass_inside, mass_inside_uniform, pointing_game,
                                                 pointing_game_uniform)


def square_mask(size=8, top=2, left=2, side=3):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[top:top + side, left:left + side] = True
    return m


def test_all_mass_inside_scores_one():
    m = square_mask()
    s = torch.rand(8, 8) * m          # positive inside, zero outside
    s[3, 3] = 5.0                     # the maximum, inside
    assert mass_inside(s, m).item() == pytest.approx(1.0)
    assert pointing_game(s, m).item() == 1.0


def test_a_uniform_map_scores_the_area_share():
    m = square_mask()                 # 9 of 64 pixels
    share = 9 / 64
    for s in (torch.ones(8, 8), torch.full((8, 8), 0.3)):
        assert mass_inside(s, m).item() == pytest.approx(share)
        assert pointing_game(s, m).item() == pytest.approx(share)   # a tie over every pixel, split
    assert mass_inside_uniform(m).item() == pytest.approx(share)
    assert pointing_game_uniform(m).item() == pytest.approx(share)


def test_mass_and_pointing_on_a_hand_made_map():
    m = square_mask()
    s = torch.zeros(8, 8)
    s[2, 2], s[7, 7] = 3.0, 1.0       # 3 inside, 1 outside, maximum inside
    assert mass_inside(s, m).item() == pytest.approx(0.75)
    assert pointing_game(s, m).item() == 1.0
    s[7, 7] = 4.0                     # now the maximum is outside
    assert mass_inside(s, m).item() == pytest.approx(3 / 7)
    assert pointing_game(s, m).item() == 0.0


def test_negative_saliency_is_clipped_away():
    m = square_mask()
    s = -torch.ones(8, 8)             # negative evidence everywhere ...
    s[3, 3] = 2.0                     # ... and one positive point, inside
    assert mass_inside(s, m).item() == pytest.approx(1.0)
    assert pointing_game(s, m).item() == 1.0


def test_all_zero_map_falls_back_to_chance_and_empty_mask_is_nan():
    m = square_mask()
    zero = -torch.rand(8, 8)          # all zero after the ReLU
    assert mass_inside(zero, m).item() == pytest.approx(9 / 64)
    assert pointing_game(zero, m).item() == pytest.approx(9 / 64)
    empty = torch.zeros(8, 8)
    scores = localisation_scores(torch.rand(8, 8), empty)
    assert all(math.isnan(v.item()) for v in scores.values())


def test_tolerance_grows_the_mask():
    m = square_mask()                 # rows and columns 2..4
    s = torch.zeros(8, 8)
    s[5, 3] = 1.0                     # one pixel below the mask
    assert pointing_game(s, m).item() == 0.0
    assert pointing_game(s, m, tolerance=1).item() == 1.0
    assert pointing_game_uniform(m, tolerance=1).item() == pytest.approx(25 / 64)


def test_batches_numpy_channel_axis_and_upsampling():
    masks = torch.stack([square_mask(), torch.zeros(8, 8, dtype=torch.bool), torch.ones(8, 8, dtype=torch.bool)])
    sal = torch.zeros(3, 8, 8)
    sal[0, 3, 3] = 1.0
    sal[2] = torch.rand(8, 8)
    out = localisation_scores(sal.numpy(), masks.float().numpy()[:, None])   # arrays, (B, 1, H, W) masks
    assert out["mass_inside"].shape == (3,)
    assert out["mass_inside"][0].item() == pytest.approx(1.0)
    assert math.isnan(out["mass_inside"][1].item())
    assert out["mass_inside"][2].item() == pytest.approx(1.0)   # the mask is the whole image
    assert out["mass_inside_uniform"][2].item() == 1.0
    # a coarse map on a finer mask is upsampled: a constant map stays constant
    assert mass_inside(torch.ones(2, 2), square_mask()).item() == pytest.approx(9 / 64)
    coarse = torch.tensor([[1.0, 0.0], [0.0, 0.0]])             # the top-left quadrant lit
    quadrant = torch.zeros(8, 8, dtype=torch.bool)
    quadrant[:4, :4] = True
    assert pointing_game(coarse, quadrant).item() == 1.0
    assert mass_inside(coarse, quadrant).item() > 0.5
    # one map scored against several masks
    assert pointing_game(np.ones((8, 8)), masks[[0, 2]]).tolist() == pytest.approx([9 / 64, 1.0])


def test_a_saliency_larger_than_the_mask_is_refused():
    with pytest.raises(ValueError, match="larger than the mask"):
        mass_inside(torch.rand(16, 16), square_mask())


# --- the words that name a finding ---------------------------------------------------------------------------

def words_of(text):
    tokens = tokenize(text)
    return [(tokens[i], f, m) for i, f, m in finding_words(tokens)]


def test_nuclear_findings_lie_in_the_lesion_and_mitoses_in_their_own_mask():
    assert FINDING_MASKS == {"pleomorphism": "lesion", "crowding": "lesion", "polarity": "lesion",
                             "mitosis": "mitosis", "nucleoli": "lesion"}


def test_the_keyword_and_the_grade_wording_are_finding_words():
    assert finding_words(tokenize("there are numerous mitoses.")) == [(2, "mitosis", "mitosis"),
                                                                      (3, "mitosis", "mitosis")]
    # a wording of several words counts whole
    assert words_of("polarity partially lost.") == [("polarity", "polarity", "lesion"),
                                                    ("partially", "polarity", "lesion"),
                                                    ("lost", "polarity", "lesion")]
    assert [w for w, _, _ in words_of("the polarity of the cells is well preserved.")] == ["polarity", "well",
                                                                                          "preserved"]


def test_positions_run_over_the_whole_report_and_the_conclusion_names_no_finding():
    tokens = tokenize("the nucleoli are prominent. there are numerous mitoses. conclusion: high grade.")
    assert finding_words(tokens) == [(1, "nucleoli", "lesion"), (3, "nucleoli", "lesion"),
                                     (7, "mitosis", "mitosis"), (8, "mitosis", "mitosis")]
    assert finding_words(tokenize("conclusion: high grade.")) == []
    assert finding_words(tokenize("normal.")) == []


def test_a_sentence_about_several_features_or_none_names_no_finding():
    assert finding_words(tokenize("there is severe pleomorphism and crowding of the nuclei.")) == []
    assert finding_words(tokenize("there is severe change throughout.")) == []
    assert finding_words([]) == []


def test_in_every_grammar_sentence_the_finding_is_the_keyword_and_the_wording():
    for section, grade, sentence in all_sentences():
        words = words_of(sentence)
        if section == "conclusion":
            assert words == []
            continue
        assert words and {(f, m) for _, f, m in words} == {(section, FINDING_MASKS[section])}
        wording = " ".join(w for w, _, _ in words if not w.startswith(KEYWORDS[section]))
        assert wording in PHRASES[section]["wordings"][grade], sentence


# --- attention on the finding words ------------------------------------------------------------------------------

GRID = (4, 4)                                          # 16 regions, each 4x4 pixels of a 16x16 mask
IMG0 = tokenize("there are numerous mitoses. the nucleoli are prominent. conclusion: high grade.")
IMG1 = tokenize("polarity partially lost. normal.")
LESION_ROWS = ([6, 8], [0, 1, 2])                      # finding words of the lesion, per image
MITOSIS_ROWS = ([2, 3], [])


def attention_masks():
    """The lesion covers regions rows/cols 0-2, the mitosis mask regions rows/cols 2-3: each covers the
    3x3-region neighbourhood that bilinear upsampling spreads a one-region attention over."""
    lesion = torch.zeros(2, 16, 16)
    lesion[:, :12, :12] = 1
    mitosis = torch.zeros(2, 16, 16)
    mitosis[:, 8:, 8:] = 1
    return {"lesion": lesion, "mitosis": mitosis}


def one_hot_attention():
    """Finding words look at one region inside their mask; every other word at the top-right region,
    outside the mitosis mask and half outside the lesion: scoring any of them would lower the scores."""
    alphas = []
    for tokens, lesion_rows, mitosis_rows in zip((IMG0, IMG1), LESION_ROWS, MITOSIS_ROWS):
        a = torch.zeros(len(tokens), 16)
        a[:, 3] = 1.0
        for j in lesion_rows:
            a[j] = 0
            a[j, 5] = 1.0                              # region (1, 1)
        for j in mitosis_rows:
            a[j] = 0
            a[j, 15] = 1.0                             # region (3, 3)
        alphas.append(a)
    return alphas


def test_attention_inside_the_mask_scores_one_against_the_area_share():
    out = attention_localisation(one_hot_attention(), [IMG0, IMG1], attention_masks(), grid=GRID)
    assert set(out) == {"lesion", "mitosis", "all"}
    assert out["lesion"] == pytest.approx({"mass_inside": 1.0, "mass_inside_uniform": 144 / 256,
                                           "ratio": 256 / 144, "pointing_game": 1.0,
                                           "pointing_game_uniform": 144 / 256, "words": 5, "images": 2})
    assert out["mitosis"] == pytest.approx({"mass_inside": 1.0, "mass_inside_uniform": 64 / 256, "ratio": 4.0,
                                            "pointing_game": 1.0, "pointing_game_uniform": 64 / 256,
                                            "words": 2, "images": 1})
    # every scored word counts once in the pooled entry
    assert out["all"]["words"] == 7 and out["all"]["images"] == 2
    assert out["all"]["mass_inside_uniform"] == pytest.approx((5 * 144 + 2 * 64) / 256 / 7)
    assert type(out["all"]["mass_inside"]) is float and type(out["all"]["words"]) is int
    grown = attention_localisation(one_hot_attention(), [IMG0, IMG1], attention_masks(), grid=GRID, tolerance=1)
    assert grown["mitosis"]["pointing_game_uniform"] == pytest.approx(81 / 256)


def test_uniform_attention_scores_the_chance_level():
    alphas = [torch.full((len(t), 16), 1 / 16) for t in (IMG0, IMG1)]
    masks = {name: m.bool() for name, m in attention_masks().items()}           # (B, H, W) bool masks
    for name, s in attention_localisation(alphas, [IMG0, IMG1], masks, grid=GRID).items():
        assert s["mass_inside"] == pytest.approx(s["mass_inside_uniform"]), name
        assert s["ratio"] == pytest.approx(1.0), name
        assert s["pointing_game"] == pytest.approx(s["pointing_game_uniform"]), name


def test_scores_are_means_over_words_of_the_existing_scores():
    torch.manual_seed(0)
    alphas = [torch.softmax(3 * torch.randn(len(t), 16), dim=1) for t in (IMG0, IMG1)]
    masks = attention_masks()
    out = attention_localisation(alphas, [IMG0, IMG1], {n: m[:, None] for n, m in masks.items()}, grid=GRID)
    expected = [mass_inside(alphas[i][j].reshape(GRID), masks["lesion"][i]).item()
                for i in (0, 1) for j in LESION_ROWS[i]]
    assert out["lesion"]["mass_inside"] == pytest.approx(np.mean(expected))
    assert out["mitosis"]["pointing_game"] == pytest.approx(
        np.mean([pointing_game(alphas[0][j].reshape(GRID), masks["mitosis"][0]).item() for j in MITOSIS_ROWS[0]]))


def test_empty_masks_and_absent_mask_names_are_skipped():
    masks = attention_masks()
    masks["lesion"][1] = 0                             # no lesion drawn in image 1
    masks["mitosis"][0] = 0                            # no mitosis in image 0, the only one that names it
    out = attention_localisation(one_hot_attention(), [IMG0, IMG1], masks, grid=GRID)
    assert out["lesion"]["words"] == 2 and out["lesion"]["images"] == 1
    assert out["lesion"]["mass_inside"] == pytest.approx(1.0)
    assert out["mitosis"]["words"] == 0 and out["mitosis"]["images"] == 0
    assert all(math.isnan(out["mitosis"][k]) for k in ("mass_inside", "ratio", "pointing_game"))
    only_lesion = attention_localisation(one_hot_attention(), [IMG0, IMG1], {"lesion": masks["lesion"]}, grid=GRID)
    assert set(only_lesion) == {"lesion", "all"}
    assert only_lesion["all"]["words"] == 2


def test_mismatched_lengths_raise():
    alphas, tokens, masks = one_hot_attention(), [IMG0, IMG1], attention_masks()
    with pytest.raises(ValueError, match="token lists"):
        attention_localisation(alphas, tokens[:1], masks, grid=GRID)
    with pytest.raises(ValueError, match="'lesion' masks hold 1"):
        attention_localisation(alphas, tokens, {"lesion": masks["lesion"][:1]}, grid=GRID)
    with pytest.raises(ValueError, match="one row per token"):
        attention_localisation([alphas[0][:-1], alphas[1]], tokens, masks, grid=GRID)
    with pytest.raises(ValueError, match="one column per region"):
        attention_localisation(alphas, tokens, masks, grid=(2, 4))
