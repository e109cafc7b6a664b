"""Data-quality gates: Great Expectations suites per layer, run on one day's (`ds`) rows.

A gate validates each table of its layer with a suite built from the table registry and the
`quality:` configuration: schema, non-null and unique keys, value ranges, text length bounds, and
the share of bad records (quarantined inputs in bronze, failed generations in gold). It stores
every expectation's outcome in `eval.quality_results` (and GE's full JSON under
`<lake>/_quality/ds=<ds>/<layer>.json`) and returns a `GateResult`; the daily DAG stops before
publish when one fails.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from jobs.lake import Lake
from jobs.lake import tables as T
from jobs.lake.tables import TableSpec, get_table

log = logging.getLogger(__name__)

LAYERS = ("bronze", "silver", "gold")

# Generated text columns and their numeric scores, per generated table.
_TEXTS = {
    "gold.product_summaries": ["summary"],
    "gold.personas": ["persona"],
    "gold.persona_summaries": ["summary"],
    "silver.review_preferences": ["likes", "dislikes"],  # either may be empty: see _MAY_BE_EMPTY
    "gold.user_profiles": ["profile"],
    "gold.item_profiles": ["profile"],
    "gold.rating_predictions": ["reasoning"],
    "gold.personalized_texts": ["personalized_text"],
}
_RANGES = {
    "bronze.reviews": {"rating": (1, 5)},
    "bronze.judgments": {"gain": (0, 1)},
    "silver.review_samples": {"rating": (1, 5), "sample_rank": (1, None)},
    "silver.user_histories": {"mean_rating": (1, 5), "n_reviews": (1, None)},
    "silver.relsum_pairs": {"gain": (0, 1), "score_title": (0, 1), "score_desc": (0, 1), "delta": (-1, 1)},
    "gold.persona_summaries": {"suitability": (1, 10)},
    "gold.rating_predictions": {"predicted_rating": (1, 5)},
    "silver.review_preferences": {"rating": (1, 5)},
}
# A review may praise without complaint (or the reverse): an empty side is a valid extraction.
_MAY_BE_EMPTY = {("silver.review_preferences", "likes"), ("silver.review_preferences", "dislikes")}
_PROVENANCE = ("model_id", "adapter_version", "prompt_version", "input_hash")
_GENERATED = tuple(_TEXTS)

# The tables each layer's gate validates (silver.review_preferences is model output: gold gate).
GATE_TABLES = {
    "bronze": ("bronze.reviews", "bronze.products", "bronze.judgments"),
    "silver": ("silver.review_samples", "silver.user_histories", "silver.relsum_pairs"),
    "gold": _GENERATED,
}


class QualityGateFailed(RuntimeError):
    """A gate failed; the message lists the failed expectations."""


@dataclass(frozen=True)
class Outcome:
    """One expectation's outcome on one table."""

    table: str
    expectation: str
    column: str
    success: bool
    observed: str  # what GE observed, as short JSON (unexpected count and examples, or a value)


@dataclass
class GateResult:
    layer: str
    ds: str
    outcomes: list[Outcome] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows validated
    report_path: str | None = None

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]

    def text(self) -> str:
        ok = sum(o.success for o in self.outcomes)
        head = (f"quality gate {self.layer} ds={self.ds}: {'PASSED' if self.success else 'FAILED'} "
                f"({ok}/{len(self.outcomes)} expectations; rows: "
                + ", ".join(f"{t} {n}" for t, n in self.rows.items()) + ")")
        lines = [head] + [f"  FAILED {o.table}: {o.expectation}({o.column}) observed {o.observed}" for o in self.failed]
        if self.report_path:
            lines.append(f"  details: {self.report_path}")
        return "\n".join(lines)


# ------------------------------------------------------------------ suites
def _suite_for(name: str, spec: TableSpec | None, lake: Lake):
    """The expectations for one table (or one derived frame when `spec` is None)."""
    import great_expectations as gx

    q = lake.cfg.quality
    E = gx.expectations
    suite = gx.ExpectationSuite(name=name.replace(".", "_"))
    if spec is not None:
        suite.add_expectation(E.ExpectTableColumnsToMatchSet(column_set=list(spec.schema.names), exact_match=True))
        for f in spec.schema:
            if not f.nullable and not pa.types.is_nested(f.type):
                suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=f.name))
        keys = list(spec.keys)
        if len(keys) == 1:
            suite.add_expectation(E.ExpectColumnValuesToBeUnique(column=keys[0]))
        else:
            suite.add_expectation(E.ExpectCompoundColumnsToBeUnique(column_list=keys))
        for col, (lo, hi) in _RANGES.get(name, {}).items():
            suite.add_expectation(E.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi))
        for col in _TEXTS.get(name, []):
            low = 0 if (name, col) in _MAY_BE_EMPTY else q.min_text_chars
            suite.add_expectation(E.ExpectColumnValueLengthsToBeBetween(column=col, min_value=low, max_value=q.max_text_chars))
        if name in _GENERATED:
            for col in _PROVENANCE:
                suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=col))
    elif name == "bronze.intake":
        suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="bad_share", min_value=0, max_value=q.max_quarantine_share))
    elif name == "gold.generation":
        suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="bad_share", min_value=0, max_value=q.max_failure_share))
    return suite


