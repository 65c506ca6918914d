"""Training loops for the image models, and checkpoints that are safe to load.

Plain PyTorch: tiles are held in memory as uint8 tensors (a few thousand 64x64 tiles are a few
tens of MB), shuffled by a seeded generator, augmented with flips and right-angle turns (none of
the five features depends on a tile's orientation), and trained with AdamW and a one-cycle
schedule for a fixed number of epochs (never seconds: the same numbers on every machine).

Checkpoints are state_dicts plus a JSON-able ``meta`` dict, written atomically (temporary file,
then rename) and read back with ``torch.load(..., weights_only=True)``: never pickled modules.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from mdnet_utils.data.dataset import ReportDataset

LossFn = Callable[[object, torch.Tensor], torch.Tensor]


def load_tiles(root: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A split in memory: images (N, 3, H, W) uint8, labels (N,) and grades (N, 5) int64."""
    ds = ReportDataset(root, split)
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([(it["image"] * 255).round().to(torch.uint8) for it in items])
    labels = torch.tensor([it["label"] for it in items])
    grades = torch.stack([it["grades"] for it in items])
    return images, labels, grades


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random flip and a random right-angle turn, the same for the whole batch (and every view of a case)."""
    if torch.rand((), generator=gen) < 0.5:
        x = x.flip(-1)
    k = int(torch.randint(0, 4, (), generator=gen))
    return torch.rot90(x, k, dims=(-2, -1))


def to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images (B, 3, H, W), or views (B, V, 3, H, W), as floats in [0, 1] on ``device``."""
    return images.to(device, non_blocking=True).float() / 255.0


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The model's logits for uint8 images, in eval mode, batch by batch, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(to_input(images[i:i + batch_size], device)).cpu()
                      for i in range(0, len(images), batch_size)])


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction of tiles whose arg-max logit is the label."""
    return float((predict(model, images, batch_size).argmax(1) == labels).float().mean())


def fit(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, epochs: int, batch_size: int = 64,
        lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0, loss_fn: LossFn | None = None,
        evaluate: Callable[[nn.Module], dict] | None = None, progress: bool | str = True) -> list[dict]:
    """Train ``model`` in place; returns one record per epoch (mean training loss, and ``evaluate``'s dict).

    ``loss_fn(outputs, targets)`` defaults to cross-entropy; ``evaluate(model)`` (optional) is called
    after every epoch. Runs on the model's device. ``progress`` may be a label for the progress bar.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs}: need at least 1.")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
    history = []
    bar = tqdm(range(epochs), desc=progress if isinstance(progress, str) else "epochs", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(images), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x = augment(to_input(images[idx], device), gen)
            loss = loss_fn(model(x), targets[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        record = {"epoch": epoch + 1, "train_loss": total / n}
        if evaluate is not None:
            record.update(evaluate(model))
        bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k != "epoch"})
        history.append(record)
    return history


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary name beside ``path``, then rename it to ``path``: a crash never leaves
    half a file there. The one way every file of the package (checkpoints, run files, cards) is written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``{"state_dict", "meta"}`` atomically: a crash never leaves half a checkpoint at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: torch.save({"state_dict": state, "meta": meta or {}}, tmp))


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict:
    """Load a checkpoint written by ``save_checkpoint`` into ``model``; returns its ``meta``.

    ``weights_only=True`` refuses anything but tensors and plain containers; a file that is not
    one of ours, or is corrupt, gets a one-sentence ``ValueError`` naming it.
    """
    path = Path(path)
    device = next(model.parameters()).device
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["state_dict"])
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever broke, the sentence names the file
        raise ValueError(f"{path}: not a checkpoint of this model ({type(e).__name__}).") from None
    return ckpt.get("meta", {})


def fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of tensors' bytes: which data a checkpoint was trained on."""
    import hashlib

    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_or_fit(path: str | os.PathLike, model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                tag: str = "", **fit_kwargs) -> list[dict]:
    """``fit`` once and keep the result: later calls with the same data and settings load it instead.

    Training is deterministic, so loading gives the weights retraining would. The checkpoint's
    ``meta`` holds the settings, a fingerprint of the data, and the history; anything different
    (or a checkpoint that cannot be read) means training again. ``tag`` names what the settings cannot
    show (a change of recipe, say, of the ``evaluate`` function): change it and the network retrains. Later notebooks reuse the networks
    an earlier one trained this way, and still run on their own when it has not run.
    """
    settings = {k: v for k, v in fit_kwargs.items()
                if isinstance(v, (int, float, str, bool)) and k != "progress"}  # how it shows is not what it learns
    key = {"tag": tag, "model": type(model).__name__, "n_parameters": sum(p.numel() for p in model.parameters()),
           "data": fingerprint(images, targets), **settings}
    return cached_fit(path, model, key, lambda: fit(model, images, targets, **fit_kwargs))


