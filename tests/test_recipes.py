"""The course's recipes run the same whoever runs them: the notebooks' functions and `mdnet train`."""
import torch

from mdnet_utils import Config
from mdnet_utils.data import make_synthetic_dataset
from mdnet_utils.models import ModelConfig
from mdnet_utils.training.recipes import course_recipe, diagnosis_net, report_generator
from mdnet_utils.training.runs import train_run


def test_a_recipe_gives_the_same_weights_bit_for_bit_from_a_notebook_and_from_the_cli(tmp_path):
    """Notebooks 06-07 train MDNet stage by stage from tiles in memory, each stage cached in runs/; the CLI trains
    it in one go, streaming the tiles from disk through worker processes and validating every epoch. Same recipe,
    same seed: the same weights."""
    data = make_synthetic_dataset(tmp_path / "ds", n_images=36, image_size=32, seed=5, workers=1)
    cfg = Config(fast=True, runs_dir=tmp_path / "runs", image_size=32)
    model, vocab, histories = report_generator("mdnet", root=data, config=cfg, until="end_to_end", progress=False)
    recipe = course_recipe("mdnet", fast=True)
    history = train_run(data, tmp_path / "run", config={"training": recipe.to_dict()}, image_size=32, num_workers=2,
                        progress=False)
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    ours = model.state_dict()
    assert list(ours) == list(saved["state_dict"])
    assert all(torch.equal(ours[k].cpu(), saved["state_dict"][k]) for k in ours)
    assert ModelConfig.from_dict(saved["meta"]["model_config"]) == model.config
    losses = [round(r["train_loss"], 6) for r in history]
    assert losses == [round(r["train_loss"], 6) for stage in ("diagnosis", "decoder", "end_to_end")
                      for r in histories[stage]]


def test_a_notebook_stage_is_trained_once_and_then_loaded(tmp_path):
    data = make_synthetic_dataset(tmp_path / "ds", n_images=36, image_size=32, seed=5, workers=1)
    cfg = Config(fast=True, runs_dir=tmp_path / "runs", image_size=32)
    first, h1 = diagnosis_net(8, plain=False, root=data, config=cfg, progress=False)
    stamp = (tmp_path / "runs" / "diagnosis" / "ResNet-8-fast.pt").stat().st_mtime_ns
    again, h2 = diagnosis_net(8, plain=False, root=data, config=cfg, progress=False)
    assert h1 == h2 and (tmp_path / "runs" / "diagnosis" / "ResNet-8-fast.pt").stat().st_mtime_ns == stamp
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert {"stage", "epoch", "train_loss", "train_acc", "test_acc"} <= set(h1[0])
    decoupled, _ = diagnosis_net(8, plain=False, root=data, config=cfg, progress=False, decoupled=True)
    assert (tmp_path / "runs" / "diagnosis" / "ResNet-8-decoupled-fast.pt").exists()
