"""Specification of the tokenizer and the vocabulary (mdnet_utils.data.vocab)."""
import json

import pytest
import torch

from mdnet_utils.data.vocab import Vocabulary, detokenize, tokenize
from mdnet_utils.errors import DatasetError

REPORTS = [
    "pleomorphism is mild, crowding is moderate, polarity is preserved. conclusion: low grade.",
    "mitosis is frequent; nucleoli are prominent. conclusion: high grade.",
    "the tile is out of focus (blurred). conclusion: insufficient information.",
]


def test_tokenize_detokenize_round_trip():
    for r in REPORTS:
        assert detokenize(tokenize(r)) == r
    assert tokenize("Mild, Moderate.") == ["mild", ",", "moderate", "."]


def test_special_tokens_have_fixed_ids():
    v = Vocabulary.build(REPORTS)
    assert v.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert all(v.stoi[t] == i for i, t in enumerate(v.itos))
    assert len(v) == len(v.itos) == 4 + len(set(tok for r in REPORTS for tok in tokenize(r)))


def test_build_orders_by_count_then_alphabetically():
    v = Vocabulary.build(["b a c c", "c b"])
    assert v.itos[4:] == ["c", "b", "a"]  # c: 3, b: 2, a: 1
    v = Vocabulary.build(["z y x"])
    assert v.itos[4:] == ["x", "y", "z"]  # all once: alphabetical


def test_build_is_deterministic_and_honours_min_count():
    assert Vocabulary.build(REPORTS) == Vocabulary.build(list(reversed(REPORTS)))
    v = Vocabulary.build(REPORTS, min_count=2)
    assert "conclusion" in v and "blurred" not in v


def test_encode_frames_with_bos_and_eos():
    v = Vocabulary.build(REPORTS)
    ids = v.encode("conclusion: low grade.")
    assert ids[0] == v.bos_id and ids[-1] == v.eos_id
    assert ids[1:-1] == v.encode("conclusion: low grade.", add_special=False)
    assert [v.itos[i] for i in ids[1:-1]] == ["conclusion", ":", "low", "grade", "."]


def test_decode_inverts_encode_exactly():
    v = Vocabulary.build(REPORTS)
    for r in REPORTS:
        assert v.decode(v.encode(r)) == r
        assert v.decode(torch.tensor(v.encode(r))) == r  # a tensor works too


def test_unknown_word_becomes_unk():
    v = Vocabulary.build(REPORTS)
    ids = v.encode("zebra is mild.")
    assert ids[1] == v.unk_id
    assert v.decode(ids) == "<unk> is mild."


def test_decode_stops_at_eos_and_skips_padding():
    v = Vocabulary.build(REPORTS)
    ids = v.encode("conclusion: high grade.") + [v.pad_id, v.pad_id]
    assert v.decode(ids) == "conclusion: high grade."
    assert v.decode(ids + v.encode("mild")) == "conclusion: high grade."  # nothing after eos
    assert v.decode([v.bos_id, v.stoi["mild"]]) == "mild"  # no eos: decode everything
    raw = v.decode(ids, strip_special=False)
    assert raw.startswith("<bos> conclusion") and raw.endswith("<eos> <pad> <pad>")


def test_decode_rejects_ids_outside_the_vocabulary():
    v = Vocabulary.build(REPORTS)
    with pytest.raises(ValueError):
        v.decode([len(v)])


def test_save_load_round_trip(tmp_path):
    v = Vocabulary.build(REPORTS)
    path = tmp_path / "vocab.json"
    v.save(path)
    assert json.loads(path.read_text())["tokens"] == v.itos
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temporary file left
    w = Vocabulary.load(path)
    assert w == v and w.stoi == v.stoi
    v.save(path)  # overwriting works
    assert Vocabulary.load(str(path)) == v


@pytest.mark.parametrize(
    "content",
    [None, "{not json", '["<pad>", "<bos>"]', '{"tokens": ["a", "b"]}', '{"tokens": ["<pad>", "<bos>", "<eos>", "<unk>", "a", "a"]}'],
    ids=["missing", "malformed", "not-a-dict", "no-specials", "duplicates"],
)
def test_load_bad_file_raises_dataset_error_naming_it(tmp_path, content):
    path = tmp_path / "vocab.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError) as info:
        Vocabulary.load(path)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert msg.startswith(str(path) + ":") and msg.endswith(".") and "\n" not in msg
