"""Specification of the captioning metrics (mdnet_utils.metrics)."""
import numpy as np
import pytest

from mdnet_utils import metrics
from mdnet_utils.data import grades as G
from mdnet_utils.data.reports import write_reports
from mdnet_utils.metrics import caption_scores, java_available, report_agreement

BASE_KEYS = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}


def test_identical_hypothesis_scores_one():
    refs = {"a": ["mild nuclear pleomorphism is present. low grade."],
            "b": ["mitosis is frequent throughout the tissue. high grade."]}
    hyps = {k: v[0] for k, v in refs.items()}
    s = caption_scores(refs, hyps)
    assert set(s) == BASE_KEYS
    assert all(type(v) is float for v in s.values())
    assert s["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(1.0, abs=1e-6)


def test_a_hand_checked_case():
    # 4 words, 3 matching in place, same length: BLEU-1 = 3/4, BLEU-2 = sqrt(3/4 * 2/3),
    # LCS = 3 so ROUGE-L precision = recall = 3/4.
    s = caption_scores({"x": ["mild pleomorphism is present"]},
                       {"x": "mild pleomorphism is absent"})
    assert s["BLEU-1"] == pytest.approx(0.75, abs=1e-6)
    assert s["BLEU-2"] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(0.75, abs=1e-6)


def test_a_disjoint_hypothesis_scores_zero():
    s = caption_scores({"x": ["mild pleomorphism is present"]},
                       {"x": "severe crowding seen everywhere"})
    assert s["BLEU-1"] == pytest.approx(0.0, abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(0.0, abs=1e-6)


def test_texts_are_tokenized_like_the_vocabulary():
    """Case and the spacing of punctuation do not change the scores."""
    refs = {"x": ["Polarity is lost, mitosis frequent."]}
    assert caption_scores(refs, {"x": "polarity is lost , mitosis frequent ."})["BLEU-4"] \
        == pytest.approx(1.0, abs=1e-6)


def test_punctuation_is_dropped_as_the_ptb_tokenizer_does():
    """A hypothesis that differs only in punctuation scores 1; marks never count as matches."""
    refs = {"x": ["conclusion: low grade. polarity is lost, mitosis frequent."]}
    s = caption_scores(refs, {"x": "conclusion low grade; polarity is lost - mitosis frequent!"})
    assert s["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(1.0, abs=1e-6)
    # Only the marks in common: nothing matches (with the marks as tokens BLEU-1 would be 1/3).
    s = caption_scores({"x": ["mild pleomorphism. low grade."]},
                       {"x": "severe crowding. high risk."})
    assert s["BLEU-1"] == pytest.approx(0.0, abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(0.0, abs=1e-6)


def test_mismatched_ids_raise_naming_them():
    refs = {"a": ["low grade."], "b": ["high grade."]}
    with pytest.raises(ValueError, match="'b'"):
        caption_scores(refs, {"a": "low grade."})
    with pytest.raises(ValueError, match="'c'"):
        caption_scores(refs, {"a": "low grade.", "b": "high grade.", "c": "normal."})
    with pytest.raises(ValueError):
        caption_scores({"a": []}, {"a": "low grade."})


def test_nothing_is_printed(capsys):
    caption_scores({"x": ["mild pleomorphism is present"]}, {"x": "mild pleomorphism"})
    assert capsys.readouterr().out == ""


def test_no_meteor_unless_asked(monkeypatch):
    """METEOR costs a Java start-up, so it is off by default even where Java is available."""
    import pycocoevalcap.meteor.meteor as m

    class MustNotStart:
        def __init__(self):
            raise AssertionError("METEOR was started without being asked for")

    monkeypatch.setattr(metrics.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(m, "Meteor", MustNotStart)
    assert set(caption_scores({"x": ["low grade."]}, {"x": "low grade."})) == BASE_KEYS
    assert set(report_agreement([["low grade.", "low grade."]])) == BASE_KEYS


def test_no_meteor_without_java(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    assert set(caption_scores({"x": ["low grade."]}, {"x": "low grade."}, meteor=True)) == BASE_KEYS


def test_a_failing_meteor_is_left_out_with_a_warning(monkeypatch):
    import pycocoevalcap.meteor.meteor as m

    class Broken:
        def __init__(self):
            raise OSError("no jvm")

    monkeypatch.setattr(metrics.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(m, "Meteor", Broken)
    with pytest.warns(RuntimeWarning, match="METEOR"):
        s = caption_scores({"x": ["low grade."]}, {"x": "low grade."}, meteor=True)
    assert "METEOR" not in s


@pytest.mark.skipif(not java_available(), reason="METEOR needs java on the PATH")
def test_meteor_with_java():
    """Slow (~15 s): METEOR's Java process loads a 60 MB paraphrase table."""
    refs = {"a": ["mild nuclear pleomorphism is present."], "b": ["mitosis is frequent."]}
    hyps = {"a": "mild nuclear pleomorphism is present.", "b": "normal."}
    s = caption_scores(refs, hyps, meteor=True)
    assert set(s) == BASE_KEYS | {"METEOR"}
    assert 0.0 < s["METEOR"] < 1.0


def test_report_agreement_scores_report_one_against_the_others():
    same = "mild nuclear pleomorphism is present. low grade."
    other = "severe crowding of the nuclei. high grade."
    assert report_agreement([[same, same, other]])["ROUGE-L"] == pytest.approx(1.0, abs=1e-6)
    assert report_agreement([[same, other, other]])["ROUGE-L"] < 0.5
    with pytest.raises(ValueError):
        report_agreement([[same]])


def test_the_grammar_agrees_like_pathologists_do():
    """Real pathologists: BLEU-4 0.682, ROUGE-L 0.684, CIDEr 1.74 (see reports.py); the grammar
    measures 0.68, 0.71, 1.69 on these 200 images. A broken grammar or scorer is off."""
    rng = np.random.default_rng(0)
    reps = []
    for _ in range(200):
        g, in_focus = G.sample_case(rng)
        reps.append(write_reports(g, G.conclusion(g, in_focus), rng))
    s = report_agreement(reps)
    assert "METEOR" not in s
    assert 0.64 < s["BLEU-4"] < 0.72
    assert 0.64 < s["ROUGE-L"] < 0.74
    assert 1.45 < s["CIDEr"] < 2.0
