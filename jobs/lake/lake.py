"""The lake: read and write the registered Delta tables from Spark.

Four write modes, each one Delta commit, so a reader sees a table before or after it, never half:

- `replace_partition(table, df, ds)`: the rows of one `ds` replace that partition; re-running is idempotent.
- `append(table, df, app_id, version)`: an append guarded by a Delta application transaction; a
  second append with the same (app_id, version) commits nothing.
- `merge(table, df, when_matched=...)`: upsert by the table's keys (`"update"`), or insert the rows
  whose key is absent (`"ignore"`). Source rows equal in content to the stored row change nothing,
  so re-running an ingestion leaves the table at the same version.
- `delete(table, df, on=...)`: delete the stored rows that match a row of `df` on the columns `on`
  (the table's keys unless given); matching none commits nothing.

Two engines implement them behind one interface, picked by `lake.engine`:

- `deltalake` (the embedded default): executors write Parquet files into the table folder and the
  driver commits their add (and, for merges, remove) actions in one delta-rs transaction. Data is
  never collected to the driver; only one small row per written file is.
- `spark-delta`: delta-spark natively, for clusters whose Spark has the Delta jars.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote

import pyarrow as pa

from jobs.config import PrecisConfig
from jobs.lake.files import ADD_ACTION_DDL, NULL_PARTITION, filesystem, now_ms, write_partition_files
from jobs.lake.tables import TABLES, TableSpec, get_table
from precis.errors import LakeConflict, LakeError, LakeUnreachable

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

_HASH_COL = "__precis_content_hash"
_FILE_COL = "__precis_file"


@dataclass(frozen=True)
class WriteResult:
    """What one write did, for logs and tests."""

    table: str
    rows_written: int | None  # None where the engine does not report it (delta-spark)
    files_added: int | None
    files_removed: int | None
    version: int | None
    committed: bool
    rows_deleted: int | None = None  # by `delete`; None for the other writes

    def __str__(self) -> str:
        if not self.committed:
            return f"{self.table}: nothing to commit"
        if self.rows_deleted:
            return f"{self.table}: {self.rows_deleted} rows deleted ({self.files_removed} files replaced), version {self.version}"
        if self.rows_written is None:
            return f"{self.table}: committed version {self.version}"
        return (
            f"{self.table}: {self.rows_written} rows in {self.files_added} files "
            f"({self.files_removed} files replaced), version {self.version}"
        )


def spark_schema(schema: pa.Schema):
    """The Spark StructType of an Arrow schema, nullability included."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


