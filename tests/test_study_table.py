"""The attention study's table (mdnet_utils.evaluation.study_table): one flat row of scores per generator, the CAM
scored as if it were every word's attention, and the variants named by the registry."""
import json
import math
from types import SimpleNamespace

import pytest
import torch

from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.data.dataset import build_vocab
from mdnet_utils.data.grades import FEATURES
from mdnet_utils.data.loading import load_report_tiles
from mdnet_utils.evaluation.reports import Generated, generate_reports
from mdnet_utils.evaluation.study_table import (
    SCORES,
    VARIANTS,
    cam_as_attention,
    cam_row,
    finding_columns,
    rows_agree,
    stored_rows,
    variant_row,
)
from mdnet_utils.models import mdnet
from mdnet_utils.training.registry import REGISTRY


def test_every_variant_is_a_report_generator_of_the_registry_on_one_backbone_and_recipe():
    entries = [REGISTRY[name] for name in VARIANTS]
    assert all(e.reports and e.start_from == "ecnet-20-4" for e in entries)
    assert len({e.recipe for e in entries}) == 1 and len({e.seeds for e in entries}) == 1
    attentions = [e.model.attention for e in entries]
    assert len(set(attentions)) == len(attentions)                       # only the attention differs...
    assert len({e.model.replace(attention="cam") for e in entries}) == 1  # ...and nothing else


def test_the_cam_as_attention_is_its_positive_part_normalised_the_same_for_every_word():
    cam = torch.tensor([[2.0, -1.0, 0.0, 2.0], [-1.0, -2.0, -3.0, -4.0]])
    maps = cam_as_attention(cam, [["a", "b", "c"], ["d"]])
    assert maps[0].shape == (3, 4) and maps[1].shape == (1, 4)
    assert torch.allclose(maps[0], torch.tensor([[0.5, 0.0, 0.0, 0.5]] * 3))
    assert torch.allclose(maps[1], torch.full((1, 4), 0.25))             # no positive mass: a uniform map
    with pytest.raises(ValueError, match="one CAM per report"):
        cam_as_attention(cam, [["a"]])


def test_finding_columns_flatten_each_mask_and_part_and_keep_the_masks_share():
    findings = {"mitosis": {"keyword": {"lift": 3.0, "above_chance": 0.5, "pointing / chance": 4.0,
                                        "pointing_chance": 0.25, "pointing": 1.0, "sentences": 2}}}
    assert finding_columns(findings) == {"mitosis · keyword · lift": 3.0, "mitosis · keyword · above_chance": 0.5,
                                         "mitosis · keyword · pointing / chance": 4.0, "mitosis · share": 0.25}
    assert set(SCORES) == {"lift", "above_chance", "pointing / chance"}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = make_synthetic_dataset(tmp_path_factory.mktemp("study") / "ds", n_images=36, image_size=32, seed=5,
                                  workers=1)
    vocab = build_vocab(root)
    test = load_report_tiles(root, "test", vocab)
    torch.manual_seed(0)
    model = mdnet(len(vocab), depth=11, widen_factor=1, image_size=32, hidden_dim=32)
    gen = generate_reports(model, test.images, vocab, max_len=12)
    return test, gen, variant_row(model, test, vocab, generated=gen), cam_row(gen, test)


def test_a_variants_row_holds_every_score_of_the_study_as_numbers(scored):
    test, gen, row, _ = scored
    for key in ("diagnosis", "BLEU-4", "CIDEr", "consistency", "clinical · conclusion", "clinical · worst feature",
                "sink · mass on the cell", "sink · words whose top cell it is"):
        assert isinstance(row[key], float), key
    assert row["clinical · worst feature"] == min(row[f"clinical · {f}"] for f in FEATURES)
    assert 0 <= row["diagnosis"] <= 1 and 0 <= row["consistency"] <= 1
    assert 1 / 16 <= row["sink · mass on the cell"] <= 1


def test_the_cam_row_scores_the_same_sentences_with_one_map_for_every_part(scored):
    test, gen, row, cams = scored
    assert {k for k in cams if "·" in k and not k.startswith("sink")} == \
           {k for k in row if "·" in k and k.split(" · ")[0] in ("lesion", "mitosis")}
    for mask in {k.split(" · ")[0] for k in cams if not k.startswith("sink")}:
        parts = [cams[f"{mask} · {p} · lift"] for p in ("keyword", "grade words", "sentence")
                 if f"{mask} · {p} · lift" in cams]
        assert parts and max(parts) - min(parts) < 1e-6                  # the CAM does not change with the word


def test_a_cam_on_the_mitosis_scores_as_an_attention_that_looks_there_for_every_word():
    tokens = ["there", "are", "numerous", "mitoses", ".", "high", "grade"]   # one mitosis sentence, then the conclusion
    mask = torch.zeros(1, 1, 8, 8)
    mask[:, :, :4, :4] = 1                                                # cell 0 of the 2 x 2 grid: share 0.25
    grades = torch.zeros(1, len(FEATURES), dtype=torch.long)
    grades[0, FEATURES.index("mitosis")] = 2
    gen = Generated(torch.zeros(1, 4), torch.tensor([[5.0, -1.0, -1.0, -1.0]]), [" ".join(tokens)], [tokens],
                    [torch.full((len(tokens), 4), 0.25)], torch.ones(1, dtype=torch.bool), (2, 2))
    row = cam_row(gen, SimpleNamespace(masks={"mitosis": mask}, grades=grades))
    assert row["mitosis · share"] == 0.25
    assert row["mitosis · keyword · pointing / chance"] == pytest.approx(4.0)
    assert 3.0 < row["mitosis · grade words · lift"] <= 4.0               # bilinear upsampling spreads it a little
    assert row["sink · words whose top cell it is"] == 1.0


def test_rows_agree_up_to_rounding_only():
    row = {"diagnosis": 0.955, "mitosis · keyword · lift": math.nan}
    assert rows_agree(row, {"diagnosis": 0.958, "mitosis · keyword · lift": math.nan})  # NaN is NaN; 0.003 rounding
    assert not rows_agree(row, {"diagnosis": 0.975, "mitosis · keyword · lift": math.nan})  # 0.02: another model
    assert not rows_agree(row, {"diagnosis": 0.955, "mitosis · keyword · lift": 1.0})
    assert not rows_agree(row, {"diagnosis": 0.955})  # a column missing


def test_study_record_stores_nan_as_none_and_stored_rows_reads_it_back(scored):
    test, gen, row, cam = scored
    record = {"name": "x", "seed": 0, "study": {"model": {**row, "never scored": None}, "cam": cam}}
    json.dumps(record["study"], allow_nan=False)  # plain JSON
    back = stored_rows(record)
    assert math.isnan(back["model"]["never scored"]) and rows_agree(back["cam"], cam, atol=0)
