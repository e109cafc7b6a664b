"""The lake's write modes on real Spark and real Delta tables (delta-rs engine)."""

import threading

import pyarrow as pa
import pytest

from jobs.lake import TableSpec, register
from jobs.lake.lake import spark_schema
from tests.conftest import run_concurrently

KV = register(
    TableSpec(
        layer="test",
        name="kv",
        keys=("k",),
        schema=pa.schema(
            [pa.field("k", pa.string(), False), pa.field("v", pa.int64()), pa.field("note", pa.string()), pa.field("ds", pa.string(), False)]
        ),
    )
)


def frame(spark, rows, ds="x"):
    return spark.createDataFrame([(k, v, n, ds) for k, v, n in rows], spark_schema(KV.schema))


def table(lake):
    return sorted((r["k"], r["v"], r["note"], r["ds"]) for r in lake.read_arrow(KV).to_pylist())


def test_replace_partition_replaces_only_that_partition_and_is_idempotent(lake, spark):
    lake.replace_partition(KV, frame(spark, [("a", 1, None), ("b", 2, None)]), "2024-01-01")
    lake.replace_partition(KV, frame(spark, [("c", 3, None)]), "2024-01-02")
    first = lake.replace_partition(KV, frame(spark, [("a", 10, None)]), "2024-01-01")
    assert first.files_removed >= 1
    expected = [("a", 10, None, "2024-01-01"), ("c", 3, None, "2024-01-02")]
    assert table(lake) == expected
    v = lake.delta_table(KV).version()
    again = lake.replace_partition(KV, frame(spark, [("a", 10, None)]), "2024-01-01")
    assert table(lake) == expected  # a re-run never appends twice
    assert not again.committed and lake.delta_table(KV).version() == v  # same content: no commit at all
    changed = lake.replace_partition(KV, frame(spark, [("a", 11, None)]), "2024-01-01")
    assert changed.committed and lake.delta_table(KV).version() == v + 1  # in exactly one commit
    expected = [("a", 11, None, "2024-01-01"), ("c", 3, None, "2024-01-02")]
    # Spark and delta-rs agree on the snapshot
    assert sorted(tuple(r) for r in lake.read(KV).collect()) == expected


def test_merge_update_and_ignore(lake, spark):
    lake.merge(KV, frame(spark, [("a", 1, "old"), ("b", 2, None)], ds="2024-01-01"))
    r = lake.merge(KV, frame(spark, [("a", 5, "new"), ("c", 3, None)], ds="2024-01-02"))
    assert r.committed and r.files_removed >= 1
    assert table(lake) == [("a", 5, "new", "2024-01-02"), ("b", 2, None, "2024-01-01"), ("c", 3, None, "2024-01-02")]
    # insert-only: a present key keeps its stored row
    lake.merge(KV, frame(spark, [("a", 99, "ignored"), ("d", 4, None)], ds="2024-01-03"), when_matched="ignore")
    assert ("a", 5, "new", "2024-01-02") in table(lake) and ("d", 4, None, "2024-01-03") in table(lake)


def test_upsert_counts_only_the_rows_it_inserted_or_changed(lake, spark):
    """Copy-on-write rewrites the untouched rows of a touched file; they are not reported as written."""
    lake.merge(KV, frame(spark, [(f"k{i:02d}", i, None) for i in range(50)]).coalesce(1))
    r = lake.merge(KV, frame(spark, [("k07", 700, None), ("new", 1, None)]))
    assert r.committed and r.files_removed == 1
    assert r.rows_written == 2 and lake.count(KV) == 51


def test_merge_of_unchanged_rows_commits_nothing(lake, spark):
    lake.merge(KV, frame(spark, [("a", 1, None), ("b", 2, "x")], ds="2024-01-01"))
    v = lake.delta_table(KV).version()
    # same content on another run date: ds does not count as content
    again = lake.merge(KV, frame(spark, [("a", 1, None), ("b", 2, "x")], ds="2024-01-05"))
    assert not again.committed and lake.delta_table(KV).version() == v
    assert lake.merge(KV, frame(spark, [("a", 1, None)]), when_matched="ignore").committed is False


def test_append_with_app_transaction_is_idempotent(lake, spark):
    assert lake.append(KV, frame(spark, [("a", 1, None)]), app_id="ingest-42", version=1).committed
    again = lake.append(KV, frame(spark, [("a", 1, None)]), app_id="ingest-42", version=1)
    assert not again.committed
    assert lake.delta_table(KV).transaction_version("ingest-42") == 1
    assert lake.append(KV, frame(spark, [("b", 2, None)]), app_id="ingest-42", version=2).committed
    assert [r[0] for r in table(lake)] == ["a", "b"]


def test_null_in_non_nullable_column_fails_before_commit(lake, spark):
    lake.replace_partition(KV, frame(spark, [("a", 1, None)]), "2024-01-01")
    v = lake.delta_table(KV).version()
    from pyspark.sql import functions as F

    bad = frame(spark, [("b", 2, None)]).withColumn("k", F.lit(None).cast("string"))
    with pytest.raises(Exception, match="non-nullable"):
        lake.replace_partition(KV, bad, "2024-01-01")
    assert lake.delta_table(KV).version() == v and table(lake) == [("a", 1, None, "2024-01-01")]