# ------------------------------------------------------------------ frames of one day
def _day(lake: Lake, spec: TableSpec, ds: str) -> pd.DataFrame:
    if not lake.exists(spec):
        return spec.schema.empty_table().to_pandas()
    return lake.read_arrow(spec, where={"ds": ds}).to_pandas()


def _day_spark(lake: Lake, spec: TableSpec, ds: str):
    from pyspark.sql import functions as F

    return lake.read(spec).where(F.col("ds") == ds)


def intake_shares(lake: Lake, ds: str) -> pd.DataFrame:
    """Per input source: records accepted and quarantined on `ds`, and the quarantined share."""
    q = _day(lake, T.BRONZE_QUARANTINE, ds)
    accepted = {"reviews": len(_day(lake, T.BRONZE_REVIEWS, ds))}
    judgments = _day(lake, T.BRONZE_JUDGMENTS, ds)
    for source, n in judgments.groupby("source").size().items():
        accepted[source] = int(n)
    bad = q.groupby("source").size().to_dict() if len(q) else {}
    rows = []
    for source in sorted(set(accepted) | set(bad)):
        a, b = accepted.get(source, 0), int(bad.get(source, 0))
        rows.append({"source": source, "accepted": a, "quarantined": b, "bad_share": b / (a + b) if a + b else 0.0})
    return pd.DataFrame(rows, columns=["source", "accepted", "quarantined", "bad_share"])


def generation_shares(lake: Lake, ds: str) -> pd.DataFrame:
    """Per generation task: rows generated on `ds`, rows that failed validation, and the failed share."""
    from jobs.features import JOBS

    failures = _day(lake, T.SILVER_GENERATION_FAILURES, ds)
    bad = failures.groupby("task").size().to_dict() if len(failures) else {}
    rows = []
    for job in JOBS.values():
        good, failed = len(_day(lake, job.table, ds)), int(bad.get(job.name, 0))
        total = good + failed
        rows.append({"task": job.name, "generated": good, "failed": failed, "bad_share": failed / total if total else 0.0})
    return pd.DataFrame(rows, columns=["task", "generated", "failed", "bad_share"])


# ------------------------------------------------------------------ running a gate
def _validate(ctx, lake: Lake, name: str, frame, suite) -> list[Outcome]:
    engine = lake.cfg.quality.engine
    source_name = f"precis_{engine}"
    try:
        source = ctx.data_sources.get(source_name)
    except KeyError:
        source = ctx.data_sources.add_spark(source_name) if engine == "spark" else ctx.data_sources.add_pandas(source_name)
    asset = source.add_dataframe_asset(name.replace(".", "_"))
    batch = asset.add_batch_definition_whole_dataframe("day").get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite)
    out = []
    for r in result.results:
        kw = r.expectation_config.kwargs
        column = kw.get("column") or ",".join(kw.get("column_list") or []) or "*"
        res = r.result or {}
        observed = {k: res[k] for k in ("observed_value", "unexpected_count", "partial_unexpected_list") if k in res}
        if r.exception_info and r.exception_info.get("raised_exception"):
            observed["error"] = str(r.exception_info.get("exception_message"))[:200]
        out.append(Outcome(name, r.expectation_config.type, column, bool(r.success), json.dumps(observed, default=str)[:500]))
    return out


def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return ctx


def run_gate(lake: Lake, layer: str, ds: str) -> GateResult:
    """Validate `layer`'s rows of `ds`; store and return the outcomes (does not raise)."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer '{layer}'; gates exist for {', '.join(LAYERS)}")
    ctx = _context()
    result = GateResult(layer, ds)
    spark_engine = lake.cfg.quality.engine == "spark"
    for name in GATE_TABLES[layer]:
        spec = get_table(name)
        frame = _day_spark(lake, spec, ds) if spark_engine else _day(lake, spec, ds)
        result.rows[name] = int(frame.count() if spark_engine else len(frame))
        result.outcomes += _validate(ctx, lake, name, frame, _suite_for(name, spec, lake))
    derived = {"bronze": ("bronze.intake", intake_shares), "gold": ("gold.generation", generation_shares)}.get(layer)
    if derived:
        name, build = derived
        frame = build(lake, ds)
        if spark_engine:
            frame = lake.spark.createDataFrame(frame) if len(frame) else None
        if frame is not None:
            result.outcomes += _validate(ctx, lake, name, frame, _suite_for(name, None, lake))
    _store(lake, result)
    log.info(result.text())
    return result


def gate(lake: Lake, layer: str, ds: str) -> GateResult:
    """`run_gate`, raising `QualityGateFailed` when an expectation fails."""
    result = run_gate(lake, layer, ds)
    if not result.success:
        raise QualityGateFailed(result.text())
    return result


def _store(lake: Lake, result: GateResult) -> None:
    rows = [
        {"ds": result.ds, "layer": result.layer, "table_name": o.table, "expectation": o.expectation,
         "column_name": o.column, "success": o.success, "observed": o.observed}
        for o in result.outcomes
    ]
    if "://" not in lake.root:
        folder = Path(lake.root) / "_quality" / f"ds={result.ds}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{result.layer}.json"
        path.write_text(json.dumps({"layer": result.layer, "ds": result.ds, "success": result.success,
                                    "rows": result.rows, "outcomes": rows}, indent=1))
        result.report_path = str(path)
    if rows:
        df = lake.spark.createDataFrame(pd.DataFrame(rows)[T.EVAL_QUALITY_RESULTS.schema.names])
        lake.merge(T.EVAL_QUALITY_RESULTS, df)