class Lake:
    """Tables under `lake.root`, addressed as `layer.name`."""

    def __init__(self, cfg: PrecisConfig, spark: "SparkSession | None" = None):
        self.cfg = cfg
        self.root = cfg.lake_root
        self.storage_options = cfg.lake.storage_options or None
        self._spark = spark
        self._engine: _Engine | None = None

    # ------------------------------------------------------------------ plumbing
    @property
    def spark(self) -> "SparkSession":
        if self._spark is None:
            from jobs.spark import get_spark

            self._spark = get_spark(self.cfg)
        return self._spark

    @property
    def engine(self) -> "_Engine":
        if self._engine is None:
            from jobs.spark import delta_jars_available

            choice = self.cfg.lake.engine
            if choice == "auto":
                choice = "spark-delta" if delta_jars_available(self.spark) else "deltalake"
            elif choice == "spark-delta" and not delta_jars_available(self.spark):
                raise LakeError(
                    "lake.engine is 'spark-delta' but Spark has no Delta jars on its classpath: run "
                    "`precis jars pull` (fetches them into spark.jars_dir), or name them in "
                    "spark.conf['spark.jars.packages'] (or the cluster image), or set lake.engine to "
                    "'deltalake' or 'auto'"
                )
            self._engine = SparkDeltaEngine(self) if choice == "spark-delta" else DeltaRsEngine(self)
            log.info("lake engine: %s at %s (configuration: %s)", choice, self.root, self.cfg.source)
        return self._engine

    def path(self, table: str | TableSpec) -> str:
        spec = get_table(table) if isinstance(table, str) else table
        return f"{self.root}/{spec.layer}/{spec.name}"

    def exists(self, table: str | TableSpec) -> bool:
        from deltalake import DeltaTable

        try:
            return DeltaTable.is_deltatable(self.path(table), storage_options=self.storage_options)
        except OSError as exc:  # the object store refused or could not be reached: say where and what to check
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise LakeUnreachable(
                f"cannot reach the lake at {self.root} ({first}); check lake.root and the store's "
                "credentials (lake.storage_options or the environment, e.g. AWS_ACCESS_KEY_ID)"
            ) from exc

    def delta_table(self, table: str | TableSpec):
        from deltalake import DeltaTable

        return DeltaTable(self.path(table), storage_options=self.storage_options)

    def vacuum(self, table: str | TableSpec, retention_hours: int | None = None, dry_run: bool = True) -> list[str]:
        """Files of the table that no current version needs and are older than the retention
        (the table's `delta.deletedFileRetentionDuration`, default 7 days, unless `retention_hours`
        is given; Delta refuses less than the table's own): the files later commits removed, and
        the orphans a killed writer left behind (full vacuum: files no log entry mentions). Deleted
        unless `dry_run`. Retention is what keeps a running writer's not-yet-committed files and a
        long reader's snapshot safe, so it is never waived here."""
        return self.delta_table(table).vacuum(retention_hours=retention_hours, dry_run=dry_run,
                                              enforce_retention_duration=True, full=True)

    def ensure(self, table: str | TableSpec) -> None:
        """Create the table, empty with its schema, if it does not exist yet, so readers and
        analysts can query it before anything was written (e.g. a failures table with no failures)."""
        from deltalake import DeltaTable

        spec = get_table(table) if isinstance(table, str) else table
        try:
            DeltaTable.create(
                self.path(spec), spec.schema, mode="ignore", partition_by=list(spec.partition_by) or None,
                name=spec.qualified_name, description=spec.description, storage_options=self.storage_options,
            )
        except Exception:
            if not self.exists(spec):  # lost the race to another writer creating it: that is fine
                raise

    def existing_tables(self) -> list[TableSpec]:
        return [spec for _, spec in sorted(TABLES.items()) if self.exists(spec)]

    # ------------------------------------------------------------------ readers
    def read(self, table: str | TableSpec) -> "DataFrame":
        """A Spark DataFrame of the table's current snapshot (empty with its schema if absent)."""
        spec = get_table(table) if isinstance(table, str) else table
        if not self.exists(spec):
            return self.spark.createDataFrame([], spark_schema(spec.schema))
        return self.engine.read(spec)

    def read_arrow(self, table: str | TableSpec, columns: list[str] | None = None, where: dict | None = None,
                   dt=None) -> pa.Table:
        """The current snapshot (or the DeltaTable `dt` given) through delta-rs, without Spark;
        `where={"col": value or [values]}` keeps matching rows. Scans run single-threaded: pyarrow's
        scanner threads can abort the interpreter at exit (seen with deltalake 1.6 / pyarrow 26 in about
        one short-lived process in four), and these reads are small."""
        import pyarrow.compute as pc

        spec = get_table(table) if isinstance(table, str) else table
        if dt is None and not self.exists(spec):
            empty = spec.schema.empty_table()
            return empty if columns is None else empty.select(columns)
        expr = None
        for col, value in (where or {}).items():
            e = pc.field(col).isin(value) if isinstance(value, (list, tuple, set)) else pc.field(col) == value
            expr = e if expr is None else expr & e
        dataset = (dt or self.delta_table(spec)).to_pyarrow_dataset()
        return dataset.to_table(columns=columns, filter=expr, use_threads=False)

    def read_pandas(self, table: str | TableSpec, columns: list[str] | None = None):
        return self.read_arrow(table, columns).to_pandas()

    def count(self, table: str | TableSpec) -> int:
        spec = get_table(table) if isinstance(table, str) else table
        if not self.exists(spec):
            return 0
        return int(self.delta_table(spec).count())

    # ------------------------------------------------------------------ writers
    def replace_partition(self, table: str | TableSpec, df: "DataFrame", ds: str) -> WriteResult:
        spec = get_table(table) if isinstance(table, str) else table
        if spec.partition_by != ("ds",):
            raise ValueError(f"{spec.qualified_name} is not partitioned by ds; use merge or append")
        from pyspark.sql import functions as F

        # Each engine skips the commit when the partition already holds these rows.
        return self.engine.replace_partition(spec, df.withColumn("ds", F.lit(ds)), ds)

    def replace_table(self, table: str | TableSpec, df: "DataFrame") -> WriteResult:
        """Replace the whole table with `df` in one commit (readers see the old or the new rows,
        never a mix); commits nothing when the content is unchanged."""
        spec = get_table(table) if isinstance(table, str) else table
        return self.engine.replace_table(spec, df)

    def append(self, table: str | TableSpec, df: "DataFrame", app_id: str, version: int) -> WriteResult:
        spec = get_table(table) if isinstance(table, str) else table
        return self.engine.append(spec, df, app_id, version)

    def merge(
        self,
        table: str | TableSpec,
        df: "DataFrame",
        when_matched: Literal["update", "ignore"] = "update",
    ) -> WriteResult:
        """Upsert `df` by the table's keys. `df` must hold each key at most once."""
        spec = get_table(table) if isinstance(table, str) else table
        return self.engine.merge(spec, df, when_matched)

    def delete(self, table: str | TableSpec, df: "DataFrame", on: tuple[str, ...] | None = None) -> WriteResult:
        """Delete the stored rows equal to a row of `df` on the columns `on` (the table's keys
        unless given; `df` may hold other columns too), in one commit; none matching commits nothing."""
        spec = get_table(table) if isinstance(table, str) else table
        on = tuple(on or spec.keys)
        unknown = [c for c in on if c not in spec.schema.names or c not in df.columns]
        if unknown:
            raise ValueError(f"{spec.qualified_name}: cannot delete on {', '.join(unknown)}: not a column of both the table and the rows")
        return self.engine.delete(spec, df.select(*on).distinct(), on)