def test_read_of_missing_table_is_empty_with_schema(lake):
    assert lake.read(KV).count() == 0 and lake.read(KV).columns == KV.schema.names
    assert lake.read_arrow(KV).num_rows == 0 and not lake.exists(KV)


def test_reader_during_writes_never_sees_a_partial_commit(lake, spark):
    """Each commit replaces the partition with N rows spread over several files; a reader polling
    in another thread must only ever see one of the N values, never a mix of two commits."""
    sizes = [40, 7, 23, 61, 12, 33]
    lake.replace_partition(KV, frame(spark, [(f"k{i}", i, "w0") for i in range(sizes[0])]).repartition(4), "d")
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader():
        from deltalake import DeltaTable

        try:
            while not stop.is_set():
                t = DeltaTable(lake.path(KV)).to_pyarrow_table()
                seen.append((t.num_rows, len(set(t.column("note").to_pylist()))))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    th = threading.Thread(target=reader)
    th.start()
    try:
        for w, n in enumerate(sizes[1:] * 2, start=1):
            df = frame(spark, [(f"k{i}", i, f"w{w}") for i in range(n)]).repartition(4)
            lake.replace_partition(KV, df, "d")
    finally:
        stop.set()
        th.join()
    assert not errors, errors
    assert len(seen) >= 5
    assert all(rows in sizes for rows, _ in seen), seen
    assert all(writes == 1 for _, writes in seen), "a reader saw rows of two commits at once"


def test_engine_auto_picks_deltalake_without_jars_and_spark_delta_says_what_to_do(tmp_path, spark):
    from jobs.lake import LakeError
    from jobs.lake.lake import DeltaRsEngine
    from tests.conftest import make_lake

    assert isinstance(make_lake(tmp_path / "a", spark, lake__engine="auto").engine, DeltaRsEngine)
    with pytest.raises(LakeError, match="no Delta jars.*spark.jars.packages"):
        make_lake(tmp_path / "b", spark, lake__engine="spark-delta").engine


def test_ensure_creates_an_empty_queryable_table_once(lake, spark):
    from jobs.lake.sql import run_sql

    lake.ensure(KV)
    assert lake.exists(KV) and lake.count(KV) == 0
    assert run_sql(lake, "select count(*) as n from test.kv").n[0] == 0
    lake.replace_partition(KV, frame(spark, [("a", 1, None)]), "d")
    v = lake.delta_table(KV).version()
    lake.ensure(KV)  # does nothing to an existing table
    assert lake.delta_table(KV).version() == v and lake.count(KV) == 1


def test_merge_into_an_empty_table(lake, spark):
    lake.ensure(KV)
    assert lake.merge(KV, frame(spark, [("a", 1, None)])).committed
    assert lake.merge(KV, frame(spark, [("b", 2, None)]), when_matched="ignore").committed
    assert [r[0] for r in table(lake)] == ["a", "b"]


def test_replace_table_is_one_commit_and_readers_never_see_a_mix(lake, spark):
    old = [(f"k{i}", 1, "old") for i in range(40)]
    new = [(f"k{i}", 2, "new") for i in range(0, 40, 2)]
    lake.replace_table(KV, frame(spark, old).repartition(4))
    v = lake.delta_table(KV).version()
    assert not lake.replace_table(KV, frame(spark, old).repartition(3)).committed  # same rows: no commit
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            seen.append(tuple(sorted({r["note"] for r in lake.read_arrow(KV).to_pylist()})))

    t = threading.Thread(target=reader)
    t.start()
    try:
        r = lake.replace_table(KV, frame(spark, new).repartition(4))
    finally:
        stop.set()
        t.join()
    assert r.committed and r.version == v + 1 and r.files_removed >= 1
    assert [x[1] for x in table(lake)] == [2] * 20
    assert seen and set(seen) <= {("old",), ("new",)}  # each read is one snapshot, never a mix


# ---------------------------------------------------------------- concurrent writers
def test_a_commit_made_between_read_and_commit_is_a_conflict_that_is_planned_again(lake, spark, monkeypatch):
    """Deterministic interleaving: while writer A plans an insert-only merge from version v, writer B
    commits the same keys. A's commit against v must be refused, A plans again from B's version and
    finds nothing new: every key once."""
    from jobs.lake.lake import DeltaRsEngine

    lake.merge(KV, frame(spark, [("a", 1, None)]))
    original = DeltaRsEngine._write_files
    calls = {"n": 0}

    def write_then_let_b_commit(self, spec, df):
        actions = original(self, spec, df)
        calls["n"] += 1
        if calls["n"] == 1:  # B commits after A has read and written its files
            monkeypatch.setattr(DeltaRsEngine, "_write_files", original)
            lake.merge(KV, frame(spark, [("b", 2, "B"), ("c", 3, "B")]), when_matched="ignore")
            monkeypatch.setattr(DeltaRsEngine, "_write_files", write_then_let_b_commit)
        return actions

    monkeypatch.setattr(DeltaRsEngine, "_write_files", write_then_let_b_commit)
    result = lake.merge(KV, frame(spark, [("b", 2, "A"), ("c", 3, "A")]), when_matched="ignore")
    assert calls["n"] == 2  # planned twice
    assert not result.committed  # the second plan found both keys stored by B
    assert table(lake) == [("a", 1, None, "x"), ("b", 2, "B", "x"), ("c", 3, "B", "x")]
    # the files A wrote for its refused attempt were deleted, not left as orphans
    from pathlib import Path
    from urllib.parse import unquote

    live = {Path(unquote(u.removeprefix("file://"))).resolve() for u in lake.delta_table(KV).file_uris()}
    on_disk = {p.resolve() for p in Path(lake.path(KV)).rglob("*.parquet")}
    assert on_disk == live


