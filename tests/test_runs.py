"""The training command: a run folder, safe checkpoints, exact resumption, and bad input refused in one line."""
import json
import shutil

import pytest
import torch

from mdnet_utils.__main__ import main
from mdnet_utils.data import loading, make_synthetic_dataset
from mdnet_utils.training import runs
from mdnet_utils.training.runs import evaluate_run, load_run, resolve_configs, train_run

ARGS = dict(epochs=4, batch_size=8, image_size=32, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("runs") / "ds", n_images=36, image_size=32, seed=5,
                                  workers=1)


def _without_time(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_the_run_is_the_course_recipe_for_all_of_the_data_refined_by_file_and_flags():
    model, training = resolve_configs()
    assert [(s.name, s.epochs, s.limit) for s in training.stages] == [
        ("diagnosis", 8, None), ("decoder", 4, None), ("end_to_end", 4, None)]
    assert model.name == "EcNet-20-4" and training.min_count == 3 and training.max_len == 60
    model, training = resolve_configs("resnet-sat", {"model": {"hidden_dim": 64},
                                                     "training": {"stages": [{"name": "decoder", "lr": 1e-3}]}},
                                      epochs=4, lr=5e-4, image_size=32)
    assert model.name == "ResNet-32" and model.hidden_dim == 64 and model.image_size == 32
    assert [(s.name, s.epochs, s.lr) for s in training.stages] == [("decoder", 4, 5e-4)]  # flags win over the file
    with pytest.raises(ValueError, match="optimizer={} is not a section"):
        resolve_configs(file={"optimizer": {}})


def test_a_run_folder_holds_config_vocabulary_checkpoints_and_metrics(data, tmp_path):
    history = train_run(data, tmp_path / "run", **ARGS)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"config.json", "vocab.json", "last.pt", "best.pt", "metrics.jsonl",
                                             "log.txt"}
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["stage"], r["stage_epoch"]) for r in lines] == [
        (1, "diagnosis", 1), (2, "diagnosis", 2), (3, "decoder", 1), (4, "end_to_end", 1)] and len(history) == 4
    ckpt = torch.load(run / "best.pt", weights_only=True)           # plain tensors and containers only
    assert set(ckpt) == {"state_dict", "meta"}
    model, vocab, cfg = load_run(run)
    assert cfg["model"]["backbone"] == "ecnet" and len(vocab) == cfg["model"]["vocab_size"]
    assert [s["epochs"] for s in cfg["training"]["stages"]] == [2, 1, 1]
    scores = evaluate_run(run, data, split="test", meteor=False)
    assert {"diagnosis", "report", "clinical", "consistency"} <= set(scores)  # "attention" once it names findings
    like = scores["report, like for like"]  # each against 4 of the 5 references, generated and references alike
    assert set(like) == {"generated (leave one out)", "references' agreement"}
    assert like["generated (leave one out)"]["BLEU-4"] <= scores["report"]["BLEU-4"]


def test_training_streams_the_train_split_and_holds_only_validation_in_memory(data, tmp_path, monkeypatch):
    held = []
    original = loading.load_report_tiles

    def spy(root, split, *a, **k):
        held.append(split)
        return original(root, split, *a, **k)
    monkeypatch.setattr(runs, "load_report_tiles", spy)
    train_run(data, tmp_path / "run", **{**ARGS, "epochs": 1})
    assert held == ["val"]


def test_a_saved_run_rebuilds_from_its_config_after_a_default_changes(data, tmp_path, monkeypatch):
    """config.json holds the whole ModelConfig: today's defaults in code never decide how a saved run is built."""
    train_run(data, tmp_path / "run", **ARGS)
    before = evaluate_run(tmp_path / "run", data, meteor=False)
    from mdnet_utils.models import config as model_config
    monkeypatch.setitem(model_config.MODEL_PRESETS, "mdnet", model_config.ModelConfig(depth=11, width=1))
    monkeypatch.setattr(model_config.ModelConfig.__init__, "__defaults__", tuple(
        64 if d == 128 else d for d in model_config.ModelConfig.__init__.__defaults__))  # hidden sizes 128 -> 64
    assert model_config.ModelConfig().hidden_dim == 64
    assert evaluate_run(tmp_path / "run", data, meteor=False) == before


def test_an_interrupted_and_resumed_run_ends_with_the_same_weights(data, tmp_path):
    train_run(data, tmp_path / "whole", **ARGS)
    train_run(data, tmp_path / "parts", **ARGS, stop_after=1)             # stops inside a stage ...
    train_run(data, tmp_path / "parts", resume=True, stop_after=2)         # ... again, at the end of the next one
    history = train_run(data, tmp_path / "parts", **ARGS, resume=True)     # the same flags again are fine
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    parts = torch.load(tmp_path / "parts" / "last.pt", weights_only=True)
    assert all(torch.equal(whole["state_dict"][k], parts["state_dict"][k]) for k in whole["state_dict"])
    assert _without_time(history) == _without_time(whole["meta"]["history"])
    assert train_run(data, tmp_path / "parts", resume=True) == history  # a finished run resumes to nothing


