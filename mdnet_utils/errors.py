"""The package's exceptions for bad input: each message is one sentence naming the file or the value.

All three are ``ValueError``s, so a caller can catch bad input in one clause; the command line turns them
into one line on stderr and exit status 2.
"""
from __future__ import annotations

__all__ = ["DatasetError", "ConfigError", "ImageError", "Interrupted"]


class DatasetError(ValueError):
    """A data file is missing or malformed; the message names the file (and the entry)."""


class ImageError(ValueError):
    """A file that is not a readable image; the message names it, ``reason`` says what failed."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: not a readable image ({reason}).")


class ConfigError(ValueError):
    """A configuration value out of range. ``key`` names it as the configuration does (``depth``,
    ``stages[1].lr``), ``value`` is what was given, ``reason`` says why it is refused."""

    def __init__(self, key: str, value, reason: str):
        self.key, self.value, self.reason = key, value, reason
        super().__init__(f"{key}={value!r} {reason}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a command that can say where it stopped and how to continue: the message is that
    sentence (the command line prints it and exits with status 130)."""
