"""Retrieval by symptom description: rank tiles by how likely the model finds a sentence about them.

MDNet can be queried with words (the paper's image retrieval): ``rank_by_query`` scores each tile with
log p(query | tile, its report up to where the query's feature is described), Eq. (11) over the query's words.
"""
from __future__ import annotations

import torch

from mdnet_utils.data.loading import to_input
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.evaluation.localisation import finding_words
from mdnet_utils.evaluation.reports import Generated
from mdnet_utils.models.mdnet import ReportGenerator

__all__ = ["rank_by_query"]


def _sentence_start(words: list[str], feature: str) -> int | None:
    """Index of the first word of the first sentence of ``words`` about ``feature`` (None if none is)."""
    hits = [pos for pos, f, _ in finding_words(words) if f == feature]
    if not hits:
        return None
    before = [k for k in range(hits[0]) if words[k] == "."]
    return before[-1] + 1 if before else 0


@torch.no_grad()
def rank_by_query(model: ReportGenerator, images: torch.Tensor, vocab: Vocabulary, query: str,
                  generated: Generated, *, batch_size: int = 128) -> torch.Tensor:
    """Retrieval by symptom description: a score per tile, log p(query | tile, its report up to there).

    ``query`` is one sentence of a report (e.g. "mitotic figures are frequent."). For each tile the model's
    own free-running report (``generated``, for the same tiles) supplies the words before the sentence
    about the query's feature, so the query is scored where a report would say it; a query about no single
    feature (or a whole report) is scored from the start. Rank tiles by the score, highest first.
    """
    query_ids = vocab.encode(query, add_special=False)
    features = {f for _, f, _ in finding_words([vocab.itos[i] for i in query_ids])}
    feature = features.pop() if len(features) == 1 else None
    prefixes = []
    for words in generated.words:
        start = _sentence_start(words, feature) if feature else 0
        prefix = words if start is None else words[:start]
        prefixes.append([vocab.stoi[w] for w in prefix])
    device = next(model.parameters()).device
    scores = []
    model.eval()
    for i in range(0, len(images), batch_size):
        enc = model.encode(to_input(images[i:i + batch_size], device))
        scores.append(model.query_log_likelihood(enc, prefixes[i:i + batch_size], query_ids).cpu())
    return torch.cat(scores)
