"""Retrieval by symptom description (``evaluation.retrieval.rank_by_query``): each tile's score is the model's
log-likelihood of the query where its own report would say it, and a trained model ranks the tiles the query
describes above the others."""
import pytest
import torch

from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.data.dataset import build_vocab, training_vocab
from mdnet_utils.data.grades import FEATURES, GRADES
from mdnet_utils.data.loading import load_report_tiles, to_input
from mdnet_utils.data.reports import KEYWORDS, PHRASES
from mdnet_utils.evaluation.reports import Generated, generate_reports
from mdnet_utils.evaluation.retrieval import rank_by_query
from mdnet_utils.models import mdnet
from mdnet_utils.training.engine import train
from mdnet_utils.training.recipes import course_recipe

torch.set_num_threads(1)

QUERY = "mitotic figures are frequent."


def auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """P(a positive tile scores above a negative one), ties counting one half: 0.5 is chance, 1 a perfect ranking."""
    d = scores[positive][:, None] - scores[~positive][None, :]
    return float(((d > 0).float() + 0.5 * (d == 0).float()).mean())


def test_auc_is_one_for_a_perfect_ranking_a_half_for_ties_and_zero_reversed():
    scores, positive = torch.tensor([3.0, 2.0, 1.0, 0.0]), torch.tensor([True, True, False, False])
    assert auc(scores, positive) == 1 and auc(-scores, positive) == 0 and auc(torch.zeros(4), positive) == 0.5
    assert auc(torch.tensor([3.0, 0.0, 1.0, -1.0]), positive) == 0.75


# --- quick: what is scored -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = make_synthetic_dataset(tmp_path_factory.mktemp("retrieval") / "ds", n_images=36, image_size=32, seed=5,
                                  workers=1)
    vocab = build_vocab(root)
    torch.manual_seed(0)
    return vocab, load_report_tiles(root, "test", vocab), mdnet(len(vocab), depth=11, widen_factor=1, image_size=32,
                                                                 hidden_dim=32).eval()


def _generated(words: list[list[str]]) -> Generated:
    """Only ``words`` matters to rank_by_query."""
    n = len(words)
    return Generated(torch.zeros(n, 4), torch.zeros(n, 16), [" ".join(w) for w in words], words,
                     [torch.zeros(len(w), 16) for w in words], torch.ones(n, dtype=torch.bool), (4, 4))


def _start_of_sentence_about(words: list[str], feature: str) -> int | None:
    """Written here again, from the grammar's keywords: where the first sentence about ``feature`` starts."""
    start = 0
    for i, w in enumerate([*words, "."]):
        if w == ".":
            if any(t.startswith(KEYWORDS[feature]) for t in words[start:i]):
                return start
            start = i + 1
    return None


def test_scores_are_one_log_likelihood_per_tile_below_zero(small):
    vocab, tiles, model = small
    gen = generate_reports(model, tiles.images, vocab, max_len=12)
    scores = rank_by_query(model, tiles.images, vocab, QUERY, gen)
    assert scores.shape == (len(tiles),) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all() and (scores < 0).all()


def test_the_query_is_scored_after_the_words_of_the_report_before_its_sentence(small):
    vocab, tiles, model = small
    words = [[vocab.itos[i] for i in vocab.encode(r[0], add_special=False)] for r in tiles.reports]
    starts = [_start_of_sentence_about(w, "mitosis") for w in words]
    assert all(s is not None and s > 0 for s in starts)          # the mitosis sentence is the fourth
    words[1] = words[1][:starts[1]] + words[1][words[1].index(".", starts[1]) + 1:]   # no mitosis sentence: whole
    prefixes = [w[:s] for w, s in zip(words, starts)]
    prefixes[1] = words[1]
    query = vocab.encode(QUERY, add_special=False)
    with torch.no_grad():
        enc = model.encode(to_input(tiles.images, "cpu"))
        expected = model.query_log_likelihood(enc, [[vocab.stoi[w] for w in p] for p in prefixes], query)
        from_start = model.query_log_likelihood(enc, [[] for _ in words], query)
    got = rank_by_query(model, tiles.images, vocab, QUERY, _generated(words))
    assert torch.allclose(got, expected, atol=1e-5), (got, expected)
    assert not torch.allclose(got, from_start, atol=1e-3)                       # the prefix matters
    assert torch.allclose(rank_by_query(model, tiles.images, vocab, QUERY, _generated(words), batch_size=2), got,
                          atol=1e-5)
    # a query about no single feature is scored from the start of the report
    conclusion = rank_by_query(model, tiles.images, vocab, "conclusion: normal.", _generated(words))
    with torch.no_grad():
        assert torch.allclose(conclusion, model.query_log_likelihood(
            enc, [[] for _ in words], vocab.encode("conclusion: normal.", add_special=False)), atol=1e-5)


