"""The batch generation engine: Spark partitions through a generator backend into gold tables.

For one task and a DataFrame of inputs (the entity keys plus the raw input columns):

1. every row gets `input_hash`, a hash of its exact inputs;
2. rows whose (keys, input_hash) already exist for this (model_id, adapter_version, prompt_version),
   in the gold table or among the recorded failures, are skipped: a re-run with unchanged inputs
   generates nothing, and a run after a small change generates only what changed;
3. the rest is cut into chunks of `generation.chunk_size` rows; each chunk is generated with
   `mapInPandas` (the backend loaded once per Python worker and kept across tasks), validated, and
   committed before the next starts: valid rows are merged into the gold table, invalid ones into
   `silver.generation_failures` with their reason. A run killed mid-way loses at most the chunk in
   flight, and the next run resumes where it stopped;
4. rows of this generator whose inputs are not today's are retired (deleted), so the table holds
   what today's inputs made and a reader never takes an answer to a question no longer asked:
   - a row whose key is among today's inputs with other inputs, and whose regeneration failed today
     (a persona of a history that changed, when today's persona was refused);
   - where the job's inputs are complete (`GenerationJob.inputs_complete`), a row whose key is not
     among them at all (a persona summary of a user whose persona is gone, a removed product).
   Rows of other generators (model, adapter, prompt) are never touched. A recorded failure is
   retired the same way: once its key succeeds on other inputs, or leaves them, it no longer counts
   against the generator.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from jobs.lake import Lake, TableSpec
from jobs.lake.tables import SILVER_GENERATION_FAILURES

log = logging.getLogger(__name__)

_BACKENDS: dict[tuple, Any] = {}


@dataclass(frozen=True)
class BackendSettings:
    """Everything an executor needs to load the same backend as every other executor."""

    kind: str
    model_path: str
    model_id: str
    adapter_path: str | None
    adapter_version: str
    batch_size: int
    threads: int
    dtype: str = "auto"
    adapter_scope: str = "all"  # training.registry.SCOPES: `score` applies the adapter to the score only
    max_new_tokens: int | None = None  # generation.max_new_tokens: every task capped (benchmarks, smoke runs)

    def task(self, job: "GenerationJob"):
        """The job's task as these settings run it (capped, with its own prompt_version, when set)."""
        return job.make_task().capped(self.max_new_tokens)

    def load(self):
        key = tuple(vars(self).values())
        if key not in _BACKENDS:
            from generator.backends import load_backend

            options = {"batch_size": self.batch_size, "threads": self.threads, "dtype": self.dtype} if self.kind == "transformers" else {}
            options["adapter_scope"] = self.adapter_scope
            _BACKENDS[key] = load_backend(
                self.kind, self.model_path, self.model_id, self.adapter_path,
                None if self.adapter_version == "base" else self.adapter_version, **options,
            )
        return _BACKENDS[key]


@dataclass(frozen=True)
class GenerationJob:
    """One task's wiring: its table, entity keys, and how rows become prompts and outputs.
    `make_task`, `prepare` and `outputs` must be module-level functions (they run on executors)."""

    name: str
    table: TableSpec
    keys: tuple[str, ...]
    inputs: tuple[str, ...]  # the raw input columns hashed into input_hash
    make_task: Callable[[], Any]
    prepare: Callable[[dict[str, Any]], dict[str, Any]]
    outputs: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
    # True: the inputs are every entity the job keeps a row for, so a row of a key not among them
    # is retired. False where they are a budgeted slice of a larger set (ReLSum's
    # generation.relsum_max_products): rows of other keys, from earlier runs or a GPU import, stay.
    inputs_complete: bool = True


@dataclass
class GenerationReport:
    task: str
    total: int = 0
    skipped: int = 0
    generated: int = 0
    failed: int = 0
    retired: int = 0  # rows of this generator deleted: their inputs are not today's (module docstring, 4)
    tokens: int = 0
    seconds: float = 0.0
    chunks: int = 0

    def line(self) -> str:
        rate = self.tokens / self.seconds if self.seconds else 0.0
        return (
            f"{self.task}: {self.total} rows, {self.skipped} skipped (unchanged), {self.generated} generated, "
            f"{self.failed} failed, {self.retired} retired; {self.tokens} tokens in {self.seconds:.0f}s ({rate:.1f} tokens/s), {self.chunks} chunk(s)"
        )


