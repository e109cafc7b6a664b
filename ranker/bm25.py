"""The lexical baseline every learned ranker is shown against: Okapi BM25 (rank_bm25) over the
product texts being ranked, with one shared corpus so scores are comparable across queries."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def bm25_scores(queries: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """BM25(query_i, text_i) for each pair; the corpus is the set of distinct texts."""
    from rank_bm25 import BM25Okapi

    if not texts:
        return np.zeros(0)
    docs = sorted(set(texts))
    index = {t: i for i, t in enumerate(docs)}
    bm25 = BM25Okapi([tokenize(d) or ["<empty>"] for d in docs])
    out = np.zeros(len(texts))
    by_query: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_query.setdefault(q, []).append(i)
    for q, rows in by_query.items():
        doc_ids = [index[texts[i]] for i in rows]
        out[rows] = bm25.get_batch_scores(tokenize(q), doc_ids)
    return out
