"""From files to batches: the cases a training step reads, held in memory or streamed from disk.

Two sources give the training engine the same ``Batch``es (a test holds them equal):

* ``TensorCases``: every case in memory as tensors (``load_tiles``, ``load_report_tiles``). The notebooks' data
  is a few thousand 64 px tiles (tens of MB as uint8), and indexing tensors is the quickest way through it.
* ``FileCases``: a ``ReportDataset`` read case by case, as a ``DataLoader`` asks for them, in worker processes.
  Memory does not grow with the data set: a MIMIC-CXR-sized set trains as a small one does.

Images stay uint8 until the batch reaches the device (``to_input``): a quarter of the memory and of the bytes
that cross from the worker processes. They are read by ``io.read_image`` and resized by ``io.resize_image``, so
both sources (and evaluation, and the ``report`` command) see an image the same way. Reports are tokenized with
``<bos> ... <eos>``, cut to ``max_len`` tokens, and every case brings the same number R of them: the smallest
number any case of the split has.

The order of the cases is the caller's (``batches(source, order, batch_size)``): the training engine draws it
from its own seeded generator, or takes a ``DistributedSampler``'s share under torchrun. ``DataLoader``s get a
seeded generator of their own, so creating one never draws from the global RNG (which dropout uses): a run
resumed from a checkpoint continues exactly.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from mdnet_utils.data.dataset import ReportDataset, pad_sequences, same_views
from mdnet_utils.data.truth import clinical_truth
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.errors import DatasetError
from mdnet_utils.io import resize_image

__all__ = ["Batch", "TensorCases", "FileCases", "batches", "to_input", "flat_reports", "load_tiles", "ReportTiles",
           "load_report_tiles", "cut_reports"]

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What one training step reads: ``images`` uint8 (B, 3, H, W), or (B, V, 3, H, W) for V views a case;
    ``labels`` (B,) class indices, -1 where unknown (or, for a custom loss, whatever targets it reads);
    ``tokens`` (B, R, T) token ids padded with 0, or None for an image model's data."""
    images: torch.Tensor
    labels: torch.Tensor
    tokens: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.images)

    def pin_memory(self) -> "Batch":  # DataLoader(pin_memory=True) calls this on custom batch types
        return Batch(self.images.pin_memory(), self.labels.pin_memory(),
                     None if self.tokens is None else self.tokens.pin_memory())