# --- slow: a trained model retrieves ---------------------------------------------------------------------------
# The course's fast recipe, longer: 4 epochs of diagnosis, 12 of the decoder, 12 end to end, on the 504 train
# tiles of a 720-tile set (32 px; EcNet-11-1, an LSTM of 64): about 30 s of training on one thread. The gallery is
# another 300-tile set (another seed: other patients). Measured for the seeds 0-7 of the model and of training,
# on the renderer whose lesions cover 22-38 % of a tile, the AUC of the tiles graded severe against the rest:
#   query "... severe pleomorphism ...":  trained 0.89 0.97 0.77 0.95 0.90 0.92 0.88 0.88;
#                                         untrained 0.47 0.71 0.52 0.77 0.69 0.26 0.67 0.68
#   minus that of "... mild pleomorphism ...": trained 0.16 0.75 0.61 0.70 0.77 0.71 0.75 0.02;
#                                         untrained 0.02 -0.01 -0.07 -0.05 0.01 -0.01 -0.08 0.02
# An untrained network already tells severe pleomorphism apart (bigger, darker nuclei move its features, either
# way): the AUC alone does not show that the query was read, the difference between the two queries does. It
# depends on the seed a great deal (one seed in eight reads both queries alike); seed 0, the one tested, gives
# 0.16, above every untrained model. (On the earlier renderer, with lesions of 62 %, 300 tiles gave differences of
# 0.56-0.93; with the smaller lesions 300 tiles gave 0.12-0.83, too close to chance, hence the larger set.)
# The mitosis query ranks the tiles with frequent mitoses above chance, with a thinner margin: "mitotic figures
# are frequent." gives 0.62 0.48 0.63 0.80 0.62 0.78 0.75 0.67 trained, 0.36-0.60 untrained: only "above chance"
# is asserted for it (seed 0 of this set).
SEVERE, MILD = (PHRASES["pleomorphism"]["frames"][0].format(g=g) + "." for g in ("severe", "mild"))
MIN_AUC, MIN_DIFFERENCE, MIN_MITOSIS_AUC = 0.75, 0.1, 0.55


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retrieval-trained")
    recipe = course_recipe("mdnet", fast=True)
    root = make_synthetic_dataset(tmp / "train", n_images=720, image_size=32, workers=1)
    vocab = training_vocab(root, recipe.min_count)
    tiles = load_report_tiles(root, "train", vocab, max_len=recipe.max_len)
    torch.manual_seed(0)
    model = mdnet(len(vocab), depth=11, widen_factor=1, image_size=32, hidden_dim=64)
    stages = [s.replace(epochs=e) for s, e in zip(recipe.stages, (4, 12, 12))]
    history = train(model, tiles.cases(), stages, seed=0, progress=False)
    gallery_root = make_synthetic_dataset(tmp / "gallery", n_images=300, image_size=32, seed=1, workers=1)
    gallery = [load_report_tiles(gallery_root, split, vocab) for split in ("train", "val", "test")]
    images, grades = torch.cat([g.images for g in gallery]), torch.cat([g.grades for g in gallery])
    return model.eval(), vocab, history, images, grades


@pytest.mark.slow
def test_a_trained_model_ranks_the_tiles_a_query_describes_above_the_others(trained):
    model, vocab, history, images, grades = trained
    assert SEVERE == "there is severe pleomorphism of the nuclei."
    assert MILD == "there is mild pleomorphism of the nuclei."
    assert history[-1]["stage"] == "end_to_end" and history[-1]["words_loss"] < 1.2, history[-1]  # measured 0.78-0.87
    gen = generate_reports(model, images, vocab, max_len=60)
    severe = grades[:, FEATURES.index("pleomorphism")] == GRADES["pleomorphism"].index("severe")
    assert 30 < int(severe.sum()) < len(images) - 30
    a_severe = auc(rank_by_query(model, images, vocab, SEVERE, gen), severe)
    a_mild = auc(rank_by_query(model, images, vocab, MILD, gen), severe)
    assert a_severe > MIN_AUC, f"AUC {a_severe:.3f} of the severe query (seeds 0-7 measured 0.77-0.97)"
    assert a_severe - a_mild > MIN_DIFFERENCE, (
        f"the severe query ranks the severe tiles no better than the mild one does: AUC {a_severe:.3f} against "
        f"{a_mild:.3f} (seeds 0-7 measured differences of 0.02-0.77, seed 0 0.16; an untrained model -0.08-0.02)")
    frequent = grades[:, FEATURES.index("mitosis")] == GRADES["mitosis"].index("frequent")
    a_mitosis = auc(rank_by_query(model, images, vocab, QUERY, gen), frequent)
    assert a_mitosis > MIN_MITOSIS_AUC, f"AUC {a_mitosis:.3f} of {QUERY!r} (seeds 0-7 measured 0.48-0.80, seed 0 0.62)"
