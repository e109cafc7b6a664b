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
from precis.errors import QualityGateFailed

log = logging.getLogger(__name__)

LAYERS = ("bronze", "silver", "gold")

# Value ranges of the input tables; generated tables declare theirs (jobs/features, ScoreColumn).
_INPUT_RANGES = {
    "bronze.reviews": {"rating": (1, 5)},
    "bronze.judgments": {"gain": (0, 1)},
    "silver.review_samples": {"rating": (1, 5), "sample_rank": (1, None)},
    "silver.user_histories": {"mean_rating": (1, 5), "n_reviews": (1, None)},
    "silver.review_split": {"rating": (1, 5)},
    "silver.relsum_pairs": {"gain": (0, 1), "score_title": (0, 1), "score_desc": (0, 1), "delta": (-1, 1)},
}
_PROVENANCE = ("model_id", "adapter_version", "prompt_version", "input_hash")
# Silver tables that filter_reviews must fill on every run (an empty one means no usable input).
_MUST_HAVE_ROWS = ("silver.review_samples", "silver.user_histories", "silver.review_split")
# Silver tables whose emptiness is reported but not fatal: description_delta may keep no pair.
_WARN_IF_EMPTY = ("silver.relsum_pairs",)


def _feature_jobs() -> dict:
    """Generated table -> its FeatureJob (silver.review_preferences is model output: gold gate)."""
    from jobs.features import JOBS

    return {job.table.qualified_name: job for job in JOBS.values()}


def gate_tables(layer: str) -> tuple[str, ...]:
    if layer == "bronze":
        return ("bronze.reviews", "bronze.products", "bronze.judgments")
    if layer == "silver":
        return ("silver.review_samples", "silver.user_histories", "silver.review_split", "silver.relsum_pairs")
    return tuple(_feature_jobs())


@dataclass(frozen=True)
class Outcome:
    """One expectation's outcome on one table."""

    table: str
    expectation: str
    column: str
    success: bool
    observed: str  # what GE observed, as short JSON (unexpected count and examples, or a value)
    severity: str = "fail"  # fail: blocks publish | warn: reported only


@dataclass
class GateResult:
    layer: str
    ds: str
    outcomes: list[Outcome] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows validated
    report_path: str | None = None

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes if o.severity == "fail")

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "fail"]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "warn"]

    def text(self) -> str:
        ok = sum(o.success for o in self.outcomes)
        head = (f"quality gate {self.layer} ds={self.ds}: {'PASSED' if self.success else 'FAILED'} "
                f"({ok}/{len(self.outcomes)} expectations; rows: "
                + ", ".join(f"{t} {n}" for t, n in self.rows.items()) + ")")
        lines = [head] + [f"  FAILED {o.table}: {o.expectation}({o.column}) observed {o.observed}" for o in self.failed]
        lines += [f"  WARNING {o.table}: {o.expectation}({o.column}) observed {o.observed}" for o in self.warnings]
        if self.report_path:
            lines.append(f"  details: {self.report_path}")
        return "\n".join(lines)


# ------------------------------------------------------------------ suites
_GX_SEVERITY = {"fail": "critical", "warn": "warning"}