_RESULT_DDL = "status string, reason string, raw_output string, attempts bigint, completion_tokens bigint, value string"


def failure_text(raw: str, max_chars: int = 2000) -> str:
    """A failed output as silver.generation_failures stores it for analysts
    (sql/failed_generations_by_reason.sql): contact details redacted first, then cut, so no half
    of a number survives the cut."""
    from generator.safety import redact_pii

    return redact_pii(raw or "")[:max_chars]


def _generate_partition(job: GenerationJob, settings: BackendSettings, max_attempts: int):
    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from generator.tasks.base import run_task

        task = settings.task(job)
        backend = settings.load()
        for frame in frames:
            if frame.empty:
                continue
            rows = frame.to_dict("records")
            results = run_task(backend, task, [job.prepare(r) for r in rows], attempts=max_attempts)
            out = frame.copy()
            out["status"] = [r.status for r in results]
            out["reason"] = [r.reason for r in results]
            out["raw_output"] = [failure_text(r.raw) for r in results]
            out["attempts"] = [r.attempts for r in results]
            out["completion_tokens"] = [r.completion_tokens for r in results]
            out["value"] = [json.dumps(job.outputs(row, r.value)) if r.value is not None else None for row, r in zip(rows, results)]
            yield out

    return run


def input_hash_column(inputs: tuple[str, ...]):
    """A row's `input_hash`: the first 32 hex of sha256 over the JSON of its input columns (sorted
    by name). Rows made elsewhere (a GPU run, `jobs.gpu`) are hashed with this same expression, so
    the generation job sees them as made from these inputs."""
    from pyspark.sql import functions as F

    return F.substring(F.sha2(F.to_json(F.struct(*[F.col(c) for c in sorted(inputs)])), 256), 1, 32)


