"""Files in and out: the one copy of each way the package writes or reads a file.

Writing is atomic everywhere: a file is written to a temporary name beside its destination and renamed
into place (``atomic_write``, ``write_text``, ``write_json``); a folder is filled as a hidden sibling and
swapped in (``write_folder``). A crash, a full disk or an interruption therefore never leaves half a file
or half a folder where the user will look.

Reading images: ``read_image`` decodes with PIL (PNG, JPEG, TIFF, BMP, ...) to a uint8 tensor. Not with
torchvision's decoders: torchvision 0.29's ``decode_image`` crashes the process (a segmentation fault, measured
here) on a PNG whose data is shorter than its header says, which one hostile or truncated file is enough for;
PIL raises an error instead. PIL is slower (130 against 46 microseconds for a 64 px tile, measured), which no
epoch of the course notices, and reads PNGs to the same pixels. ``resize_image`` is torchvision's ``transforms.v2`` resize
(antialiased bilinear), the one resize of the package: training, evaluation and the ``report`` command
all see an image the same way.

Import cost (measured here, torch 2.14.1): torch takes 2.0 s and 650 MB to import, torchvision 1.6 s and
170 MB more. The writers serve commands that never touch an image (``student``, ``site``, the notebook
runner), so the image libraries are imported inside the two readers, not at the top of this module.
"""
from __future__ import annotations

import glob
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mdnet_utils.errors import ConfigError, ImageError

if TYPE_CHECKING:
    import torch

__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "write_folder", "write_owned_folder",
           "remove_leftovers", "read_image", "resize_image", "ImageError"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary name beside ``path``, then rename it to ``path``: a crash never leaves
    half a file there, and a failed ``write`` leaves no temporary file (a killed process may: the next start of
    the command that wrote it removes it, ``remove_leftovers``). An ``OSError`` (a full disk, ...) names
    ``path``, not the temporary name. The file gets the permissions of the one it replaces, or a new file's
    usual ones (not ``mkstemp``'s owner-only). Every file of the package is written through here (checkpoints,
    run files, vocabularies, cards, notebooks)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename in (None, tmp_name, str(tmp)):
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` at ``path``, atomically. Serialise first, then write (``torch.save`` straight to a file turns a
    full disk into a RuntimeError that names no file)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def remove_leftovers(folder: str | os.PathLike, names) -> list[Path]:
    """Remove the temporary files that ``atomic_write`` left in ``folder`` for the files ``names`` when a process
    was killed while writing (``.NAME.XXXXXXXX.tmp``); returns what was removed. Only those names are matched:
    a file the user made is never touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = re.compile("|".join(rf"\.{re.escape(n)}\.[a-z0-9_]{{8}}\.tmp" for n in names) or r"(?!)")
    removed = []
    for entry in folder.iterdir():
        if pattern.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` (UTF-8) at ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> Path:
    """``obj`` as JSON at ``path``, atomically (UTF-8, non-ASCII kept as is)."""
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_folder(out: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """``fill(tmp)`` a hidden sibling of ``out``, then swap it in for ``out``: ``out`` is always either the old
    folder or the complete new one, and a failed ``fill`` leaves no temporary folder behind. Callers decide
    beforehand whether ``out`` may be replaced."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{glob.escape(out.name)}.old-*"):  # left by a build killed while swapping:
        if not out.exists() and (stale / out.name).is_dir():         # the old folder goes back first
            os.replace(stale / out.name, out)
        _remove_stale(stale)
    for stale in out.parent.glob(f".{glob.escape(out.name)}.partial-*"):  # left by a killed build of this folder
        _remove_stale(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # a new folder's usual permissions, not mkdtemp's owner-only
        fill(tmp)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _remove_stale(path: Path) -> None:
    """A ``.NAME.partial-XXXXXXXX`` or ``.NAME.old-XXXXXXXX`` folder that ``write_folder`` made (its random part
    is ``mkdtemp``'s eight characters) and a killed process left behind."""
    if re.fullmatch(r".+\.(partial|old)-[a-z0-9_]{8}", path.name) and path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)


def write_owned_folder(out: str | os.PathLike, fill: Callable[[Path], None], *, marker: str,
                       force: bool = False) -> Path:
    """``write_folder`` for a folder that a command owns: the new folder carries the file ``marker``, and an
    existing ``out`` is replaced only when it is empty or carries it (a folder the command wrote before), or
    with ``force``; any other folder is refused with a ``ConfigError`` before anything is written."""
    out = Path(out)
    if out.exists() and not force:
        foreign = not out.is_dir() or (any(out.iterdir()) and not (out / marker).is_file())
        if foreign:
            raise ConfigError("out", str(out), "holds files this command did not write, so it is left alone: "
                                               "choose another `out`, or replace it anyway with `force`.")

    def marked(tmp: Path) -> None:
        fill(tmp)
        (tmp / marker).write_text("written by mdnet_utils; the folder is replaced whole when it is written again\n")
    return write_folder(out, marked)


#: The most pixels an image may have (PIL's own decompression-bomb limit, about 89 million): a file whose
#: header claims more is refused before it is decoded.
MAX_PIXELS = 89_478_485


def read_image(path: str | os.PathLike, *, gray: bool = False) -> "torch.Tensor":
    """The image file at ``path`` as a uint8 tensor (3, H, W) RGB, or (1, H, W) with ``gray``; an
    ``ImageError`` naming the file if it cannot be read, or if its header claims more than ``MAX_PIXELS``
    pixels (checked before decoding: a decompression bomb is never unpacked). 16-bit images are scaled to
    8 bits, not clipped."""
    import numpy as np
    import torch
    from PIL import Image

    path = str(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageError(path, err.strerror or type(err).__name__) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw.tobytes())) as im:
                width, height = im.size  # the header alone, before anything is decoded
                if width * height > MAX_PIXELS:
                    raise ImageError(path, f"its header claims {width} x {height} pixels, over the limit of "
                                           f"{MAX_PIXELS:,}")
                if im.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16 bits a pixel: scale, do not clip at 255
                    array = (np.asarray(im).astype(np.float64) * (255 / 65535)).round().clip(0, 255).astype(np.uint8)
                    image = torch.from_numpy(array.copy()).unsqueeze(0)
                    return image if gray else image.expand(3, -1, -1).contiguous()
                array = np.asarray(im.convert("L" if gray else "RGB"))
    except Image.DecompressionBombError:
        raise ImageError(path, f"its header claims more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:  # not an image, truncated, corrupt
        raise ImageError(path, type(err).__name__) from None
    image = torch.from_numpy(array.copy())
    return image.unsqueeze(0) if gray else image.permute(2, 0, 1).contiguous()


def resize_image(image: "torch.Tensor", size: int) -> "torch.Tensor":
    """An image tensor (..., H, W), uint8 or float, resized to (size, size) with antialiased bilinear
    interpolation (``transforms.v2``); returned unchanged when it already has that size."""
    import torchvision.transforms.v2.functional as TF

    if tuple(image.shape[-2:]) == (size, size):
        return image
    return TF.resize(image, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
