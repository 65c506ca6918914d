"""The training command: a run folder, safe checkpoints, exact resumption, and bad input refused in one line."""
import json
import shutil

import pytest
import torch

from mdnet_utils.__main__ import main
from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.runs import evaluate_run, load_run, schedule, train_run

ARGS = dict(epochs=4, batch_size=8, image_size=32, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("runs") / "ds", n_images=36, image_size=32, seed=5,
                                  workers=1)


def _without_time(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_the_schedule_is_mdnets_three_stages_in_epochs():
    assert schedule(10, labelled=True) == ["diagnosis"] * 3 + ["decoder"] * 3 + ["end_to_end"] * 4
    assert schedule(4, labelled=False) == ["decoder"] * 2 + ["end_to_end"] * 2
    assert schedule(1, labelled=True) == ["end_to_end"]


def test_a_run_folder_holds_config_vocabulary_checkpoints_and_metrics(data, tmp_path):
    history = train_run(data, tmp_path / "run", **ARGS)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"config.json", "vocab.json", "last.pt", "best.pt", "metrics.jsonl",
                                             "log.txt"}
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in lines] == schedule(4, True) and len(history) == 4
    ckpt = torch.load(run / "best.pt", weights_only=True)           # plain tensors and containers only
    assert set(ckpt) == {"state_dict", "meta"}
    model, vocab, cfg = load_run(run)
    assert cfg["model"] == "mdnet" and len(vocab) == cfg["vocab_size"]
    scores = evaluate_run(run, data, split="test", meteor=False)
    assert {"diagnosis", "report", "clinical"} <= set(scores)   # "attention" too once it writes finding words


def test_an_interrupted_and_resumed_run_ends_with_the_same_weights(data, tmp_path):
    train_run(data, tmp_path / "whole", **ARGS)
    train_run(data, tmp_path / "parts", **ARGS, stop_after=1)             # stops inside the schedule ...
    train_run(data, tmp_path / "parts", **ARGS, resume=True, stop_after=2)  # ... again, in the middle of a stage
    history = train_run(data, tmp_path / "parts", **ARGS, resume=True)
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    parts = torch.load(tmp_path / "parts" / "last.pt", weights_only=True)
    assert all(torch.equal(whole["state_dict"][k], parts["state_dict"][k]) for k in whole["state_dict"])
    assert _without_time(history) == _without_time(whole["meta"]["history"])


def test_without_labels_the_class_loss_is_off_and_the_log_says_so(data, tmp_path):
    unlabelled = tmp_path / "ds"
    shutil.copytree(data, unlabelled)
    annotation = json.loads((unlabelled / "annotation.json").read_text())
    for entries in annotation.values():
        for e in entries:
            e.pop("label", None)
    (unlabelled / "annotation.json").write_text(json.dumps(annotation))
    history = train_run(unlabelled, tmp_path / "run", **{**ARGS, "epochs": 2})
    assert [r["stage"] for r in history] == ["decoder", "end_to_end"]
    assert all("class_loss" not in r for r in history)
    assert "class loss is off" in (tmp_path / "run" / "log.txt").read_text()
    model, _, _ = load_run(tmp_path / "run")
    assert model.unconditioned and torch.all(model.encode(torch.rand(2, 3, 32, 32)).cam == 0)


def _broken_copy(data, tmp_path, edit):
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    edit(broken)
    return broken


def _drop_split(root, split):
    a = json.loads((root / "annotation.json").read_text())
    a.pop(split)
    (root / "annotation.json").write_text(json.dumps(a))


def _empty(root):
    (root / "annotation.json").write_text(json.dumps({"train": [], "val": [], "test": []}))


def _corrupt_first_image(root):
    a = json.loads((root / "annotation.json").read_text())
    (root / "images" / a["train"][0]["image_path"][0]).write_bytes(b"not a png")


