"""Jobs around the ranker (reward model): train it, filter description-delta pairs, evaluate rankings."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.lake import Lake
from jobs.lake.tables import EVAL_RANKING_METRICS, EVAL_RANKING_SCORES, SILVER_RANKER_SCORES, SILVER_RELSUM_PAIRS
from jobs.scoring import product_text_col, score_udf
from ranker import registry
from ranker.metrics import Judged, ndcg_per_query, r_at_p
from ranker.texts import leading_sentences
from precis.errors import MissingPrerequisite, NoRanker

log = logging.getLogger(__name__)

TOP_GAIN = 1.0  # the top grade of both CrowdFlower (4) and ESCI (E): "relevant" for R@P


def judged_pairs(lake: Lake):
    """bronze.judgments joined with bronze.products, as a Spark DataFrame."""
    j = lake.read("bronze.judgments")
    p = lake.read("bronze.products").select("product_id", "title", "description")
    return j.join(p, "product_id", "inner")


def with_scores(lake: Lake, df, folder: Path, text, out: str = "score"):
    """`df` (with a `query` column) plus `out`: the ranker's score of (query, `text`), a column.

    Scores are kept in silver.ranker_scores under a key of (ranker version and its manifest's hash,
    graph, max length, query, text): only pairs not there yet are scored (once each), then merged in, so a daily run
    scores what changed since the last one, not every judged pair again."""
    from pyspark.sql import functions as F

    scorer = lake.cfg.ranker.scorer
    # the manifest's hash tells a retrained folder of the same name (a lake rebuilt) from the old one
    made = hashlib.sha256((folder / registry.MANIFEST).read_bytes()).hexdigest()[:16]
    tag = f"{folder.name}\x1f{made}\x1f{scorer.model_file}\x1f{scorer.max_length}"
    keyed = df.withColumn("_text", text).withColumn(
        "_key", F.substring(F.sha2(F.concat_ws("\x1f", F.lit(tag), F.coalesce("query", F.lit("")), "_text"), 256), 1, 32))
    lake.ensure(SILVER_RANKER_SCORES)
    known = lake.read(SILVER_RANKER_SCORES).select(F.col("score_key").alias("_key"))
    todo = keyed.select("_key", "query", "_text").dropDuplicates(["_key"]).join(known, "_key", "left_anti")
    new = todo.select(
        F.col("_key").alias("score_key"), F.lit(folder.name).alias("ranker_version"),
        F.lit(scorer.model_file).alias("model_file"),
        score_udf(folder, scorer)(F.col("query"), F.col("_text")).cast("double").alias("score"),
        F.lit(datetime.now(timezone.utc)).alias("scored_at"),
    ).cache()
    try:
        n = new.count()
        if n:
            lake.merge(SILVER_RANKER_SCORES, new, when_matched="ignore")
    finally:
        new.unpersist()
    log.info("ranker %s: scored %d new (query, text) pairs; the rest from silver.ranker_scores", folder.name, n)
    scores = lake.read(SILVER_RANKER_SCORES).select(F.col("score_key").alias("_key"), F.col("score").alias(out))
    return keyed.join(scores, "_key", "inner").drop("_key", "_text")


# ---------------------------------------------------------------- precis train ranker
def train_ranker(lake: Lake, untrained: bool = False, max_steps: int | None = None) -> Path:
    from generator.models import hub_id, resolve
    from ranker.train import train_and_export

    cfg = lake.cfg
    pairs = judged_pairs(lake).select("judgment_id", "query_id", "query", "product_id", "title", "description", "gain").toPandas()
    if pairs.empty:
        raise MissingPrerequisite("bronze.judgments is empty", "run `precis ingest relevance ...` first")
    pairs = pairs.sort_values("judgment_id").reset_index(drop=True)
    snapshot = {
        "table": "bronze.judgments",
        "delta_version": lake.delta_table("bronze.judgments").version(),
        "rows": len(pairs),
        "queries": int(pairs.query_id.nunique()),
        "ids_sha256": hashlib.sha256("\n".join(pairs.judgment_id).encode()).hexdigest(),
    }
    train_cfg = cfg.ranker.train.model_copy()
    if untrained:
        train_cfg.max_steps = 0
    elif max_steps is not None:
        train_cfg.max_steps = max_steps
    base = resolve(cfg.models.encoder, cfg.cache_dir)
    return train_and_export(pairs, base, cfg.ranker_dir, train_cfg, snapshot, base_model_id=hub_id(cfg.models.encoder))


def ranker_folder(lake: Lake, kind: str = "trained") -> Path:
    version = lake.cfg.ranker.version if kind == "trained" else None
    return registry.resolve(lake.cfg.ranker_dir, version, kind)


# ---------------------------------------------------------------- description_delta
@dataclass
class DeltaReport:
    scored: int
    kept: int
    tau: float
    quantiles: dict[str, float]
    histogram: list[tuple[str, int]]

    def text(self) -> str:
        q = ", ".join(f"{k}={v:+.3f}" for k, v in self.quantiles.items())
        hist = "\n".join(f"  {label:>16} {n:6d} {'#' * max(1, n * 50 // max(1, self.scored)) if n else ''}" for label, n in self.histogram)
        return (
            f"description_delta: kept {self.kept} of {self.scored} pairs with |delta| >= {self.tau} "
            f"({100 * self.kept / max(1, self.scored):.1f}%)\n  delta quantiles: {q}\n{hist}"
        )


def description_delta(lake: Lake, ds: str) -> DeltaReport:
    """r(q, title) and r(q, title + description) for every judged pair with a description; pairs
    whose description moves the score by at least tau go to silver.relsum_pairs."""
    from pyspark.sql import functions as F

    cfg = lake.cfg
    folder = ranker_folder(lake)
    pairs = judged_pairs(lake).where(F.trim(F.coalesce(F.col("description"), F.lit(""))) != "")
    pairs = with_scores(lake, pairs, folder, product_text_col(F.col("title"), F.lit(None)), "score_title")
    pairs = with_scores(lake, pairs, folder, product_text_col(F.col("title"), F.col("description")), "score_desc")
    scored = pairs.withColumn("delta", F.col("score_desc") - F.col("score_title")).cache()
    try:
        tau = cfg.ranker.tau
        probs = [0.05, 0.25, 0.5, 0.75, 0.95]
        stats = scored.agg(
            F.count("*").alias("n"),
            F.sum((F.abs("delta") >= tau).cast("int")).alias("kept"),
            F.percentile_approx("delta", probs, 10000).alias("q"),
        ).first()
        edges = [-1.0, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 1.0001]
        bucket = F.lit(0)
        for e in edges[1:-1]:
            bucket = bucket + (F.col("delta") >= e).cast("int")
        counts = {r["b"]: r["count"] for r in scored.groupBy(bucket.alias("b")).count().collect()}
        histogram = [(f"[{edges[i]:+.2f}, {min(edges[i + 1], 1.0):+.2f})", counts.get(i, 0)) for i in range(len(edges) - 1)]
        kept = scored.where(F.abs("delta") >= tau).select(
            "judgment_id", "query_id", "query", "product_id", "title", "description", "gain",
            "score_title", "score_desc", "delta",
            F.lit(folder.name).alias("ranker_version"),
            F.lit(datetime.now(timezone.utc)).alias("scored_at"),
        )
        result = lake.replace_partition(SILVER_RELSUM_PAIRS, kept, ds)
        log.info("%s", result)
    finally:
        scored.unpersist()
    n = int(stats["n"] or 0)
    quantiles = {f"p{int(p * 100)}": float(v) for p, v in zip(probs, stats["q"] or [])}
    return DeltaReport(n, int(stats["kept"] or 0), tau, quantiles, histogram)


# ---------------------------------------------------------------- evaluate_ranking
def _eval_queries(lake: Lake, trained: Path, all_queries: list[str]) -> tuple[list[str], str]:
    if lake.cfg.ranker.eval_queries == "all":
        return all_queries, "all"
    held = registry.manifest(trained)["split"]["val_queries"]
    return sorted(set(held) & set(all_queries)), "heldout"


def _summary_plans(lake: Lake, pairs, trained: Path) -> list[tuple]:
    from pyspark.sql import functions as F

    if not lake.exists("gold.product_summaries"):
        return []
    summaries = lake.read("gold.product_summaries")
    combos = summaries.select("model_id", "adapter_version", "prompt_version").distinct().orderBy("model_id", "adapter_version", "prompt_version").collect()
    # a variant is named by what tells it apart: the adapter alone, or with the prompt and model
    # where those differ too (summary:base, summary:v0001-4d2c, summary:v0001-4d2c:3f9a...)
    parts = ["adapter_version"] + [f for f in ("prompt_version", "model_id") if len({c[f] for c in combos}) > 1]
    plans = []
    for c in combos:
        name = "summary:" + ":".join(c[f] for f in parts)
        s = summaries.where((F.col("model_id") == c.model_id) & (F.col("adapter_version") == c.adapter_version)
                            & (F.col("prompt_version") == c.prompt_version)).select("product_id", "summary")
        texted = pairs.join(s, "product_id", "left").withColumn("text", product_text_col(F.col("title"), F.col("summary")))
        plans.append((name, trained, texted, c.model_id, c.adapter_version))
    return plans


def summarised_queries(pairs: pd.DataFrame, summarised: dict[str, set[str]]) -> set[str]:
    """Queries on which summary variants can be compared like for like: they have judged products
    with a description, and every one has a summary in every variant (`summarised`: variant ->
    product ids)."""
    if not summarised:
        return set()
    with_desc = pairs[pairs.description.fillna("").str.strip() != ""]
    every = set.intersection(*summarised.values())
    missing = set(with_desc.query_id[~with_desc.product_id.isin(every)])
    return set(with_desc.query_id) - missing


def metrics_rows(scores: pd.DataFrame, head_queries: set[str], summarised: set[str] | None = None) -> list[dict]:
    """NDCG@5 and R@90P per variant for all, head and tail queries, and for the `summarised`
    queries (see summarised_queries) when there are any."""
    out = []
    for variant, vdf in scores.groupby("variant", sort=True):
        splits = [
            ("all", np.ones(len(vdf), dtype=bool)),
            ("head", vdf.query_id.isin(head_queries).to_numpy()),
            ("tail", ~vdf.query_id.isin(head_queries).to_numpy()),
        ]
        if summarised:
            splits.append(("summarised", vdf.query_id.isin(summarised).to_numpy()))
        for split, mask in splits:
            sub = vdf[mask]
            rows = [Judged(q, p, g, s) for q, p, g, s in zip(sub.query_id, sub.product_id, sub.gain, sub.score)]
            per_query = ndcg_per_query(rows, 5)
            values = {
                "ndcg@5": float(np.mean(list(per_query.values()))) if per_query else None,
                "r@90p": r_at_p(rows, 0.9, top_gain=TOP_GAIN) if rows else None,
            }
            for metric, value in values.items():
                out.append({"variant": variant, "split": split, "metric": metric, "value": value,
                            "n_queries": len(per_query), "n_pairs": len(rows), "scorer": sub.scorer.iloc[0] if len(sub) else ""})
    return out


def coverage_rows(pairs: pd.DataFrame, covered: dict[str, set[str]], variants: set[str]) -> list[dict]:
    """Per variant: the share of the evaluation pairs whose product has the variant's text (a
    summary, a description); a pair without it is ranked on its title alone."""
    out = []
    for variant in sorted(variants):
        has = pairs.product_id.isin(covered.get(variant, set()))
        out.append({"variant": variant, "split": "all", "metric": "coverage", "value": float(has.mean()) if len(pairs) else None,
                    "n_queries": int(pairs.query_id.nunique()), "n_pairs": len(pairs), "scorer": ""})
    return out


def _summary_words(max_tokens: int) -> int:
    """The word budget ReLSum's prompt gives for `max_tokens` (generator.tasks.relsum.prepare)."""
    from generator.tasks import relsum

    return int(relsum.prepare("t", "d", max_tokens)["max_words"])