def _suite_for(name: str, spec: TableSpec | None, lake: Lake, rows: int = 0):
    """The expectations for one table (or one derived frame when `spec` is None); `rows` is the
    number of rows the table has for the day (score rules need `quality.content.min_rows`)."""
    import great_expectations as gx

    q = lake.cfg.quality
    c = q.content
    E = gx.expectations
    suite = gx.ExpectationSuite(name=name.replace(".", "_"))
    add = suite.add_expectation
    if spec is not None:
        job = _feature_jobs().get(name)
        derived = _derived_columns(job) if job is not None else []
        add(E.ExpectTableColumnsToMatchSet(column_set=[*spec.schema.names, *derived], exact_match=True))
        for f in spec.schema:
            if not f.nullable and not pa.types.is_nested(f.type):
                add(E.ExpectColumnValuesToNotBeNull(column=f.name))
        keys = list(spec.keys)
        if len(keys) == 1:
            add(E.ExpectColumnValuesToBeUnique(column=keys[0]))
        else:
            add(E.ExpectCompoundColumnsToBeUnique(column_list=keys))
        for col, (lo, hi) in _INPUT_RANGES.get(name, {}).items():
            add(E.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi))
        if name in _MUST_HAVE_ROWS or name in _WARN_IF_EMPTY:
            severity = "warn" if name in _WARN_IF_EMPTY else c.empty_table
            add(E.ExpectTableRowCountToBeBetween(min_value=1, severity=_GX_SEVERITY[severity]))
        if job is not None:
            _add_generated(suite, job, lake, rows)
    elif name == "bronze.intake":
        add(E.ExpectColumnValuesToBeBetween(column="bad_share", min_value=0, max_value=q.max_quarantine_share))
    elif name == "gold.generation":
        add(E.ExpectColumnValuesToBeBetween(column="bad_share", min_value=0, max_value=q.max_failure_share))
    elif name == "gold.concentration":
        add(E.ExpectColumnValuesToBeBetween(column="excess", max_value=c.concentration_margin,
                                            severity=_GX_SEVERITY[c.score_concentration]))
    return suite


def _add_generated(suite, job, lake: Lake, rows: int) -> None:
    """Format, provenance and content expectations of one generated table."""
    import great_expectations as gx

    from generator.metrics import GENERIC_ECHO

    q, c, E = lake.cfg.quality, lake.cfg.quality.content, gx.expectations
    for col in _PROVENANCE:
        suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=col))
    for score in job.scores:
        suite.add_expectation(E.ExpectColumnValuesToBeBetween(column=score.name, min_value=score.low, max_value=score.high))
        if rows >= c.min_rows:
            suite.add_expectation(E.ExpectColumnUniqueValueCountToBeBetween(
                column=score.name, min_value=2, severity=_GX_SEVERITY[c.constant_score]))
    echo = [f"(?i){p}" for p in (*GENERIC_ECHO, *job.echo)]
    for text in job.texts:
        low = 0 if text.may_be_empty else q.min_text_chars
        suite.add_expectation(E.ExpectColumnValueLengthsToBeBetween(column=text.name, min_value=low, max_value=q.max_text_chars))
        if not rows:  # content rules judge what was written; nothing was written today
            continue
        suite.add_expectation(E.ExpectColumnMeanToBeBetween(
            column=_distinct_col(text.name), min_value=c.min_distinct_2, severity=_GX_SEVERITY[c.distinct_2]))
        suite.add_expectation(E.ExpectColumnValuesToNotMatchRegexList(
            column=text.name, regex_list=echo, mostly=1 - c.max_echo_share, severity=_GX_SEVERITY[c.template_echo]))
    if job.grounding and rows:
        suite.add_expectation(E.ExpectColumnValuesToBeBetween(
            column=_grounded_col(job), min_value=1, severity=_GX_SEVERITY[c.ungrounded_persona]))


def _distinct_col(text: str) -> str:
    return f"distinct_2__{text}"


def _grounded_col(job) -> str:
    return f"supported__{job.main_text}"


def _derived_columns(job) -> list[str]:
    """The per-row columns the gate adds to a generated table's day (see _with_content_columns)."""
    return [_distinct_col(t.name) for t in job.texts] + ([_grounded_col(job)] if job.grounding else [])


def _with_content_columns(frame: pd.DataFrame, job, lake: Lake) -> pd.DataFrame:
    """The day's rows of a generated table plus, per text column, each row's distinct-2 ratio, and
    for a grounded job the number of its main text's sentences the row's evidence supports."""
    from generator.metrics import distinct_n

    frame = frame.copy()
    for text in job.texts:
        frame[_distinct_col(text.name)] = [distinct_n(t or "") for t in frame[text.name]]
    if job.grounding:
        frame[_grounded_col(job)] = [g.supported for g in job.grounding(lake, frame)] if len(frame) else []
    return frame


