"""Report generators judged: a split in memory, reports written free-running, every Part III score, retrieval."""
import pytest
import torch

from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.data.dataset import build_vocab
from mdnet_utils.data.loading import load_report_tiles
from mdnet_utils.evaluation.reports import encode_tiles, evaluate_reports, generate_reports
from mdnet_utils.evaluation.retrieval import rank_by_query
from mdnet_utils.models import mdnet


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_synthetic_dataset(tmp_path_factory.mktemp("reports") / "ds", n_images=36, image_size=32, seed=5,
                                  workers=1)
    vocab = build_vocab(root)
    return root, vocab, load_report_tiles(root, "train", vocab), load_report_tiles(root, "test", vocab)


def _model(vocab):
    torch.manual_seed(0)
    return mdnet(len(vocab), depth=11, widen_factor=1, image_size=32, hidden_dim=32)


def test_a_split_in_memory_holds_every_reference_report_as_padded_tokens(data):
    _, vocab, train, _ = data
    n, r, t = train.tokens.shape
    assert n == len(train) == len(train.images) and r == 5
    assert (train.tokens[:, :, 0] == vocab.bos_id).all()
    first = train.tokens[0, 0]
    assert vocab.decode(first) == train.reports[0][0]
    assert set(train.masks) == {"lesion", "mitosis"} and train.masks["lesion"].dtype == torch.bool
    assert train.images.dtype == torch.uint8


def test_generated_reports_come_with_one_attention_map_per_word_and_every_score(data):
    _, vocab, _, test = data
    model = _model(vocab)
    gen = generate_reports(model, test.images, vocab, max_len=12)
    assert len(gen.texts) == len(test) and gen.class_logits.shape == (len(test), 4)
    assert all(a.shape == (len(w), 16) for a, w in zip(gen.alphas, gen.words))
    scores = evaluate_reports(model, test, vocab, generated=gen)
    assert set(scores) == {"diagnosis", "teacher-forced loss", "report", "clinical", "attention", "findings",
                           "attention sink"}
    assert "BLEU-4" in scores["report"] and "features (mean)" in scores["clinical"]
    assert {"lesion", "mitosis"} <= set(scores["attention"])
    sink = scores["attention sink"]
    assert sink["words"] == sum(len(w) for w in gen.words) and sink["uniform"] == 1 / 16
    for parts in scores["findings"].values():   # an untrained model's reports may name findings or not
        assert set(parts) <= {"keyword", "grade words", "sentence"}
        assert all(p["sentences"] >= 1 and 0 <= p["pointing"] <= 1 for p in parts.values())


def test_encoding_tiles_in_batches_equals_encoding_them_at_once(data):
    _, vocab, _, test = data
    model = _model(vocab).eval()
    batched = encode_tiles(model, test.images, batch_size=2)
    with torch.no_grad():
        whole = model.encode(test.images.float() / 255)
    assert torch.allclose(batched.features, whole.features, atol=1e-5)
    assert torch.allclose(batched.cam, whole.cam, atol=1e-5)


def test_retrieval_scores_one_value_per_tile_from_the_model_likelihood(data):
    _, vocab, _, test = data
    model = _model(vocab)
    gen = generate_reports(model, test.images, vocab, max_len=12)
    scores = rank_by_query(model, test.images, vocab, "mitotic figures are frequent.", gen)
    assert scores.shape == (len(test),) and torch.isfinite(scores).all() and (scores < 0).all()
