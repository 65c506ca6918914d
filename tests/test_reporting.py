"""The report and plot commands: cards, per-word attention and reports.json for image files, learning curves as PNG;
bad input exits 2."""
import json
import os
import shutil

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from mdnet_utils.__main__ import main
from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.data.grades import CLASSES
from mdnet_utils.reporting import (NO_DIAGNOSIS, UNCONDITIONED, _per_epoch, plot_run, read_attention,
                                   report_images)
from mdnet_utils.training.runs import train_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run, and two of its dataset's test tiles copied out (one of them as a JPEG)."""
    tmp = tmp_path_factory.mktemp("reporting")
    data = make_synthetic_dataset(tmp / "ds", n_images=36, image_size=32, seed=5, workers=1)
    train_run(data, tmp / "run", epochs=4, batch_size=8, image_size=32, progress=False)
    test = json.loads((data / "annotation.json").read_text())["test"][:2]
    images = [tmp / "tile_a.png", tmp / "tile_b.jpg"]
    shutil.copy(data / "images" / test[0]["image_path"][0], images[0])
    Image.open(data / "images" / test[1]["image_path"][0]).resize((48, 40)).save(images[1])  # another size too
    return data, tmp / "run", images


def _valid_png(path):
    with Image.open(path) as im:
        im.verify()
        return im.format == "PNG"


def test_report_writes_a_card_per_image_and_reports_json(trained, tmp_path, capsys):
    _, run, images = trained
    out = tmp_path / "out"
    assert main(["report", "--run", str(run), *map(str, images), "--out", str(out), "--beam", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith(str(p)) for line, p in zip(lines, images))
    records = json.loads((out / "reports.json").read_text())
    assert [r["image"] for r in records] == [str(p) for p in images]
    for r, p in zip(records, images):
        assert set(r) == {"image", "diagnosis", "confidence", "report", "attention", "png"}
        assert r["diagnosis"] in CLASSES and 0.0 < r["confidence"] <= 1.0 and isinstance(r["report"], str)
        assert r["png"] == f"{p.stem}.png" and _valid_png(out / r["png"])
    assert sorted(f.name for f in out.iterdir()) == ["attention.npz", "reports.json", "tile_a.png", "tile_b.png"]


def test_report_writes_each_words_attention_and_the_cam_on_the_feature_grid(trained, tmp_path):
    _, run, images = trained
    out = tmp_path / "out"
    first = report_images(run, images, out)
    maps = read_attention(out)
    assert sorted(maps) == ["tile_a", "tile_b"]
    for record, stem in zip(first, ("tile_a", "tile_b")):
        words, attention, cam = maps[stem]["words"], maps[stem]["attention"], maps[stem]["cam"]
        # the report's words (punctuation attached in the text), one map each
        assert "".join(w for w in words if w != "<eos>") == record["report"].replace(" ", "") and len(words) > 0
        assert attention.shape == (len(words), *cam.shape) and cam.shape == (4, 4)   # 32 px tiles: a 4 x 4 grid
        assert np.allclose(attention.sum(axis=(1, 2)), 1, atol=1e-5) and (attention >= 0).all()
        assert np.isfinite(cam).all() and cam.std() > 0            # the CAM of a labelled run is a real map
    # a later call on one image rewrites its entry and keeps the other's
    again = report_images(run, images[:1], out)
    kept = read_attention(out)
    assert sorted(kept) == ["tile_a", "tile_b"] and again[0]["report"] == first[0]["report"]
    assert np.array_equal(kept["tile_b"]["attention"], maps["tile_b"]["attention"])
    with np.load(out / "attention.npz", allow_pickle=False) as raw:    # arrays only: readable without pickle
        assert set(raw.files) == {f"{s}/{k}" for s in ("tile_a", "tile_b") for k in ("words", "attention", "cam")}


def test_report_never_writes_over_an_attention_file_it_did_not_write(trained, tmp_path, capsys):
    _, run, images = trained
    out = tmp_path / "out"
    out.mkdir()
    (out / "attention.npz").write_bytes(b"a user's own file")
    assert main(["report", "--run", str(run), str(images[0]), "--out", str(out)]) == 2
    assert "attention.npz" in capsys.readouterr().err
    assert (out / "attention.npz").read_bytes() == b"a user's own file" and sorted(os.listdir(out)) == ["attention.npz"]
    # nor beside an earlier report of its own: a file of another kind by that name is still someone else's
    (out / "attention.npz").unlink()
    report_images(run, images[:1], out)
    (out / "attention.npz").write_bytes(b"replaced by its owner")
    assert main(["report", "--run", str(run), str(images[0]), "--out", str(out)]) == 2
    assert "attention.npz" in capsys.readouterr().err
    assert (out / "attention.npz").read_bytes() == b"replaced by its owner"


def test_a_run_trained_without_labels_gives_no_diagnosis(trained, tmp_path):
    _, run, images = trained
    unlabelled = tmp_path / "run"
    shutil.copytree(run, unlabelled)
    cfg = json.loads((unlabelled / "config.json").read_text())
    cfg["model"]["conditioned"], cfg["data"]["labelled"] = False, False  # as a run on data without labels saves it
    (unlabelled / "config.json").write_text(json.dumps(cfg))
    [record] = report_images(unlabelled, images[:1], tmp_path / "out")
    assert record["diagnosis"] == NO_DIAGNOSIS and record["confidence"] is None
    assert record["attention"] == UNCONDITIONED                 # the card says no diagnosis steers its word maps
    assert _valid_png(tmp_path / "out" / "tile_a.png")


@pytest.mark.parametrize("case, named", [("missing", "nowhere.png"), ("text", "notes.png"), ("not a run", "empty"),
                                         ("beam", "--beam 0")])
def test_bad_report_input_exits_2_in_one_line_and_writes_nothing(trained, tmp_path, capsys, case, named):
    _, run, images = trained
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "empty").mkdir()
    image = {"missing": tmp_path / "nowhere.png", "text": tmp_path / "notes.png"}.get(case, images[0])
    args = ["report", "--run", str(tmp_path / "empty" if case == "not a run" else run), str(images[1]), str(image),
            "--out", str(tmp_path / "out"), "--beam", "0" if case == "beam" else "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_plot_writes_curves_scores_and_the_scores_of_evaluate(trained, tmp_path, capsys):
    data, run, _ = trained
    assert main(["plot", str(run), "--out", str(tmp_path / "plots")]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["curves.png", "scores.png"]
    assert main(["evaluate", "--run", str(run), "--data", str(data)]) == 0
    written = plot_run(run)  # default: into the run folder
    assert [p.name for p in written] == ["curves.png", "scores.png", "scores-test.png"]
    assert all(p.parent == run and _valid_png(p) for p in written)
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "plots")]) == 2  # a folder without metrics.jsonl
    err = capsys.readouterr().err
    assert "metrics.jsonl" in err and err.count("\n") == 1
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')
    assert main(["plot", str(tmp_path / "bad")]) == 2
    assert "line 2" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["metrics.jsonl"]