def cached_fit(path: str | os.PathLike, model: nn.Module, key: dict, run: Callable[[], list[dict]]) -> list[dict]:
    """``run()`` (which trains ``model`` in place and returns its history) once per ``key``; afterwards load.

    The checkpoint at ``path`` keeps ``key`` and the history in its ``meta``; a checkpoint with another key,
    or one that cannot be read, means running again and replacing it. ``key`` must be JSON-able.
    """
    path = Path(path)
    try:  # read the meta first: a mismatched checkpoint must not touch the model's weights
        meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
    except Exception:  # noqa: BLE001 - missing, unreadable or not ours: train (again) and replace it
        meta = {}
    if meta.get("key") == key:
        load_checkpoint(model, path)
        return meta["history"]
    history = run()
    save_checkpoint(model, path, {"key": key, "history": history})
    return history


def fit_diagnosis(model: nn.Module, name: str, *, root: str | os.PathLike, config,
                  device: torch.device | None = None, progress: bool = True) -> list[dict]:
    """Train ``model`` on the diagnosis of the tiles with the course's recipe, or load it if done before.

    The recipe notebooks 01-05 share, so that their networks are comparable: the first
    ``config.pick(1536, 256)`` training tiles, ``config.pick(8, 2)`` epochs, AdamW one-cycle (``fit``);
    accuracy on the first 512 training tiles and on the test split recorded every epoch; the result kept
    in ``runs/diagnosis/{name}-{mode}.pt`` (``load_or_fit``). Seed the model's initialisation before
    building it.
    """
    images, labels, _ = load_tiles(root, "train")
    n_train = config.pick(full=1536, fast=256)
    images, labels = images[:n_train], labels[:n_train]
    test_images, test_labels, _ = load_tiles(root, "test")
    model.to(device or torch.device("cpu"))

    def evaluate(m: nn.Module) -> dict:  # training accuracy on the first 512 training tiles: cheaper, same trend
        return {"train_acc": accuracy(m, images[:512], labels[:512]), "test_acc": accuracy(m, test_images, test_labels)}

    return load_or_fit(Path(config.runs_dir) / "diagnosis" / f"{name}-{config.mode}.pt", model, images, labels,
                       tag="diagnosis-v2", epochs=config.pick(full=8, fast=2), seed=config.seed, evaluate=evaluate,
                       progress=name if progress else False)


def diagnosis_net(depth: int, *, plain: bool, root: str | os.PathLike, config, device: torch.device | None = None,
                  progress: bool = True, decoupled: bool = False) -> tuple[nn.Module, list[dict]]:
    """The course's residual (or plain) CIFAR-style network trained on the diagnosis of the tiles.

    Notebook 01 trains these (ResNet-8/32 and their plain twins) and notebooks 02-05 take them apart;
    they all call this function, so they share one recipe (``fit_diagnosis``) and one training run:
    pre-activation blocks, stride-2 stem, seeded initialisation. ``decoupled=True`` (notebook 04) puts a
    ``DecoupledResNet`` head (Eq. (9)) on the same backbone, which starts from the shared network's weights.
    """
    from mdnet_utils.data.grades import CLASSES
    from mdnet_utils.models import cifar_resnet

    name = f"{'plain' if plain else 'ResNet'}-{depth}" + ("-decoupled" if decoupled else "")
    torch.manual_seed(config.seed)
    model = cifar_resnet(depth, preact=True, plain=plain, num_classes=len(CLASSES), stem_stride=2)
    if decoupled:  # the backbone is drawn first, so it starts from the shared network's weights
        from mdnet_utils.models.decoupled import DecoupledResNet
        model = DecoupledResNet(model, len(CLASSES))
    history = fit_diagnosis(model, name, root=root, config=config, device=device, progress=progress)
    return model, history
