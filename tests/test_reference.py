"""Reference models: trained once per seed, stored as safetensors + JSON, resumable, skipped when up to date,
and checked against today's data and recipe (a stale or tampered file is named)."""
import json
import shutil

import pytest
import safetensors.torch
import torch

from mdnet_utils import Config, reference
from mdnet_utils.__main__ import main
from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.data.grades import FEATURES
from mdnet_utils.data.loading import load_report_tiles, load_tiles, to_input
from mdnet_utils.evaluation.figures import figures_agree, reference_figures, reference_split
from mdnet_utils.evaluation.study_table import rows_agree, stored_rows, variant_row
from mdnet_utils.models.config import MODEL_PRESETS
from mdnet_utils.reference import (
    Reference,
    check_references,
    load_reference,
    recipe_fingerprint,
    train_reference,
)
from mdnet_utils.training.config import Stage, TrainConfig
from mdnet_utils.training.recipes import diagnosis_model

IMAGE = TrainConfig((Stage("diagnosis", epochs=2, lr=3e-3, batch_size=16),), seed=0)
REPORTS = TrainConfig((Stage("decoder", epochs=1, lr=3e-3, batch_size=16, clip=5.0, augment=False),
                       Stage("end_to_end", epochs=1, lr=2e-3, batch_size=16, clip=5.0, reports_per_tile=2)),
                      seed=0, min_count=1, max_len=60)


@pytest.fixture
def tiny(monkeypatch):
    """A registry of two tiny references: an image model, and a report generator starting from it."""
    entries = {
        "tiny-image": Reference("tiny-image", diagnosis_model(8).replace(image_size=32), IMAGE, seeds=(0, 1)),
        "tiny-reports": Reference("tiny-reports", MODEL_PRESETS["resnet-sat"].replace(
            depth=8, vocab_size=4, num_classes=4, image_size=32, hidden_dim=32, attention_dim=32, embed_dim=16),
            REPORTS, seeds=(0,), start_from="tiny-image")}
    monkeypatch.setattr(reference, "REGISTRY", entries)
    return entries


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("reference") / "ds", n_images=36, image_size=32, seed=5,
                                  workers=1)


def _weights(path):
    return safetensors.torch.load_file(str(path))


def test_a_reference_is_safetensors_and_json_whose_figures_come_from_the_stored_weights(tiny, data, tmp_path):
    meta = train_reference("tiny-reports", 0, root=data, out=tmp_path, progress=False)
    for name in ("tiny-image", "tiny-reports"):  # the image model it starts from was trained first
        assert (tmp_path / name / "seed-0.safetensors").is_file() and (tmp_path / name / "seed-0.json").is_file()
    assert not (tmp_path / ".work" / "tiny-reports").exists()  # the resume state is gone once it is done
    stored = _weights(tmp_path / "tiny-reports" / "seed-0.safetensors")
    assert {v.dtype for k, v in stored.items() if v.is_floating_point()} == {torch.float16}
    assert set(meta) >= {"model", "recipe", "fingerprint", "vocab", "versions", "device", "seconds", "history",
                         "best_epoch", "val", "test", "check"}
    assert [r["stage"] for r in meta["history"]] == ["decoder", "end_to_end"]
    assert meta["best_epoch"] == max(meta["history"], key=lambda r: r["val_BLEU-4"])["epoch"]  # chosen on val
    model, vocab, saved = load_reference("tiny-reports", 0, out=tmp_path)
    assert saved == json.loads((tmp_path / "tiny-reports" / "seed-0.json").read_text())
    val = reference_split(data, "val", vocab, 60)
    assert reference_figures(model, val, vocab) == meta["val"]  # recomputed from the float16 file: equal
    assert len(vocab) == model.config.vocab_size


