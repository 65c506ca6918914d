"""What a trained run says about new images, and how its training went: the ``report`` and ``plot`` commands.

``report_images(run, images, out)``  the run's best model on image files: per image a diagnosis with its
                                     confidence, a generated report and a diagnosis card ``out/<stem>.png``;
                                     ``out/attention.npz`` holds every report's per-word attention and CAM
                                     (``read_attention``); ``out/reports.json`` lists them all.
``plot_run(run, out)``               learning curves from ``run/metrics.jsonl`` (``curves.png``, ``scores.png``)
                                     and a bar chart per ``run/scores-<split>.json`` written by ``evaluate``.

Every input is checked before anything is written (one-sentence ``ValueError``s naming the file or value);
every file is written atomically (temporary name, then ``os.replace``). Matplotlib draws off screen.
"""
from __future__ import annotations

import json
import os
import sys
from io import BytesIO
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from mdnet_utils.data.grades import CLASSES, FEATURES
from mdnet_utils.errors import ConfigError, ImageError
from mdnet_utils.evaluation.localisation import finding_words
from mdnet_utils.evaluation.reports import generate_reports
from mdnet_utils.io import atomic_write, read_image, remove_leftovers, resize_image, write_bytes, write_json
from mdnet_utils.training.runs import load_run
from mdnet_utils.visualise import diagnosis_card

__all__ = ["report_images", "read_attention", "plot_run", "NO_DIAGNOSIS", "CONDITIONED", "UNCONDITIONED",
           "ATTENTION_FILE"]

NO_DIAGNOSIS = "no diagnosis (the run was trained without labels)"
#: What steers a card's word maps, as the card and ``reports.json`` say it.
CONDITIONED = "word maps steered by the CAM of the predicted class (Eq. 14)"
UNCONDITIONED = "word maps not steered by a diagnosis: no labels, so c = 0 in Eq. (14) (the LSTM's state alone)"
STAGE_COLOURS = {"diagnosis": "tab:green", "decoder": "tab:orange", "end_to_end": "tab:purple"}
REPORT_SCORES = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr", "METEOR")


#: The per-word attention of every report in a ``report`` folder (numpy's npz: arrays only, no pickle).
ATTENTION_FILE = "attention.npz"
#: The PNG "Software" tag of every figure these commands write: how a later call knows a file is its own.
SOFTWARE = "mdnet_utils (report, plot)"


def _save_png(fig, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight",
                                                      metadata={"Software": SOFTWARE}))


def _ours(path: Path) -> bool:
    """Whether the file at ``path`` is a PNG that one of these commands wrote (its Software tag says so)."""
    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get("Software") == SOFTWARE
    except (OSError, ValueError, SyntaxError):
        return False


def _refuse_foreign(targets: list[Path], command: str) -> None:
    """One sentence, before anything is written, for a target that exists and that ``command`` did not write."""
    for target in targets:
        if (target.exists() or target.is_symlink()) and not (target.is_file() and _ours(target)):
            raise ValueError(f"{target}: exists and was not written by {command}, so it is left alone (choose "
                             "another out folder).")


def _load_tile(path: Path, size: int) -> torch.Tensor:
    """The image file as an RGB (3, size, size) uint8 tile, read and resized as training reads them
    (``io.read_image``, ``io.resize_image``); a one-sentence error if it is not a readable image."""
    if not path.is_file():
        raise ImageError(path, "a folder, not an image file" if path.is_dir() else "no such image file")
    return resize_image(read_image(path), size)


def _earlier_records(out: Path) -> list[dict]:
    """The records of reports.json that earlier ``report`` calls wrote in ``out`` ([] if there is none that
    reads as one)."""
    try:
        records = json.loads((out / "reports.json").read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("png"), str)
                                                for r in records):
        return []
    return records


