"""Specification of the layout adapters (mdnet_utils.data.adapters).

BCIDR tests write a tiny release by hand in ``tmp_path``: 8 PNG tiles of 8x8 pixels in
``Images/`` and a JSON ``{name: {"caption": [...], "label": ...}}``. Export tests start from a
tiny synthetic data set (24 tiles of 24 pixels), built once for the module.
"""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from mdnet_utils.data import CLASSES, DatasetError, ReportDataset, make_synthetic_dataset, read_annotation
from mdnet_utils.data.adapters import convert_bcidr, convert_bcidr_folder, detect_layout, export_r2gen, findings_report

SIZE = 8
NAMES = [f"tile_{i}" for i in range(8)]
CAPTIONS = ["the nuclei are mildly crowded.", "crowding is mild.", "mild crowding of nuclei.",
            "nuclei crowd a little.", "slight crowding."]


def write_bcidr(folder, labels=None, captions=None, json_name="bcidr.json"):
    """A BCIDR release in ``folder``: PNG tiles (``tile_7`` saved without extension) and its JSON."""
    (folder / "Images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = {}
    for i, name in enumerate(NAMES):
        pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "Images" / (name if i == 7 else f"{name}.png"), format="PNG")
        data[name] = {"caption": list(captions or CAPTIONS)}
        if labels is not None:
            data[name]["label"] = labels[i % len(labels)]
    (folder / json_name).write_text(json.dumps(data))
    return folder / json_name, folder / "Images"


def assert_one_sentence(err, *names):
    """``err`` is a DatasetError whose message is one sentence naming ``names``."""
    msg = str(err)
    assert isinstance(err, DatasetError) and msg.endswith(".") and "\n" not in msg, msg
    for name in names:
        assert name in msg, msg


def assert_nothing_left(out):
    """Nothing at ``out`` and no temporary folder beside it."""
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "data", n_images=24, image_size=24, workers=1)


# -- detect_layout ------------------------------------------------------------------------------


def test_detect_layout_tells_r2gen_from_bcidr(tmp_path, synthetic):
    write_bcidr(tmp_path / "bcidr")
    assert detect_layout(synthetic) == "r2gen"
    assert detect_layout(tmp_path / "bcidr") == "bcidr"


def test_detect_layout_reads_a_bcidr_json_named_annotation_json(tmp_path):
    write_bcidr(tmp_path, json_name="annotation.json")
    assert detect_layout(tmp_path) == "bcidr"


def test_detect_layout_refuses_other_folders_and_missing_paths(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError) as info:
        detect_layout(tmp_path)
    assert_one_sentence(info.value, str(tmp_path), "R2Gen", "BCIDR")
    with pytest.raises(DatasetError) as info:
        detect_layout(tmp_path / "nowhere")
    assert_one_sentence(info.value, str(tmp_path / "nowhere"))


# -- convert_bcidr ------------------------------------------------------------------------------