def _with_content_columns_spark(frame, job, lake: Lake):
    """`_with_content_columns` for the Spark engine (grounding runs on the driver: it compares a
    day's few personas with their users' reviews)."""
    from pyspark.sql import functions as F

    for text in job.texts:
        frame = frame.withColumn(_distinct_col(text.name), _distinct_2_spark(F.col(text.name)))
    if job.grounding:
        local = frame.select(*job.table.keys, job.main_text).toPandas()
        local[_grounded_col(job)] = [g.supported for g in job.grounding(lake, local)] if len(local) else []
        schema = frame.select(*job.table.keys).schema.add(_grounded_col(job), "long")
        counts = lake.spark.createDataFrame(local[[*job.table.keys, _grounded_col(job)]], schema)
        frame = frame.join(counts, list(job.table.keys), "left")
    return frame


def _distinct_2_spark(text):
    """`generator.metrics.distinct_n(text, 2)` in Spark SQL (no Python worker): lower-cased word
    tokens (Unicode \\w+), distinct bigrams / bigrams, 1.0 below two tokens."""
    from pyspark.sql import functions as F

    toks = F.filter(F.split(F.lower(F.coalesce(text, F.lit(""))), r"(?U)\W+"), lambda t: t != "")
    last = F.greatest(F.size(toks) - 2, F.lit(0))
    bigrams = F.transform(F.sequence(F.lit(0), last), lambda i: F.concat_ws(" ", F.get(toks, i), F.get(toks, i + 1)))
    return F.when(F.size(toks) < 2, F.lit(1.0)).otherwise(F.size(F.array_distinct(bigrams)) / F.size(bigrams))


def concentration(lake: Lake, ds: str) -> pd.DataFrame:
    """Per score column of the day's generated rows that have an actual rating: the share of the
    most common predicted value, the share of the most common actual rating of the same rows, and
    the excess of the first over the second (only with `quality.content.min_rows` such rows)."""
    from generator.metrics import mode_share

    rows = []
    for name, job in _feature_jobs().items():
        if not job.scores:
            continue
        day = _day(lake, job.table, ds)
        if day.empty:
            continue
        truth = job.truth(lake, day).reset_index(drop=True)
        known = truth.notna().to_numpy()
        if known.sum() < lake.cfg.quality.content.min_rows:
            continue
        for score in job.scores:
            predicted, actual = mode_share(day.loc[known, score.name]), mode_share(truth[known].round())
            rows.append({"table_name": name, "column_name": score.name, "n": int(known.sum()),
                         "predicted_mode_share": predicted, "actual_mode_share": actual,
                         "excess": round(predicted - actual, 9)})  # 1.0 - 0.85 is 0.15, not 0.15000000000000002
    return pd.DataFrame(rows, columns=["table_name", "column_name", "n", "predicted_mode_share", "actual_mode_share", "excess"])


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
        gx_severity = getattr(r.expectation_config, "severity", None)
        severity = "warn" if getattr(gx_severity, "value", gx_severity) == _GX_SEVERITY["warn"] else "fail"
        out.append(Outcome(name, r.expectation_config.type, column, bool(r.success),
                           json.dumps(observed, default=str)[:500], severity))
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
    jobs = _feature_jobs()
    for name in gate_tables(layer):
        spec = get_table(name)
        frame = _day_spark(lake, spec, ds) if spark_engine else _day(lake, spec, ds)
        n = int(frame.count() if spark_engine else len(frame))
        result.rows[name] = n
        if name in jobs:
            frame = (_with_content_columns_spark(frame, jobs[name], lake) if spark_engine
                     else _with_content_columns(frame, jobs[name], lake))
        result.outcomes += _validate(ctx, lake, name, frame, _suite_for(name, spec, lake, n))
    derived = {
        "bronze": (("bronze.intake", intake_shares),),
        "gold": (("gold.generation", generation_shares), ("gold.concentration", concentration)),
    }.get(layer, ())
    for name, build in derived:
        frame = build(lake, ds)
        if not len(frame):
            continue
        if spark_engine:
            frame = lake.spark.createDataFrame(frame)
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
         "column_name": o.column, "success": o.success, "observed": o.observed, "severity": o.severity}
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
