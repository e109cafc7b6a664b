"""`precis ingest`: raw files -> bronze tables, bad records -> bronze.quarantine.

One Spark pass parses every unit of every file (see `sources.Unit`) into a single DataFrame with
one struct column per target table (each task already drops the later copies of a key it parsed,
and counts them: `_Combiner`); it is cached, counted (which also surfaces unreadable files before
anything is committed), deduplicated by each table's key, and merged:

- reviews and quarantine rows are immutable: rows whose key is already stored are skipped;
- products and judgments are upserted: a changed label or description replaces the old row.

So ingesting a file again, on the same `ds` or another, leaves every table with the same rows. It is
not even parsed again: each ingested file's sha256 is recorded in `bronze.ingested_files`, and a
file whose bytes are there already is skipped (`ingest.reparse: true` parses it anyway), so a daily
run over an inbox folder costs what the new files cost. A relevance source's files are ingested
together (ESCI's examples need their products file): they are skipped only when all are known.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from jobs.ingest import records as rec
from jobs.ingest.sources import (
    PARQUET_MAGIC,
    IngestError,
    Unit,
    check_readable,
    csv_header,
    has_surrogates,
    is_gzip,
    iter_csv,
    iter_jsonl,
    iter_parquet,
    open_text_head,
    plan_jsonl_units,
    printable_raw,
    sniff_jsonl,
)
from jobs.lake import Lake, TableSpec
from jobs.lake.tables import (
    BRONZE_INGESTED_FILES,
    BRONZE_JUDGMENTS,
    BRONZE_PRODUCTS,
    BRONZE_QUARANTINE,
    BRONZE_REVIEWS,
)

log = logging.getLogger(__name__)

RELEVANCE_FORMATS = ("crowdflower", "esci")
CROWDFLOWER_COLUMNS = {"id", "query", "product_title", "product_description", "median_relevance"}
ESCI_EXAMPLE_COLUMNS = {"example_id", "query", "product_id", "esci_label"}

_SOURCE = "__source"  # each parsed row's (file, line, raw record): not a column, see `_guarded`


@dataclass(frozen=True)
class Target:
    """One kind of parsed row and the bronze table it goes to. Of a key's rows in the input, the
    smallest by `order` is stored (so a re-run picks the same row); a key already stored is kept
    (`when_matched="ignore"`: immutable rows) or replaced (`"update"`: upserted rows)."""

    name: str  # the parsed row's `target` and its struct column
    spec: TableSpec
    order: tuple[str, ...]
    when_matched: str

    def __post_init__(self) -> None:
        if self.when_matched not in ("ignore", "update"):
            raise ValueError(f"{self.name}: when_matched must be ignore or update, not {self.when_matched!r}")
        unknown = [c for c in self.order if c not in self.spec.schema.names]
        if unknown:
            raise ValueError(f"{self.name}: order names columns {unknown} that {self.spec.qualified_name} lacks")

    @property
    def first_line_wins(self) -> bool:
        """The stored row is the key's first line in the input, so a parse task may drop the later
        copies it sees itself (`_Combiner`)."""
        return self.order == ("source_file", "source_line")


TARGETS = (
    Target("quarantine", BRONZE_QUARANTINE, ("source_file", "source_line"), "ignore"),
    Target("review", BRONZE_REVIEWS, ("source_file", "source_line"), "ignore"),
    Target("product", BRONZE_PRODUCTS, ("title", "description_raw", "source_file"), "update"),
    Target("judgment", BRONZE_JUDGMENTS, ("source_file", "source_line"), "update"),
)


def _loose(schema: pa.Schema) -> pa.StructType:
    """The table's columns as a struct with every field nullable; the writer enforces nullability."""
    return pa.struct([pa.field(f.name, f.type, nullable=True) for f in schema])


