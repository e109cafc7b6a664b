"""Runs the same writes and the same daily jobs on both lake engines and prints what each left.

Run as its own process (`python tests/jobs/lake/engines_conformance.py WORKDIR [LAKE_URI]`): Spark loads the
Delta jars only when its JVM starts, and the test session's JVM has none. One Spark session with
the jars serves both lakes: `deltalake` (executors write Parquet, delta-rs commits) and
`spark-delta` (delta-spark natively). Prints one JSON object: per engine, the outcome of every
step (committed or not, version after it) and each table's rows (content columns, sorted); and
each engine's tables as read by the other one's reader.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402

from jobs.lake import TableSpec, register  # noqa: E402
from jobs.lake.lake import spark_schema  # noqa: E402

KV = register(TableSpec(
    layer="test", name="kv_conformance", keys=("k",),
    schema=pa.schema([pa.field("k", pa.string(), False), pa.field("v", pa.int64()), pa.field("note", pa.string()),
                      pa.field("ds", pa.string(), False)]),
))
RACE = register(TableSpec(layer="test", name="kv_race", keys=("k",), schema=KV.schema))
DS = "2024-03-01"
BEAUTY = REPO / "data/samples/reviews/amazon2018_all_beauty_5core.jsonl.gz"
CROWDFLOWER = REPO / "data/samples/relevance/crowdflower_search_relevance_dev.csv.gz"


def inputs(work: Path) -> tuple[str, str]:
    """The first 600 Beauty reviews with poison records among them, and 300 CrowdFlower judgments."""
    import pandas as pd

    reviews = work / "reviews.jsonl"
    with gzip.open(BEAUTY, "rt") as f:
        lines = [next(f) for _ in range(600)]
    poison = ['{"reviewerID": "x", "asin": "y", "overall": Infinity}\n', "not json at all\n",
              '{"reviewerID": "u1", "asin": "p1", "overall": 9, "reviewText": "out of range"}\n',
              lines[3]]  # a copy of a stored key
    reviews.write_text("".join(lines[:200] + poison + lines[200:]))
    relevance = work / "crowdflower.csv"
    pd.read_csv(CROWDFLOWER, dtype=str, keep_default_na=False).head(300).to_csv(relevance, index=False)
    return str(reviews), str(relevance)


def kv_steps(lake, spark) -> list[dict]:
    def frame(rows, ds=DS):
        return spark.createDataFrame([(k, v, n, ds) for k, v, n in rows], spark_schema(KV.schema))

    steps = [
        ("replace_partition", lambda: lake.replace_partition(KV, frame([("a", 1, None), ("b", 2, "x")]), DS)),
        ("replace_partition again", lambda: lake.replace_partition(KV, frame([("a", 1, None), ("b", 2, "x")]), DS)),
        ("replace_partition changed", lambda: lake.replace_partition(KV, frame([("a", 3, None)]), DS)),
        ("merge update", lambda: lake.merge(KV, frame([("a", 4, "new"), ("c", 5, None)], "2024-03-02"))),
        ("merge update again", lambda: lake.merge(KV, frame([("a", 4, "new"), ("c", 5, None)], "2024-03-02"))),
        ("merge ignore", lambda: lake.merge(KV, frame([("a", 99, "no"), ("d", 6, None)], "2024-03-03"), when_matched="ignore")),
        ("delete by key", lambda: lake.delete(KV, frame([("c", 0, "any")]))),
        ("delete again", lambda: lake.delete(KV, frame([("c", 0, "any")]))),
        ("delete on columns", lambda: lake.delete(KV, frame([("a", 0, "new"), ("d", 0, "not d's")]), on=("k", "note"))),
        ("append", lambda: lake.append(KV, frame([("e", 7, None)], "2024-03-04"), "conformance", 1)),
        ("append same transaction", lambda: lake.append(KV, frame([("e", 7, None)], "2024-03-04"), "conformance", 1)),
        ("replace_table", lambda: lake.replace_table(KV, frame([("z", 0, "all")], "2024-03-05"))),
        ("replace_table again", lambda: lake.replace_table(KV, frame([("z", 0, "all")], "2024-03-05"))),
    ]
    out = []
    for name, step in steps:
        before = lake.delta_table(KV).version() if lake.exists(KV) else None
        result = step()
        after = lake.delta_table(KV).version()
        out.append({"step": name, "committed": after != before, "reported": result.committed,
                    "rows_written": result.rows_written if result.committed else 0,
                    "rows_deleted": result.rows_deleted or 0, "rows": rows(lake, KV)})
    return out


def concurrent_merges(lake, spark, writers: int = 3, keys: int = 40) -> dict:
    """`writers` threads upsert the same keys at once (each its own values): every key once after."""
    import threading

    from tests.conftest import run_concurrently

    spec = RACE
    lake.merge(spec, spark.createDataFrame([("seed", 0, None, DS)], spark_schema(spec.schema)))
    barrier = threading.Barrier(writers)

    def writer(w):
        def run():
            df = spark.createDataFrame([(f"k{i}", w, f"writer {w}", DS) for i in range(keys)], spark_schema(spec.schema))
            barrier.wait()
            lake.merge(spec, df)
        return run

    run_concurrently(*[writer(w) for w in range(writers)])
    stored = lake.read_arrow(spec, ["k"]).column("k").to_pylist()
    return {"rows": len(stored), "distinct_keys": len(set(stored)), "expected_keys": keys + 1}


def rows(lake, spec) -> list:
    cols = spec.content_columns
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in lake.read_arrow(spec, cols).to_pylist())


def job_steps(lake, reviews: str, relevance: str) -> dict:
    from jobs.ingest.job import ingest_relevance, ingest_reviews
    from jobs.lake import tables as T
    from jobs.pipeline import filter_reviews

    tables = (T.BRONZE_REVIEWS, T.BRONZE_QUARANTINE, T.BRONZE_PRODUCTS, T.BRONZE_JUDGMENTS, T.BRONZE_INGESTED_FILES,
              T.SILVER_REVIEW_SPLIT, T.SILVER_USER_HISTORIES,
              T.SILVER_REVIEW_SAMPLES)
    start = time.time()

    def run():
        ingest_reviews(lake, [reviews], DS, category="All Beauty")
        ingest_relevance(lake, [relevance], "crowdflower", DS)
        filter_reviews(lake, DS)

    run()
    first = {t.qualified_name: lake.delta_table(t).version() for t in tables if lake.exists(t)}
    seconds = time.time() - start
    run()  # the same day again: no table may change
    second = {t.qualified_name: lake.delta_table(t).version() for t in tables if lake.exists(t)}
    return {"seconds": round(seconds, 1), "versions": first, "versions_again": second,
            "tables": {t.qualified_name: rows(lake, t) for t in tables if lake.exists(t)}}


def cross_reads(spark, lake, spec) -> dict:
    """The table as delta-spark's reader sees it (whichever engine wrote it)."""
    cols = spec.content_columns
    native = spark.read.format("delta").load(lake.path(spec)).select(*cols)
    return sorted(json.dumps(r.asDict(), sort_keys=True, default=str) for r in native.collect())


