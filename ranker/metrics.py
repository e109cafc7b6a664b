"""Ranking metrics, as plain Python over (query, item, gain, score) rows.

NDCG@k follows trec_eval's `ndcg_cut_k`:
  - gain is linear: the judgment's `gain` itself (CrowdFlower 0, 1/3, 2/3, 1; ESCI 1, 0.1, 0.01, 0);
  - the discount of rank i (1-based) is 1 / log2(i + 1);
  - the ideal ranking sorts *all* judged items of the query by gain, then cuts at k;
  - a query whose ideal DCG is 0 (no item with a positive gain) scores 0 and still counts in the mean;
  - ties in score are broken by item id, descending (trec_eval's order), so results are deterministic.

Recall at precision P (R@P, e.g. R@90P for P = 0.9) pools all judged pairs of all queries:
relevant means the top grade (gain == the highest gain in the data, 1.0 for both our sources); for
every score threshold t, precision and recall are those of the pairs scored >= t; R@P is the highest
recall among thresholds whose precision is >= P, and 0 if none reaches P. Pairs with equal scores
are always taken together.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Judged:
    query_id: str
    item_id: str
    gain: float
    score: float


def rank_items(items: Sequence[tuple[str, float]]) -> list[str]:
    """Item ids by score descending, ties by id descending (trec_eval's order)."""
    return [i for i, _ in sorted(items, key=lambda t: (t[1], t[0]), reverse=True)]


def dcg(gains: Iterable[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at_k(scores: dict[str, float], gains: dict[str, float], k: int) -> float:
    """NDCG@k of one query: `scores` and `gains` map item id -> value over the judged items."""
    ranked = rank_items([(i, scores[i]) for i in gains if i in scores])
    ideal = dcg(sorted(gains.values(), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg(gains[i] for i in ranked[:k]) / ideal


def ndcg_per_query(rows: Iterable[Judged], k: int) -> dict[str, float]:
    by_query: dict[str, tuple[dict[str, float], dict[str, float]]] = defaultdict(lambda: ({}, {}))
    for r in rows:
        scores, gains = by_query[r.query_id]
        scores[r.item_id] = r.score
        gains[r.item_id] = r.gain
    return {q: ndcg_at_k(s, g, k) for q, (s, g) in by_query.items()}


def mean_ndcg(rows: Iterable[Judged], k: int = 5) -> float:
    per = ndcg_per_query(rows, k)
    return float(np.mean(list(per.values()))) if per else float("nan")


def precision_recall_curve(relevant: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, threshold) at every distinct score, highest threshold first."""
    relevant = np.asarray(relevant, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="stable")
    s, rel = scores[order], relevant[order]
    tp = np.cumsum(rel)
    n = np.arange(1, len(s) + 1)
    # keep the last position of each run of equal scores: ties are taken together
    last = np.r_[s[1:] != s[:-1], True] if len(s) else np.array([], dtype=bool)
    total = rel.sum()
    precision = tp[last] / n[last]
    recall = tp[last] / total if total else np.zeros(last.sum())
    return precision, recall, s[last]


def average_precision(relevant: Sequence[bool], scores: Sequence[float]) -> float:
    """Average precision, scikit-learn's step definition: the sum of (r_i - r_(i-1)) * p_i over the
    precision-recall curve; NaN when nothing is relevant."""
    if not np.asarray(relevant, dtype=bool).any():
        return float("nan")
    p, r, _ = precision_recall_curve(np.asarray(relevant), np.asarray(scores))
    return float(np.sum(np.diff(np.r_[0.0, r]) * p))


def recall_at_precision(relevant: Sequence[bool], scores: Sequence[float], precision: float = 0.9) -> float:
    p, r, _ = precision_recall_curve(np.asarray(relevant), np.asarray(scores))
    ok = p >= precision - 1e-12
    return float(r[ok].max()) if ok.any() else 0.0


def r_at_p(rows: Sequence[Judged], precision: float = 0.9, top_gain: float | None = None) -> float:
    """R@P over pooled pairs; relevant = gain equal to `top_gain` (default: the highest gain seen)."""
    if not rows:
        return float("nan")
    top = max(r.gain for r in rows) if top_gain is None else top_gain
    return recall_at_precision([math.isclose(r.gain, top) for r in rows], [r.score for r in rows], precision)