def _our_attention(path: Path) -> bool:
    """Whether ``path`` is absent or an attention file as ``report`` writes it (a numpy npz of stem/words,
    stem/attention and stem/cam arrays): a file of another kind by that name is someone else's."""
    if not path.exists():
        return True
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return all(name.rsplit("/", 1)[-1] in ("words", "attention", "cam") and "/" in name
                       for name in arrays.files)
    except (OSError, ValueError, EOFError):
        return False


def _check_targets(out: Path, paths: list[Path], stems: list[str], earlier: list[dict]) -> None:
    """Refuse, before anything is written, to write over an input image or over any file that an earlier
    ``report`` did not write itself (``earlier``: the records of its reports.json, which list what it wrote)."""
    targets = [out / f"{s}.png" for s in stems] + [out / "reports.json", out / ATTENTION_FILE]
    inputs = {p.resolve() for p in paths if p.exists()}
    ours = {"reports.json", *(r["png"] for r in earlier)} if earlier else set()
    if earlier and _our_attention(out / ATTENTION_FILE):
        ours.add(ATTENTION_FILE)
    for target in targets:
        if target.resolve() in inputs:
            raise ValueError(f"{target}: is one of the input images; its card would overwrite it (choose another "
                             "out folder).")
    _refuse_foreign([t for t in targets if t.name not in ours], "report")


def report_images(run: str | os.PathLike, images: list[str | os.PathLike], out: str | os.PathLike, *,
                  beam_size: int = 1) -> list[dict]:
    """Diagnose and report on each image file with the run's best model (greedy, or beam search of
    ``beam_size``). Writes one diagnosis card per image, ``out/<stem>.png`` (the image with the diagnosis and
    its confidence, the report, the CAM of the diagnosis, and the attention of the words that name a finding,
    or of the first words if none does), and ``out/reports.json``. Returns its records: {"image" (as given),
    "diagnosis", "confidence" (softmax probability; None for a run trained without labels), "report",
    "attention" (what steers the word maps: ``CONDITIONED``, or ``UNCONDITIONED`` without labels), "png" (the
    card's file name in ``out``)}; reports.json lists every card written in ``out``, earlier calls'
    too, and ``out/attention.npz`` every report's words, per-word attention and CAM on the feature grid (keyed by
    the image's stem, earlier calls' kept; ``read_attention``). Never writes over an input image, nor over a file
    in ``out`` that
    an earlier ``report`` did not write (refused in one sentence, before anything is written)."""
    out, paths = Path(out), [Path(p) for p in images]
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or not 1 <= beam_size <= 20:
        raise ConfigError("beam_size", beam_size, "is out of range: a whole number from 1 to 20.")
    if not paths or (out.exists() and not out.is_dir()):
        raise ValueError("report needs at least one image file." if not paths else f"{out}: not a folder.")
    stems = [p.stem for p in paths]
    if (clash := next((s for s in stems if stems.count(s) > 1), None)) is not None:
        raise ValueError(f"two images share the name {clash!r}: their cards would both be {clash}.png.")
    earlier = _earlier_records(out)
    _check_targets(out, paths, stems, earlier)
    model, vocab, cfg = load_run(run)
    tiles = torch.stack([_load_tile(p, model.config.image_size) for p in paths])
    remove_leftovers(out, [f"{s}.png" for s in stems] + ["reports.json", ATTENTION_FILE])  # what a killed run left
    gen = generate_reports(model, tiles, vocab, beam_size=beam_size, max_len=cfg["training"].get("max_len") or 60)
    probs = gen.class_logits.float().softmax(dim=1)
    out.mkdir(parents=True, exist_ok=True)
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")  # off screen, unless a backend was chosen already (the card is drawn with pyplot)
    import matplotlib.pyplot as plt  # here, not at the top: importing pyplot fixes the backend chosen above

    records, labelled = [], model.conditioned
    steering = CONDITIONED if labelled else UNCONDITIONED  # what the card and reports.json say steers the word maps
    for i, path in enumerate(paths):
        confidence = float(probs[i].max()) if labelled else None
        diagnosis = CLASSES[int(probs[i].argmax())] if labelled else NO_DIAGNOSIS
        words = gen.words[i]
        positions = sorted({pos for pos, _, _ in finding_words(words)})
        positions = positions or [k for k, w in enumerate(words) if w != "<eos>"]
        fig = diagnosis_card(tiles[i], diagnosis=diagnosis, confidence=confidence or 0.0, report=gen.texts[i],
                             cam=gen.cam[i], words=words, alphas=gen.alphas[i], grid=gen.grid, positions=positions)
        if not labelled:  # no confidence, and the CAM (axes 1 of the card) is all zeros: say so instead
            fig.axes[0].set_title("no diagnosis\n(trained without labels)", fontsize=9)
            fig.axes[1].images[-1].remove()
            fig.axes[1].set_title("no CAM (no labels)", fontsize=9)
        fig.suptitle(steering, fontsize=9)
        try:
            _save_png(fig, out / f"{path.stem}.png")
        finally:
            plt.close(fig)
        records.append({"image": str(images[i]), "diagnosis": diagnosis, "confidence": confidence,
                        "report": gen.texts[i], "attention": steering,
                        "png": f"{path.stem}.png"})
    kept = read_attention(out) if earlier and (out / ATTENTION_FILE).exists() else {}
    maps = {k: v for k, v in kept.items() if k not in stems}
    h, w = gen.grid
    for i, stem in enumerate(stems):
        maps[stem] = {"words": np.array(gen.words[i], dtype=str),
                      "attention": gen.alphas[i].float().reshape(-1, h, w).numpy(),
                      "cam": gen.cam[i].float().reshape(h, w).numpy()}
    buffer = BytesIO()
    np.savez_compressed(buffer, **{f"{stem}/{key}": v for stem, arrays in maps.items() for key, v in arrays.items()})
    write_bytes(out / ATTENTION_FILE, buffer.getvalue())
    new = {r["png"] for r in records}  # reports.json lists every card of the folder, earlier ones too
    write_json(out / "reports.json", [r for r in earlier if r["png"] not in new] + records)
    return records