SPLITS = ("all", "head", "tail", "summarised")


def format_metrics(metrics: pd.DataFrame) -> str:
    splits = [s for s in SPLITS if s in set(metrics.split)]
    table = metrics.pivot_table(index="variant", columns=["metric", "split"], values="value", aggfunc="first")
    table = table.reindex(columns=[(m, s) for m in ("ndcg@5", "r@90p") for s in splits])
    table.columns = [f"{m} {s}" for m, s in table.columns]
    n = metrics[(metrics.metric == "ndcg@5")].pivot_table(index="variant", columns="split", values="n_queries", aggfunc="first")
    counts = "/".join(str(n[s].iloc[0]) for s in splits)
    return table.round(4).to_string() + f"\n(queries {'/'.join(splits)}: {counts})"


def evaluate_ranking(lake: Lake, ds: str) -> pd.DataFrame:
    """Score every judged pair of the evaluation queries under each product-text variant, write
    per-pair scores to eval.ranking_scores and the metrics to eval.ranking_metrics.

    Variants: `none` (title alone) and `desc` (title + description) with the trained ranker,
    `extractive` (title + the description's leading sentences within the summaries' word budget),
    `untrained` (title + description, the same architecture with an untrained head) when one has
    been exported, `bm25` (Okapi BM25 on title + description), and `summary:<adapter>` for each
    (model, adapter, prompt) in gold.product_summaries: title + summary, and the title alone for
    a product without one, which is what an online ranker reads."""
    from pyspark.sql import functions as F

    from ranker.bm25 import bm25_scores

    cfg = lake.cfg
    spark = lake.spark
    trained = ranker_folder(lake)
    pairs = judged_pairs(lake)
    counts = pairs.groupBy("query_id").count()
    head = {r["query_id"] for r in counts.where(F.col("count") >= cfg.ranker.head_min_judgments).collect()}
    all_queries = [r["query_id"] for r in counts.select("query_id").collect()]
    queries, which = _eval_queries(lake, trained, all_queries)
    if not queries:
        raise MissingPrerequisite("no evaluation queries: the ranker's held-out queries are not in bronze.judgments",
                                  "ingest the relevance file the ranker was trained on")
    pairs = pairs.where(F.col("query_id").isin(queries)).select("query_id", "query", "product_id", "gain", "title", "description")
    texts = {
        "none": product_text_col(F.col("title"), F.lit(None)),
        "desc": product_text_col(F.col("title"), F.col("description")),
    }
    # (variant, ranker folder, pairs with a `text` column, summaries' model_id, adapter_version)
    plans = [("none", trained, pairs.withColumn("text", texts["none"]), None, None),
             ("desc", trained, pairs.withColumn("text", texts["desc"]), None, None)]
    try:
        plans.append(("untrained", ranker_folder(lake, "untrained"), pairs.withColumn("text", texts["desc"]), None, None))
    except NoRanker:
        log.info("no untrained-head ranker exported (precis train ranker --untrained); skipping that variant")
    # The extractive baseline of the summaries' word budget: an LLM summary must beat it to be worth its cost.
    words = _summary_words(cfg.generation.relsum_max_tokens)
    extractive = F.udf(lambda d: leading_sentences(d, words), "string")
    plans.append(("extractive", trained, pairs.withColumn("text", product_text_col(F.col("title"), extractive("description"))),
                  None, None))
    summary_plans = _summary_plans(lake, pairs, trained)
    plans.extend(summary_plans)
    frames, provenance = [], {}
    for variant, folder, texted, model_id, adapter in plans:
        frames.append(
            with_scores(lake, texted, folder, F.col("text")).select("query_id", "query", "product_id", "gain", "score")
            .withColumn("variant", F.lit(variant)).withColumn("scorer", F.lit(folder.name))
        )
        provenance[variant] = (model_id, adapter)
    # BM25 needs corpus statistics over all candidate texts: computed on the driver from the
    # (query, text) pairs, which are small next to what the ranker reads.
    local = pairs.select("query_id", "query", "product_id", "gain", "description", texts["desc"].alias("text")).toPandas()
    local["score"] = bm25_scores(list(local["query"]), list(local["text"]))
    local["variant"], local["scorer"] = "bm25", "bm25"
    bm25 = spark.createDataFrame(local.drop(columns=["text", "description"]))
    scores = frames[0]
    for f in [*frames[1:], bm25]:
        scores = scores.unionByName(f)
    lake.replace_partition(EVAL_RANKING_SCORES, scores, ds)

    scored = lake.read_pandas(EVAL_RANKING_SCORES)
    scored = scored[scored.ds == ds]
    summarised = set()
    by_variant = {v: {r["product_id"] for r in t.where(F.col("summary").isNotNull()).select("product_id").distinct().collect()}
                  for v, _, t, _, _ in summary_plans}
    if summary_plans:
        summarised = summarised_queries(local, by_variant)  # the judged pairs, already on the driver for BM25
        log.info("summary variants compared like for like on %d of %d queries (all their described products summarised)",
                 len(summarised), len(queries))
    rows = metrics_rows(scored, head, summarised)
    described = set(local.product_id[local.description.fillna("").str.strip() != ""])
    covered = {"none": set(local.product_id), "desc": described, "untrained": described, "bm25": described,
               "extractive": described}
    covered.update(by_variant)
    rows += coverage_rows(local, covered, set(scored.variant))
    metrics = pd.DataFrame(rows)
    metrics["queries"] = which
    metrics["ranker_version"] = trained.name
    metrics["model_id"] = [provenance.get(v, (None, None))[0] for v in metrics.variant]
    metrics["adapter_version"] = [provenance.get(v, (None, None))[1] for v in metrics.variant]
    metrics["ds"] = ds
    from jobs.lake.lake import spark_schema

    sdf = spark.createDataFrame(metrics[EVAL_RANKING_METRICS.schema.names], spark_schema(EVAL_RANKING_METRICS.schema))
    lake.replace_partition(EVAL_RANKING_METRICS, sdf, ds)
    return metrics