def test_a_report_generator_stores_the_study_scores_of_its_stored_weights_and_gets_them_added_when_missing(
        tiny, data, tmp_path):
    meta = train_reference("tiny-reports", 0, root=data, out=tmp_path, progress=False)
    model, vocab, _ = load_reference("tiny-reports", 0, out=tmp_path)
    tiles = load_report_tiles(data, "test", vocab)
    rows = stored_rows(meta)
    assert set(rows) == {"model", "cam"} and "diagnosis" in rows["model"] and "diagnosis" not in rows["cam"]
    assert meta["study"]["tiles"] == len(tiles)
    assert rows_agree(rows["model"], variant_row(model, tiles, vocab), atol=0)  # recomputed from the float16 file
    assert "study" not in json.loads((tmp_path / "tiny-image" / "seed-0.json").read_text())  # reports only

    path = tmp_path / "tiny-reports" / "seed-0.json"
    older = {k: v for k, v in meta.items() if k != "study"}  # shipped before the study's scores were stored
    path.write_text(json.dumps(older))
    weights = (tmp_path / "tiny-reports" / "seed-0.safetensors").read_bytes()
    _, problems = check_references(root=data, out=tmp_path)
    assert problems == [f"{path}: no stored study scores (add them: python -m mdnet_utils reference tiny-reports)."]
    again = train_reference("tiny-reports", 0, root=data, out=tmp_path, progress=False)
    assert again["study"] == json.loads(json.dumps(meta["study"]))  # added back, the same figures
    assert (tmp_path / "tiny-reports" / "seed-0.safetensors").read_bytes() == weights  # nothing retrained
    assert check_references(root=data, out=tmp_path) == (2, [])
    with pytest.raises(ValueError, match="no stored study scores"):
        stored_rows(older)