class _Engine:
    def __init__(self, lake: Lake):
        self.lake = lake

    def read(self, spec: TableSpec) -> "DataFrame":
        raise NotImplementedError

    def replace_partition(self, spec: TableSpec, df: "DataFrame", ds: str) -> WriteResult:
        raise NotImplementedError

    def replace_table(self, spec: TableSpec, df: "DataFrame") -> WriteResult:
        raise NotImplementedError

    def append(self, spec: TableSpec, df: "DataFrame", app_id: str, version: int) -> WriteResult:
        raise NotImplementedError

    def merge(self, spec: TableSpec, df: "DataFrame", when_matched: str) -> WriteResult:
        raise NotImplementedError

    def delete(self, spec: TableSpec, df: "DataFrame", on: tuple[str, ...]) -> WriteResult:
        raise NotImplementedError


def _fingerprint(df: "DataFrame", spec: TableSpec) -> tuple:
    """(rows, order-independent sum of content hashes): equal for two DataFrames with the same rows
    but for the columns in `content_ignore`. Summed as decimals, which cannot overflow."""
    from pyspark.sql import functions as F

    h = F.xxhash64(*[F.col(c) for c in spec.content_columns]).cast("decimal(38,0)")
    row = df.agg(F.count(F.lit(1)).alias("n"), F.sum(h).alias("h")).first()
    return int(row["n"]), row["h"]


def _content_hash(df: "DataFrame", spec: TableSpec) -> "DataFrame":
    from pyspark.sql import functions as F

    return df.withColumn(_HASH_COL, F.xxhash64(*[F.col(c) for c in spec.content_columns]))


@dataclass
class _Planned:
    """What one attempt of a delta-rs write commits: its actions and what to report."""

    actions: list
    mode: str  # append | overwrite
    partition_filters: list | None = None
    app_transactions: list | None = None
    files_removed: int = 0
    # rows the write inserted or changed, when that is not every row it wrote: an upsert rewrites
    # the untouched rows of each file it touches, and those are not news
    rows_changed: int | None = None
    rows_deleted: int | None = None

    @property
    def adds(self) -> list:
        return [a for a in self.actions if hasattr(a, "stats")]

    @property
    def rows(self) -> int:
        import json

        return sum(json.loads(a.stats)["numRecords"] for a in self.adds)


