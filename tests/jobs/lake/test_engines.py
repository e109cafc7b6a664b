"""The two lake engines hold to one contract: `deltalake` (embedded: Spark writes Parquet, delta-rs
commits) and `spark-delta` (delta-spark natively, with the Delta jars from Maven Central that
`precis jars pull` fetched). The same writes and the same daily jobs (ingest with poison records,
filter_reviews) over the same inputs leave row-for-row identical tables, the same commits and
no-commits, the same idempotence and key uniqueness under concurrent upserts, and each engine's
reader reads what the other wrote.

The engines run in a process of their own (`engines_conformance.py`): Spark loads jars only when
its JVM starts, and this session's JVM has none.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="module", params=["disk", "object store"])
def run(request, tmp_path_factory):
    """The conformance run on a lake on local disk, and on an S3 lake (moto's server on loopback,
    `s3a://`, delta-rs through storage options, Spark through S3A): the engines' outcome, what the
    run printed, and the store (None on disk)."""
    import os

    import yaml

    from jobs.config import load_config
    from jobs.jars import fetch
    from tests.jobs.lake.object_store import BUCKET, CREDENTIALS, s3_server

    fetch(load_config(None).spark.jars_dir, ("delta", "s3a"))  # `make test` has fetched them already; a no-op then
    work = tmp_path_factory.mktemp("engines")
    args = [sys.executable, str(HERE / "engines_conformance.py"), str(work)]
    if request.param == "disk":
        done = subprocess.run(args, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
        yield json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr, None
        return
    with s3_server(work / "moto.log") as store:
        env = {**os.environ, **CREDENTIALS, "PRECIS__LAKE__STORAGE_OPTIONS": yaml.safe_dump(store.storage_options, default_flow_style=True)}
        done = subprocess.run([*args, f"s3a://{BUCKET}/conformance"], capture_output=True, text=True, timeout=1500, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        yield json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr, store


@pytest.fixture(scope="module")
def both(run):
    return run[0]


def test_every_write_mode_leaves_the_same_rows_and_commits_the_same_way_on_both_engines(both):
    embedded, native = both["deltalake"]["kv"], both["spark-delta"]["kv"]
    assert [s["step"] for s in embedded] == [s["step"] for s in native]
    for a, b in zip(embedded, native):
        assert (a["committed"], a["rows"]) == (b["committed"], b["rows"]), a["step"]
        assert a["reported"] == a["committed"] and b["reported"] == b["committed"], a["step"]  # what the write says it did
        assert a["rows_written"] == b["rows_written"], a["step"]  # and the rows it says it inserted or changed
        assert a["rows_deleted"] == b["rows_deleted"], a["step"]  # or deleted
    # and the contract itself: a repeated write with the same content commits nothing
    committed = {s["step"]: s["committed"] for s in native}
    assert not committed["replace_partition again"] and not committed["append same transaction"]
    assert not committed["replace_table again"] and committed["merge update"] and committed["replace_table"]
    assert not committed["merge update again"]
    deleted = {s["step"]: (s["committed"], s["rows_deleted"]) for s in native}
    assert deleted["delete by key"] == (True, 1) and deleted["delete again"] == (False, 0)
    assert deleted["delete on columns"] == (True, 1)  # "a" with note "new"; "d" has another note
    assert [json.loads(r)["k"] for r in next(s for s in native if s["step"] == "delete on columns")["rows"]] == ["d"]
    assert native[-1]["rows"] == [json.dumps({"k": "z", "note": "all", "v": 0}, sort_keys=True)]


def test_the_daily_jobs_leave_identical_tables_on_both_engines_and_a_rerun_commits_nothing(both):
    embedded, native = both["deltalake"]["jobs"], both["spark-delta"]["jobs"]
    assert set(embedded["tables"]) == set(native["tables"]) >= {"bronze.reviews", "bronze.quarantine", "silver.review_split"}
    for table, rows in embedded["tables"].items():
        assert rows == native["tables"][table], table
    assert len(native["tables"]["bronze.reviews"]) == 600
    assert len(native["tables"]["bronze.quarantine"]) == 3  # Infinity, not JSON, a rating of 9; the copy is a duplicate
    for engine in (embedded, native):
        assert engine["versions_again"] == engine["versions"]


def test_concurrent_upserts_never_duplicate_a_key_on_either_engine(both):
    for engine in ("deltalake", "spark-delta"):
        race = both[engine]["race"]
        assert race["rows"] == race["distinct_keys"] == race["expected_keys"], engine


def test_delta_spark_reads_what_delta_rs_wrote_and_the_other_way_round(both):
    # delta-spark's reader over the embedded engine's table equals it over its own; delta-rs read
    # both engines' tables in the tests above
    assert both["deltalake"]["read_by_delta_spark"] == both["spark-delta"]["read_by_delta_spark"]
    assert len(both["deltalake"]["read_by_delta_spark"]) == 600


def test_the_jars_are_the_ones_the_installed_delta_spark_and_pyspark_name(tmp_path):
    from importlib.metadata import version

    from jobs.config import load_config
    from jobs.jars import coordinates, fetch, jar_files

    spark_delta, storage = coordinates("4.4.0", "4.2.0")
    assert spark_delta.coordinate == "io.delta:delta-spark_4.2_2.13:4.4.0" and storage.coordinate == "io.delta:delta-storage:4.4.0"
    assert {a.version for a in coordinates()} == {version("delta-spark")}
    folder = load_config(None).spark.jars_dir
    fetched = fetch(folder, ("delta", "s3a"))  # already there: nothing fetched again
    assert fetched == {"delta": jar_files(folder, "delta"), "s3a": jar_files(folder, "s3a")}
    assert [p.name for p in fetched["delta"]] == [a.jar for a in coordinates()]  # exactly the two jars
    # S3A: hadoop-aws at the Hadoop pyspark ships, the SDK modules instead of its bundle, nothing Spark ships twice
    s3a = {p.name for p in fetched["s3a"]}
    assert {"hadoop-aws-3.5.0.jar", "s3-2.35.4.jar", "sts-2.35.4.jar"} <= s3a and not any("bundle" in n for n in s3a)
    assert not any(n.startswith(("netty-buffer-", "slf4j-api-", "httpclient-")) for n in s3a)
    assert sum(p.stat().st_size for p in fetched["s3a"]) < 40 * 2**20
    assert jar_files(tmp_path) is None  # an empty folder: not there, so the lake says to run `precis jars pull`


def test_an_object_store_lake_holds_the_tables_and_never_the_credentials(run):
    from tests.jobs.lake.object_store import CREDENTIALS

    _, output, store = run
    if store is None:
        pytest.skip("the lake of this run is on local disk")
    keys = {key for key, _ in store.objects()}
    for engine in ("deltalake", "spark-delta"):  # both engines wrote their tables into the bucket
        assert f"conformance/{engine}/bronze/reviews/_delta_log/00000000000000000000.json" in keys, engine
        assert any(k.startswith(f"conformance/{engine}/bronze/reviews/") and k.endswith(".parquet") for k in keys), engine
    assert not any(k.startswith("conformance/") and "/_artifacts/" in k for k in keys)
    # the credentials came from the environment; no table file, log entry or line of output holds them
    secrets = [v.encode() for v in CREDENTIALS.values()]
    leaked = [key for key, body in store.objects() if any(s in body for s in secrets)]
    assert not leaked, leaked
    assert not any(v in output for v in CREDENTIALS.values())