def test_a_resumed_run_keeps_its_settings_and_names_a_changed_one(data, tmp_path, capsys):
    train_run(data, tmp_path / "run", **ARGS, stop_after=1)
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--resume", "-q"]
    assert main([*argv, "--lr", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --lr 0.1 differs from the run being resumed") and len(err.splitlines()) == 1
    assert main([*argv, "--epochs", "4", "--image-size", "32"]) == 0


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
    assert train_run(unlabelled, tmp_path / "run", **{**ARGS, "epochs": 2}, resume=True) == history  # same command
    model, _, cfg = load_run(tmp_path / "run")
    assert not model.conditioned and not cfg["model"]["conditioned"]
    assert torch.all(model.encode(torch.rand(2, 3, 32, 32)).cam == 0)


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
    (None, ["--model", "vgg"], "invalid choice: 'vgg'"),
    (None, ["--epochs", "0"], "--epochs 0 is out of range"),
    (None, ["--batch-size", "-1"], "--batch-size -1 is out of range"),
    (None, ["--image-size", "30"], "--image-size 30 is out of range"),
    (None, ["--lr", "0"], "--lr 0.0 is out of range"),
    (None, ["--num-workers", "-2"], "--num-workers -2 is out of range"),
    (None, ["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"], "--device"),
    (lambda r: _drop_split(r, "val"), [], "split 'val' is missing"),
    (_empty, [], "split 'train' is missing or empty"),
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
    err = capsys.readouterr().err
    assert "already holds files: continue that run with --resume" in err
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine"
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "fresh"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path / "used"), "--data", str(data)]) == 2
    assert "not a training run" in capsys.readouterr().err


def test_bf16_autocast_trains_with_finite_losses_and_is_saved(data, tmp_path):
    history = train_run(data, tmp_path / "run", **{**ARGS, "epochs": 1}, bf16=True)
    assert history[0]["stage"] == "end_to_end"
    assert all(torch.isfinite(torch.tensor(v)) for k, v in history[0].items() if k.endswith("_loss"))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["training"]["bf16"] is True


def test_a_config_file_sets_the_run_and_flags_override_it(data, tmp_path):
    (tmp_path / "recipe.yaml").write_text("model:\n  hidden_dim: 32\ntraining:\n  seed: 4\n  stages:\n"
                                          "    - {name: decoder, epochs: 1, batch_size: 4}\n"
                                          "    - {name: end_to_end, epochs: 1, batch_size: 4}\n")
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--config", str(tmp_path / "recipe.yaml"),
            "--image-size", "32", "--batch-size", "8", "-q"]
    assert main(argv) == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["hidden_dim"] == 32 and cfg["training"]["seed"] == 4
    assert [(s["name"], s["batch_size"]) for s in cfg["training"]["stages"]] == [("decoder", 8), ("end_to_end", 8)]
    (tmp_path / "bad.json").write_text(json.dumps({"training": {"stages": [{"name": "decoder", "epochs": 0}]}}))
    assert main([*argv[:4], str(tmp_path / "other"), "--config", str(tmp_path / "bad.json")]) == 2


def test_a_run_that_fails_in_its_first_epoch_leaves_no_folder(data, tmp_path, capsys):
    broken = _broken_copy(data, tmp_path, _corrupt_first_image)
    assert main(["train", "--data", str(broken), "--out", str(tmp_path / "run"), "--image-size", "32",
                 "--num-workers", "1", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable image" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_two_view_cases_without_labels_train_and_evaluate_like_iu_xray(data, tmp_path):
    from mdnet_utils.data.adapters import export_r2gen

    r2gen = export_r2gen(data, tmp_path / "r2gen", views=2)       # frontal + "lateral", no labels, other wording
    train_run(r2gen, tmp_path / "run", **{**ARGS, "epochs": 2})
    model, vocab, cfg = load_run(tmp_path / "run")
    assert not cfg["data"]["labelled"] and "impression" in vocab
    enc = model.encode(torch.rand(2, 2, 3, 32, 32))               # (B, V, 3, H, W): the views are fused
    assert enc.features.shape[0] == 2 and enc.class_logits.shape == (2, 4)
    scores = evaluate_run(tmp_path / "run", r2gen, meteor=False)
    assert "report" in scores and "diagnosis" not in scores and "clinical" not in scores
    assert "consistency" not in scores  # nothing to read the reports against


def test_a_corrupt_checkpoint_is_refused_in_one_line_when_resuming(data, tmp_path, capsys):
    train_run(data, tmp_path / "run", **{**ARGS, "epochs": 1})
    (tmp_path / "run" / "last.pt").write_bytes(b"not a checkpoint")
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--image-size", "32", "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "last.pt: not a checkpoint of this" in err and "corrupt" in err and len(err.splitlines()) == 1


def test_images_of_different_sizes_are_resized_to_the_image_size(data, tmp_path, monkeypatch):
    from PIL import Image

    mixed = tmp_path / "mixed"
    shutil.copytree(data, mixed)
    annotation = json.loads((mixed / "annotation.json").read_text())
    for split in ("train", "val"):
        first = annotation[split][0]["image_path"][0]
        Image.open(mixed / "images" / first).resize((48, 40)).save(mixed / "images" / first)
    seen = []
    original = loading.FileCases.collate
    monkeypatch.setattr(loading.FileCases, "collate", staticmethod(lambda items: seen.append(original(items))
                                                                   or seen[-1]))
    history = train_run(mixed, tmp_path / "run", **{**ARGS, "epochs": 1})
    assert len(history) == 1 and seen
    assert {tuple(b.images.shape[1:]) for b in seen} == {(3, 32, 32)}  # the training batches: resized
    model, vocab, _ = load_run(tmp_path / "run")
    val = loading.load_report_tiles(mixed, "val", vocab, image_size=model.config.image_size)
    assert tuple(val.images.shape[1:]) == (3, 32, 32)                   # and what validation scores


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