def main(work: Path, root: str | None) -> None:
    """Both lakes under `work`, or under the object-store URI `root` (its endpoint and region in
    the PRECIS__LAKE__STORAGE_OPTIONS mapping, its credentials in the environment)."""
    import os

    from jobs.config import load_config
    from jobs.lake import Lake
    from jobs.lake import tables as T
    from jobs.spark import get_spark

    env = {"PRECIS__SPARK__MASTER": "local[2]", "PRECIS__SPARK__SHUFFLE_PARTITIONS": "4", "PRECIS__LAKE__ENGINE": "spark-delta",
           **{k: v for k, v in os.environ.items() if k == "PRECIS__LAKE__STORAGE_OPTIONS"}}
    if root:  # an object store keeps the tables only (jobs.config)
        env.update(PRECIS__RANKER__ARTIFACTS_DIR=str(work / "ranker"), PRECIS__TRAINING__ADAPTERS_DIR=str(work / "adapters"),
                   PRECIS__ORCHESTRATION__REPORT_DIR=str(work / "reports"))
    base = root or str(work)
    spark = get_spark(load_config(None, lake=f"{base}/spark-delta", environ=env))
    reviews, relevance = inputs(work)
    result = {}
    for engine in ("deltalake", "spark-delta"):
        lake = Lake(load_config(None, lake=f"{base}/{engine}", environ={**env, "PRECIS__LAKE__ENGINE": engine}), spark)
        assert type(lake.engine).__name__ == {"deltalake": "DeltaRsEngine", "spark-delta": "SparkDeltaEngine"}[engine]
        result[engine] = {"kv": kv_steps(lake, spark), "race": concurrent_merges(lake, spark),
                          "jobs": job_steps(lake, reviews, relevance),
                          "read_by_delta_spark": cross_reads(spark, lake, T.BRONZE_REVIEWS)}
    print(json.dumps(result))
    spark.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