class DeltaRsEngine(_Engine):
    """Embedded: Spark executors write Parquet, delta-rs commits on the driver.

    Every write is optimistic: it is planned from one snapshot (the version it read) and committed
    against that version with delta-rs's own retries off, so a commit that another writer made in
    between is a conflict, never silently layered on top. On a conflict the written files are
    deleted and the write is planned again from the new snapshot, with exponential backoff, up to
    `lake.commit_attempts` times.
    """

    def _snapshot(self, spec: TableSpec):
        from deltalake import DeltaTable

        uri = self.lake.path(spec)
        opts = self.lake.storage_options
        return DeltaTable(uri, storage_options=opts) if DeltaTable.is_deltatable(uri, storage_options=opts) else None

    def read(self, spec: TableSpec, snapshot=None) -> "DataFrame":
        dt = snapshot if snapshot is not None else self.lake.delta_table(spec)
        files = dt.file_uris()
        spark = self.lake.spark
        schema = spark_schema(spec.schema)
        if not files:
            return spark.createDataFrame([], schema)
        # The file list pins the snapshot: files that a later commit removes stay on disk until
        # a vacuum, so this DataFrame keeps reading the version it was created from.
        reader = spark.read.schema(schema)
        if spec.partition_by:
            reader = reader.option("basePath", self.lake.path(spec))
        return reader.parquet(*files).select(*spec.schema.names)

    def _stored(self, spec: TableSpec, snapshot) -> "DataFrame":
        if snapshot is None:
            return self.lake.spark.createDataFrame([], spark_schema(spec.schema))
        return self.read(spec, snapshot)

    def _write_files(self, spec: TableSpec, df: "DataFrame") -> list:
        from deltalake.transaction import AddAction

        table_uri = self.lake.path(spec)
        schema = spec.schema
        part = spec.partition_by[0] if spec.partition_by else None
        storage_options = dict(self.lake.storage_options or {})

        def write(batches):
            return write_partition_files(batches, table_uri=table_uri, schema=schema, partition_col=part,
                                         storage_options=storage_options)

        rows = df.select(*schema.names).mapInArrow(write, ADD_ACTION_DDL).collect()
        mtime = now_ms()
        actions = []
        for r in rows:
            pv = {} if part is None else {part: r.partition_value}
            actions.append(AddAction(r.path, r.size, pv, mtime, True, r.stats))
        return actions

    # ------------------------------------------------------------ optimistic commits
    def _transact(self, spec: TableSpec, plan) -> WriteResult:
        """Plan from a snapshot, commit against its version; on a conflict, plan again.
        `plan(snapshot)` returns a `_Planned`, or a `WriteResult` when there is nothing to commit."""

        def attempt() -> WriteResult:
            snapshot = self._snapshot(spec)
            planned = plan(snapshot)
            if isinstance(planned, WriteResult):
                return planned
            try:
                version = self._commit(spec, snapshot, planned)
            except BaseException:
                self._discard(spec, planned)
                raise
            rows = planned.rows if planned.rows_changed is None else planned.rows_changed
            return WriteResult(spec.qualified_name, rows, len(planned.adds), planned.files_removed, version, True,
                               planned.rows_deleted)

        return _with_retries(self.lake, spec, attempt, _is_deltars_conflict)

    def _commit(self, spec: TableSpec, snapshot, planned: _Planned) -> int:
        """Commit `planned` exactly on top of `snapshot` (None: the table does not exist yet), or raise."""
        from deltalake import CommitProperties
        from deltalake import Schema as DeltaSchema
        from deltalake.transaction import create_table_with_add_actions

        props = CommitProperties(max_commit_retries=0, app_transactions=planned.app_transactions)
        if snapshot is None:
            try:
                create_table_with_add_actions(
                    self.lake.path(spec),
                    DeltaSchema.from_arrow(spec.schema),
                    planned.adds,
                    mode="error",
                    partition_by=list(spec.partition_by) or None,
                    name=spec.qualified_name,
                    description=spec.description,
                    storage_options=self.lake.storage_options,
                    commit_properties=props,
                )
            except Exception as exc:
                if self._snapshot(spec) is not None:
                    raise _CreatedMeanwhile(spec.qualified_name) from exc
                raise
            return 0
        read_version = snapshot.version()
        snapshot.create_write_transaction(
            planned.actions,
            planned.mode,
            spec.schema,
            partition_by=list(spec.partition_by) or None,
            partition_filters=planned.partition_filters,
            commit_properties=props,
        )
        return read_version + 1  # with retries off, delta-rs commits exactly there or raises

    def _discard(self, spec: TableSpec, planned: _Planned) -> None:
        """Delete the files of a write that did not commit (no snapshot refers to them)."""
        fs, base = filesystem(self.lake.path(spec), self.lake.storage_options)
        for a in planned.adds:
            try:
                fs.delete_file(f"{base}/{unquote(a.path)}")
            except FileNotFoundError:
                pass
            except OSError as exc:  # the store refused: the files are orphans that `precis vacuum` removes
                log.warning("%s: cannot delete uncommitted %s (%s); `precis vacuum` will", spec.qualified_name, a.path, exc)

    # ------------------------------------------------------------ the write modes
    def replace_partition(self, spec: TableSpec, df: "DataFrame", ds: str) -> WriteResult:
        def plan(snapshot):
            if snapshot is not None:
                from pyspark.sql import functions as F

                stored = self.read(spec, snapshot).where(F.col("ds") == ds)
                if _fingerprint(stored, spec) == _fingerprint(df, spec):
                    log.info("%s: partition ds=%s unchanged; nothing to commit", spec.qualified_name, ds)
                    return WriteResult(spec.qualified_name, 0, 0, 0, snapshot.version(), False)
            removed = 0
            if snapshot is not None:
                live = pa.table(snapshot.get_add_actions(flatten=True))
                removed = sum(1 for v in live.column("partition.ds").to_pylist() if v == ds)
            return _Planned(self._write_files(spec, df), "overwrite", partition_filters=[("ds", "=", ds)],
                            files_removed=removed)

        return self._transact(spec, plan)

    def replace_table(self, spec: TableSpec, df: "DataFrame") -> WriteResult:
        def plan(snapshot):
            if snapshot is not None:
                if _fingerprint(self.read(spec, snapshot), spec) == _fingerprint(df, spec):
                    log.info("%s: unchanged; nothing to commit", spec.qualified_name)
                    return WriteResult(spec.qualified_name, 0, 0, 0, snapshot.version(), False)
            removed = len(snapshot.file_uris()) if snapshot is not None else 0
            return _Planned(self._write_files(spec, df), "overwrite", files_removed=removed)

        return self._transact(spec, plan)

    def append(self, spec: TableSpec, df: "DataFrame", app_id: str, version: int) -> WriteResult:
        from deltalake import Transaction

        def plan(snapshot):
            if snapshot is not None:
                done = snapshot.transaction_version(app_id)
                if done is not None and done >= version:
                    log.info("%s: transaction %s v%s already committed", spec.qualified_name, app_id, version)
                    return WriteResult(spec.qualified_name, 0, 0, 0, snapshot.version(), False)
            return _Planned(self._write_files(spec, df), "append", app_transactions=[Transaction(app_id, version)])

        return self._transact(spec, plan)

    def merge(self, spec: TableSpec, df: "DataFrame", when_matched: str) -> WriteResult:
        if when_matched == "ignore":
            return self._transact(spec, lambda snapshot: self._plan_insert_new(spec, df, snapshot))
        return self._transact(spec, lambda snapshot: self._plan_upsert(spec, df, snapshot))

    def _plan_insert_new(self, spec: TableSpec, df: "DataFrame", snapshot):
        """Insert the source rows whose key the snapshot does not hold."""
        keys = list(spec.keys)
        new = df if snapshot is None else df.join(self._stored(spec, snapshot).select(*keys), keys, "left_anti")
        actions = self._write_files(spec, new)
        if not actions:
            return WriteResult(spec.qualified_name, 0, 0, 0, None if snapshot is None else snapshot.version(), False)
        return _Planned(actions, "append")

    def _removes(self, spec: TableSpec, snapshot, touched: list[str]) -> list:
        """The remove actions of the snapshot's files at the locations `touched` (as Spark read them)."""
        from deltalake.transaction import RemoveAction

        by_path = _add_actions_by_uri(snapshot, self.lake.path(spec))
        return [RemoveAction(rel, True, now_ms(), size, pv) for rel, size, pv in (by_path[_norm_uri(u)] for u in touched)]

    def _plan_upsert(self, spec: TableSpec, df: "DataFrame", snapshot):
        """Upsert, copy-on-write: drop source rows identical to what is stored, find the files that
        hold the remaining keys, rewrite those files without them plus the source rows, and commit
        removes and adds together."""
        from pyspark.sql import functions as F

        if snapshot is None or not snapshot.file_uris():
            return self._plan_insert_new(spec, df, None)
        keys = list(spec.keys)
        existing = self.read(spec, snapshot)
        existing = _content_hash(existing.withColumn(_FILE_COL, F.col("_metadata.file_path")), spec)
        src = _content_hash(df.select(*spec.schema.names), spec)
        changed = src.join(existing.select(*keys, _HASH_COL), [*keys, _HASH_COL], "left_anti").drop(_HASH_COL)
        changed = changed.cache()
        try:
            touched = [
                r[0] for r in existing.join(changed.select(*keys), keys, "left_semi").select(_FILE_COL).distinct().collect()
            ]
            if not touched and changed.isEmpty():
                return WriteResult(spec.qualified_name, 0, 0, 0, snapshot.version(), False)
            kept = (
                existing.where(F.col(_FILE_COL).isin(touched))
                .join(changed.select(*keys), keys, "left_anti")
                .select(*spec.schema.names)
            )
            adds = self._write_files(spec, changed.unionByName(kept))
            n_changed = changed.count()
        finally:
            changed.unpersist()
        removes = self._removes(spec, snapshot, touched)
        return _Planned([*removes, *adds], "append", files_removed=len(removes), rows_changed=n_changed)

    def delete(self, spec: TableSpec, df: "DataFrame", on: tuple[str, ...]) -> WriteResult:
        """Copy-on-write, as an upsert: rewrite the files that hold a matching row without those rows,
        and commit their removes and the rewritten files together."""
        return self._transact(spec, lambda snapshot: self._plan_delete(spec, df, on, snapshot))

    def _plan_delete(self, spec: TableSpec, df: "DataFrame", on: tuple[str, ...], snapshot):
        from pyspark.sql import functions as F

        if snapshot is None or not snapshot.file_uris():
            return WriteResult(spec.qualified_name, 0, 0, 0, None if snapshot is None else snapshot.version(), False)
        existing = self.read(spec, snapshot).withColumn(_FILE_COL, F.col("_metadata.file_path"))
        gone = existing.join(df, list(on), "left_semi").groupBy(_FILE_COL).count().collect()
        if not gone:
            return WriteResult(spec.qualified_name, 0, 0, 0, snapshot.version(), False)
        touched = [r[0] for r in gone]
        kept = existing.where(F.col(_FILE_COL).isin(touched)).join(df, list(on), "left_anti").select(*spec.schema.names)
        adds = self._write_files(spec, kept)
        removes = self._removes(spec, snapshot, touched)
        return _Planned([*removes, *adds], "append", files_removed=len(removes), rows_changed=0,
                        rows_deleted=sum(r["count"] for r in gone))