def read_attention(out: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """The per-word attention a ``report`` call wrote in ``out`` (``out/attention.npz``), by image stem:
    {"words" (T,) the generated words, "attention" (T, h, w) the map each word was written with, on the image
    model's feature grid (rows sum to 1, or to less for an attention with a sentinel slot), "cam" (h, w) the class
    activation map of the diagnosis (zeros for a run trained without labels)}. Read without pickle."""
    path = Path(out) / ATTENTION_FILE
    maps: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as arrays:
        for name in arrays.files:
            stem, key = name.rsplit("/", 1)
            maps.setdefault(stem, {})[key] = arrays[name]
    return maps


def _read_metrics(run: Path) -> list[dict]:
    """The records of ``run/metrics.jsonl``, one per epoch; a one-sentence error if it is missing or malformed."""
    path = run / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        raise ValueError(f"{path}: no readable metrics (plot needs a run folder written by train).") from None
    records = []
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise ValueError(f"{path}: line {n} is not a JSON object with an integer 'epoch'.")
        records.append(record)
    if not records:
        raise ValueError(f"{path}: no epochs recorded yet.")
    return records


def _per_epoch(ax, records: list[dict], keys: list[str], ylabel: str) -> None:
    """One line per key over the epochs that have it, each epoch's background coloured by its stage. Keys with
    the same values at every epoch share one line, labelled "a = b" (without labels, train_loss *is* words_loss:
    two lines would hide one another)."""
    for r in records:
        if r.get("stage") in STAGE_COLOURS:
            ax.axvspan(r["epoch"] - 0.5, r["epoch"] + 0.5, color=STAGE_COLOURS[r["stage"]], alpha=0.12, lw=0)
    lines: dict[tuple, list[str]] = {}
    for key in keys:
        points = tuple((r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float)))
        if points:
            lines.setdefault(points, []).append(key)
    for points, same in lines.items():
        ax.plot(*zip(*points), "o-", label=" = ".join(same))
    handles = ax.get_legend_handles_labels()[0] + [
        Patch(color=c, alpha=0.25, label=f"stage: {s}") for s, c in STAGE_COLOURS.items()
        if any(r.get("stage") == s for r in records)]
    if handles:
        ax.legend(handles=handles, fontsize=8)
    if not keys:
        ax.text(0.5, 0.5, f"no {ylabel} recorded", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_xticks([r["epoch"] for r in records])


def _bars(ax, values: dict[str, float], title: str) -> None:
    """A horizontal bar per score, its value written at the bar's end."""
    names = list(values)[::-1]
    ax.barh(names, [values[k] for k in names], color="tab:blue")
    for y, k in enumerate(names):
        ax.text(values[k], y, f" {values[k]:.3f}", va="center", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(1.0, 1.15 * max(values.values())))


def _score_groups(scores: dict) -> list[tuple[str, dict[str, float]]]:
    """The report scores and the clinical per-feature accuracies of an evaluate output, in display order."""
    def pick(group: str, names) -> dict[str, float]:
        values = scores.get(group)
        values = values if isinstance(values, dict) else {}
        return {k: float(values[k]) for k in names if isinstance(values.get(k), (int, float))}
    return [("report scores", pick("report", REPORT_SCORES)),
            ("clinical accuracy", pick("clinical", (*FEATURES, "conclusion")))]


def plot_run(run: str | os.PathLike, out: str | os.PathLike | None = None) -> list[Path]:
    """Learning curves of a run, as PNG files in ``out`` (default: the run folder); returns their paths. A file of
    those names in another ``out`` that these commands did not write (a PNG without their Software tag) is never
    overwritten: the call is refused first.

    ``curves.png``          the training losses per epoch (every ``*_loss`` of metrics.jsonl: words_loss,
                            class_loss, ...), each epoch shaded by its stage (diagnosis, decoder, end to end);
    ``scores.png``          the validation scores per epoch (every ``val_*``: val_BLEU-4, val_accuracy), shaded alike;
    ``scores-<split>.png``  for each ``scores-<split>.json`` of the run: bars of the report scores (BLEU-1..4,
                            ROUGE-L, CIDEr, METEOR where present) and of the clinical per-feature accuracies.
    """
    run = Path(run)
    out = run if out is None else Path(out)
    records = _read_metrics(run)
    splits = {}
    for path in sorted(run.glob("scores-*.json")):
        try:
            splits[path.stem[len("scores-"):]] = scores = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            scores = None
        if not isinstance(scores, dict):
            raise ValueError(f"{path}: not a JSON object of scores (rewrite it with evaluate).")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: not a folder.")
    if out.resolve() != run.resolve():  # the run folder is train's, and these names in it are plot's
        _refuse_foreign([out / n for n in ("curves.png", "scores.png", *(f"scores-{s}.png" for s in splits))], "plot")
    out.mkdir(parents=True, exist_ok=True)

    keys = sorted({k for r in records for k in r})
    written = []
    for name, wanted, ylabel in (("curves.png", [k for k in keys if k.endswith("_loss")], "training loss"),
                                 ("scores.png", [k for k in keys if k.startswith("val_")], "validation score")):
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        _per_epoch(ax, records, wanted, ylabel)
        ax.set_title(f"{run.name}: {ylabel} per epoch", fontsize=10)
        written.append(_save_png(fig, out / name))
    for split, scores in splits.items():
        groups = [(f"{title} ({split})", values) for title, values in _score_groups(scores) if values]
        if groups:
            fig = Figure(figsize=(6, 2.6 * len(groups)))
            for ax, (title, values) in zip(np.atleast_1d(fig.subplots(len(groups), 1)), groups):
                _bars(ax, values, title)
            fig.tight_layout()
            written.append(_save_png(fig, out / f"scores-{split}.png"))
    return written