# `unreadable`: why a unit's input itself failed mid-way (a truncated gzip, an I/O error), with the
# file and the last line read; the driver raises it before committing anything. It travels as data,
# so the driver never has to dig the reason out of a Spark worker's traceback.
UNREADABLE = "unreadable"
# `duplicates`: how many copies of a target's keys a parse task dropped from one file (`_Combiner`),
# so that record and duplicate counts stay exact; never a table row.
DUPLICATES = "duplicates"
PARSED_SCHEMA = pa.schema(
    [pa.field("target", pa.string(), False)] + [pa.field(t.name, _loose(t.spec.schema)) for t in TARGETS]
    + [pa.field(UNREADABLE, pa.string()),
       pa.field(DUPLICATES, pa.struct([pa.field("of", pa.string()), pa.field("source_file", pa.string()),
                                        pa.field("records", pa.int64())]))]
)


@dataclass(frozen=True)
class Context:
    """What every parsed row records about the run that made it."""

    source: str  # reviews | crowdflower | esci
    ds: str
    ingested_at: datetime
    raw_max_chars: int
    category: str | None = None


@dataclass
class IngestReport:
    kind: str
    files: list[str]
    records: dict[str, int] = field(default_factory=dict)  # parsed rows per target
    distinct: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)  # rows newly stored per table
    seconds: float = 0.0
    per_file: dict[str, int] = field(default_factory=dict)  # records parsed per file (valid and quarantined)
    skipped: list[str] = field(default_factory=list)  # files already in bronze.ingested_files, not parsed

    @property
    def duplicates(self) -> int:
        main = "review" if self.kind == "reviews" else "judgment"
        return self.records.get(main, 0) - self.distinct.get(main, 0)

    @property
    def quarantined(self) -> int:
        return self.records.get("quarantine", 0)

    def line(self) -> str:
        if self.kind == "reviews":
            n, d = self.records.get("review", 0), self.distinct.get("review", 0)
            head = (
                f"reviews: {n} valid records, {self.duplicates} duplicates, {d} distinct, "
                f"{self.written.get('bronze.reviews', 0)} new in bronze.reviews"
            )
        else:
            head = (
                f"{self.kind}: {self.records.get('judgment', 0)} judgments ({self.duplicates} duplicates, "
                f"{self.written.get('bronze.judgments', 0)} new or changed), "
                f"{self.distinct.get('product', 0)} products ({self.written.get('bronze.products', 0)} new or changed)"
            )
        skipped = f"; {len(self.skipped)} file(s) ingested before, not parsed again" if self.skipped else ""
        return (
            f"{head}; {self.quarantined} quarantined "
            f"({self.written.get('bronze.quarantine', 0)} new in bronze.quarantine); "
            f"{len(self.files)} file(s) in {self.seconds:.1f}s{skipped}"
        )


# ---------------------------------------------------------------- per-record work (executors)
def _quarantine(ctx: Context, path: str, line: int | None, raw: bytes | str, reason: str) -> dict[str, Any]:
    text = printable_raw(raw)
    raw_bytes = raw if isinstance(raw, bytes) else text.encode("utf-8")
    return {
        "target": "quarantine",
        _SOURCE: (path, line, raw),
        "quarantine": {
            "quarantine_id": rec.sha_hex(f"{Path(path).name}:{line}:".encode() + raw_bytes),
            "source": ctx.source,
            "source_file": path,
            "source_line": line,
            "raw": text[: ctx.raw_max_chars],
            "raw_truncated": len(text) > ctx.raw_max_chars,
            "reason": reason,
            "ingested_at": ctx.ingested_at,
            "ds": ctx.ds,
        },
    }


def _provenance(ctx: Context, path: str, line: int | None) -> dict[str, Any]:
    return {"source_file": path, "source_line": line, "ingested_at": ctx.ingested_at, "ds": ctx.ds}


def _reason(exc: Exception) -> str:
    """The quarantine reason of a record whose parsing raised `exc`."""
    if isinstance(exc, rec.Rejected):
        return str(exc)
    return f"unparseable record ({type(exc).__name__}: {str(exc)[:200]})"


