"""Our NDCG@k against trec_eval (pytrec_eval) and R@P against scikit-learn, on real judgments
and on edge cases."""

import gzip
import math

import numpy as np
import pandas as pd
import pytest
import pytrec_eval

from ranker.metrics import Judged, mean_ndcg, ndcg_at_k, ndcg_per_query, r_at_p, rank_items, recall_at_precision
from tests.conftest import CROWDFLOWER, ESCI_PARQUET


def trec_ndcg(rows, k, scale):
    """trec_eval wants integer relevance; NDCG is unchanged by scaling every gain."""
    qrels, run = {}, {}
    for r in rows:
        qrels.setdefault(r.query_id, {})[r.item_id] = int(round(r.gain * scale))
        run.setdefault(r.query_id, {})[r.item_id] = float(r.score)
    ev = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{k}"})
    return {q: m[f"ndcg_cut_{k}"] for q, m in ev.evaluate(run).items()}


def crowdflower_rows(seed=0, score_decimals=None):
    df = pd.read_csv(CROWDFLOWER)
    rng = np.random.default_rng(seed)
    # a plausible but imperfect ranker: the label plus noise
    noise = df.median_relevance + rng.normal(0, 1.2, len(df))
    if score_decimals is not None:
        noise = noise.round(score_decimals)  # force many ties
    return [
        Judged(q, str(i), (lab - 1) / 3, s)
        for q, i, lab, s in zip(df["query"], df["id"], df["median_relevance"], noise)
    ]


@pytest.mark.parametrize("k", [1, 5, 10, 1000])
def test_ndcg_matches_trec_eval_on_crowdflower(k):
    rows = crowdflower_rows()
    ours, ref = ndcg_per_query(rows, k), trec_ndcg(rows, k, scale=3)
    assert ours.keys() == ref.keys() and len(ours) == 163
    assert max(abs(ours[q] - ref[q]) for q in ours) < 1e-9


def test_ndcg_matches_trec_eval_with_many_ties():
    rows = crowdflower_rows(seed=1, score_decimals=0)
    ours, ref = ndcg_per_query(rows, 5), trec_ndcg(rows, 5, scale=3)
    assert max(abs(ours[q] - ref[q]) for q in ours) < 1e-9


def test_ndcg_matches_trec_eval_on_graded_esci():
    ex = pd.read_parquet(ESCI_PARQUET)
    gain = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
    rows = [Judged(str(q), p, gain[l], float(len(p) % 7)) for q, p, l in zip(ex.query_id, ex.product_id, ex.esci_label)]
    assert abs(mean_ndcg(rows, 5) - trec_ndcg(rows, 5, scale=100)[str(ex.query_id.iloc[0])]) < 1e-9


def test_edge_cases():
    # a query without a relevant item scores 0 (and trec_eval agrees)
    rows = [Judged("q", "a", 0.0, 1.0), Judged("q", "b", 0.0, 0.5)]
    assert ndcg_per_query(rows, 5) == {"q": 0.0} and trec_ndcg(rows, 5, 3) == {"q": 0.0}
    # k longer than the list; a perfect ranking is 1
    assert ndcg_at_k({"a": 2, "b": 1}, {"a": 1.0, "b": 0.5}, k=50) == pytest.approx(1.0)
    # ties are broken by item id descending, deterministically
    assert rank_items([("a", 1.0), ("c", 1.0), ("b", 2.0)]) == ["b", "c", "a"]
    # the ideal is over all judged items, not only the retrieved top k
    g = {"a": 0.0, "b": 0.0, "c": 1.0}
    assert ndcg_at_k({"a": 3, "b": 2, "c": 1}, g, k=2) == 0.0
    assert ndcg_at_k({"a": 3, "b": 2, "c": 1}, g, k=3) == pytest.approx(1 / math.log2(4))


def test_recall_at_precision_against_sklearn():
    from sklearn.metrics import precision_recall_curve

    rows = crowdflower_rows(seed=2, score_decimals=1)
    rel = np.array([r.gain == 1.0 for r in rows])
    scores = np.array([r.score for r in rows])
    p, r, _ = precision_recall_curve(rel, scores)
    for target in (0.5, 0.7, 0.9, 0.95):
        expected = r[p >= target].max() if (p >= target).any() else 0.0
        assert recall_at_precision(rel, scores, target) == pytest.approx(expected)
    assert r_at_p(rows, 0.9) == pytest.approx(recall_at_precision(rel, scores, 0.9))


def test_recall_at_precision_edges():
    # perfect separation: all relevant recalled at precision 1
    assert recall_at_precision([True, True, False], [0.9, 0.8, 0.1], 0.9) == 1.0
    # ties are taken together: the tie holds one relevant and one not, precision 0.5 there
    assert recall_at_precision([True, False, True], [0.9, 0.5, 0.5], 0.9) == 0.5
    # precision never reaches P
    assert recall_at_precision([False, True], [0.9, 0.1], 0.9) == 0.0
    # no relevant pair at all
    assert recall_at_precision([False, False], [0.9, 0.1], 0.9) == 0.0