def test_plot_rewrites_its_own_figures_but_never_a_file_it_did_not_write(trained, tmp_path, capsys):
    _, run, _ = trained
    out = tmp_path / "plots"
    assert main(["plot", str(run), "--out", str(out)]) == 0
    assert main(["plot", str(run), "--out", str(out)]) == 0  # its own figures (their PNG tag says so): replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "curves.png").write_bytes((out / "curves.png").read_bytes()[:100])  # a file of the user's
    Image.new("RGB", (4, 4)).save(mine / "scores.png")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    capsys.readouterr()
    assert main(["plot", str(run), "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "curves.png: exists and was not written by plot" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before


def test_losses_equal_at_every_epoch_share_one_line_named_for_both():
    records = [{"epoch": 1, "stage": "decoder", "train_loss": 2.0, "words_loss": 2.0, "class_loss": 0.5},
               {"epoch": 2, "stage": "end_to_end", "train_loss": 1.0, "words_loss": 1.0, "class_loss": 0.4}]
    ax = Figure().subplots()
    _per_epoch(ax, records, ["class_loss", "train_loss", "words_loss"], "training loss")
    assert [line.get_label() for line in ax.get_lines()] == ["class_loss", "train_loss = words_loss"]
    records[1]["words_loss"] = 0.9                                 # they differ at one epoch: two lines
    ax = Figure().subplots()
    _per_epoch(ax, records, ["train_loss", "words_loss"], "training loss")
    assert [line.get_label() for line in ax.get_lines()] == ["train_loss", "words_loss"]
