"""Tokenizer and vocabulary of the reports.

Reports are lowercased and split into words and punctuation marks; ``detokenize`` joins them
back with the punctuation attached to the word before it, so for a report written in that
normal form (as the synthetic grammar writes them) ``detokenize(tokenize(r)) == r``.

``Vocabulary`` maps tokens to integer ids and back. Ids 0-3 are the special tokens
``<pad> <bos> <eos> <unk>``; the words follow, most frequent first (ties alphabetically), so a
vocabulary built from the same texts always gets the same ids.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from mdnet_utils.errors import DatasetError
from mdnet_utils.io import write_json

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
_ATTACH_LEFT = {".", ",", ";", ":", "!", "?", ")"}


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into words and single punctuation marks."""
    return _TOKEN.findall(text.lower())


def detokenize(tokens: list[str]) -> str:
    """Join tokens into text, punctuation attached to the word before it."""
    out = ""
    for tok in tokens:
        if not out:
            out = tok
        elif tok in _ATTACH_LEFT or out.endswith("("):
            out += tok
        else:
            out += " " + tok
    return out


PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)


class Vocabulary:
    """Token <-> id mapping: ``itos[i]`` is the token of id ``i``, ``stoi[token]`` its id.

    Ids 0, 1, 2, 3 are ``<pad> <bos> <eos> <unk>``; ``words`` get the ids from 4 on, in order.
    """

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Iterable[str] = ()):
        self.itos: list[str] = list(SPECIALS) + list(words)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("the words of a vocabulary must be distinct and not special tokens")

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "Vocabulary":
        """Vocabulary of the words seen at least ``min_count`` times in ``texts``.

        Words are ordered by count, most frequent first, ties alphabetically: deterministic.
        """
        counts = Counter(tok for text in texts for tok in tokenize(text))
        for special in SPECIALS:  # the tokenizer cannot produce them, but be safe
            counts.pop(special, None)
        kept = [w for w, c in counts.items() if c >= min_count]
        return cls(sorted(kept, key=lambda w: (-counts[w], w)))

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        """Ids of the tokens of ``text`` (unknown words -> ``<unk>``), framed by bos/eos."""
        ids = [self.stoi.get(tok, self.unk_id) for tok in tokenize(text)]
        return [self.bos_id, *ids, self.eos_id] if add_special else ids

    def decode(self, ids: Iterable[int], strip_special: bool = True) -> str:
        """Text of ``ids`` (a list or a 1-D tensor).

        With ``strip_special`` (the default) decoding stops at the first ``<eos>`` and drops
        ``<pad>`` and ``<bos>``; ``<unk>`` stays visible. Without it every token is shown.
        """
        if hasattr(ids, "tolist"):  # a tensor or a numpy array
            ids = ids.tolist()
        tokens = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"id {i} is outside the vocabulary of {len(self.itos)} tokens")
            if strip_special:
                if i == self.eos_id:
                    break
                if i in (self.pad_id, self.bos_id):
                    continue
            tokens.append(self.itos[i])
        return detokenize(tokens)

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON, atomically (``io.write_json``)."""
        write_json(path, {"tokens": self.itos})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a vocabulary written by ``save``; a missing or bad file raises ``DatasetError``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{path}: vocabulary file not found.") from None
        except json.JSONDecodeError as e:
            raise DatasetError(
                f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})."
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}: cannot read the vocabulary file ({type(e).__name__}).") from None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if (
            not isinstance(tokens, list)
            or not all(isinstance(t, str) for t in tokens)
            or tuple(tokens[: len(SPECIALS)]) != SPECIALS
            or len(set(tokens)) != len(tokens)
        ):
            raise DatasetError(
                f"{path}: not a vocabulary file (expected {{\"tokens\": [...]}} with distinct "
                f"tokens starting with {', '.join(SPECIALS)})."
            )
        return cls(tokens[len(SPECIALS):])
