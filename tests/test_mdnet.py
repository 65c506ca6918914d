"""MDNet as a whole: the image model hands the decoder its features and the predicted class's CAM."""
import pytest
import torch

from mdnet_utils.models import (MODEL_PRESETS, CamAttention, CamContentAttention, CamSlotAttention, ReportGenerator,
                                SoftAttention, build_model, class_activation_map, feature_grid, mdnet, mdnet_loss,
                                resnet_sat, sequence_log_likelihood)
from mdnet_utils.models.ecnet import EcNet

V = 20


def _tokens(rows, length=7, seed=0):
    """``rows`` random reports <bos> w... <eos> with different lengths, padded with 0."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(rows, length, dtype=torch.long)
    for r in range(rows):
        n = 2 + r % (length - 2)
        tokens[r, 0] = 1
        tokens[r, 1:n] = torch.randint(4, V, (n - 1,), generator=gen)
        tokens[r, n] = 2
    return tokens


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return mdnet(V, depth=11, widen_factor=1, image_size=32).eval()


def test_mdnet_pairs_the_released_ecnet_with_eq14_attention_on_its_feature_grid(model):
    assert isinstance(model.image_model, EcNet) and isinstance(model.decoder.attention, CamAttention)
    assert model.uses_cam
    assert model.decoder.attention.num_positions == 4 * 4 == feature_grid(32)[0] ** 2


def test_the_baseline_is_a_resnet_with_show_attend_tell_attention():
    torch.manual_seed(0)
    sat = resnet_sat(V, depth=8, image_size=32)
    assert isinstance(sat.decoder.attention, SoftAttention) and not sat.uses_cam
    out = sat(torch.rand(2, 3, 32, 32), _tokens(2))
    assert out["alphas"].shape == (2, 6, 16)


@pytest.mark.parametrize("attention, kind", [("cam-content", CamContentAttention), ("cam-slot", CamSlotAttention)])
def test_the_attention_study_variants_build_on_mdnets_backbone_and_read_its_cam(attention, kind):
    torch.manual_seed(0)
    cfg = MODEL_PRESETS["mdnet"].replace(depth=11, width=1, image_size=32, vocab_size=V, attention=attention)
    net = build_model(cfg).eval()
    assert isinstance(net.image_model, EcNet) and isinstance(net.decoder.attention, kind) and net.uses_cam
    out = net(torch.rand(2, 3, 32, 32), _tokens(2))
    assert out["alphas"].shape == (2, 6, 16) and torch.isfinite(out["word_logits"]).all()


def test_the_cam_is_that_of_the_predicted_class_with_its_gradient_stopped(model):
    x = torch.rand(3, 3, 32, 32)
    enc = model.encode(x)
    y = model.image_model.features(x)
    predicted = model.image_model(x).argmax(1)
    expected = class_activation_map(y, model.image_model.fc.weight, predicted).flatten(1)
    assert torch.allclose(enc.cam, expected, atol=1e-5)
    assert not enc.cam.requires_grad and enc.features.requires_grad is torch.is_grad_enabled()
    assert enc.grid == (4, 4) and enc.features.shape == (3, 16, model.image_model.num_features)


def test_several_reports_per_image_equal_the_image_repeated(model):
    x, tokens = torch.rand(2, 3, 32, 32), _tokens(6)
    together = model(x, tokens)
    one_by_one = model(x.repeat_interleave(3, 0), tokens)
    assert torch.allclose(together["word_logits"], one_by_one["word_logits"], atol=1e-5)
    assert together["class_logits"].shape == (2, 4)
    with pytest.raises(ValueError, match="same number per image"):
        model(x, _tokens(5))


def test_the_loss_is_words_plus_a_tenth_of_the_class_loss(model):
    x, tokens, labels = torch.rand(2, 3, 32, 32), _tokens(2), torch.tensor([0, 3])
    out = model(x, tokens)
    loss, parts = mdnet_loss(out, tokens, labels)
    assert loss.item() == pytest.approx(parts["words"] + 0.1 * parts["class"], rel=1e-5)
    no_labels, parts = mdnet_loss(out, tokens, None)
    assert "class" not in parts and no_labels.item() == pytest.approx(parts["words"], rel=1e-6)
    with_penalty, parts = mdnet_loss(out, tokens, None, attention_weight=2.0)
    assert with_penalty.item() == pytest.approx(parts["words"] + 2.0 * parts["attention"], rel=1e-5)


def test_query_likelihood_is_eq11_summed_over_the_query_words_only(model):
    x = torch.rand(2, 3, 32, 32)
    prefixes, query = [[5, 6, 7], []], [8, 9]
    enc = model.encode(x)
    got = model.query_log_likelihood(enc, prefixes, query)
    for i, prefix in enumerate(prefixes):
        def ll(words):
            tokens = torch.tensor([[1, *words]])
            logits, _ = model.decoder(enc.features[i:i + 1], tokens, enc.cam[i:i + 1])
            return sequence_log_likelihood(logits, tokens)[0]
        expected = ll(prefix + query) - (ll(prefix) if prefix else 0.0)
        assert got[i].item() == pytest.approx(float(expected.detach()), abs=1e-4)


def test_generation_returns_a_report_and_one_attention_map_per_word(model):
    enc, dec = model.generate(torch.rand(2, 3, 32, 32), max_len=9, beam_size=2)
    assert enc.class_logits.shape == (2, 4) and len(dec.tokens) == 2
    for words, alphas in zip(dec.tokens, dec.alphas):
        assert alphas.shape == (len(words), 16)
        assert torch.allclose(alphas.sum(1), torch.ones(len(words)), atol=1e-5)


def test_bad_sizes_and_heads_are_refused_in_one_sentence():
    with pytest.raises(ValueError, match="image_size=4"):
        feature_grid(4)
    with pytest.raises(ValueError, match="linear head"):
        ReportGenerator(EcNet(1, (16, 32, 32), num_classes=0), None)
