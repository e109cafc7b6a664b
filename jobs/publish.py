"""Publish: the serving version that online rankers read, replaced in one Delta commit.

`serving.product_summaries` holds each product's current summary. Publishing rebuilds it from
`gold.product_summaries` (preferring the configured generator's rows, newest first) and replaces
the table in one commit, so a reader sees the previous serving version or the new one, never a
mix. It refuses to publish a day whose gold quality gate has not passed, and commits nothing when
the serving content would not change (a re-run of the same day leaves the version as it is).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from jobs.lake import Lake
from jobs.lake import tables as T
from precis.errors import PublishRefused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishReport:
    ds: str
    products: int
    from_current_generator: int
    version: int | None
    committed: bool

    def line(self) -> str:
        what = f"published serving version {self.version}" if self.committed else f"serving version {self.version} unchanged"
        return (f"publish ds={self.ds}: {what}; {self.products} products with a summary "
                f"({self.from_current_generator} from the configured generator)")


def gate_passed(lake: Lake, layer: str, ds: str) -> bool:
    """Whether `layer`'s quality gate ran for `ds` and every expectation of severity `fail`
    succeeded (a `warn` rule is reported, never blocking)."""
    if not lake.exists(T.EVAL_QUALITY_RESULTS):
        return False
    rows = lake.read_arrow(T.EVAL_QUALITY_RESULTS, ["success", "severity"], {"ds": ds, "layer": layer}).to_pylist()
    return bool(rows) and all(r["success"] or r["severity"] == "warn" for r in rows)


def publish(lake: Lake, ds: str) -> PublishReport:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.features import backend_settings, current_prompt_version

    if not gate_passed(lake, "gold", ds):
        raise PublishRefused(
            f"the gold quality gate has not passed for ds={ds}; run `precis job gate_gold --date {ds}` "
            "and fix what it reports before publishing")
    settings = backend_settings(lake, "relsum")
    prompt = current_prompt_version(lake, "relsum")
    gold = lake.read(T.GOLD_PRODUCT_SUMMARIES)
    current = ((F.col("model_id") == settings.model_id) & (F.col("adapter_version") == settings.adapter_version)
               & (F.col("prompt_version") == prompt))
    # The configured generator's summary wins; a product it has not reached keeps its newest one.
    pick = Window.partitionBy("product_id").orderBy(F.when(current, 0).otherwise(1), F.desc("generated_at"), "input_hash")
    serving = (gold.withColumn("_rank", F.row_number().over(pick)).where(F.col("_rank") == 1)
               .withColumn("_current", current)
               .withColumn("published_ds", F.lit(ds)).withColumn("published_at", F.current_timestamp()))
    serving = serving.cache()
    try:
        n = serving.count()
        n_current = serving.where(F.col("_current")).count()
        result = lake.replace_table(T.SERVING_PRODUCT_SUMMARIES, serving.select(*T.SERVING_PRODUCT_SUMMARIES.schema.names))
    finally:
        serving.unpersist()
    report = PublishReport(ds, n, n_current, result.version, result.committed)
    log.info(report.line())
    return report