def run_generation(lake: Lake, job: GenerationJob, inputs, ds: str, settings: BackendSettings,
                   chunk_size: int, max_attempts: int) -> GenerationReport:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    from jobs.lake.lake import spark_schema

    spark = lake.spark
    task = settings.task(job)
    model_cols = {"model_id": settings.model_id, "adapter_version": settings.adapter_version, "prompt_version": task.prompt_version}
    report = GenerationReport(job.name)
    lake.ensure(job.table)
    lake.ensure(SILVER_GENERATION_FAILURES)
    inputs = inputs.withColumn("input_hash", input_hash_column(job.inputs)).cache()
    try:
        report.total = inputs.count()
        done = lake.read(job.table)
        for c, v in model_cols.items():
            done = done.where(F.col(c) == v)
        made, on = done.select(*job.keys, "input_hash"), [*job.keys, "input_hash"]
        todo = inputs.join(made, on, "left_anti")
        stale = made.join(inputs.select(*on), on, "left_anti")
        if not job.inputs_complete:
            stale = stale.join(inputs.select(*job.keys), list(job.keys), "left_semi")
        key_expr = F.concat_ws("|", *[F.col(k).cast("string") for k in job.keys])
        failed = lake.read(SILVER_GENERATION_FAILURES).where(F.col("task") == job.name)
        for c, v in model_cols.items():
            failed = failed.where(F.col(c) == v)
        # small: the rows and failures whose inputs moved or left since the last run; a fresh table
        # has none, and its metadata says so without a Spark job
        stale_failures = failed.select("entity_key", "input_hash").join(
            inputs.select(key_expr.alias("entity_key"), "input_hash"), ["entity_key", "input_hash"], "left_anti")
        if not job.inputs_complete:
            stale_failures = stale_failures.join(inputs.select(key_expr.alias("entity_key")), "entity_key", "left_semi")
        stale = stale.collect() if lake.count(job.table) else []
        stale_failures = stale_failures.collect() if lake.count(SILVER_GENERATION_FAILURES) else []
        todo = todo.withColumn("__key", key_expr).join(
            failed.select(F.col("entity_key").alias("__key"), "input_hash"), ["__key", "input_hash"], "left_anti"
        )
        todo = todo.cache()
        n = todo.count()
        report.skipped = report.total - n
        chunks = max(1, math.ceil(n / chunk_size)) if n else 0
        log.info("%s: %d rows, %d unchanged, %d to generate in %d chunk(s) of about %d", job.name, report.total, report.skipped, n, chunks, chunk_size)
        out_schema = StructType(todo.schema.fields + StructType.fromDDL(_RESULT_DDL).fields)
        gen = _generate_partition(job, settings, max_attempts)
        parallelism = spark.sparkContext.defaultParallelism
        value_schema = spark_schema(job.table.schema)
        for i in range(chunks):
            t0 = time.time()
            chunk = todo.where(F.pmod(F.xxhash64("__key"), F.lit(chunks)) == i).repartition(parallelism)
            result = chunk.mapInPandas(gen, out_schema).cache()
            try:
                stats = result.groupBy("status").agg(F.count("*").alias("n"), F.sum("completion_tokens").alias("tok")).collect()
                now = datetime.now(timezone.utc)
                provenance = [F.lit(v).alias(k) for k, v in model_cols.items()] + [
                    F.col("input_hash"), F.lit(now).alias("generated_at"), F.lit(ds).alias("ds")]
                fields = [f.name for f in job.table.schema if f.name not in (*model_cols, "input_hash", "generated_at", "ds")]
                ok = result.where(F.col("status") == "ok").select(
                    F.from_json("value", value_schema).alias("v"), *provenance
                ).select(*[F.col(f"v.{c}").alias(c) for c in fields], *[F.col(k) for k in (*model_cols, "input_hash", "generated_at", "ds")])
                bad = result.where(F.col("status") == "failed").select(
                    F.lit(job.name).alias("task"), F.col("__key").alias("entity_key"), "reason", "raw_output", "attempts", *provenance
                )
                lake.merge(job.table, ok)
                lake.merge(SILVER_GENERATION_FAILURES, bad)
            finally:
                result.unpersist()
            by = {r["status"]: r for r in stats}
            report.generated += int(by["ok"]["n"]) if "ok" in by else 0
            report.failed += int(by["failed"]["n"]) if "failed" in by else 0
            tokens = sum(int(r["tok"] or 0) for r in stats)
            report.tokens += tokens
            report.seconds += time.time() - t0
            report.chunks += 1
            log.info("%s: chunk %d/%d committed: %d done, %d failed so far, %.1f tokens/s",
                     job.name, i + 1, chunks, report.generated, report.failed, tokens / max(1e-9, time.time() - t0))
        todo.unpersist()
        if stale:
            # a key regenerated today has today's input_hash, so only the rows not replaced match
            gone = spark.createDataFrame(stale, made.schema)
            result = lake.delete(job.table, gone.select("*", *[F.lit(v).alias(k) for k, v in model_cols.items()]),
                                 on=(*job.keys, *model_cols, "input_hash"))
            report.retired = result.rows_deleted or 0
            log.info("%s: %d of %d rows whose inputs changed or left retired (the rest were regenerated)",
                     job.name, report.retired, len(stale))
        if stale_failures:
            # a failure is the last word on its (key, inputs) only: once the key succeeds on new
            # inputs, or leaves them, its old failure no longer counts against the generator
            gone = spark.createDataFrame(stale_failures, "entity_key string, input_hash string")
            result = lake.delete(SILVER_GENERATION_FAILURES,
                                 gone.select(F.lit(job.name).alias("task"), "*", *[F.lit(v).alias(k) for k, v in model_cols.items()]),
                                 on=("task", "entity_key", *model_cols, "input_hash"))
            log.info("%s: %d recorded failure(s) retired: their key succeeded on other inputs or left them",
                     job.name, result.rows_deleted or 0)
    finally:
        inputs.unpersist()
    return report