def test_convert_bcidr_loads_in_every_split_and_the_splits_partition_the_names(tmp_path):
    out = convert_bcidr(*write_bcidr(tmp_path / "src"), tmp_path / "out", val_fraction=0.25, test_fraction=0.25)
    assert out == tmp_path / "out" and detect_layout(out) == "r2gen"
    ids = {split: [ReportDataset(out, split)[i]["id"] for i in range(len(ReportDataset(out, split)))]
           for split in ("train", "val", "test")}
    assert [len(ids[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    assert sorted(sum(ids.values(), [])) == NAMES


def test_convert_bcidr_is_deterministic_for_a_seed(tmp_path):
    src = write_bcidr(tmp_path / "src")
    a, b, c = (convert_bcidr(*src, tmp_path / name, seed=seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert (a / "annotation.json").read_text() == (b / "annotation.json").read_text()
    assert (a / "annotation.json").read_text() != (c / "annotation.json").read_text()


def test_convert_bcidr_keeps_all_captions_and_copies_the_images(tmp_path):
    json_path, images = write_bcidr(tmp_path / "src", captions=CAPTIONS[:3])
    out = convert_bcidr(json_path, images, tmp_path / "out")
    entry = read_annotation(out)["train"][0]
    assert entry["report"] == CAPTIONS[0] and entry["reports"] == CAPTIONS[:3]
    files = {p.name for p in (out / "images").iterdir()}
    assert files == {f"{n}.png" for n in NAMES[:7]} | {"tile_7"}  # found with and without extension
    copy = out / "images" / "tile_0.png"
    assert not copy.is_symlink() and copy.read_bytes() == (images / "tile_0.png").read_bytes()


def test_convert_bcidr_maps_label_names_and_indices_to_classes(tmp_path):
    out = convert_bcidr(*write_bcidr(tmp_path / "src", labels=["High_Grade", 0, 3, "low grade"]), tmp_path / "out")
    labels = {e["id"]: e["label"] for entries in read_annotation(out).values() for e in entries}
    assert labels["tile_0"] == labels["tile_4"] == "high grade"
    assert labels["tile_1"] == CLASSES[0] and labels["tile_2"] == CLASSES[3] and labels["tile_3"] == "low grade"
    ds = ReportDataset(out, "train")
    assert all(ds[i]["label"] == CLASSES.index(labels[ds[i]["id"]]) for i in range(len(ds)))


def test_convert_bcidr_without_labels_gives_label_minus_one(tmp_path):
    out = convert_bcidr(*write_bcidr(tmp_path / "src"), tmp_path / "out")
    assert all("label" not in e for e in read_annotation(out)["train"])
    assert ReportDataset(out, "train")[0]["label"] == -1


def test_convert_bcidr_folder_finds_the_json_and_the_image_folder(tmp_path):
    write_bcidr(tmp_path / "src")
    out = convert_bcidr_folder(tmp_path / "src", tmp_path / "out", seed=3)
    assert sorted(e["id"] for entries in read_annotation(out).values() for e in entries) == NAMES


def test_convert_bcidr_writes_into_an_existing_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    out = convert_bcidr(*write_bcidr(tmp_path / "src"), tmp_path / "out")
    assert len(ReportDataset(out, "train")) > 0


BAD_JSON = {
    "not-json": ('{"tile_0": {', "bcidr.json"),
    "top-level-list": ('[{"caption": ["a."]}]', "bcidr.json"),
    "empty": ("{}", "bcidr.json"),
    "no-caption": (json.dumps({"tile_0": {"label": 1}}), "'tile_0'"),
    "empty-caption": (json.dumps({"tile_0": {"caption": []}}), "'tile_0'"),
    "caption-not-list": (json.dumps({"tile_0": {"caption": "one string."}}), "'tile_0'"),
    "blank-caption": (json.dumps({"tile_0": {"caption": ["fine.", "  "]}}), "'tile_0'"),
    "missing-image": (json.dumps({"tile_9": {"caption": ["a."]}}), "'tile_9'"),
    "unknown-label": (json.dumps({"tile_0": {"caption": ["a."], "label": "malignant"}}), "'malignant'"),
    "label-out-of-range": (json.dumps({"tile_0": {"caption": ["a."], "label": 4}}), "4"),
}


@pytest.mark.parametrize("text, named", BAD_JSON.values(), ids=BAD_JSON.keys())
def test_bad_bcidr_input_names_the_problem_and_leaves_nothing(tmp_path, text, named):
    json_path, images = write_bcidr(tmp_path / "src")
    json_path.write_text(text)
    with pytest.raises(DatasetError) as info:
        convert_bcidr(json_path, images, tmp_path / "out")
    assert_one_sentence(info.value, named)
    assert_nothing_left(tmp_path / "out")


@pytest.mark.parametrize("val, test", [(-0.1, 0.1), (0.5, 0.5), (0.2, 1.5), ("0.1", 0.1)])
def test_bad_fractions_are_refused(tmp_path, val, test):
    with pytest.raises(DatasetError) as info:
        convert_bcidr(*write_bcidr(tmp_path / "src"), tmp_path / "out", val_fraction=val, test_fraction=test)
    assert_one_sentence(info.value, "val_fraction", "test_fraction")
    assert_nothing_left(tmp_path / "out")


def test_a_non_empty_out_root_is_refused_and_kept(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError) as info:
        convert_bcidr(*write_bcidr(tmp_path / "src"), tmp_path / "out")
    assert_one_sentence(info.value, str(tmp_path / "out"))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_an_error_half_way_through_the_copy_leaves_nothing(tmp_path, monkeypatch):
    src = write_bcidr(tmp_path / "src")
    copies, copyfile = [], shutil.copyfile

    def failing_copy(a, b):  # the fourth copy fails, after three images were written
        if len(copies) == 3:
            raise OSError("disk full")
        copies.append(copyfile(a, b))

    monkeypatch.setattr("mdnet_utils.data.adapters.shutil.copyfile", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        convert_bcidr(*src, tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


def test_convert_bcidr_folder_is_lenient_about_names(tmp_path):
    write_bcidr(tmp_path / "src")
    (tmp_path / "src" / "Images").rename(tmp_path / "src" / "tiles")
    (tmp_path / "src" / "notes").mkdir()  # a folder without images is not a candidate
    (tmp_path / "src" / "vocab.json").write_text('["not", "bcidr"]')  # nor is a JSON of another shape
    out = convert_bcidr_folder(tmp_path / "src", tmp_path / "out")
    assert len(ReportDataset(out, "train")) > 0


def test_convert_bcidr_folder_needs_one_json_and_one_image_folder(tmp_path):
    json_path, images = write_bcidr(tmp_path / "src")
    shutil.copy(json_path, tmp_path / "src" / "again.json")
    with pytest.raises(DatasetError) as info:
        convert_bcidr_folder(tmp_path / "src", tmp_path / "out")
    assert_one_sentence(info.value, str(tmp_path / "src"), "JSON")
    (tmp_path / "src" / "again.json").unlink()
    images.rename(tmp_path / "src" / "a")
    shutil.copytree(tmp_path / "src" / "a", tmp_path / "src" / "b")
    with pytest.raises(DatasetError) as info:
        convert_bcidr_folder(tmp_path / "src", tmp_path / "out")
    assert_one_sentence(info.value, str(tmp_path / "src"), "folders of images")
    assert_nothing_left(tmp_path / "out")


# -- export_r2gen -------------------------------------------------------------------------------


def test_export_r2gen_rewrites_the_reports_and_drops_the_labels(tmp_path, synthetic):
    out = export_r2gen(synthetic, tmp_path / "out")
    source, exported = read_annotation(synthetic), read_annotation(out)
    assert {s: len(v) for s, v in exported.items()} == {s: len(v) for s, v in source.items()}
    for old, new in zip(source["train"], exported["train"]):
        assert set(new) == {"id", "split", "image_path", "report"} and new["id"] == old["id"]
        assert new["report"].startswith("FINDINGS: ") and " IMPRESSION: " in new["report"]
        assert new["report"] == findings_report(old["grades"], old["label"], old["id"])
    assert len({e["report"] for e in exported["train"]}) > 1
    ds = ReportDataset(out, "train")
    assert ds[0]["label"] == -1 and ds[0]["image"].shape == (3, 24, 24)


def test_export_r2gen_keeps_labels_when_asked(tmp_path, synthetic):
    out = export_r2gen(synthetic, tmp_path / "out", keep_labels=True)
    source = {e["id"]: e["label"] for e in read_annotation(synthetic)["val"]}
    assert {e["id"]: e["label"] for e in read_annotation(out)["val"]} == source


def test_export_r2gen_with_two_views_adds_the_mirror_image(tmp_path, synthetic):
    out = export_r2gen(synthetic, tmp_path / "out", views=2)
    entry = read_annotation(out)["test"][0]
    assert len(entry["image_path"]) == 2 and entry["image_path"][1].endswith("_flip.png")
    image = ReportDataset(out, "test")[0]["image"]
    assert image.shape == (2, 3, 24, 24)
    assert torch.equal(image[1], image[0].flip(-1))


def test_export_r2gen_is_atomic_and_leaves_the_source_alone(tmp_path, synthetic):
    before = (synthetic / "annotation.json").read_text()
    shutil.copytree(synthetic, tmp_path / "copy")
    data = read_annotation(tmp_path / "copy")
    data["val"][0]["image_path"] = ["gone.png"]
    (tmp_path / "copy" / "annotation.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError) as info:
        export_r2gen(tmp_path / "copy", tmp_path / "out")
    assert_one_sentence(info.value, "gone.png")
    assert_nothing_left(tmp_path / "out")
    with pytest.raises(ValueError):
        export_r2gen(synthetic, tmp_path / "out", views=3)
    assert (synthetic / "annotation.json").read_text() == before


def test_findings_report_is_deterministic_and_leaves_out_what_is_missing():
    grades = {"pleomorphism": "moderate", "crowding": "severe", "polarity": "partially lost",
              "mitosis": "infrequent", "nucleoli": "prominent"}
    a = findings_report(grades, "high grade", "x1")
    assert a == findings_report(grades, "high grade", "x1")
    assert "moderate nuclear pleomorphism and severe crowding" in a and "partially lost" in a
    assert "IMPRESSION: " in a and "high grade urothelial carcinoma." in a.lower()
    assert len({findings_report(grades, "high grade", f"x{i}") for i in range(20)}) > 3
    assert findings_report({"polarity": "preserved"}, None, "y") in (
        "FINDINGS: Polarity is preserved.", "FINDINGS: Cell polarity is preserved.",
        "FINDINGS: Nuclear polarity is preserved.")
