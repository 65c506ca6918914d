"""Other data layouts, read into (or written from) the course's layout.

* **R2Gen** (Chen et al., EMNLP 2020, "Generating Radiology Reports via Memory-driven
  Transformer"): ``root/annotation.json`` = ``{"train": [entry, ...], "val": [...], "test": [...]}``,
  entries with ``id``, ``report`` and ``image_path`` (a list under ``root/images/``: two views for
  IU X-Ray, one for MIMIC-CXR). The course's layout *is* this one (plus optional labels, grades
  and masks), so ``ReportDataset`` reads R2Gen data as it is.
* **BCIDR / NMI** (the MDNet authors' release with Zhang et al., Nature Machine Intelligence 2019,
  "Pathologist-level interpretable whole-slide cancer diagnosis with deep learning"): one JSON
  ``{name: {"caption": [report, ...], "label": ...}, ...}`` (usually five captions; ``label``
  optional, a class name or an index into ``CLASSES``) and a folder of images named ``name``,
  with or without an extension.

Writers build a hidden sibling folder and rename it to ``out_root``: a failed call leaves
nothing there, and an existing ``out_root`` is refused unless it is empty.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps

from mdnet_utils.data.dataset import ANNOTATION, DatasetError, ReportDataset, read_annotation
from mdnet_utils.data.grades import CLASSES
from mdnet_utils.data.vocab import Vocabulary, tokenize
from mdnet_utils.io import write_folder

__all__ = ["detect_layout", "convert_bcidr", "convert_bcidr_folder", "export_r2gen", "findings_report"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
STYLES = ("findings", "original")


def detect_layout(path: str | os.PathLike) -> str:
    """``"r2gen"`` (the course's own layout too) or ``"bcidr"`` for the folder ``path``, else a ``DatasetError``."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such folder (expected a data set folder).")
    data = _load_json(path / ANNOTATION) if (path / ANNOTATION).is_file() else None
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        return "r2gen"
    try:
        if _looks_bcidr(_load_json(_bcidr_parts(path)[0])):
            return "bcidr"
    except DatasetError:
        pass
    raise DatasetError(f"{path}: neither an R2Gen folder (annotation.json mapping splits to lists of entries) "
                       "nor a BCIDR folder (one JSON of name -> captions and one folder of images).")


def convert_bcidr(json_path: str | os.PathLike, image_dir: str | os.PathLike, out_root: str | os.PathLike, *,
                  val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0) -> Path:
    """Write BCIDR data (``json_path`` + ``image_dir``) in the course's layout at ``out_root``.

    Sorted names are shuffled by ``random.Random(seed)`` and cut into val, test (``round(fraction
    * n)`` each) and train (the rest, never empty). ``report`` is the first caption, ``reports``
    all; a label becomes its ``CLASSES`` name (matched ignoring case and ``_``); images are copied.
    """
    json_path, image_dir, out_root = Path(json_path), Path(image_dir), Path(out_root)
    fractions = (val_fraction, test_fraction)
    numbers = all(isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0 for f in fractions)
    if not numbers or sum(fractions) >= 1:
        raise DatasetError(f"val_fraction={val_fraction!r}, test_fraction={test_fraction!r}: each must be >= 0 "
                           "and their sum below 1.")
    data = _load_json(json_path)
    if not isinstance(data, dict):
        raise DatasetError(f"{json_path}: the top level must be an object mapping image names to entries.")
    if not data:
        raise DatasetError(f"{json_path}: no entries (the data set is empty).")
    entries = {}
    for name in sorted(data):
        item, where = data[name], f"{json_path}: entry {name!r}"
        captions = item.get("caption") if isinstance(item, dict) else None
        if not (isinstance(captions, list) and captions and all(isinstance(c, str) and tokenize(c) for c in captions)):
            raise DatasetError(f"{where} has no 'caption' list of non-empty strings.")
        image = _find_image(image_dir, name)
        if image is None:
            raise DatasetError(f"{where} has no image {name!r} (bare or {'/'.join(IMAGE_EXTENSIONS)}) in {image_dir}.")
        entries[name] = {"id": name, "report": captions[0].strip(), "reports": [c.strip() for c in captions],
                         "image_path": [image.relative_to(image_dir).as_posix()]}
        if item.get("label") is not None:
            entries[name]["label"] = _class_name(item["label"], where)

    order = sorted(entries)
    random.Random(seed).shuffle(order)
    n_val = min(round(val_fraction * len(order)), len(order) - 1)  # train is never empty
    n_test = min(round(test_fraction * len(order)), len(order) - 1 - n_val)
    split_of = {name: "val" if k < n_val else "test" if k < n_val + n_test else "train" for k, name in enumerate(order)}
    annotation = {"train": [], "val": [], "test": []}

    def fill(tmp: Path) -> None:
        for name, entry in entries.items():  # sorted by name
            _copy_views(image_dir, tmp / "images", entry["image_path"][0], 1, set())
            annotation[split_of[name]].append({**entry, "split": split_of[name]})
        (tmp / ANNOTATION).write_text(json.dumps(annotation, indent=1), encoding="utf-8")
    return _write_dataset(Path(out_root), fill)


def convert_bcidr_folder(folder: str | os.PathLike, out_root: str | os.PathLike, **kw) -> Path:
    """``convert_bcidr`` on a BCIDR folder: its one JSON file and its one folder of images."""
    json_path, image_dir = _bcidr_parts(Path(folder))
    return convert_bcidr(json_path, image_dir, out_root, **kw)


def export_r2gen(source_root: str | os.PathLike, out_root: str | os.PathLike, *, style: str = "findings",
                 views: int = 1, keep_labels: bool = False) -> Path:
    """Write the course data set at ``source_root`` as plain R2Gen data at ``out_root``.

    Entries keep ``id``, ``split``, ``image_path`` and ``report`` (by ``findings_report`` for
    ``style="findings"``, as it is for ``"original"``); ``label`` only with ``keep_labels``. Each
    entry's first image is copied; ``views=2`` adds its mirror image ``<stem>_flip.png`` as a
    second view (like IU X-Ray's frontal and lateral pair).
    """
    if style not in STYLES:
        raise ValueError(f"style={style!r}: expected one of {', '.join(STYLES)}.")
    if views not in (1, 2):
        raise ValueError(f"views={views!r}: expected 1 or 2.")
    source_root, out_root = Path(source_root), Path(out_root)
    data = read_annotation(source_root)
    for split in data:  # checks every entry and its files (with a dummy vocabulary: nothing is written)
        ReportDataset(source_root, split, vocab=Vocabulary())
    taken = {p for entries in data.values() for e in entries for p in e["image_path"]}
    out = {split: [] for split in data}

    def fill(tmp: Path) -> None:
        for split, entries in data.items():
            for e in entries:
                paths = _copy_views(source_root / "images", tmp / "images", e["image_path"][0], views, taken)
                report = e["report"] if style == "original" else findings_report(
                    e.get("grades") or {}, e.get("label"), e["id"])
                out[split].append({"id": e["id"], "split": split, "image_path": paths, "report": report})
                if keep_labels and e.get("label") is not None:
                    out[split][-1]["label"] = e["label"]
        (tmp / ANNOTATION).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return _write_dataset(out_root, fill)


_NOUNS = {"pleomorphism": "nuclear pleomorphism", "crowding": "crowding", "mitosis": "mitoses", "nucleoli": "nucleoli"}
_OPENINGS = ("The urothelium shows {}.", "Sections show urothelium with {}.", "There is {}.")
_POLARITY = ("Polarity is {}.", "Cell polarity is {}.", "Nuclear polarity is {}.")
_IMPRESSIONS = {
    "normal": ("No evidence of malignancy.", "Benign urothelium."),
    "low grade": ("Low grade urothelial carcinoma.", "Findings consistent with low grade urothelial carcinoma."),
    "high grade": ("High grade urothelial carcinoma.", "Findings consistent with high grade urothelial carcinoma."),
    "insufficient information": ("Insufficient information for a diagnosis.", "Not diagnostic; cannot be graded."),
}


def findings_report(grades: dict[str, str], label: str | None, key: str) -> str:
    """A radiology-style report of ``grades`` and ``label``: "FINDINGS: ... IMPRESSION: ...".

    Each sentence's wording is picked by a hash of ``key`` (the entry's id), so an entry always
    gets the same report. Ungraded features are left out; without a label, so is the IMPRESSION.
    """
    pick, g = hashlib.sha256(key.encode("utf-8")).digest(), grades.get
    cells = [f"{g(f)} {_NOUNS[f]}" for f in ("pleomorphism", "crowding") if g(f)]
    counts = [f"{_NOUNS[f]} are {g(f)}" for f in ("mitosis", "nucleoli") if g(f)]
    sentences = [_OPENINGS[pick[0] % 3].format(" and ".join(cells))] if cells else []
    if g("polarity"):
        sentences.append(_POLARITY[pick[1] % 3].format(g("polarity")))
    if counts:
        text = ("; " if pick[2] % 2 else ", and ").join(counts[::-1] if pick[3] % 2 else counts)
        sentences.append(text[0].upper() + text[1:] + ".")
    report = "FINDINGS: " + (" ".join(sentences) or "No features were graded.")
    return report + (f" IMPRESSION: {_IMPRESSIONS[label][pick[4] % 2]}" if label is not None else "")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read the file ({type(e).__name__}).") from None


def _looks_bcidr(data) -> bool:
    return isinstance(data, dict) and bool(data) and all(isinstance(v, dict) and "caption" in v for v in data.values())


def _bcidr_parts(folder: Path) -> tuple[Path, Path]:
    """A BCIDR folder's JSON (the one shaped like BCIDR) and image folder (``images/``, any case, or the only one)."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (expected a BCIDR folder).")
    jsons = sorted(p for p in folder.glob("*.json") if p.is_file())
    jsons = [p for p in jsons if len(jsons) == 1 or _looks_bcidr(_load_json(p))]
    if len(jsons) != 1:
        raise DatasetError(f"{folder}: found {len(jsons)} BCIDR JSON files (expected exactly one).")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = [p for p in subdirs if p.name.lower() == "images"]
    if len(found) != 1:
        found = [p for p in subdirs if any(f.suffix.lower() in IMAGE_EXTENSIONS for f in p.rglob("*"))]
    if len(found) != 1:
        raise DatasetError(f"{folder}: found {len(found)} folders of images (expected exactly one).")
    return jsons[0], found[0]


def _find_image(image_dir: Path, name: str) -> Path | None:
    """``image_dir/name``, else with the first of ``IMAGE_EXTENSIONS`` (either case) that exists."""
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        return None  # never read outside image_dir
    for suffix in ("",) + IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        if (image_dir / (name + suffix)).is_file():
            return image_dir / (name + suffix)
    return None


def _class_name(label, where: str) -> str:
    """``label`` (a class name, any case, or an index into ``CLASSES``) as a ``CLASSES`` name."""
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(CLASSES):
        return CLASSES[label]
    if isinstance(label, str) and label.strip().lower().replace("_", " ") in CLASSES:
        return label.strip().lower().replace("_", " ")
    raise DatasetError(f"{where} has unknown label {label!r} (expected one of {', '.join(CLASSES)} "
                       f"or an index 0-{len(CLASSES) - 1}).")


def _copy_views(src: Path, dst: Path, path: str, views: int, taken: set[str]) -> list[str]:
    """Copy image ``path`` from ``src`` to ``dst``, with ``views=2`` its mirror image too; the new paths."""
    (dst / path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / path, dst / path)
    if views == 1:
        return [path]
    flip = PurePosixPath(path).with_name(PurePosixPath(path).stem + "_flip.png").as_posix()
    if flip in taken:
        raise DatasetError(f"{src / flip}: exists already, so the mirror image of {path!r} cannot take its name.")
    with Image.open(src / path) as im:
        ImageOps.mirror(im.convert("RGB")).save(dst / flip, format="PNG")
    return [path, flip]


def _write_dataset(out_root: Path, fill) -> Path:
    """``fill(tmp)`` a hidden sibling folder (``images/`` made), swapped in for ``out_root`` when it succeeds;
    ``out_root`` must be new or empty."""
    if out_root.exists() and (not out_root.is_dir() or any(out_root.iterdir())):
        raise DatasetError(f"{out_root}: already exists and is not empty (write to a new or empty folder).")

    def prepared(tmp: Path) -> None:
        (tmp / "images").mkdir()
        fill(tmp)
    write_folder(out_root, prepared)
    return out_root