def test_concurrent_insert_only_merges_of_the_same_rows_store_each_key_once(lake, spark):
    rows = [(f"k{i}", i, None) for i in range(30)]
    run_concurrently(*[lambda: lake.merge(KV, frame(spark, rows).repartition(3), when_matched="ignore")] * 4)
    stored = table(lake)
    assert len(stored) == 30 and len({r[0] for r in stored}) == 30


def test_concurrent_upserts_of_conflicting_values_keep_one_row_per_key(lake, spark):
    lake.merge(KV, frame(spark, [(f"k{i}", 0, "seed") for i in range(20)]).repartition(2))
    writers = [
        (lambda w=w: lake.merge(KV, frame(spark, [(f"k{i}", w, f"w{w}") for i in range(0, 20, 2)]).repartition(2)))
        for w in range(1, 5)
    ]
    run_concurrently(*writers)
    stored = table(lake)
    assert len(stored) == 20 and len({r[0] for r in stored}) == 20
    assert {r[2] for r in stored if int(r[0][1:]) % 2} == {"seed"}  # odd keys untouched
    assert len({r[2] for r in stored if int(r[0][1:]) % 2 == 0}) == 1  # even keys all from one writer


def test_concurrent_partition_replacements_leave_exactly_one_writers_rows(lake, spark):
    writers = [
        (lambda w=w: lake.replace_partition(KV, frame(spark, [(f"k{i}", w, f"w{w}") for i in range(5 + w)]).repartition(2), "d"))
        for w in range(4)
    ]
    run_concurrently(*writers)
    stored = table(lake)
    notes = {r[2] for r in stored}
    assert len(notes) == 1, notes
    w = int(next(iter(notes))[1:])
    assert len(stored) == 5 + w


def test_concurrent_appends_commit_each_transaction_once(lake, spark):
    writers = [
        (lambda app=app: lake.append(KV, frame(spark, [(f"{app}-{i}", i, None) for i in range(4)]), app_id=app, version=1))
        for app in ("a", "b", "c", "a", "b")
    ]
    run_concurrently(*writers)
    keys = [r[0] for r in table(lake)]
    assert len(keys) == 12 and len(set(keys)) == 12


def test_vacuum_removes_a_killed_writers_orphans_and_replaced_files_only_past_retention(lake, spark):
    """A Parquet file no log entry mentions (what a write killed before its commit leaves) goes once
    older than the retention; a younger one stays, since a running writer's uncommitted files look
    the same. A file a later commit replaced goes once its removal is older than the retention
    (Delta's tombstone rule: the removal's time counts, not the file's)."""
    import os
    import shutil
    import time
    from pathlib import Path

    from jobs.cli import main

    lake.merge(KV, frame(spark, [("a", 1, None)]).coalesce(1))
    lake.merge(KV, frame(spark, [("a", 2, None)]).coalesce(1))  # replaces the first file
    root = Path(lake.path(KV))
    live = {str(Path(u.removeprefix("file://")).relative_to(root)) for u in lake.delta_table(KV).file_uris()}
    replaced = [p for p in root.rglob("*.parquet") if str(p.relative_to(root)) not in live]
    assert len(replaced) == 1
    old_orphan, new_orphan = replaced[0].with_name("part-killed-old.parquet"), replaced[0].with_name("part-killed-new.parquet")
    shutil.copy(replaced[0], old_orphan)
    shutil.copy(replaced[0], new_orphan)
    week_ago = time.time() - 8 * 24 * 3600
    for p in (*replaced, old_orphan):
        os.utime(p, (week_ago, week_ago))

    rel = lambda paths: sorted(str(p.relative_to(root)) for p in paths)  # noqa: E731
    assert lake.vacuum(KV, dry_run=True) == rel([old_orphan])
    assert main(["--lake", lake.root, "vacuum"]) == 0
    assert set(rel(root.rglob("*.parquet"))) == live | set(rel([new_orphan, *replaced]))
    assert table(lake) == [("a", 2, None, "x")]
    with pytest.raises(Exception, match="(?i)retention"):
        lake.vacuum(KV, retention_hours=1, dry_run=True)  # below the table's own 7 days