def test_a_reference_up_to_date_is_skipped_and_a_killed_one_resumes_to_the_same_weights(tiny, data, tmp_path):
    straight = train_reference("tiny-image", 1, root=data, out=tmp_path / "a", progress=False)
    again = train_reference("tiny-image", 1, root=data, out=tmp_path / "a", progress=False)
    assert again == straight  # skipped: the JSON as it was
    stopped = train_reference("tiny-image", 1, root=data, out=tmp_path / "b", progress=False, stop_after=1)
    assert stopped["stopped_after"] == 1 and (tmp_path / "b" / ".work" / "tiny-image" / "seed-1" / "last.pt").exists()
    resumed = train_reference("tiny-image", 1, root=data, out=tmp_path / "b", progress=False)
    a, b = (_weights(tmp_path / x / "tiny-image" / "seed-1.safetensors") for x in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test"] == straight["test"] and resumed["history"] == straight["history"]


def test_check_passes_fresh_files_and_names_a_stale_or_tampered_one(tiny, data, tmp_path, monkeypatch):
    train_reference("tiny-image", 0, root=data, out=tmp_path, progress=False)
    assert check_references(root=data, out=tmp_path) == (1, [])
    meta = json.loads((tmp_path / "tiny-image" / "seed-0.json").read_text())
    assert set(meta["check"]) == {"accuracy", "class_loss"}

    changed = tmp_path / "changed"
    shutil.copytree(data, changed)
    ann = json.loads((changed / "annotation.json").read_text())
    ann["test"] = ann["test"][1:]
    (changed / "annotation.json").write_text(json.dumps(ann))
    _, problems = check_references(root=changed, out=tmp_path)
    assert len(problems) == 1 and "tiny-image/seed-0.json: stale: the data changed" in problems[0]

    entry = tiny["tiny-image"]
    longer = Reference("tiny-image", entry.model, IMAGE.with_stages(epochs=3), seeds=(0,))
    assert recipe_fingerprint(longer) != recipe_fingerprint(entry)
    tiny["tiny-image"] = longer  # the registry of the fixture
    _, problems = check_references(root=data, out=tmp_path)
    assert "stale: the model or recipe in the registry changed" in problems[0]
    tiny["tiny-image"] = entry

    path = tmp_path / "tiny-image" / "seed-0.safetensors"
    weights = _weights(path)
    weights["fc.weight"] = torch.zeros_like(weights["fc.weight"])  # a tampered file: every logit 0 -> class 0
    path.write_bytes(safetensors.torch.save(weights))
    _, problems = check_references(root=data, out=tmp_path)
    assert len(problems) == 1 and "the stored weights give" in problems[0] and "first 200 test tiles" in problems[0]

    path.write_bytes(b"not safetensors")
    _, problems = check_references(root=data, out=tmp_path)
    assert "seed-0.safetensors: not readable weights" in problems[0]


def test_the_check_forgives_another_cpus_rounding_but_not_a_changed_model():
    stored = {"accuracy": 0.96, "class_loss": 0.0747488514, "crowding": 0.98}
    # measured between two machines: the loss moved by a relative 2e-7, the accuracies not at all
    assert figures_agree({**stored, "class_loss": 0.0747488365}, stored, 200)
    assert figures_agree({**stored, "accuracy": 0.965}, stored, 200)           # one tile of 200 flips
    assert not figures_agree({**stored, "accuracy": 0.95}, stored, 200)        # two tiles
    assert not figures_agree({**stored, "class_loss": 0.0748}, stored, 200)    # a relative 7e-4
    assert not figures_agree({"accuracy": 0.96, "class_loss": 0.0747488514}, stored, 200)  # a figure missing
    assert not figures_agree(stored, None, 200)
    bleu = {"accuracy": 0.9, "class_loss": 0.2, "BLEU-4": 0.61}
    assert figures_agree({**bleu, "BLEU-4": 0.615}, bleu, 200) and not figures_agree({**bleu, "BLEU-4": 0.63}, bleu, 200)


def test_a_grade_reader_reference_is_trained_on_all_six_tasks_and_reports_each_grade(data, tmp_path, monkeypatch):
    grades = reference.REGISTRY["grade-reader"].model.replace(image_size=32)
    monkeypatch.setattr(reference, "REGISTRY", {"tiny-grades": Reference("tiny-grades", grades, IMAGE, seeds=(0,))})
    meta = train_reference("tiny-grades", 0, root=data, out=tmp_path, progress=False)
    assert set(meta["test"]) == {"accuracy", "class_loss", "tasks", *FEATURES}
    # the loss sums six cross-entropies: above the conclusion's alone at the start
    assert meta["history"][0]["train_loss"] > 2.0
    assert meta["best_epoch"] == max(meta["history"], key=lambda r: r["val_tasks"])["epoch"]
    model, vocab, _ = load_reference("tiny-grades", 0, out=tmp_path)
    assert vocab is None and len(model.heads) == 1 + len(FEATURES)
    assert check_references(root=data, out=tmp_path) == (1, [])
    images, _, grade_idx = load_tiles(data, "test")
    with torch.no_grad():
        outs = model(to_input(images, torch.device("cpu")))
    for k, feature in enumerate(FEATURES):  # each figure is that head's accuracy on its grade
        assert meta["test"][feature] == float((outs[k + 1].argmax(1) == grade_idx[:, k]).float().mean())


def test_retrain_trains_from_scratch_into_runs_and_never_touches_the_shipped_files(tiny, data, tmp_path,
                                                                                   monkeypatch):
    shipped = tmp_path / "checkpoints"
    train_reference("tiny-image", 0, root=data, out=shipped, progress=False)
    before = {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()}
    monkeypatch.setattr(reference, "course_data", lambda settings: data)
    monkeypatch.setattr(reference, "config", Config(checkpoints_dir=shipped, runs_dir=tmp_path / "runs"))
    assert reference.load("tiny-image", 0)[2] == json.loads((shipped / "tiny-image" / "seed-0.json").read_text())
    assert not (tmp_path / "runs").exists()  # without MDNET_RETRAIN: the shipped file, nothing trained
    monkeypatch.setattr(reference, "config", Config(checkpoints_dir=shipped, runs_dir=tmp_path / "runs",
                                                    retrain=True))
    _, _, meta = reference.load("tiny-image", 0)
    assert (tmp_path / "runs" / "references" / "tiny-image" / "seed-0.json").is_file()
    assert {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()} == before
    # the same seed and recipe: the same model as shipped (only the time it took differs)
    assert meta == json.loads((shipped / "tiny-image" / "seed-0.json").read_text()) | {"seconds": meta["seconds"]}


def test_a_seed_table_lists_each_shipped_seed_then_the_mean_and_the_sample_sd(tiny, data, tmp_path):
    with pytest.raises(ValueError, match="no seed of 'tiny-image' is shipped"):
        reference.seed_table("tiny-image", out=tmp_path)
    metas = [train_reference("tiny-image", s, root=data, out=tmp_path, progress=False) for s in (0, 1)]
    table = reference.seed_table("tiny-image", ["accuracy"], out=tmp_path)
    assert list(table.index) == ["seed 0", "seed 1", "mean", "sd"] and list(table.columns) == ["accuracy"]
    a, b = (m["test"]["accuracy"] for m in metas)
    assert table.loc["seed 1", "accuracy"] == b and table.loc["mean", "accuracy"] == pytest.approx((a + b) / 2)
    assert table.loc["sd", "accuracy"] == pytest.approx(abs(a - b) / 2 ** 0.5)  # ddof 1: |a - b| / sqrt(2)
    assert set(reference.seed_table("tiny-image", split="val", out=tmp_path).columns) == set(metas[0]["val"])
    # the JSONs read once by a caller give the same table; reading them reads no weights
    for weights in tmp_path.glob("tiny-image/*.safetensors"):
        weights.unlink()
    found = reference.metas("tiny-image", out=tmp_path)
    assert found == dict(enumerate(metas)) and reference.seed_table(found, ["accuracy"]).equals(table)


def test_a_difference_is_measurable_only_beyond_the_sum_of_the_spreads():
    clear = reference.difference([0.96, 0.97, 0.98], [0.90, 0.91, 0.92])
    assert clear["measurable"] and clear["difference"] == pytest.approx(0.06) and clear["sd_a"] == pytest.approx(0.01)
    covered = reference.difference([0.95, 0.97, 0.99], [0.94, 0.95, 0.96])  # 0.02 apart, spreads 0.02 + 0.01
    assert not covered["measurable"] and covered["difference"] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="at least two seeds"):
        reference.difference([0.9], [0.8, 0.7])


