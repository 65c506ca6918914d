"""Files in and out: the one copy of each way the package writes or reads a file.

Writing is atomic everywhere: a file is written to a temporary name beside its destination and renamed
into place (``atomic_write``, ``write_text``, ``write_json``); a folder is filled as a hidden sibling and
swapped in (``write_folder``). A crash, a full disk or an interruption therefore never leaves half a file
or half a folder where the user will look.

Reading images: ``read_image`` decodes with torchvision (``torchvision.io.decode_image``: PNG, JPEG, GIF,
WebP) straight to a uint8 tensor, and falls back to PIL for the formats torchvision does not decode
(TIFF and BMP, common for pathology slides). torchvision 0.29 marks its decoders deprecated in favour of
TorchCodec (a separate compiled package, not yet tested with this course's torch); the warning is silenced
here, in the one place that decodes, and PIL remains the fallback should the decoders go. ``resize_image`` is torchvision's ``transforms.v2`` resize
(antialiased bilinear), the one resize of the package: training, evaluation and the ``report`` command
all see an image the same way.

Import cost (measured here, torch 2.14.1): torch takes 2.0 s and 650 MB to import, torchvision 1.6 s and
170 MB more. The writers serve commands that never touch an image (``student``, ``site``, the notebook
runner), so the image libraries are imported inside the two readers, not at the top of this module.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mdnet_utils.errors import ImageError

if TYPE_CHECKING:
    import torch

__all__ = ["atomic_write", "write_text", "write_json", "write_folder", "read_image", "resize_image",
           "ImageError"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary name beside ``path``, then rename it to ``path``: a crash never leaves
    half a file there, and a failed ``write`` leaves no temporary file. The file gets the permissions of the
    one it replaces, or a new file's usual ones (not ``mkstemp``'s owner-only). Every file of the package is
    written through here (checkpoints, run files, vocabularies, cards, notebooks)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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


def read_image(path: str | os.PathLike, *, gray: bool = False) -> "torch.Tensor":
    """The image file at ``path`` as a uint8 tensor (3, H, W) RGB, or (1, H, W) with ``gray``; an
    ``ImageError`` naming the file if it cannot be read."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_image

    path = str(path)
    try:
        data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    except OSError as err:
        raise ImageError(path, err.strerror or type(err).__name__) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # see the module docstring
            return decode_image(data, mode=ImageReadMode.GRAY if gray else ImageReadMode.RGB)
    except RuntimeError:  # not a format torchvision decodes (TIFF, BMP), or corrupt: PIL decides which
        pass
    try:
        with Image.open(path) as im:
            array = np.array(im.convert("L" if gray else "RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageError(path, type(err).__name__) from None
    return torch.from_numpy(array).unsqueeze(0) if gray else torch.from_numpy(array).permute(2, 0, 1).contiguous()


def resize_image(image: "torch.Tensor", size: int) -> "torch.Tensor":
    """An image tensor (..., H, W), uint8 or float, resized to (size, size) with antialiased bilinear
    interpolation (``transforms.v2``); returned unchanged when it already has that size."""
    import torchvision.transforms.v2.functional as TF

    if tuple(image.shape[-2:]) == (size, size):
        return image
    return TF.resize(image, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