def to_input(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 images (B, 3, H, W), or views (B, V, 3, H, W), as floats in [0, 1] on ``device``: the one place
    the package turns stored pixels into a network's input."""
    return images.to(device, non_blocking=True).float() / 255.0


def flat_reports(tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """(B, R, T) reports -> (B R, T'), the R reports of a case in a row, T' cut to the longest report there is
    (padding would cost LSTM steps)."""
    flat = tokens.flatten(0, 1)
    length = int((flat != pad_id).sum(1).max())
    return flat[:, :length]


class TensorCases:
    """Cases in memory: ``images`` uint8 (N, ...), ``labels`` (N, ...), ``tokens`` (N, R, T) or None."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, tokens: torch.Tensor | None = None):
        if len(labels) != len(images) or (tokens is not None and len(tokens) != len(images)):
            raise ValueError(f"{len(images)} images, {len(labels)} labels and "
                             f"{'no' if tokens is None else len(tokens)} token rows: need one of each per case.")
        self.images, self.labels, self.tokens = images, labels, tokens

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        """True when every case has a label (the diagnosis can be learned)."""
        return bool((self.labels >= 0).all()) if self.labels.dim() == 1 else True

    def subset(self, n: int | None) -> "TensorCases":
        """The first ``n`` cases (all for None)."""
        if n is None or n >= len(self):
            return self
        return TensorCases(self.images[:n], self.labels[:n], None if self.tokens is None else self.tokens[:n])

    def batch(self, idx: torch.Tensor) -> Batch:
        return Batch(self.images[idx], self.labels[idx], None if self.tokens is None else self.tokens[idx])


def cut_reports(reports: list[list[int]], max_len: int | None, eos_id: int) -> tuple[list[list[int]], int]:
    """Token sequences cut to ``max_len`` tokens (the last one <eos>), and how many were cut."""
    if max_len is None:
        return reports, 0
    cut = sum(len(s) > max_len for s in reports)
    return [s if len(s) <= max_len else s[:max_len - 1] + [eos_id] for s in reports], cut


class FileCases(Dataset):
    """The cases of a ``ReportDataset`` read from disk one by one (a map-style ``Dataset`` for a ``DataLoader``).

    An item is ``(image, label, tokens)``: the case's views as uint8 (3, S, S) or (V, 3, S, S) resized to
    ``image_size`` (None keeps the stored size), its label index (-1 unknown), and its first R reports as
    token-id tensors (``reports=False``: none). ``collate`` pads them into a ``Batch``."""

    def __init__(self, dataset: ReportDataset, vocab: Vocabulary, *, image_size: int | None = None,
                 max_len: int | None = None, reports: bool = True, limit: int | None = None):
        if max_len is not None and max_len < 3:
            raise ValueError(f"max_len={max_len} is out of range: a report needs <bos>, a word and <eos>.")
        self.dataset, self.vocab, self.image_size, self.max_len = dataset, vocab, image_size, max_len
        self.entries = dataset.entries if limit is None else dataset.entries[:limit]
        if not self.entries:
            raise DatasetError(f"{dataset.annotation_path}: the split {dataset.split!r} is empty.")
        same_views(dataset)  # a batch stacks its cases: one number of views for all
        self.reports = min(len(e["reports"]) for e in self.entries) if reports else 0
        if reports and max_len is not None:  # say once, here, rather than once per worker and epoch
            cut = sum(len(vocab.encode(r)) > max_len for e in self.entries for r in e["reports"][:self.reports])
            if cut:
                log.warning("%d reports of split %r are longer than max_len=%d tokens and are cut.", cut,
                            dataset.split, max_len)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def labelled(self) -> bool:
        return all(e["label"] >= 0 for e in self.entries)

    def subset(self, n: int | None) -> "FileCases":
        if n is None or n >= len(self):
            return self
        return FileCases(self.dataset, self.vocab, image_size=self.image_size, max_len=self.max_len,
                         reports=bool(self.reports), limit=n)

    def image(self, k: int) -> torch.Tensor:
        """Case ``k``'s views, uint8, resized: (3, S, S), or (V, 3, S, S) for several."""
        views = self.dataset.read_views(k)
        if self.image_size is not None:
            views = [resize_image(v, self.image_size) for v in views]
        if len(views) == 1:
            return views[0]
        if len({tuple(v.shape) for v in views}) > 1:
            e = self.entries[k]
            raise DatasetError(f"{self.dataset.annotation_path}: the images of entry {e['id']!r} in split "
                               f"{self.dataset.split!r} differ in size; give an image size to resize them to.")
        return torch.stack(views)

    def tokens(self, k: int) -> list[list[int]]:
        """Case ``k``'s first R reports as token ids, cut to ``max_len``."""
        seqs = [self.vocab.encode(r) for r in self.entries[k]["reports"][:self.reports]]
        return cut_reports(seqs, self.max_len, self.vocab.eos_id)[0]

    def __getitem__(self, k: int):
        return self.image(k), self.entries[k]["label"], self.tokens(k) if self.reports else None

    @staticmethod
    def collate(items: list) -> Batch:
        """Stack images and labels; pad every report of the batch to the longest one, as (B, R, T)."""
        images = [it[0] for it in items]
        if len({tuple(i.shape) for i in images}) > 1:
            raise DatasetError("the images of a batch differ in size; give an image size to resize them to.")
        labels = torch.tensor([it[1] for it in items], dtype=torch.long)
        tokens = None
        if items[0][2] is not None:
            flat = [s for it in items for s in it[2]]
            tokens = pad_sequences(flat)[0].view(len(items), len(items[0][2]), -1)
        return Batch(torch.stack(images), labels, tokens)


class _Chunks:
    """A batch sampler over a fixed order: consecutive ``batch_size`` slices of it (the last may be short)."""

    def __init__(self, order: torch.Tensor, batch_size: int):
        self.order, self.batch_size = order, batch_size

    def __len__(self) -> int:
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(0, len(self.order), self.batch_size):
            yield self.order[i:i + self.batch_size].tolist()


def batches(source: TensorCases | FileCases, order: torch.Tensor, batch_size: int, *, num_workers: int = 0,
            pin_memory: bool = False, seed: int = 0) -> Iterable[Batch]:
    """The batches of ``source`` in ``order`` (case indices), ``batch_size`` cases each (the last may be short).

    In memory: slices of the tensors. From files: a ``DataLoader`` with ``num_workers`` worker processes (0 reads
    in this process), ``pin_memory`` for a quicker copy to a GPU, and a generator seeded with ``seed`` (its draw
    seeds the workers; no draw from the global RNG)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is out of range: it must be at least 1.")
    if isinstance(source, TensorCases):
        return (source.batch(order[i:i + batch_size]) for i in range(0, len(order), batch_size))
    return DataLoader(source, batch_sampler=_Chunks(order, batch_size), collate_fn=FileCases.collate,
                      num_workers=num_workers, pin_memory=pin_memory, persistent_workers=False,
                      generator=torch.Generator().manual_seed(seed))


def load_tiles(root: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A split in memory for an image model: images (N, 3, H, W) uint8, labels (N,) and grades (N, 5) int64."""
    ds = ReportDataset(root, split, vocab=Vocabulary())  # the vocabulary is not used: no reports are read
    images = torch.stack([ds.read_views(k)[0] for k in range(len(ds.entries))])
    labels = torch.tensor([e["label"] for e in ds.entries], dtype=torch.long)
    grades = torch.tensor([e["grades"] for e in ds.entries], dtype=torch.long).view(-1, 5)
    return images, labels, grades


@dataclass
class ReportTiles:
    """A split in memory: ``images`` (N, 3, H, W) uint8, ``labels`` (N,), ``grades`` (N, 5) (indices, -1
    unknown), ``tokens`` (N, R, T) (R reports a tile, ``<bos> ... <eos>``, padded), ``masks`` name -> (N, 1, H, W)
    bool, ``ids`` and ``reports`` (the R reference texts of each tile)."""
    images: torch.Tensor
    labels: torch.Tensor
    grades: torch.Tensor
    tokens: torch.Tensor
    masks: dict[str, torch.Tensor]
    ids: list[str]
    reports: list[list[str]]

    def __len__(self) -> int:
        return len(self.ids)

    def references(self) -> dict[str, list[str]]:
        return dict(zip(self.ids, self.reports))

    def truth(self) -> dict[str, dict]:
        """The ground truth of the clinical score (``clinical_truth``), one entry per tile."""
        return {i: clinical_truth(g.tolist(), int(y)) for i, g, y in zip(self.ids, self.grades, self.labels)}

    def cases(self) -> TensorCases:
        """The training engine's view of these tiles."""
        return TensorCases(self.images, self.labels, self.tokens)


def load_report_tiles(root: str | os.PathLike, split: str, vocab: Vocabulary, *, limit: int | None = None,
                      image_size: int | None = None, max_len: int | None = None) -> ReportTiles:
    """Read a split (its first ``limit`` tiles) into memory, through the same reading as ``FileCases``: images
    resized to ``image_size`` (None keeps them), reports cut to ``max_len`` tokens (with a warning), R reports a
    tile (the smallest number in the split). Cases with several views give images (N, V, 3, H, W)."""
    files = FileCases(ReportDataset(root, split, vocab=vocab), vocab, image_size=image_size, max_len=max_len,
                      limit=limit)
    n, entries = len(files), files.entries
    images = torch.stack([files.image(k) for k in range(n)])
    tokens = pad_sequences([s for k in range(n) for s in files.tokens(k)], vocab.pad_id)[0].view(n, files.reports, -1)
    masks = [files.dataset.read_masks(k) for k in range(n)]
    names = set.intersection(*(set(m) for m in masks))
    return ReportTiles(
        images=images,
        labels=torch.tensor([e["label"] for e in entries], dtype=torch.long),
        grades=torch.tensor([e["grades"] for e in entries], dtype=torch.long).view(-1, 5),
        tokens=tokens,
        masks={name: torch.stack([m[name] for m in masks]) for name in sorted(names)},
        ids=[e["id"] for e in entries],
        reports=[list(e["reports"][:files.reports]) for e in entries])