def _guarded(ctx: Context, path: str, line: int | None, raw: bytes | str, parse: Callable[[], Iterator[dict]]):
    """The rows of one record, or its quarantine row: any exception while parsing it quarantines
    this record alone, never the file. Each row carries its source (`_SOURCE`, not a column) so
    that a value Arrow cannot store still quarantines just its record (see `_to_batches`)."""
    try:
        rows = list(parse())
    except Exception as exc:
        yield _quarantine(ctx, path, line, raw, _reason(exc))
        return
    for row in rows:
        row[_SOURCE] = (path, line, raw)
        yield row


def _review(ctx: Context, path: str, line: int, raw: bytes) -> Iterator[dict[str, Any]]:
    row = rec.parse_review(rec.parse_json_record(raw))
    row.update(_provenance(ctx, path, line), category=ctx.category)
    yield {"target": "review", "review": row}


def _review_rows(unit: Unit, ctx: Context) -> Iterator[dict[str, Any]]:
    for line, raw in iter_jsonl(unit):
        yield from _guarded(ctx, unit.path, line, raw, lambda: _review(ctx, unit.path, line, raw))


def _relevance_pair(ctx, path, line, product, judgment) -> Iterator[dict[str, Any]]:
    if product is not None:
        product.update(source_file=path, ingested_at=ctx.ingested_at, ds=ctx.ds)
        yield {"target": "product", "product": product}
    if judgment is not None:
        judgment.update(_provenance(ctx, path, line))
        yield {"target": "judgment", "judgment": judgment}


def _csv_record(ctx: Context, path: str, line: int, row: dict[str, Any], parse: Callable) -> Iterator[dict[str, Any]]:
    if any(has_surrogates(v) for v in row.values() if isinstance(v, str)):
        raise rec.Rejected("invalid UTF-8")
    yield from _relevance_pair(ctx, path, line, *parse(row))


def _csv_rows(unit: Unit, ctx: Context, parse: Callable) -> Iterator[dict[str, Any]]:
    for line, row, raw in iter_csv(unit):
        if row is None:
            yield _quarantine(ctx, unit.path, line, raw, "wrong number of CSV fields")
            continue
        yield from _guarded(ctx, unit.path, line, raw, lambda: _csv_record(ctx, unit.path, line, row, parse))


def _parquet_rows(unit: Unit, ctx: Context) -> Iterator[dict[str, Any]]:
    for line, row in iter_parquet(unit):
        raw = rec.canonical_json({k: str(v) for k, v in row.items()})
        yield from _guarded(ctx, unit.path, line, raw,
                            lambda: _relevance_pair(ctx, unit.path, line, *rec.parse_esci_example(row)))


def _vespa_rows(unit: Unit, ctx: Context) -> Iterator[dict[str, Any]]:
    for line, raw in iter_jsonl(unit):
        yield from _guarded(ctx, unit.path, line, raw, lambda: _relevance_pair(
            ctx, unit.path, line, rec.parse_vespa_product(rec.parse_json_record(raw)), None))


def unit_rows(unit: Unit, ctx: Context) -> Iterator[dict[str, Any]]:
    if ctx.source == "reviews":
        return _review_rows(unit, ctx)
    if unit.fmt == "parquet":
        return _parquet_rows(unit, ctx)
    if unit.fmt == "jsonl":
        return _vespa_rows(unit, ctx)
    parse = rec.parse_crowdflower if ctx.source == "crowdflower" else rec.parse_esci_example
    return _csv_rows(unit, ctx, parse)


_UNSTORABLE = (pa.ArrowException, OverflowError, UnicodeError, TypeError, ValueError)


def _storable(rows: list[dict[str, Any]], ctx: Context) -> list[dict[str, Any]]:
    """`rows`, each checked alone: a row with a value Arrow cannot store (an integer beyond 64 bits,
    an unencodable string) becomes its record's quarantine row."""
    safe = []
    for row in rows:
        try:
            pa.RecordBatch.from_pylist([row], schema=PARSED_SCHEMA)
            safe.append(row)
        except _UNSTORABLE as exc:
            path, line, raw = row[_SOURCE]
            safe.append(_quarantine(ctx, path, line, raw, f"a value that cannot be stored ({type(exc).__name__}: {exc})"))
    return safe


