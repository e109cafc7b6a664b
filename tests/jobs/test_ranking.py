"""The ranking jobs on real Spark, real Delta tables and a really trained (tiny) ranker."""

import numpy as np
import pandas as pd
import pytest

from jobs.cli import main
from jobs.ranking import description_delta, evaluate_ranking, format_metrics, metrics_rows, summarised_queries
from ranker import registry

DS = "2024-05-01"


def test_description_delta_keeps_pairs_over_tau(ranked_lake):
    lake = ranked_lake
    lake.cfg.ranker.tau = 0.0
    every = description_delta(lake, DS)
    pairs = lake.read_pandas("silver.relsum_pairs")
    judged = lake.read_pandas("bronze.judgments").merge(lake.read_pandas("bronze.products"), on="product_id")
    with_desc = judged[judged.description.fillna("").str.strip() != ""]
    assert every.scored == len(with_desc) == every.kept == len(pairs)
    assert np.allclose(pairs.delta, pairs.score_desc - pairs.score_title)
    assert set(pairs.ranker_version) == {"v0001"}
    assert sum(n for _, n in every.histogram) == every.scored
    assert "kept" in every.text() and "quantiles" in every.text()
    # every (query, text) was scored once into silver.ranker_scores, and those are the ranker's scores
    from ranker.scorer import OnnxScorer
    from ranker.texts import product_text

    cache = lake.read_pandas("silver.ranker_scores")
    assert len(cache) == cache.score_key.nunique() >= len(with_desc) and set(cache.ranker_version) == {"v0001"}
    sample = pairs.head(8)
    direct = OnnxScorer.configured(lake.cfg.ranker_dir / "v0001", lake.cfg.ranker.scorer).score(
        list(sample["query"]), [product_text(t, d) for t, d in zip(sample.title, sample.description)])
    assert np.allclose(direct, sample.score_desc, atol=1e-5)

    lake.cfg.ranker.tau = float(np.quantile(np.abs(pairs.delta), 0.5))
    try:
        some = description_delta(lake, DS)
    finally:
        lake.cfg.ranker.tau = 0.1
    kept = lake.read_pandas("silver.relsum_pairs")
    assert 0 < some.kept == len(kept) < every.kept  # the re-run replaced the partition
    assert len(lake.read_pandas("silver.ranker_scores")) == len(cache)  # the re-run scored nothing again
    assert (kept.delta.abs() >= some.tau - 1e-9).all()


def test_evaluate_ranking_tables(ranked_lake):
    lake = ranked_lake
    metrics = evaluate_ranking(lake, DS)
    table = lake.read_pandas("eval.ranking_metrics")
    assert set(table.variant) == {"none", "desc", "untrained", "bm25", "extractive"}
    assert set(table.split) == {"all", "head", "tail"} and set(table.metric) == {"ndcg@5", "r@90p", "coverage"}
    # 5 variants x 3 splits x 2 metrics, and one coverage line per variant
    assert len(table) == 5 * 3 * 2 + 5 and (table.queries == "heldout").all()
    coverage = table[table.metric == "coverage"].set_index("variant").value
    assert coverage["none"] == 1.0 and 0 < coverage["extractive"] == coverage["desc"] < 1  # CrowdFlower: some lack a description
    table = table[table.metric != "coverage"]
    values = table.value.dropna()
    assert ((values >= 0) & (values <= 1)).all()
    # evaluated on the ranker's held-out queries only
    scores = lake.read_pandas("eval.ranking_scores")
    held = set(registry.manifest(lake.cfg.ranker_dir / "v0001")["split"]["val_queries"])
    assert set(scores.query_id) == held
    assert scores.groupby("variant").size().nunique() == 1  # every variant scored every pair
    # the stored metrics are what ranker.metrics computes from the stored scores
    again = pd.DataFrame(metrics_rows(scores, head_queries=set()))
    stored_all = table[table.split == "all"].set_index(["variant", "metric"]).value
    recomputed = again[again.split == "all"].set_index(["variant", "metric"]).value
    assert np.allclose(stored_all.sort_index(), recomputed.sort_index())
    # re-running the same date replaces, never duplicates
    evaluate_ranking(lake, DS)
    assert lake.count("eval.ranking_metrics") == 35 and lake.count("eval.ranking_scores") == len(scores)
    assert len(metrics) == 35


