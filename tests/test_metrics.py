"""Specification of the report metrics (mdnet_utils.evaluation.metrics): captioning and clinical scores."""
import numpy as np
import pytest
import torch

from mdnet_utils.data import grades as G
from mdnet_utils.data.reports import write_reports
from mdnet_utils.evaluation import metrics
from mdnet_utils.evaluation.metrics import (caption_scores, clinical_scores, clinical_truth, consistency,
                                            java_available, leave_one_out_scores, report_agreement)

BASE_KEYS = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}


def scores(references, hypotheses):
    """caption_scores without METEOR (15 s of Java a call); the METEOR tests below call it directly."""
    return caption_scores(references, hypotheses, meteor=False)


def test_identical_hypothesis_scores_one():
    refs = {"a": ["mild nuclear pleomorphism is present. low grade."],
            "b": ["mitosis is frequent throughout the tissue. high grade."]}
    hyps = {k: v[0] for k, v in refs.items()}
    s = scores(refs, hyps)
    assert set(s) == BASE_KEYS
    assert all(type(v) is float for v in s.values())
    assert s["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(1.0, abs=1e-6)


def test_a_hand_checked_case():
    # 4 words, 3 matching in place, same length: BLEU-1 = 3/4, BLEU-2 = sqrt(3/4 * 2/3),
    # LCS = 3 so ROUGE-L precision = recall = 3/4.
    s = scores({"x": ["mild pleomorphism is present"]},
                       {"x": "mild pleomorphism is absent"})
    assert s["BLEU-1"] == pytest.approx(0.75, abs=1e-6)
    assert s["BLEU-2"] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(0.75, abs=1e-6)


def test_a_disjoint_hypothesis_scores_zero():
    s = scores({"x": ["mild pleomorphism is present"]},
                       {"x": "severe crowding seen everywhere"})
    assert s["BLEU-1"] == pytest.approx(0.0, abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(0.0, abs=1e-6)


def test_texts_are_tokenized_like_the_vocabulary():
    """Case and the spacing of punctuation do not change the scores."""
    refs = {"x": ["Polarity is lost, mitosis frequent."]}
    assert scores(refs, {"x": "polarity is lost , mitosis frequent ."})["BLEU-4"] \
        == pytest.approx(1.0, abs=1e-6)


def test_punctuation_is_dropped_as_the_ptb_tokenizer_does():
    """A hypothesis that differs only in punctuation scores 1; marks never count as matches."""
    refs = {"x": ["conclusion: low grade. polarity is lost, mitosis frequent."]}
    s = scores(refs, {"x": "conclusion low grade; polarity is lost - mitosis frequent!"})
    assert s["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(1.0, abs=1e-6)
    # Only the marks in common: nothing matches (with the marks as tokens BLEU-1 would be 1/3).
    s = scores({"x": ["mild pleomorphism. low grade."]},
                       {"x": "severe crowding. high risk."})
    assert s["BLEU-1"] == pytest.approx(0.0, abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(0.0, abs=1e-6)


def test_mismatched_ids_raise_naming_them():
    refs = {"a": ["low grade."], "b": ["high grade."]}
    with pytest.raises(ValueError, match="'b'"):
        scores(refs, {"a": "low grade."})
    with pytest.raises(ValueError, match="'c'"):
        scores(refs, {"a": "low grade.", "b": "high grade.", "c": "normal."})
    with pytest.raises(ValueError):
        scores({"a": []}, {"a": "low grade."})


def test_nothing_is_printed(capsys):
    scores({"x": ["mild pleomorphism is present"]}, {"x": "mild pleomorphism"})
    assert capsys.readouterr().out == ""


class FakeMeteor:
    """Stands in for pycocoevalcap's Java METEOR: same interface, constant score."""
    def __init__(self):
        import threading
        self.lock = threading.Lock()

    def compute_score(self, gts, res):
        return 0.25, [0.25] * len(res)


def test_meteor_is_in_by_default_where_java_is_on_the_path(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(metrics, "Meteor", FakeMeteor)
    s = caption_scores({"x": ["low grade."]}, {"x": "low grade."})
    assert set(s) == BASE_KEYS | {"METEOR"} and s["METEOR"] == 0.25


def test_meteor_is_left_out_when_declined_and_by_the_ceiling_unless_asked(monkeypatch):
    """METEOR costs a Java start-up: meteor=False skips it, and report_agreement asks for it explicitly."""
    class MustNotStart:
        def __init__(self):
            raise AssertionError("METEOR was started without being asked for")

    monkeypatch.setattr(metrics.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(metrics, "Meteor", MustNotStart)
    assert set(caption_scores({"x": ["low grade."]}, {"x": "low grade."}, meteor=False)) == BASE_KEYS
    assert set(report_agreement([["low grade.", "low grade."]])) == BASE_KEYS


def test_no_meteor_without_java_not_even_a_zero(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    assert set(caption_scores({"x": ["low grade."]}, {"x": "low grade."})) == BASE_KEYS
    assert set(caption_scores({"x": ["low grade."]}, {"x": "low grade."}, meteor=True)) == BASE_KEYS


def test_a_failing_meteor_is_left_out_with_a_warning(monkeypatch):
    class Broken:
        def __init__(self):
            raise OSError("no jvm")

    monkeypatch.setattr(metrics.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(metrics, "Meteor", Broken)
    with pytest.warns(RuntimeWarning, match="METEOR"):
        s = caption_scores({"x": ["low grade."]}, {"x": "low grade."}, meteor=True)
    assert "METEOR" not in s


@pytest.mark.slow  # a Java process: about 7-15 s
@pytest.mark.skipif(not java_available(), reason="METEOR needs java on the PATH")
def test_meteor_with_java():
    """Slow (~15 s): METEOR's Java process loads a 60 MB paraphrase table."""
    refs = {"a": ["mild nuclear pleomorphism is present."], "b": ["mitosis is frequent."]}
    hyps = {"a": "mild nuclear pleomorphism is present.", "b": "normal."}
    s = caption_scores(refs, hyps)
    assert set(s) == BASE_KEYS | {"METEOR"}
    assert 0.0 < s["METEOR"] < 1.0


def test_report_agreement_scores_report_one_against_the_others():
    same = "mild nuclear pleomorphism is present. low grade."
    other = "severe crowding of the nuclei. high grade."
    assert report_agreement([[same, same, other]])["ROUGE-L"] == pytest.approx(1.0, abs=1e-6)
    assert report_agreement([[same, other, other]])["ROUGE-L"] < 0.5
    with pytest.raises(ValueError):
        report_agreement([[same]])


def test_every_choice_averages_the_ceiling_over_which_report_is_the_hypothesis():
    a, b = "mild nuclear pleomorphism is present. low grade.", "severe crowding of the nuclei. high grade."
    reports = [[a, a, b]]
    each = [report_agreement([[r[k]] + r[:k] + r[k + 1:] for r in reports])["ROUGE-L"] for k in range(3)]
    assert report_agreement(reports, every_choice=True)["ROUGE-L"] == pytest.approx(sum(each) / 3)
    assert report_agreement(reports)["ROUGE-L"] == pytest.approx(each[0])  # the default: report 1 only


def test_leave_one_out_scores_a_generated_report_against_as_many_references_as_the_ceiling():
    a, b, c = ("mild nuclear pleomorphism is present. low grade.", "severe crowding of the nuclei. high grade.",
               "no atypia is seen. normal urothelium.")
    references = {"x": [a, b, c]}
    loo = leave_one_out_scores(references, {"x": a}, meteor=False)
    by_hand = [scores({"x": [b, c]}, {"x": a}), scores({"x": [a, c]}, {"x": a}), scores({"x": [a, b]}, {"x": a})]
    assert loo["ROUGE-L"] == pytest.approx(sum(s["ROUGE-L"] for s in by_hand) / 3)
    assert loo["BLEU-4"] < scores(references, {"x": a})["BLEU-4"]  # one reference fewer: no longer a perfect match
    with pytest.raises(ValueError, match="same number"):
        leave_one_out_scores({"x": [a, b], "y": [a, b, c]}, {"x": a, "y": a})


def test_a_sixth_pathologist_scores_the_ceiling_like_for_like_and_above_it_against_all_five():
    """A report drawn like the references (a "sixth pathologist") is what a perfect generator writes: scored
    leave-one-out it meets the every-choice ceiling; scored against all five references, it beats it, which is
    the bias that leave-one-out removes."""
    rng = np.random.default_rng(1)
    reps = []
    for _ in range(200):
        g, in_focus = G.sample_case(rng)
        reps.append(write_reports(g, G.conclusion(g, in_focus), rng, n=6))
    refs = {str(i): r[:5] for i, r in enumerate(reps)}
    sixth = {str(i): r[5] for i, r in enumerate(reps)}
    ceiling = report_agreement([r[:5] for r in reps], every_choice=True)["BLEU-4"]
    like_for_like = leave_one_out_scores(refs, sixth)["BLEU-4"]
    against_all = caption_scores(refs, sixth, meteor=False)["BLEU-4"]
    assert abs(like_for_like - ceiling) < 0.02, (like_for_like, ceiling)
    assert against_all > ceiling + 0.02, (against_all, ceiling)


def test_consistency_is_the_conclusion_rule_applied_to_the_reports_own_grades():
    rng = np.random.default_rng(0)
    cases = [G.sample_case(rng) for _ in range(50)]
    honest = [write_reports(g, G.conclusion(g, f), rng, n=1)[0] for g, f in cases]
    assert consistency(honest) == {"consistency": 1.0, "read": 1.0, "consistency (read)": 1.0}
    g = {f: G.GRADES[f][0] for f in G.FEATURES}  # every grade normal ...
    contradiction = write_reports(g, "low grade", rng, n=1)[0]  # ... and a conclusion the rule never gives
    garbled = "the tissue is pink."
    s = consistency(honest[:2] + [contradiction, garbled])
    assert s == {"consistency": 0.5, "read": 0.75, "consistency (read)": pytest.approx(2 / 3)}
    out_of_focus = write_reports(g, "insufficient information", rng, n=1)[0]
    assert consistency([out_of_focus])["consistency"] == 1.0  # the rule gives it to any grades out of focus


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


# --- clinical scores -------------------------------------------------------------------------

CLINICAL_KEYS = [*G.FEATURES, "conclusion", "features (mean)", "read"]


def test_the_parser_reads_the_grammar_back_completely():
    """Every report the grammar writes scores 1 everywhere: the clinical score measures the
    generator, never the parser."""
    rng = np.random.default_rng(0)
    hyps, truth = {}, {}
    for i in range(200):
        g, in_focus = G.sample_case(rng)
        c = G.conclusion(g, in_focus)
        for j, report in enumerate(write_reports(g, c, rng)):
            hyps[f"{i}/{j}"], truth[f"{i}/{j}"] = report, clinical_truth(g, c)
    s = clinical_scores(hyps, truth)
    assert list(s) == CLINICAL_KEYS
    assert all(type(v) is float for v in s.values())
    assert s == dict.fromkeys(CLINICAL_KEYS, 1.0)


def test_a_hand_checked_case_of_clinical_scores():
    truth = {
        "a": clinical_truth({"pleomorphism": "mild", "crowding": "mild", "polarity": "preserved",
                             "mitosis": "rare", "nucleoli": "inconspicuous"}, "normal"),
        "b": clinical_truth({"pleomorphism": "severe", "crowding": "severe", "polarity": "completely lost",
                             "mitosis": "frequent", "nucleoli": "prominent"}, "high grade"),
        "c": clinical_truth({"pleomorphism": "moderate", "crowding": "moderate", "polarity": "partially lost",
                             "mitosis": "infrequent", "nucleoli": "prominent"}, "low grade"),
    }
    hyps = {
        # all six sections read, mitosis wrong
        "a": "there is mild pleomorphism of the nuclei. there is mild crowding of the nuclei. the polarity "
             "of the cells is preserved. mitotic figures are frequent. the nucleoli are inconspicuous. "
             "conclusion: normal.",
        # the nucleoli sentence is missing: nucleoli wrong, not fully read
        "b": "there is severe pleomorphism of the nuclei. there is severe crowding of the nuclei. the "
             "polarity of the cells is completely lost. mitotic figures are frequent. conclusion: high grade.",
        # garbled: pleomorphism and crowding share a sentence (unreadable), mitosis has no grade; a
        # repeated wording still reads (polarity, nucleoli, conclusion right)
        "c": "there is moderate pleomorphism crowding of the. polarity partially lost partially lost. "
             "mitotic figures are. nucleoli prominent prominent. low grade grade.",
    }
    s = clinical_scores(hyps, truth)
    expected = {"pleomorphism": 2 / 3, "crowding": 2 / 3, "polarity": 1.0, "mitosis": 1 / 3,
                "nucleoli": 2 / 3, "conclusion": 1.0, "features (mean)": 2 / 3, "read": 1 / 3}
    assert s == pytest.approx(expected)


def test_missing_truth_is_skipped_and_no_truth_at_all_is_nan():
    report = ("there is mild pleomorphism of the nuclei. there is mild crowding of the nuclei. the polarity "
              "of the cells is preserved. mitotic figures are rare. the nucleoli are inconspicuous. normal.")
    truth = {"a": {"grades": {"mitosis": "frequent"}, "conclusion": None},       # only mitosis known
             "b": {"grades": {"mitosis": "rare", "pleomorphism": None}, "conclusion": "normal"}}
    s = clinical_scores({"a": report, "b": report}, truth)
    assert s["mitosis"] == 0.5                  # over both images
    assert s["conclusion"] == 1.0               # over "b" only
    for f in ("pleomorphism", "crowding", "polarity", "nucleoli"):
        assert np.isnan(s[f])                   # no ground truth at all
    assert s["features (mean)"] == 0.5          # the mean of the features that have ground truth
    assert s["read"] == 1.0


def test_clinical_truth_reads_names_and_dataset_indices():
    """A ReportDataset item holds 5 grade indices (-1 unknown) and a label index (-1 unknown)."""
    names = {"pleomorphism": "moderate", "crowding": "mild", "polarity": "completely lost",
             "mitosis": "rare", "nucleoli": "prominent"}
    by_name = clinical_truth(names, "high grade")
    assert by_name == {"grades": names, "conclusion": "high grade"}
    assert clinical_truth(torch.tensor([1, 0, 2, 0, 1]), torch.tensor(2)) == by_name
    assert clinical_truth([1, -1, 2, 0, -1], -1) == {
        "grades": {**names, "crowding": None, "nucleoli": None}, "conclusion": None}
    assert clinical_truth({"mitosis": "rare"}, None)["grades"]["crowding"] is None
    for bad in (({"mitosis": "many"}, "normal"), ({"mitoses": "rare"}, "normal"), ([0, 0, 0, 0, 2], 0),
                ([0, 0, 0, 0], 0), ({}, "benign"), ({}, 4)):
        with pytest.raises(ValueError):
            clinical_truth(*bad)


def test_clinical_scores_refuse_mismatched_ids_and_bad_truth():
    truth = {"a": clinical_truth({}, "normal"), "b": clinical_truth({}, "low grade")}
    with pytest.raises(ValueError, match="'b'"):
        clinical_scores({"a": "normal."}, truth)
    with pytest.raises(ValueError, match="'c'"):
        clinical_scores({"a": "normal.", "b": "low grade.", "c": "normal."}, truth)
    with pytest.raises(ValueError, match="no images"):
        clinical_scores({}, {})
    with pytest.raises(ValueError, match="unknown grade"):   # a typo is not a silent 0
        clinical_scores({"a": "normal."}, {"a": {"grades": {"mitosis": "frequnt"}, "conclusion": "normal"}})