class _Combiner:
    """A map-side combine for one unit: a copy of a key the unit has already passed on is dropped
    before it is converted to Arrow or reaches Spark, and counted. A feed that re-delivers records
    otherwise sends every copy through Arrow, Arrow-to-row conversion, the cache and the
    de-duplicating shuffle.

    Only targets whose stored row is a key's first line (`Target.first_line_wins`): a unit's lines
    increase, so a dropped copy is never the one stored. A key counts as passed on only once its
    row is stored in a batch: when a batch holds a row Arrow cannot store, its rows are checked one
    by one first (`_storable`), so a record that became a quarantine row is not a copy of anything.
    Copies are dropped unchecked, as the driver's de-duplication would drop them (a review's key is
    a hash of its whole record, so its copies are stored or quarantined alike).
    The driver still de-duplicates across units and files. `tail` gives one `duplicates` row per
    target that dropped copies, which the driver adds to the record counts. At most `max_keys` keys
    are remembered per target; beyond that, copies pass through to the driver's de-duplication."""

    def __init__(self, path: str, max_keys: int = 1_000_000):
        self.path = path
        self.max_keys = max_keys
        self.targets = {t.name: t for t in TARGETS if t.first_line_wins}
        self.seen: dict[str, set[tuple]] = {name: set() for name in self.targets}
        self.dropped: dict[str, int] = {name: 0 for name in self.targets}

    def batch(self, rows: list[dict[str, Any]], ctx: Context) -> pa.RecordBatch:
        """`rows` as one Arrow batch, without the copies of keys this unit has passed on."""
        fresh, keys, dropped = self._fresh(rows)
        try:
            batch = pa.RecordBatch.from_pylist(fresh, schema=PARSED_SCHEMA)
        except _UNSTORABLE:
            fresh, keys, dropped = self._fresh(_storable(rows, ctx))
            batch = pa.RecordBatch.from_pylist(fresh, schema=PARSED_SCHEMA)
        for name, new in keys.items():
            seen = self.seen[name]
            seen.update(list(new)[: max(0, self.max_keys - len(seen))])
            self.dropped[name] += dropped[name]
        return batch

    def _fresh(self, rows: list[dict[str, Any]]):
        """The rows that are no copy of a passed-on key (nor of an earlier row of `rows`), the new
        keys per target, and the copies dropped per target; nothing is remembered yet."""
        keys: dict[str, dict[tuple, None]] = {name: {} for name in self.targets}  # insertion-ordered
        dropped = dict.fromkeys(self.targets, 0)
        fresh = []
        for row in rows:
            t = self.targets.get(row["target"])
            if t is not None:
                values = row[t.name]
                key = tuple(values.get(k) for k in t.spec.keys)
                if key in keys[t.name] or key in self.seen[t.name]:
                    dropped[t.name] += 1
                    continue
                if len(self.seen[t.name]) + len(keys[t.name]) < self.max_keys:
                    keys[t.name][key] = None
            fresh.append(row)
        return fresh, keys, dropped

    def tail(self) -> list[pa.RecordBatch]:
        rows = [{"target": DUPLICATES, DUPLICATES: {"of": name, "source_file": self.path, "records": n}}
                for name, n in self.dropped.items() if n]
        return [pa.RecordBatch.from_pylist(rows, schema=PARSED_SCHEMA)] if rows else []