def test_rerank_and_lookup_commands(ranked_lake, capsys):
    lake = ranked_lake
    ids = list(lake.read_pandas("bronze.products").product_id[:3])
    env = ["--lake", lake.root]
    # the conftest lake points ranker.artifacts_dir at its own folder through lake.root
    assert main([*env, "rerank", "led christmas lights", *ids]) == 0
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(out) == 3 and out[0].startswith("  1.")
    scores = [float(line.split()[1]) for line in out]
    assert scores == sorted(scores, reverse=True)
    assert main([*env, "rerank", "q", ids[0], "nope"]) == 2
    assert "unknown product ids: nope" in capsys.readouterr().err
    assert main([*env, "lookup", ids[0]]) == 0
    assert "ranker reads:" in capsys.readouterr().out


def test_jobs_run_as_fresh_processes(ranked_lake):
    """The CLI path in a new interpreter, where no Spark session exists before the job builds its UDFs."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import REPO

    import os

    precis = str(Path(sys.executable).with_name("precis"))
    env = dict(os.environ, PRECIS__RANKER__TAU="0")  # keep every pair: the 3-step model moves scores little
    out = subprocess.run([precis, "--lake", ranked_lake.root, "job", "description_delta", "--date", "2024-05-09"],
                         capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "description_delta: kept" in out.stdout
    pairs = ranked_lake.read_pandas("silver.relsum_pairs")
    assert "2024-05-09" in set(pairs.ds)


def test_evaluate_ranking_adds_a_variant_per_summary_set(ranked_lake):
    """Summaries generated for a few held-out products become a `summary:base` variant, scored on
    title + summary (title alone for products without one), with the generator recorded."""
    from jobs.features import generate

    lake = ranked_lake
    lake.cfg.generation.relsum_max_products = 3
    lake.cfg.generation.threads = 1
    report = generate(lake, "relsum", DS)
    assert report.generated + report.failed == 3
    metrics = evaluate_ranking(lake, DS)
    summary = metrics[metrics.variant == "summary:base"]
    assert len(summary) == 9 and set(summary.model_id) == {"HuggingFaceTB/SmolLM2-135M-Instruct"} and set(summary.adapter_version) == {"base"}
    # coverage: the share of the evaluation pairs whose product has a summary (3 products)
    cov = summary[summary.metric == "coverage"].value.iloc[0]
    assert 0 < cov < metrics[(metrics.variant == "desc") & (metrics.metric == "coverage")].value.iloc[0]
    # 3 products are enough to cover the smallest held-out query whole: generate_relsum fills
    # queries one at a time, so the like-for-like `summarised` split is not empty
    assert set(summary.split) == {"all", "head", "tail", "summarised"}
    assert (metrics[metrics.split == "summarised"].n_queries >= 1).all()
    assert set(metrics[metrics.split == "summarised"].variant) == {"none", "desc", "untrained", "bm25", "extractive", "summary:base"}
    scores = lake.read_pandas("eval.ranking_scores")
    assert (scores.variant == "summary:base").sum() == (scores.variant == "none").sum()


def test_summary_variants_are_compared_on_the_queries_they_fully_cover():
    pairs = pd.DataFrame({"query_id": ["q1", "q1", "q2", "q2", "q3"], "product_id": ["a", "b", "a", "c", "d"],
                          "description": ["x", "", "x", "y", None]})
    # b and d have no description, so nothing can summarise them: q1 only needs a, and q3 has
    # nothing to compare on
    assert summarised_queries(pairs, {"summary:base": {"a", "c"}, "summary:v1": {"a"}}) == {"q1"}
    assert summarised_queries(pairs, {"summary:base": {"a", "c"}}) == {"q1", "q2"}
    assert summarised_queries(pairs, {}) == set()
    scores = pd.DataFrame({"query_id": ["q1", "q1", "q2", "q2"], "product_id": ["a", "b", "a", "c"], "gain": [1.0, 0.0, 0.0, 1.0],
                           "score": [0.9, 0.1, 0.8, 0.2], "variant": "none", "scorer": "v0001"})
    rows = pd.DataFrame(metrics_rows(scores, head_queries={"q1"}, summarised={"q1"}))
    assert set(rows.split) == {"all", "head", "tail", "summarised"}
    ndcg = rows[rows.metric == "ndcg@5"].set_index("split")
    assert ndcg.n_queries["summarised"] == 1 and ndcg.value["summarised"] == ndcg.value["head"] == 1.0
    assert ndcg.value["all"] < 1.0  # q2 is ranked upside down
    assert "queries all/head/tail/summarised: 2/1/1/1" in format_metrics(rows)
    assert "summarised" not in format_metrics(pd.DataFrame(metrics_rows(scores, head_queries={"q1"})))
