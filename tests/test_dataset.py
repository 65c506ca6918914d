"""Specification of the image-report dataset (mdnet_utils.data.dataset).

Each test builds a tiny data set by hand in ``tmp_path``: a few 8x8 PNG tiles, masks and an
``annotation.json`` in the R2Gen layout.
"""
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from mdnet_utils.data.dataset import DatasetError, ReportDataset, build_vocab, collate
from mdnet_utils.data.grades import CLASSES, FEATURES
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.errors import DatasetError as DatasetErrorFromErrors

SIZE = 8


def report(label, word="mild"):
    return f"pleomorphism is {word}, crowding is mild. conclusion: {label}."


def entry(id, label="low grade", n_images=1, masks=True, n_reports=5):
    """An annotation entry; its image and mask files are written by ``write_files``."""
    e = {
        "id": id,
        "report": report(label),
        "image_path": [f"{id}_v{v}.png" for v in range(n_images)],
        "split": "",
        "label": label,
        "grades": {"pleomorphism": "moderate", "crowding": "mild", "polarity": "preserved",
                   "mitosis": "rare", "nucleoli": "prominent"},
        "patient": id[:5],
    }
    if n_reports:
        e["reports"] = [report(label, w) for w in ("mild", "moderate", "severe", "mild", "moderate")][:n_reports]
    if masks:
        e["mask_path"] = {"lesion": f"{id}_lesion.png", "mitosis": f"{id}_mitosis.png"}
    return e