def _with_retries(lake: Lake, spec: TableSpec, attempt, is_conflict) -> WriteResult:
    """Run `attempt()` (plan from a fresh snapshot and commit) until it commits or finds nothing to
    commit; a conflict with another writer waits (exponential backoff with jitter) and tries again."""
    import random
    import time

    attempts = lake.cfg.lake.commit_attempts
    wait = lake.cfg.lake.commit_backoff_s
    for n in range(1, attempts + 1):
        try:
            return attempt()
        except Exception as exc:
            if not is_conflict(exc):
                raise
            if n == attempts:
                raise LakeConflict(
                    f"{spec.qualified_name}: another writer committed first {attempts} times in a row; nothing "
                    "was committed by this write. Run it again, or raise lake.commit_attempts"
                ) from exc
            pause = wait * 2 ** (n - 1) * (0.5 + random.random())
            log.warning("%s: another writer committed first; planning the write again (attempt %d of %d) in %.2fs",
                        spec.qualified_name, n + 1, attempts, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")


class _CreatedMeanwhile(Exception):
    """Another writer created the table between this write's check and its commit."""


def _is_deltars_conflict(exc: BaseException) -> bool:
    """A commit refused because the table moved on since the write's snapshot (delta-rs raises
    CommitFailedError with its retries off), or was created by another writer first."""
    from deltalake.exceptions import CommitFailedError

    return isinstance(exc, (CommitFailedError, _CreatedMeanwhile))


def _norm_uri(uri: str) -> str:
    uri = unquote(uri)
    for prefix in ("file://", "file:"):
        if uri.startswith(prefix):
            uri = uri[len(prefix):]
            break
    return uri.rstrip("/")


def _add_actions_by_uri(dt, table_uri: str) -> dict[str, tuple[str, int, dict]]:
    """Map each live file's absolute location to (relative path, size, partition values)."""
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    base = _norm_uri(table_uri)
    out = {}
    for a in actions:
        rel = a["path"]
        pv = {k[len("partition."):]: v for k, v in a.items() if k.startswith("partition.")}
        pv = {k: (None if v == NULL_PARTITION else v) for k, v in pv.items()}
        out[f"{base}/{unquote(rel)}"] = (rel, a["size_bytes"], pv)
    return out


class SparkDeltaEngine(_Engine):
    """delta-spark natively; used where Spark has the Delta jars (a cluster image, or
    `precis jars pull`). `tests/jobs/lake/test_engines.py` holds it to the embedded engine's results."""

    def _ensure(self, spec: TableSpec) -> None:
        from delta.tables import DeltaTable

        (
            DeltaTable.createIfNotExists(self.lake.spark)
            .location(self.lake.path(spec))
            .addColumns(spark_schema(spec.schema))
            .partitionedBy(*spec.partition_by)
            .execute()
        )

    def read(self, spec: TableSpec) -> "DataFrame":
        return self.lake.spark.read.format("delta").load(self.lake.path(spec))

    def _last_commit(self, spec: TableSpec):
        """The table's newest DESCRIBE HISTORY row (version, operation, operationMetrics)."""
        from delta.tables import DeltaTable

        return DeltaTable.forPath(self.lake.spark, self.lake.path(spec)).history(1).collect()[0]

    def _version(self, spec: TableSpec) -> int:
        return self._last_commit(spec)["version"]

    def _transact(self, spec: TableSpec, write) -> WriteResult:
        """delta-spark detects conflicting commits itself (optimistic concurrency against the
        version each write read); a conflicting write is run again from the new snapshot."""

        def attempt() -> WriteResult:
            self._ensure(spec)
            before = self._version(spec)
            done = write()
            if done is not None:
                return done
            # delta-spark skips an append whose transaction it has seen: committed is the version moving
            last = self._last_commit(spec)
            if last["version"] == before:
                return WriteResult(spec.qualified_name, None, None, None, before, False)
            return _result_from_metrics(spec.qualified_name, last["version"], last["operationMetrics"] or {})

        return _with_retries(self.lake, spec, attempt, _is_spark_delta_conflict)

    def replace_partition(self, spec: TableSpec, df: "DataFrame", ds: str) -> WriteResult:
        from pyspark.sql import functions as F

        def write():
            if _fingerprint(self.read(spec).where(F.col("ds") == ds), spec) == _fingerprint(df, spec):
                return WriteResult(spec.qualified_name, 0, 0, 0, self._version(spec), False)
            (
                df.select(*spec.schema.names)
                .write.format("delta")
                .mode("overwrite")
                .option("replaceWhere", f"ds = '{ds}'")
                .save(self.lake.path(spec))
            )

        return self._transact(spec, write)

    def replace_table(self, spec: TableSpec, df: "DataFrame") -> WriteResult:
        def write():
            if _fingerprint(self.read(spec), spec) == _fingerprint(df, spec):
                return WriteResult(spec.qualified_name, 0, 0, 0, self._version(spec), False)
            df.select(*spec.schema.names).write.format("delta").mode("overwrite").save(self.lake.path(spec))

        return self._transact(spec, write)

    def append(self, spec: TableSpec, df: "DataFrame", app_id: str, version: int) -> WriteResult:
        def write():
            (
                df.select(*spec.schema.names)
                .write.format("delta")
                .mode("append")
                .option("txnAppId", app_id)
                .option("txnVersion", version)
                .save(self.lake.path(spec))
            )

        return self._transact(spec, write)

    def merge(self, spec: TableSpec, df: "DataFrame", when_matched: str) -> WriteResult:
        from delta.tables import DeltaTable

        def write():
            # delta-spark commits a MERGE that changes nothing as a new version; the contract (and
            # the embedded engine) commit nothing then. So only the rows that insert a key or, for
            # "update", change a stored row's content are merged, and none means no commit.
            keys = list(spec.keys)
            stored = _content_hash(self.read(spec), spec).select(*keys, _HASH_COL)
            source = df.select(*spec.schema.names)
            if when_matched == "update":
                source = _content_hash(source, spec).join(stored, [*keys, _HASH_COL], "left_anti").drop(_HASH_COL)
            else:
                source = source.join(stored.select(*keys), keys, "left_anti")
            if source.isEmpty():
                return WriteResult(spec.qualified_name, 0, 0, 0, self._version(spec), False)
            target = DeltaTable.forPath(self.lake.spark, self.lake.path(spec))
            on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.keys)
            builder = target.alias("t").merge(source.alias("s"), on)
            if when_matched == "update":
                differs = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in spec.content_columns)
                builder = builder.whenMatchedUpdateAll(condition=differs)
            builder.whenNotMatchedInsertAll().execute()

        return self._transact(spec, write)

    def delete(self, spec: TableSpec, df: "DataFrame", on: tuple[str, ...]) -> WriteResult:
        from delta.tables import DeltaTable

        def write():
            # a MERGE that deletes nothing would still commit a version; the contract commits nothing
            if self.read(spec).join(df, list(on), "left_semi").isEmpty():
                return WriteResult(spec.qualified_name, 0, 0, 0, self._version(spec), False)
            target = DeltaTable.forPath(self.lake.spark, self.lake.path(spec))
            cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in on)
            target.alias("t").merge(df.alias("s"), cond).whenMatchedDelete().execute()

        return self._transact(spec, write)


