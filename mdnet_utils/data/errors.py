"""The one exception the data loaders raise for bad input files."""
from __future__ import annotations


class DatasetError(ValueError):
    """A data file is missing or malformed; the message is one sentence naming the file."""
