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


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    from jobs.config import load_config
    from jobs.delta_jars import fetch

    fetch(load_config(None).spark.delta_jars_dir)  # `make test` has fetched them already; a no-op then
    work = tmp_path_factory.mktemp("engines")
    done = subprocess.run([sys.executable, str(HERE / "engines_conformance.py"), str(work)],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_write_mode_leaves_the_same_rows_and_commits_the_same_way_on_both_engines(both):
    embedded, native = both["deltalake"]["kv"], both["spark-delta"]["kv"]
    assert [s["step"] for s in embedded] == [s["step"] for s in native]
    for a, b in zip(embedded, native):
        assert (a["committed"], a["rows"]) == (b["committed"], b["rows"]), a["step"]
        assert a["reported"] == a["committed"] and b["reported"] == b["committed"], a["step"]  # what the write says it did
    # and the contract itself: a repeated write with the same content commits nothing
    committed = {s["step"]: s["committed"] for s in native}
    assert not committed["replace_partition again"] and not committed["append same transaction"]
    assert not committed["replace_table again"] and committed["merge update"] and committed["replace_table"]
    assert not committed["merge update again"]
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
    from jobs.delta_jars import coordinates, fetch, jar_files

    spark_delta, storage = coordinates("4.4.0", "4.2.0")
    assert spark_delta.coordinate == "io.delta:delta-spark_4.2_2.13:4.4.0" and storage.coordinate == "io.delta:delta-storage:4.4.0"
    assert {a.version for a in coordinates()} == {version("delta-spark")}
    folder = load_config(None).spark.delta_jars_dir
    assert fetch(folder) == jar_files(folder)  # already there: nothing fetched again
    assert [p.name for p in jar_files(folder)] == [a.jar for a in coordinates()]
    assert jar_files(tmp_path) is None  # an empty folder: not there, so the lake says to run `precis jars pull`
