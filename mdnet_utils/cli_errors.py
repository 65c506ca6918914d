"""The command line's errors: a library error, or a failure while running, as the one line the CLI prints.

Bad input arrives as ``ConfigError`` / ``DatasetError`` / ``ImageError`` (one sentence naming the value or the
file): ``translate`` puts a setting it names into the words of the command line (``seed`` -> ``--seed``, when
that flag set it). A failure while running (out of memory, a full disk, ...) gets ``runtime_failure``'s line
naming what failed. ``__main__`` prints either, with exit status 2 or 1.
"""
from __future__ import annotations

import argparse
import errno
import re
import sys

from mdnet_utils.errors import ConfigError

__all__ = ["FLAGS", "RUNTIME_ERRNOS", "one_line", "flags", "translate", "runtime_failure"]

#: The flag of each setting a library error can name (``ConfigError.key``, or a `setting` in its reason).
FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "weight_decay": "--weight-decay",
         "seed": "--seed", "image_size": "--image-size", "min_count": "--min-count", "max_len": "--max-len",
         "bf16": "--bf16", "model": "--model", "num_workers": "--num-workers", "out": "--out", "resume": "--resume",
         "config": "--config", "device": "--device", "beam_size": "--beam", "n_images": "--n-images",
         "force": "--force", "size": "--size"}
RUNTIME_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EROFS}


def one_line(text: str) -> str:
    """An exception's message as one line. An error raised in a DataLoader worker arrives wrapped in a
    traceback; its last line holds the original message."""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught ") and "Original Traceback" in text:
        return re.sub(r"^[\w.]+: ", "", lines[-1].strip())
    return " ".join(line.strip() for line in lines) or type(text).__name__


def given(args: argparse.Namespace, flag: str) -> bool:
    """True when the command line set ``flag`` (flags without a value default to None, switches to False)."""
    value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
    return value is not None and value is not False  # identity: 0 is a value given


def flags(text: str) -> str:
    """A library sentence in the command line's words: each `setting` becomes the flag that sets it."""
    return re.sub(r"`(\w+)`", lambda m: FLAGS.get(m.group(1), m.group(1)), text)


def translate(err: Exception, args: argparse.Namespace) -> str:
    """A library error in the command line's words: a setting it names becomes the flag that set it."""
    if not isinstance(err, ConfigError):
        return flags(one_line(str(err)))
    name = re.split(r"[.\]]", err.key)[-1]
    reason = flags(err.reason)
    if name in FLAGS and given(args, FLAGS[name]):
        value = "" if isinstance(err.value, bool) else f" {err.value}"
        return f"{FLAGS[name]}{value} {reason}"
    where = f"{args.config}: " if getattr(args, "config", None) else ""
    return f"{where}{err.key}={err.value!r} {reason}"


def runtime_failure(err: BaseException, args: argparse.Namespace) -> str | None:
    """The one line for a failure while running (not the input's fault), or None if it is not one."""
    torch = sys.modules.get("torch")  # only a command that imported torch can run out of its memory
    out_of_memory = (MemoryError,) + ((torch.OutOfMemoryError,) if torch is not None else ())
    what = f"mdnet {args.command}"
    if isinstance(err, out_of_memory):
        return f"{what} ran out of memory ({one_line(str(err)) or 'MemoryError'}); try a smaller --batch-size."
    if isinstance(err, OSError) and err.errno in RUNTIME_ERRNOS:
        target = f" {err.filename}" if err.filename else ""
        return f"{what} failed writing{target}: {err.strerror}."
    if isinstance(err, (ValueError, OSError)):
        return None
    return f"{what} failed: {type(err).__name__}: {one_line(str(err))} (--debug shows the traceback)."