@pytest.mark.parametrize("edit, extra, message", [
    (None, ["--model", "vgg"], "unknown model 'vgg'"),
    (None, ["--epochs", "0"], "--epochs 0 is out of range"),
    (None, ["--batch-size", "-1"], "--batch-size -1 is out of range"),
    (None, ["--image-size", "30"], "--image-size 30 is out of range"),
    (lambda r: _drop_split(r, "val"), [], "split 'val' is missing"),
    (_empty, [], "split 'train' is missing or empty"),
    (_corrupt_first_image, [], "not a readable image"),
    (lambda r: (r / "annotation.json").unlink(), [], "annotation.json"),
])
def test_bad_input_is_refused_in_one_line_with_status_2_and_nothing_written(data, tmp_path, capsys, edit, extra,
                                                                            message):
    root = _broken_copy(data, tmp_path, edit) if edit else data
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--image-size", "32", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run.exists()


def test_a_missing_data_folder_or_an_existing_run_is_refused(data, tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    assert "no such data folder" in capsys.readouterr().err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "used")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "fresh"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path / "used"), "--data", str(data)]) == 2
    assert "not a training run" in capsys.readouterr().err


def test_bf16_autocast_trains_with_finite_losses(data, tmp_path):
    history = train_run(data, tmp_path / "run", **{**ARGS, "epochs": 1}, bf16=True)
    assert history[0]["stage"] == "end_to_end"
    assert all(torch.isfinite(torch.tensor(v)) for k, v in history[0].items() if k.endswith("_loss"))


def test_two_view_cases_without_labels_train_and_evaluate_like_iu_xray(data, tmp_path):
    from mdnet_utils.data.adapters import export_r2gen

    r2gen = export_r2gen(data, tmp_path / "r2gen", views=2)       # frontal + "lateral", no labels, other wording
    train_run(r2gen, tmp_path / "run", **{**ARGS, "epochs": 2})
    model, vocab, cfg = load_run(tmp_path / "run")
    assert not cfg["labelled"] and "impression" in vocab
    enc = model.encode(torch.rand(2, 2, 3, 32, 32))               # (B, V, 3, H, W): the views are fused
    assert enc.features.shape[0] == 2 and enc.class_logits.shape == (2, 4)
    scores = evaluate_run(tmp_path / "run", r2gen, meteor=False)
    assert "report" in scores and "diagnosis" not in scores and "clinical" not in scores


def test_a_corrupt_checkpoint_is_refused_in_one_line_when_resuming(data, tmp_path, capsys):
    train_run(data, tmp_path / "run", **{**ARGS, "epochs": 1})
    (tmp_path / "run" / "last.pt").write_bytes(b"not a checkpoint")
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--image-size", "32", "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "last.pt: not a checkpoint of this run, or corrupt" in err and len(err.splitlines()) == 1


def test_images_of_different_sizes_are_resized_to_the_image_size(data, tmp_path):
    from PIL import Image

    mixed = tmp_path / "mixed"
    shutil.copytree(data, mixed)
    first = json.loads((mixed / "annotation.json").read_text())["train"][0]["image_path"][0]
    Image.open(mixed / "images" / first).resize((48, 40)).save(mixed / "images" / first)
    history = train_run(mixed, tmp_path / "run", **{**ARGS, "epochs": 1})
    assert len(history) == 1


def test_the_authors_bcidr_layout_converts_from_the_command_line(data, tmp_path, capsys):
    from mdnet_utils.data import read_annotation

    bcidr = tmp_path / "bcidr"
    (bcidr / "images").mkdir(parents=True)
    captions = {}
    for entry in read_annotation(data)["train"][:8]:
        name = entry["image_path"][0]
        shutil.copy(data / "images" / name, bcidr / "images" / name)
        captions[name] = {"caption": entry["reports"], "label": entry["label"]}
    (bcidr / "captions.json").write_text(json.dumps(captions))
    assert main(["data", "--from-bcidr", str(bcidr), "--out", str(tmp_path / "converted")]) == 0
    assert "converted" in capsys.readouterr().out
    assert sum(len(v) for v in read_annotation(tmp_path / "converted").values()) == 8