def test_the_command_lists_the_registry_and_checks_what_is_shipped(tiny, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reference, "course_data", lambda **kw: data)
    assert main(["reference", "--list", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tiny-image" in out and "shipped none" in out
    assert main(["-q", "reference", "tiny-image", "--seeds", "1", "--out", str(tmp_path)]) == 0
    assert "tiny-image seed 0: test accuracy" in capsys.readouterr().out
    assert main(["reference", "--list", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out   # what is shipped, how long each seed trained, and what the folder weighs
    assert "shipped [0]  trained in " in out and f"{tmp_path}: 2 files, " in out and "(at most 40 MB)" in out
    assert main(["reference", "--check", "--out", str(tmp_path)]) == 0
    assert "1 shipped reference files checked: all load" in capsys.readouterr().out
    (tmp_path / "tiny-image" / "seed-0.json").write_text("{}")
    assert main(["reference", "--check", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed-0.json: not a reference model's description" in err
    assert main(["reference", "nothing", "--out", str(tmp_path)]) == 2
    assert "'nothing' is not a reference model" in capsys.readouterr().err


def test_the_registry_holds_every_model_the_notebooks_compare_with_three_seeds():
    names = set(reference.REGISTRY)
    assert {"resnet-8", "plain-8", "resnet-32", "plain-32", "resnet-32-decoupled", "literal-ecnet-11-6", "ecnet-20-4",
            "grade-reader", "grade-reader-ecnet-20-4", "mdnet", "sat-ecnet-20-4", "mdnet-cam-content",
            "mdnet-cam-slot"} <= names
    for ref in reference.REGISTRY.values():
        assert len(ref.seeds) >= 3 and all(s.limit is None for s in ref.recipe.stages)  # all of the training split
        if ref.start_from is not None:
            assert ref.start_from in names and not reference.REGISTRY[ref.start_from].reports
    mdnet = reference.REGISTRY["mdnet"]
    # like for like: the same backbone, decoder, recipe and start; only the attention differs (Part III's study)
    for name, attention in [("sat-ecnet-20-4", "soft"), ("mdnet-cam-content", "cam-content"),
                            ("mdnet-cam-slot", "cam-slot")]:
        other = reference.REGISTRY[name]
        assert mdnet.model.replace(attention=attention) == other.model and mdnet.recipe == other.recipe
        assert mdnet.start_from == other.start_from and mdnet.seeds == other.seeds
    # the grade reader beside MDNet has its backbone, trained with the image models' recipe
    reader = reference.REGISTRY["grade-reader-ecnet-20-4"]
    assert reader.model.replace(head="shared", grade_sizes=()) == reference.REGISTRY["ecnet-20-4"].model
    assert reader.recipe == reference.REGISTRY["ecnet-20-4"].recipe


def test_eq9_is_trained_like_the_decoupled_variant_and_every_shipped_recipe_is_unchanged_by_it():
    eq9, variant = reference.REGISTRY["resnet-32-eq9"], reference.REGISTRY["resnet-32-decoupled"]
    # notebook 04 compares them seed for seed: only the head's normalisation differs
    assert eq9.model == variant.model.replace(head="eq9") and eq9.model.name == "ResNet-32-eq9"
    assert eq9.recipe == variant.recipe and eq9.seeds == variant.seeds == (0, 1, 2) and eq9.start_from is None
    # the fingerprint of the shipped variant is still the one its JSON carries (an added head leaves it alone)
    meta = json.loads((reference.config.checkpoints_dir / "resnet-32-decoupled" / "seed-0.json").read_text())
    assert meta["fingerprint"]["recipe"] == recipe_fingerprint(variant) != recipe_fingerprint(eq9)