def _to_batches(unit: Unit, ctx: Context, size: int = 8192) -> Iterator[pa.RecordBatch]:
    """The unit's rows in Arrow batches, later copies of a key dropped and counted (`_Combiner`).
    A failure of the input itself (a truncated gzip, an I/O error) ends the unit with one
    `unreadable` row naming the file and the last line read, which fails the whole ingest before
    anything is committed (`run_ingest`)."""
    combine = _Combiner(unit.path)
    buf: list[dict[str, Any]] = []
    rows = unit_rows(unit, ctx)
    last_line = None
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except Exception as exc:
            where = f"after line {last_line}" if last_line is not None else "before its first record"
            reason = f"{unit.path}: reading failed {where}: {type(exc).__name__}: {exc}"
            yield pa.RecordBatch.from_pylist([{"target": UNREADABLE, UNREADABLE: reason}], schema=PARSED_SCHEMA)
            return
        last_line = row[_SOURCE][1]
        buf.append(row)
        if len(buf) >= size:
            yield combine.batch(buf, ctx)
            buf = []
    if buf:
        yield combine.batch(buf, ctx)
    yield from combine.tail()


# ---------------------------------------------------------------- planning (driver)
def plan_reviews(paths: list[str], split_bytes: int) -> list[Unit]:
    units: list[Unit] = []
    for p in paths:
        path = check_readable(p)
        sniff_jsonl(path, "Amazon reviews")
        units.extend(plan_jsonl_units(path, split_bytes))
    return units


def plan_relevance(paths: list[str], fmt: str) -> list[Unit]:
    if fmt not in RELEVANCE_FORMATS:
        raise IngestError(f"unknown relevance format '{fmt}'; use one of: {', '.join(RELEVANCE_FORMATS)}")
    units: list[Unit] = []
    for p in paths:
        path = check_readable(p)
        gz = is_gzip(path)
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic == PARQUET_MAGIC:
            if fmt != "esci":
                raise IngestError(f"{path}: a Parquet file; only --format esci reads Parquet")
            import pyarrow.parquet as pq

            try:
                names = set(pq.ParquetFile(path).schema_arrow.names)
            except Exception as exc:  # a corrupt footer
                raise IngestError(f"{path}: unreadable Parquet file ({exc})") from None
            missing = ESCI_EXAMPLE_COLUMNS - names
            if missing:
                raise IngestError(f"{path}: not ESCI examples; missing columns {sorted(missing)}")
            units.append(Unit(str(path), "parquet"))
            continue
        first = next((ln for ln in open_text_head(path).splitlines() if ln.strip()), "")
        if not first.strip():
            log.warning("%s: empty; nothing to ingest from it", path)  # as for an empty reviews file
            continue
        if fmt == "esci" and first.lstrip().startswith("{"):
            sniff_jsonl(path, "a Vespa product feed")
            units.extend(plan_jsonl_units(path, 1 << 62))
            continue
        header = set(csv_header(path))
        required = CROWDFLOWER_COLUMNS if fmt == "crowdflower" else ESCI_EXAMPLE_COLUMNS
        missing = required - header
        if missing:
            raise IngestError(
                f"{path}: not a {fmt} CSV file; its header lacks {sorted(missing)} (has {sorted(header)[:10]})"
            )
        units.append(Unit(str(path), "csv", gzip=gz))
    return units


# ---------------------------------------------------------------- the Spark job
def _dedup(df, keys: tuple[str, ...], order: list[str]):
    """One row per key; the survivor is the smallest by `order`, so re-runs pick the same row."""
    from pyspark.sql import functions as F

    cols = df.columns
    packed = df.groupBy(*keys).agg(F.min_by(F.struct(*cols), F.struct(*order)).alias("r"))
    return packed.select("r.*")