def write_files(root, data):
    """Write every image and mask that ``data`` names, and ``annotation.json``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for split, entries in data.items():
        for e in entries:
            e["split"] = split
            for p in e["image_path"]:
                pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(root / "images" / p)
            for p in e.get("mask_path", {}).values():
                pixels = np.where(rng.random((SIZE, SIZE)) < 0.5, 255, 0).astype(np.uint8)
                Image.fromarray(pixels, "L").save(root / "masks" / p)
    (root / "annotation.json").write_text(json.dumps(data, indent=1))


@pytest.fixture
def root(tmp_path):
    """Train: 3 entries with 5 reports and masks; val: 1 entry with 2 views;
    test: 1 entry with no label, grades, masks or "reports", and a word unseen in train."""
    r = tmp_path / "data"
    bare = entry("p0005_t01", n_reports=0, masks=False)
    del bare["label"], bare["grades"]
    bare["report"] = "pleomorphism is zebra. conclusion: normal."
    data = {
        "train": [entry("p0001_t01", "normal"), entry("p0001_t02", "high grade"), entry("p0002_t01")],
        "val": [entry("p0003_t01", "insufficient information", n_images=2)],
        "test": [bare],
    }
    write_files(r, data)
    return r


def edit(root, change):
    """Apply ``change`` to the parsed annotation.json and write it back."""
    path = root / "annotation.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# -- items ----------------------------------------------------------------------------------


def test_item_shapes_and_dtypes(root):
    ds = ReportDataset(root, "train")
    assert len(ds) == 3
    item = ds[0]
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["tokens"].dtype == torch.long and item["tokens"].ndim == 1
    assert item["tokens"][0] == ds.vocab.bos_id and item["tokens"][-1] == ds.vocab.eos_id
    assert ds.vocab.decode(item["tokens"]) == item["report"] == report("normal")
    assert item["id"] == "p0001_t01"
    assert len(item["reports"]) == 5 and item["reports"][0] == report("normal", "mild")


def test_image_pixels_are_the_png_pixels_over_255(root):
    item = ReportDataset(root, "train")[1]
    pixels = np.array(Image.open(root / "images" / "p0001_t02_v0.png"))
    assert torch.equal(item["image"], torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)


def test_labels_and_grades_are_indices(root):
    ds = ReportDataset(root, "train")
    assert [ds[i]["label"] for i in range(3)] == [CLASSES.index(c) for c in ("normal", "high grade", "low grade")]
    grades = ds[0]["grades"]
    assert grades.dtype == torch.long and grades.tolist() == [1, 0, 0, 0, 1]  # FEATURES order
    assert FEATURES[0] == "pleomorphism"


def test_missing_label_grades_masks_and_reports(root):
    item = ReportDataset(root, "test")[0]
    assert item["label"] == -1
    assert item["grades"].tolist() == [-1] * 5
    assert item["masks"] == {}
    assert item["reports"] == [item["report"]]


def test_partial_grades_give_minus_one_where_missing(root):
    edit(root, lambda d: d["train"][0]["grades"].pop("mitosis"))
    assert ReportDataset(root, "train")[0]["grades"].tolist() == [1, 0, 0, -1, 1]


def test_masks_are_binary_float(root):
    masks = ReportDataset(root, "train")[0]["masks"]
    assert set(masks) == {"lesion", "mitosis"}
    for name, m in masks.items():
        assert m.shape == (1, SIZE, SIZE) and m.dtype == torch.float32
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        png = np.array(Image.open(root / "masks" / f"p0001_t01_{name}.png"))
        assert torch.equal(m[0], torch.from_numpy(png == 255).float())


def test_several_views_are_stacked(root):
    item = ReportDataset(root, "val")[0]
    assert item["image"].shape == (2, 3, SIZE, SIZE)


def test_transform_is_applied_to_each_view(root):
    seen = []

    def transform(x):
        seen.append(tuple(x.shape))
        return x * 0 + 0.5

    item = ReportDataset(root, "val", transform)[0]
    assert seen == [(3, SIZE, SIZE)] * 2
    assert torch.all(item["image"] == 0.5)


def test_expand_reports_gives_one_item_per_report(root):
    plain = ReportDataset(root, "train")
    ds = ReportDataset(root, "train", expand_reports=True)
    assert len(ds) == 5 * len(plain) == 15
    first = [ds[i] for i in range(5)]
    assert [it["report"] for it in first] == first[0]["reports"]
    assert all(it["id"] == "p0001_t01" for it in first)
    assert [ds.vocab.decode(it["tokens"]) for it in first] == first[0]["reports"]
    assert len(ReportDataset(root, "test", expand_reports=True)) == 1  # no "reports": just "report"


# -- vocabulary -----------------------------------------------------------------------------


def test_vocab_json_is_built_from_the_train_split_only(root):
    assert not (root / "vocab.json").exists()
    test = ReportDataset(root, "test")  # building any split builds from train
    assert (root / "vocab.json").exists()
    assert "moderate" in test.vocab and "severe" in test.vocab  # from train "reports"
    assert "zebra" not in test.vocab
    assert test[0]["tokens"][3] == test.vocab.unk_id  # <bos> pleomorphism is zebra
    assert Vocabulary.load(root / "vocab.json") == test.vocab == build_vocab(root)


def test_existing_vocab_json_is_used_and_argument_wins(root):
    Vocabulary(["pleomorphism"]).save(root / "vocab.json")
    assert len(ReportDataset(root, "train").vocab) == 5
    own = Vocabulary.build(["zebra"])
    assert ReportDataset(root, "test", vocab=own).vocab is own
    assert Vocabulary.load(root / "vocab.json") == Vocabulary(["pleomorphism"])  # untouched


# -- collate --------------------------------------------------------------------------------


def test_collate_pads_tokens_with_zero(root):
    ds = ReportDataset(root, "train")
    edit(root, lambda d: d["train"][1].update(report="conclusion: high grade."))
    ds = ReportDataset(root, "train", vocab=ds.vocab)
    items = [ds[i] for i in range(3)]
    batch = collate(items)
    lengths = [len(it["tokens"]) for it in items]
    assert batch["lengths"].tolist() == lengths and batch["lengths"].dtype == torch.long
    assert batch["tokens"].shape == (3, max(lengths)) and batch["tokens"].dtype == torch.long
    for row, it in enumerate(items):
        assert torch.equal(batch["tokens"][row, : lengths[row]], it["tokens"])
        assert torch.all(batch["tokens"][row, lengths[row]:] == 0)
    assert lengths[1] < max(lengths)  # the short report really was padded
    assert batch["image"].shape == (3, 3, SIZE, SIZE)
    assert batch["labels"].tolist() == [it["label"] for it in items]
    assert batch["grades"].shape == (3, 5)
    assert {k: v.shape for k, v in batch["masks"].items()} == {"lesion": (3, 1, SIZE, SIZE), "mitosis": (3, 1, SIZE, SIZE)}
    assert batch["ids"] == [it["id"] for it in items]
    assert batch["report"] == [it["report"] for it in items]
    assert batch["reports"] == [it["reports"] for it in items]


def test_collate_keeps_only_masks_every_item_has(root):
    items = [ReportDataset(root, "train")[0], ReportDataset(root, "test")[0]]
    assert collate(items)["masks"] == {}


def test_works_with_a_dataloader(root):
    loader = torch.utils.data.DataLoader(ReportDataset(root, "train"), batch_size=2, collate_fn=collate)
    assert [b["image"].shape[0] for b in loader] == [2, 1]


def test_max_len_truncates_keeping_eos_and_warns_once(root):
    with pytest.warns(UserWarning, match="max_len") as record:
        ds = ReportDataset(root, "train", max_len=5, expand_reports=True)
    assert len(record) == 1
    for i in range(len(ds)):
        tokens = ds[i]["tokens"]
        assert len(tokens) == 5 and tokens[0] == ds.vocab.bos_id and tokens[-1] == ds.vocab.eos_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ReportDataset(root, "train", max_len=100)  # nothing to cut: no warning


# -- bad input ------------------------------------------------------------------------------


def assert_one_sentence(err, *names):
    """``err`` is a DatasetError (a ValueError) whose message is one sentence naming ``names``."""
    assert isinstance(err, DatasetError) and isinstance(err, ValueError)
    msg = str(err)
    assert msg.endswith(".") and "\n" not in msg, msg
    for name in names:
        assert name in msg, msg


def test_dataset_error_is_one_class():
    assert DatasetError is DatasetErrorFromErrors and issubclass(DatasetError, ValueError)


def test_missing_annotation(tmp_path):
    with pytest.raises(DatasetError) as info:
        ReportDataset(tmp_path, "train")
    assert_one_sentence(info.value, str(tmp_path / "annotation.json"))


@pytest.mark.parametrize(
    "text", ['{"train": [', '["train"]', '{"train": {"id": "x"}}'], ids=["malformed", "list", "split-not-list"]
)
def test_bad_annotation_file(root, text):
    (root / "annotation.json").write_text(text)
    with pytest.raises(DatasetError) as info:
        ReportDataset(root, "train")
    assert_one_sentence(info.value, str(root / "annotation.json"))


def test_unknown_split_names_the_available_ones(root):
    with pytest.raises(DatasetError) as info:
        ReportDataset(root, "tset")
    assert_one_sentence(info.value, "annotation.json", "'tset'", "'train'", "'val'", "'test'")


BAD_ENTRIES = {
    "no-report": lambda e: e.pop("report"),
    "empty-report": lambda e: e.update(report=""),
    "blank-report": lambda e: e.update(report="   "),
    "empty-in-reports": lambda e: e["reports"].__setitem__(2, ""),
    "no-image_path": lambda e: e.pop("image_path"),
    "empty-image_path": lambda e: e.update(image_path=[]),
    "missing-image": lambda e: e.update(image_path=["nowhere.png"]),
    "missing-mask": lambda e: e["mask_path"].update(lesion="nowhere.png"),
    "unknown-label": lambda e: e.update(label="very bad"),
    "unknown-grade": lambda e: e["grades"].update(crowding="huge"),
    "unknown-feature": lambda e: e["grades"].update(colour="blue"),
}


@pytest.mark.parametrize("change", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_bad_entry_names_file_and_entry(root, change):
    edit(root, lambda d: change(d["train"][1]))
    with pytest.raises(DatasetError) as info:
        ReportDataset(root, "train")
    assert_one_sentence(info.value, str(root / "annotation.json"), "'p0001_t02'", "'train'")


def test_bad_train_entry_fails_the_vocabulary_build(root):
    edit(root, lambda d: d["train"][2].pop("report"))
    with pytest.raises(DatasetError) as info:
        ReportDataset(root, "val")
    assert_one_sentence(info.value, "annotation.json", "'p0002_t01'", "'train'")


def test_entry_without_id_is_named_by_position(root):
    edit(root, lambda d: d["train"][1].pop("id"))
    with pytest.raises(DatasetError) as info:
        ReportDataset(root, "train")
    assert_one_sentence(info.value, "annotation.json", "#1", "'id'")


def test_duplicate_id(root):
    edit(root, lambda d: d["train"][2].update(id="p0001_t01"))
    with pytest.raises(DatasetError) as info:
        ReportDataset(root, "train")
    assert_one_sentence(info.value, "annotation.json", "'p0001_t01'", "twice")


@pytest.mark.parametrize("kind", ["images", "masks"])
def test_corrupt_file_raises_when_the_item_is_read(root, kind):
    path = root / kind / ("p0001_t02_v0.png" if kind == "images" else "p0001_t02_lesion.png")
    path.write_bytes(path.read_bytes()[:40])  # a truncated PNG
    ds = ReportDataset(root, "train")  # existence is checked, content only on reading
    ds[0]
    with pytest.raises(DatasetError) as info:
        ds[1]
    assert_one_sentence(info.value, str(path), "'p0001_t02'")


def test_corrupt_vocab_json(root):
    (root / "vocab.json").write_text("{")
    with pytest.raises(DatasetError) as info:
        ReportDataset(root, "train")
    assert_one_sentence(info.value, str(root / "vocab.json"))