def _result_from_metrics(table: str, version: int, metrics: dict[str, str]) -> WriteResult:
    """What a delta-spark commit did, from its `operationMetrics` (DESCRIBE HISTORY): a MERGE
    reports the rows it inserted and updated, a write the rows it wrote; a metric the operation
    does not report stays None."""

    def metric(*names: str) -> int | None:
        found = [int(metrics[n]) for n in names if n in metrics]
        return sum(found) if found else None

    return WriteResult(
        table,
        rows_written=metric("numTargetRowsInserted", "numTargetRowsUpdated") if "numTargetRowsInserted" in metrics
        else metric("numOutputRows"),
        files_added=metric("numTargetFilesAdded", "numFiles"),
        files_removed=metric("numTargetFilesRemoved", "numRemovedFiles"),
        version=version,
        committed=True,
        rows_deleted=metric("numTargetRowsDeleted"),  # a MERGE's (`delete` is one); an overwrite's are not news
    )


def _is_spark_delta_conflict(exc: BaseException) -> bool:
    """A commit conflict that planning again from the new snapshot resolves. Every class delta-spark
    exports for one: in its Python API (4.4) ConcurrentAppendException and its siblings do not
    derive from DeltaConcurrentModificationException, so that base alone misses the commonest
    conflict of two MERGEs into one partition."""
    from delta import exceptions as e

    return isinstance(exc, (e.DeltaConcurrentModificationException, e.ConcurrentWriteException, e.MetadataChangedException,
                            e.ProtocolChangedException, e.ConcurrentAppendException, e.ConcurrentDeleteReadException,
                            e.ConcurrentDeleteDeleteException, e.ConcurrentTransactionException))
