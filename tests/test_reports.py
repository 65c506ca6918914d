"""Specification of the report grammar (mdnet_utils.data.reports) and of its parser."""
import numpy as np
import pytest

from mdnet_utils.data import grades as G
from mdnet_utils.data.reports import KEYWORDS, PHRASES, all_sentences, parse_report, write_reports
from mdnet_utils.data.vocab import detokenize, tokenize


def cases(n, seed=0):
    """n (grades, conclusion, reports) triples drawn as the data set draws them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        g, in_focus = G.sample_case(rng)
        c = G.conclusion(g, in_focus)
        out.append((g, c, write_reports(g, c, rng)))
    return out


CASES = cases(300)
ALL_CLASSES_SEEN = {c for _, c, _ in CASES}


def test_the_sample_covers_every_conclusion():
    assert ALL_CLASSES_SEEN == set(G.CLASSES)


def test_five_reports_per_image_by_default_and_n_otherwise():
    assert all(len(reps) == 5 for _, _, reps in CASES)
    g, c, _ = CASES[0]
    assert len(write_reports(g, c, np.random.default_rng(1), n=3)) == 3


def test_reports_are_in_the_tokenizer_normal_form():
    for _, _, reps in CASES:
        for r in reps:
            assert detokenize(tokenize(r)) == r
            assert r == r.lower() and r.endswith(".") and "  " not in r


def test_reports_follow_the_feature_order_and_end_with_the_conclusion():
    for _, c, reps in CASES:
        for r in reps:
            sentences = r[:-1].split(". ")
            assert len(sentences) == len(G.FEATURES) + 1
            for feature, sentence in zip(G.FEATURES, sentences):
                words = tokenize(sentence)
                assert any(w.startswith(KEYWORDS[feature]) for w in words), (feature, sentence)
            assert sentences[-1].endswith(c)


def test_same_seed_same_reports_other_seed_other_reports():
    g, c, _ = CASES[0]
    first = write_reports(g, c, np.random.default_rng(7))
    assert write_reports(g, c, np.random.default_rng(7)) == first
    assert write_reports(g, c, np.random.default_rng(8)) != first


def test_the_reports_of_an_image_are_paraphrases_not_copies():
    distinct = [len(set(reps)) for _, _, reps in CASES]
    assert np.mean(distinct) > 3.5


def test_vocabulary_and_length_are_those_of_the_real_reports():
    """Calibrated to the real reports (112 distinct words, 34 words a report; see reports.py):
    the grammar writes 95 and 32.3 on these images, punctuation not counted."""
    words = [[t for t in tokenize(r) if t.isalnum()] for _, _, reps in CASES for r in reps]
    assert 90 <= len({w for ws in words for w in ws}) <= 120
    assert 30 <= np.mean([len(ws) for ws in words]) <= 38


def test_write_reports_rejects_unknown_grades_and_conclusions():
    g, c, _ = CASES[0]
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        write_reports({**g, "mitosis": "rampant"}, c, rng)
    with pytest.raises(ValueError):
        write_reports(g, "carcinoma", rng)


def test_phrase_bank_has_a_section_per_feature_and_every_grade():
    assert list(PHRASES) == [*G.FEATURES, "conclusion"]
    for f in G.FEATURES:
        assert set(PHRASES[f]["wordings"]) == set(G.GRADES[f])
        for g in G.GRADES[f]:
            assert PHRASES[f]["wordings"][g][0] == g  # the canonical wording is the grade's name
    assert set(PHRASES["conclusion"]["wordings"]) == set(G.CLASSES)


def test_every_sentence_the_grammar_can_write_reads_back_as_its_grade():
    """No sentence of one grade equals, or reads as, a sentence of another grade."""
    for section, grade, sentence in all_sentences():
        parsed = parse_report(sentence)
        values = {**parsed["grades"], "conclusion": parsed["conclusion"]}
        assert values[section] == grade, sentence
        assert all(v is None for s, v in values.items() if s != section), sentence


def test_parse_report_recovers_everything_from_the_grammar_reports():
    for g, c, reps in CASES:
        for r in reps:
            assert parse_report(r) == {"grades": g, "conclusion": c}


@pytest.mark.parametrize("text", [
    "", " ", ".", "....", "!!! ???", "lorem ipsum dolor sit amet", "<unk> <pad> <end>",
    "\x00\n\t\u00e9\u4e2d", "normal. high grade.", "pleomorphism.", "the the the " * 500,
])
def test_parse_report_gives_nones_on_text_it_cannot_read(text):
    parsed = parse_report(text)
    assert parsed == {"grades": {f: None for f in G.FEATURES}, "conclusion": None}


def test_parse_report_reads_what_it_can_of_a_faulty_report():
    g, c, reps = next(x for x in CASES if x[0]["pleomorphism"] != x[0]["crowding"])
    sentences = reps[0][:-1].split(". ")
    other = next(w for w in G.GRADES["mitosis"] if w != g["mitosis"])

    missing = ". ".join(sentences[1:]) + "."  # no pleomorphism sentence
    assert parse_report(missing) == {"grades": {**g, "pleomorphism": None}, "conclusion": c}

    repeated = ". ".join(sentences + [sentences[3]]) + "."  # mitosis said twice, the same way
    assert parse_report(repeated)["grades"] == g
    contradicted = reps[0] + f" mitosis is {other}."  # mitosis said twice, differently
    assert parse_report(contradicted)["grades"] == {**g, "mitosis": None}

    unfinished = reps[0][: reps[0].rindex(".")]  # no final period
    assert parse_report(unfinished) == {"grades": g, "conclusion": c}

    vague = "nuclear pleomorphism is present. polarity is lost. " + sentences[3] + ". low grade."
    parsed = parse_report(vague)
    assert parsed["grades"]["pleomorphism"] is None and parsed["grades"]["polarity"] is None
    assert parsed["grades"]["mitosis"] == g["mitosis"] and parsed["conclusion"] == "low grade"

    merged = f"{g['pleomorphism']} pleomorphism and {g['crowding']} crowding are seen."
    assert parse_report(merged)["grades"]["pleomorphism"] is None