def run_ingest(lake: Lake, units: list[Unit], ctx: Context, files: list[str]) -> IngestReport:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from jobs.lake.lake import spark_schema

    report = IngestReport(kind=ctx.source, files=files)
    t0 = time.time()
    spark = lake.spark
    unit_dicts = [u.to_dict() for u in units]

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for i in batch.column("id").to_pylist():
                yield from _to_batches(Unit(**unit_dicts[i]), ctx)

    n = max(1, len(units))
    parsed = (
        spark.range(0, len(units), numPartitions=n)
        .mapInArrow(parse, spark_schema(PARSED_SCHEMA))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    # per file and target: records parsed, a `duplicates` row standing for the copies it counts
    source = F.coalesce(*(F.col(f"{t.name}.source_file") for t in TARGETS), F.col(f"{DUPLICATES}.source_file"))
    kind = F.coalesce(F.col(f"{DUPLICATES}.of"), F.col("target"))
    records = F.coalesce(F.col(f"{DUPLICATES}.records"), F.lit(1))
    try:
        try:
            with _parse_progress(spark, len(units), ctx.source):
                per_file = (parsed.groupBy(source.alias("file"), kind.alias("target"))
                            .agg(F.sum(records).alias("count")).collect())
        except Exception as exc:  # not the input (that comes back as an `unreadable` row): Spark itself
            log.debug("the parse stage failed", exc_info=True)
            raise IngestError(f"reading the input failed, nothing was committed: {type(exc).__name__} in the "
                              "Spark parse stage (run with -v for Spark's traceback)") from None
        counts: dict[str, int] = {}
        for r in per_file:
            counts[r["target"]] = counts.get(r["target"], 0) + r["count"]
        if counts.pop(UNREADABLE, 0):
            reasons = [r[UNREADABLE] for r in parsed.where(F.col("target") == UNREADABLE).select(UNREADABLE).collect()]
            raise IngestError(f"reading the input failed, nothing was committed: {'; '.join(sorted(reasons))}")
        report.records = counts
        report.per_file = _log_files(per_file, time.time() - t0, lake.cfg.quality.max_quarantine_share)
        for t in TARGETS:
            if not counts.get(t.name):
                continue
            rows = parsed.where(F.col("target") == t.name).select(f"{t.name}.*")
            rows = _dedup(rows, t.spec.keys, list(t.order)).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                report.distinct[t.name] = rows.count()
                result = lake.merge(t.spec, rows, when_matched=t.when_matched)
            finally:
                rows.unpersist()
            log.info("%s", result)
            report.written[t.spec.qualified_name] = (result.rows_written if result.committed else 0) or 0
    finally:
        parsed.unpersist()
    report.seconds = time.time() - t0
    return report


@contextmanager
def _parse_progress(spark, splits: int, source: str, every_s: float = 10.0):
    """Log the parse stage's progress (splits done of all, from Spark's status tracker) every
    `every_s` seconds while the block runs: a large ingest is minutes of silence otherwise."""
    tracker, done, t0 = spark.sparkContext.statusTracker(), threading.Event(), time.time()

    def report():
        while not done.wait(every_s):
            stages = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
            stages = [st for st in stages if st and st.numTasks == max(1, splits)]
            if stages:
                st = stages[0]
                log.info("ingest %s: parsing, %d of %d split(s) done, %d running, %.0f s", source,
                         st.numCompletedTasks, st.numTasks, st.numActiveTasks, time.time() - t0)

    thread = threading.Thread(target=report, name="ingest-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _log_files(per_file, seconds: float, max_share: float) -> dict[str, int]:
    """One line per input file (records parsed, quarantined, their share), the parse rate, and a
    warning at once for a file whose quarantine share passes `quality.max_quarantine_share` (the
    bronze gate fails the day on the same share later). Returns the records parsed per file."""
    files: dict[str, dict[str, int]] = {}
    for r in per_file:
        if r["file"] is not None:
            files.setdefault(r["file"], {})[r["target"]] = r["count"]
    def records(c: dict[str, int]) -> int:  # a CSV row is a judgment and a product: count it once
        return c.get("quarantine", 0) + max((v for k, v in c.items() if k != "quarantine"), default=0)

    total = sum(records(c) for c in files.values())
    for name, c in sorted(files.items()):
        bad, n = c.get("quarantine", 0), records(c)
        share = bad / n if n else 0.0
        kept = ", ".join(f"{v} {k}s" for k, v in sorted(c.items()) if k != "quarantine")
        log.info("ingest %s: %s; %d quarantined (%.1f%%)", name, kept or "no valid record", bad, 100 * share)
        if share > max_share:
            log.warning("ingest %s: %.1f%% of its records quarantined, above quality.max_quarantine_share "
                        "(%.1f%%): the bronze gate will fail this day; see bronze.quarantine for the reasons",
                        name, 100 * share, 100 * max_share)
    if seconds > 0:
        log.info("ingest: parsed %d records from %d file(s) in %.1f s (%.0f records/s)", total, len(files), seconds,
                 total / seconds)
    return {name: records(c) for name, c in files.items()}


def _ctx(lake: Lake, source: str, ds: str, category: str | None = None) -> Context:
    return Context(
        source=source,
        ds=ds,
        ingested_at=datetime.now(timezone.utc).replace(microsecond=0),
        raw_max_chars=lake.cfg.ingest.raw_max_chars,
        category=category,
    )


@dataclass(frozen=True)
class FileFingerprint:
    path: str
    sha256: str
    size_bytes: int


def fingerprint(path: str) -> FileFingerprint:
    """The sha256 of a file's bytes, read in 1 MiB blocks, and its resolved path."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return FileFingerprint(str(Path(path).resolve()), h.hexdigest(), os.path.getsize(path))  # as source_file records it


def _known(lake: Lake, source: str, files: list[str]) -> tuple[dict[str, FileFingerprint], set[str]]:
    """Fingerprints of the files that exist, and the paths among them already ingested for `source`
    (none when `ingest.reparse` is set). A missing file is left to the planner, which says so."""
    prints = {f: fingerprint(f) for f in files if os.path.isfile(f)}
    if lake.cfg.ingest.reparse or not prints or not lake.exists(BRONZE_INGESTED_FILES):
        return prints, set()
    seen = lake.read_pandas(BRONZE_INGESTED_FILES, ["source", "sha256"])
    seen = set(seen.sha256[seen.source == source])
    return prints, {f for f, fp in prints.items() if fp.sha256 in seen}


def _record_files(lake: Lake, ctx: Context, prints: dict[str, FileFingerprint], report: IngestReport) -> None:
    """bronze.ingested_files gets one row per file just ingested (the first ingest of its bytes wins)."""
    rows = [{"source": ctx.source, "sha256": fp.sha256, "path": fp.path, "size_bytes": fp.size_bytes,
             "records": report.per_file.get(fp.path, 0), "ingested_at": ctx.ingested_at, "ds": ctx.ds}
            for f, fp in prints.items() if f in report.files]
    if rows:
        from jobs.lake.lake import spark_schema

        df = lake.spark.createDataFrame(rows, spark_schema(BRONZE_INGESTED_FILES.schema))
        lake.merge(BRONZE_INGESTED_FILES, df.dropDuplicates(["source", "sha256"]), when_matched="ignore")


def ingest_reviews(lake: Lake, files: list[str], ds: str, category: str | None = None) -> IngestReport:
    ctx = _ctx(lake, "reviews", ds, category)
    prints, known = _known(lake, "reviews", list(files))
    todo = [f for f in files if f not in known]
    report = (run_ingest(lake, plan_reviews(todo, lake.cfg.ingest.split_bytes), ctx, todo) if todo
              else IngestReport(kind="reviews", files=[]))
    report.skipped = [f for f in files if f in known]
    _record_files(lake, ctx, prints, report)
    return report


def ingest_relevance(lake: Lake, files: list[str], fmt: str, ds: str) -> IngestReport:
    ctx = _ctx(lake, fmt, ds)
    prints, known = _known(lake, fmt, list(files))
    if files and all(f in known for f in files):  # the source's files go together: skipped only all at once
        return IngestReport(kind=fmt, files=[], skipped=list(files))
    report = run_ingest(lake, plan_relevance(files, fmt), ctx, list(files))
    _record_files(lake, ctx, prints, report)
    return report
