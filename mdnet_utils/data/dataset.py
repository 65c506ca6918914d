"""Image-report pairs on disk, as a PyTorch ``Dataset``.

The layout is R2Gen's, extended with the labels MDNet learns from::

    root/annotation.json   {"train": [entry, ...], "val": [...], "test": [...]}
    root/images/...        RGB PNG tiles, named by each entry's "image_path" list
    root/masks/...         single-channel PNG masks (0/255), named by "mask_path"
    root/vocab.json        the vocabulary, built from the train split on first use

An entry is a dict: ``id``, ``report``, ``image_path`` are required; ``reports`` (all reference
reports), ``label`` (one of ``CLASSES``), ``grades`` ({feature: grade}), ``mask_path``
({name: path}) and ``patient`` are optional.

The JSON and the presence of every file are checked when the dataset is made, so a broken
data set fails at once with a ``DatasetError`` naming the file and the entry; images are
decoded only when an item is read.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.utils.rnn import pad_sequence

from mdnet_utils.data.grades import CLASSES, FEATURES, GRADES
from mdnet_utils.data.vocab import Vocabulary, tokenize
from mdnet_utils.errors import DatasetError, ImageError
from mdnet_utils.io import read_image

__all__ = ["DatasetError", "ReportDataset", "build_vocab", "training_vocab", "collate", "read_annotation",
           "pad_sequences", "same_views"]

ANNOTATION = "annotation.json"
VOCAB = "vocab.json"


def read_annotation(root: str | os.PathLike) -> dict[str, list]:
    """The parsed ``root/annotation.json``: a dict of split name -> list of entries."""
    path = Path(root) / ANNOTATION
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found.") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read the file ({type(e).__name__}).") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DatasetError(f"{path}: the top level must be an object mapping split names to lists of entries.")
    where: dict[str, str] = {}  # id -> the split it was first seen in
    for split, entries in data.items():
        for entry in entries:
            entry_id = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(entry_id, str):
                continue  # the entry's own check names it
            first = where.setdefault(entry_id, split)
            if first != split:  # a case in two splits: its test score would be measured on training data
                raise DatasetError(f"{path}: entry {entry_id!r} is in split {first!r} and in split {split!r} (a "
                                   "case may be in one split only).")
    return data


def training_vocab(root: str | os.PathLike, min_count: int = 1) -> Vocabulary:
    """The vocabulary of the train split's reports (every reference report of an entry), words seen at least
    ``min_count`` times; nothing is written (``build_vocab`` also saves it in the data folder)."""
    root = Path(root)
    data = read_annotation(root)
    if "train" not in data:
        raise DatasetError(f"{root / ANNOTATION}: no 'train' split to build the vocabulary from.")
    texts = []
    for i, entry in enumerate(data["train"]):
        texts.extend(_reports_of(entry, _where(root, "train", entry, i)))
    return Vocabulary.build(texts, min_count=min_count)


def build_vocab(root: str | os.PathLike, min_count: int = 1) -> Vocabulary:
    """Build the vocabulary from the train split's reports and save it as ``root/vocab.json``.

    Every reference report of an entry counts (its ``reports`` list, else its ``report``).
    Only the train split is read, so words seen only in val/test become ``<unk>``.
    If ``root`` is read-only the vocabulary is returned unsaved, with a warning.
    """
    root = Path(root)
    vocab = training_vocab(root, min_count)
    try:
        vocab.save(root / VOCAB)
    except OSError as e:
        warnings.warn(f"{root / VOCAB}: could not save the vocabulary ({e.strerror}); using it unsaved.")
    return vocab


class ReportDataset(torch.utils.data.Dataset):
    """One split of an image-report data set.

    An item is a dict:

    * ``image``: float tensor in [0, 1], ``3xHxW`` (or ``Vx3xHxW`` for an entry with V > 1
      images); ``transform``, if given, is applied to each ``3xHxW`` image tensor;
    * ``tokens``: long tensor ``<bos> ... <eos>`` of the report;
    * ``label``: index into ``CLASSES``, -1 when the entry has no label;
    * ``grades``: long tensor of 5 grade indices in ``FEATURES`` order, -1 where missing;
    * ``masks``: dict name -> float tensor ``1xHxW`` of 0/1 (not transformed; empty if none);
    * ``id``, ``report`` (the string) and ``reports`` (all reference reports, for metrics).

    The vocabulary is ``vocab`` if given, else ``root/vocab.json``, else built by
    ``build_vocab``. With ``expand_reports`` there is one item per reference report of each
    entry. ``max_len`` caps the token sequences (``<bos>`` and ``<eos>`` included).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        vocab: Vocabulary | None = None,
        expand_reports: bool = False,
        max_len: int | None = None,
    ):
        if max_len is not None and max_len < 2:
            raise ValueError(f"max_len must be at least 2 (room for <bos> and <eos>), not {max_len}")
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.expand_reports = expand_reports
        self.max_len = max_len
        self.annotation_path = self.root / ANNOTATION

        self._real: dict[str, str] = {}  # root/images and root/masks with their links resolved
        data = read_annotation(self.root)
        if split not in data:
            available = ", ".join(repr(s) for s in data) or "none"
            raise DatasetError(f"{self.annotation_path}: no split {split!r} (available: {available}).")
        # The checked entries: id, report(s), image and mask paths, label and grade indices.
        self.entries = [self._check_entry(entry, i) for i, entry in enumerate(data[split])]
        seen: set[str] = set()
        for e in self.entries:
            if e["id"] in seen:
                raise DatasetError(f"{self.annotation_path}: entry {e['id']!r} appears twice in split {split!r}.")
            seen.add(e["id"])

        if vocab is None:
            vocab = Vocabulary.load(self.root / VOCAB) if (self.root / VOCAB).exists() else build_vocab(self.root)
        self.vocab = vocab

        # One item per (entry, report); token ids are computed once, here.
        self._items: list[tuple[int, str, list[int]]] = []
        n_cut = 0
        for k, e in enumerate(self.entries):
            for report in e["reports"] if expand_reports else [e["report"]]:
                ids = vocab.encode(report)
                if max_len is not None and len(ids) > max_len:
                    ids = ids[: max_len - 1] + [vocab.eos_id]
                    n_cut += 1
                self._items.append((k, report, ids))
        if n_cut:
            warnings.warn(
                f"{n_cut} of {len(self._items)} reports in split {split!r} are longer than "
                f"max_len={max_len} tokens and were truncated.",
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ReportDataset(root={str(self.root)!r}, split={self.split!r}, {len(self)} items)"

    def __getitem__(self, index: int) -> dict[str, Any]:
        k, report, ids = self._items[index]
        e = self.entries[k]
        views = [self._read_image(p, e) for p in e["images"]]
        if self.transform is not None:
            views = [self.transform(v) for v in views]
        if len(views) == 1:
            image = views[0]
        else:
            if len({tuple(v.shape) for v in views}) > 1:
                raise DatasetError(
                    f"{self.annotation_path}: the images of entry {e['id']!r} in split "
                    f"{self.split!r} differ in size; resize them with a transform."
                )
            image = torch.stack(views)
        masks = {name: self._read_mask(p, e) for name, p in e["masks"].items()}
        return {
            "image": image,
            "tokens": torch.tensor(ids, dtype=torch.long),
            "label": e["label"],
            "grades": torch.tensor(e["grades"], dtype=torch.long),
            "masks": masks,
            "id": e["id"],
            "report": report,
            "reports": list(e["reports"]),
        }

    # -- reading files ---------------------------------------------------------------------

    def read_views(self, k: int) -> list[torch.Tensor]:
        """The images of entry ``k`` (an index into ``entries``) as uint8 ``3xHxW`` tensors, as stored."""
        e = self.entries[k]
        return [self._read(p, e, "image") for p in e["images"]]

    def read_masks(self, k: int) -> dict[str, torch.Tensor]:
        """The masks of entry ``k`` as bool ``1xHxW`` tensors (pixels > 127 are inside)."""
        e = self.entries[k]
        return {name: self._read(p, e, "mask") > 127 for name, p in e["masks"].items()}

    def _read_image(self, path: str, e: dict) -> torch.Tensor:
        """The RGB image at ``path`` as a float ``3xHxW`` tensor in [0, 1]."""
        return self._read(path, e, "image").float().div_(255.0)

    def _read_mask(self, path: str, e: dict) -> torch.Tensor:
        """The mask at ``path`` as a float ``1xHxW`` tensor of 0/1 (pixels > 127 are 1)."""
        return (self._read(path, e, "mask") > 127).float()

    def _read(self, path: str, e: dict, what: str) -> torch.Tensor:
        try:
            return read_image(path, gray=what == "mask")
        except ImageError as err:
            raise DatasetError(f"{path}: not a readable {what} (entry {e['id']!r} in split {self.split!r}; "
                               f"{err.reason}).") from None

    # -- validation ----------------------------------------------------------------------

    def _inside(self, folder: str, p: str, where: str, what: str) -> str:
        """``root/folder/p`` with every link resolved, refused (before any file is opened, so a message never
        tells which outside files exist) unless it lies inside ``root/folder``: no absolute paths, no ``..``
        out of it, no symbolic link leading away."""
        base = self._real.get(folder)
        if base is None:
            base = self._real[folder] = os.path.realpath(os.path.join(self.root, folder))
        full = os.path.realpath(os.path.join(base, p))
        if os.path.commonpath([full, base]) != base or full == base:
            raise DatasetError(f"{where} lists {what} {p!r}, which leads outside {self.root / folder} (every path "
                               "of an annotation must stay inside the data set).")
        return full

    def _check_entry(self, entry: Any, i: int) -> dict:
        """Validate one annotation entry and return what the items need from it."""
        where = _where(self.root, self.split, entry, i)
        if not isinstance(entry, dict):
            raise DatasetError(f"{where} is not an object.")
        entry_id = entry.get("id")
        if not isinstance(entry_id, str) or not entry_id:
            raise DatasetError(f"{where} has no 'id' string.")
        reports = _reports_of(entry, where)

        paths = entry.get("image_path")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
            raise DatasetError(f"{where} has no 'image_path' (a non-empty list of paths under images/).")
        images = []  # plain strings: os.path is much faster than pathlib for thousands of files
        for p in paths:
            full = self._inside("images", p, where, "image")
            if not os.path.isfile(full):
                raise DatasetError(f"{where} lists image {p!r}, which is missing from {self.root / 'images'}.")
            images.append(full)

        masks = {}
        mask_paths = entry.get("mask_path", {})
        if not isinstance(mask_paths, dict):
            raise DatasetError(f"{where} has a 'mask_path' that is not an object of name -> path.")
        for name, p in mask_paths.items():
            full = self._inside("masks", p, where, f"{name!r} mask") if isinstance(p, str) and p else None
            if full is None or not os.path.isfile(full):
                raise DatasetError(f"{where} lists {name!r} mask {p!r}, which is missing from {self.root / 'masks'}.")
            masks[name] = full

        label = entry.get("label")
        if label is None:
            label_index = -1
        elif label in CLASSES:
            label_index = CLASSES.index(label)
        else:
            raise DatasetError(f"{where} has unknown label {label!r} (expected one of {', '.join(CLASSES)}).")

        grades = entry.get("grades", {})
        if not isinstance(grades, dict):
            raise DatasetError(f"{where} has 'grades' that are not an object of feature -> grade.")
        for feature, grade in grades.items():
            if feature not in GRADES:
                raise DatasetError(f"{where} grades unknown feature {feature!r} (expected one of {', '.join(FEATURES)}).")
            if grade not in GRADES[feature]:
                raise DatasetError(
                    f"{where} has unknown grade {grade!r} for {feature!r} "
                    f"(expected one of {', '.join(GRADES[feature])})."
                )
        grade_indices = [GRADES[f].index(grades[f]) if f in grades else -1 for f in FEATURES]

        return {
            "id": entry_id,
            "report": entry["report"],
            "reports": reports,
            "images": images,
            "masks": masks,
            "label": label_index,
            "grades": grade_indices,
            "patient": entry.get("patient"),
        }


def _where(root: Path, split: str, entry: Any, i: int) -> str:
    """The start of an error sentence: "<file>: entry '<id>' in split '<split>'"."""
    name = f"{entry['id']!r}" if isinstance(entry, dict) and isinstance(entry.get("id"), str) else f"#{i}"
    return f"{Path(root) / ANNOTATION}: entry {name} in split {split!r}"


def _reports_of(entry: Any, where: str) -> list[str]:
    """The reference reports of an entry (its ``reports``, else ``[report]``), checked."""
    if not isinstance(entry, dict):
        raise DatasetError(f"{where} is not an object.")
    if "report" not in entry:
        raise DatasetError(f"{where} has no 'report'.")
    report = entry["report"]
    if not isinstance(report, str) or not tokenize(report):
        raise DatasetError(f"{where} has an empty 'report'.")
    reports = entry.get("reports")
    if reports is None:
        return [report]
    if not isinstance(reports, list) or not reports:
        raise DatasetError(f"{where} has a 'reports' that is not a non-empty list of reports.")
    for r in reports:
        if not isinstance(r, str) or not tokenize(r):
            raise DatasetError(f"{where} has an empty report in 'reports'.")
    return list(reports)


def same_views(*datasets: "ReportDataset") -> int:
    """The number of views (images) every case of ``datasets`` has; a ``DatasetError`` naming a case of each kind
    when they differ (a batch stacks its cases, so training and ``data --check`` both refuse a mix)."""
    views: dict[int, tuple[str, str]] = {}  # number of images -> (entry id, split) of the first case with that many
    for ds in datasets:
        for e in ds.entries:
            views.setdefault(len(e["images"]), (e["id"], ds.split))
    if len(views) > 1:
        (a, (ia, sa)), (b, (ib, sb)) = sorted(views.items())[:2]
        raise DatasetError(f"{datasets[0].annotation_path}: entry {ia!r} in split {sa!r} has {a} image(s) and entry "
                           f"{ib!r} in split {sb!r} has {b}: every case needs the same number of views.")
    return next(iter(views), 1)


def pad_sequences(sequences, pad_id: int = Vocabulary.pad_id, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id sequences (lists or 1-D tensors) -> ``(tokens, lengths)``: ``tokens`` (B, T) long, each row a
    sequence followed by ``pad_id``, T the longest; ``lengths`` (B,) the true lengths. Every padded batch of
    the package is made here."""
    rows = [torch.as_tensor(s, dtype=torch.long) for s in sequences]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    return pad_sequence(rows, batch_first=True, padding_value=pad_id).to(device), lengths


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of items into a batch (the ``collate_fn`` of a ``DataLoader``).

    ``tokens`` are padded with the pad id 0 to ``(B, T)``, ``T`` the longest sequence, and
    ``lengths`` holds each sequence's true length. ``masks`` keeps the names every item has.
    """
    if not batch:
        raise ValueError("collate: the batch is empty")
    shapes = {tuple(item["image"].shape) for item in batch}
    if len(shapes) > 1:
        raise DatasetError(
            f"collate: the images of a batch differ in shape ({', '.join(sorted(map(str, shapes)))}); "
            "resize them with a transform."
        )
    tokens, lengths = pad_sequences([item["tokens"] for item in batch])
    names = set.intersection(*(set(item["masks"]) for item in batch))
    return {
        "image": torch.stack([item["image"] for item in batch]),
        "tokens": tokens,
        "lengths": lengths,
        "labels": torch.tensor([item["label"] for item in batch], dtype=torch.long),
        "grades": torch.stack([item["grades"] for item in batch]),
        "masks": {name: torch.stack([item["masks"][name] for item in batch]) for name in sorted(names)},
        "ids": [item["id"] for item in batch],
        "report": [item["report"] for item in batch],
        "reports": [item["reports"] for item in batch],
    }
