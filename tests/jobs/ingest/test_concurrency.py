"""Concurrent ingestion into one lake: real writers racing on real Delta tables.

The reproduction from the hardening issue: the same review file ingested twice at the same time
(two `precis ingest` processes, and two threads of one Spark application), and CrowdFlower upserts
racing on the same data files. Keys stay unique and counts exact."""

import os
import subprocess
import sys

import pytest

from jobs.ingest.job import ingest_relevance, ingest_reviews
from tests.conftest import BEAUTY, REPO, run_concurrently

DS = "2024-03-01"


def _unique(lake, table, key):
    df = lake.read_pandas(table)
    return len(df), df[key].nunique()


def test_the_same_review_file_ingested_twice_at_once_stores_each_review_once(lake):
    run_concurrently(lambda: ingest_reviews(lake, [str(BEAUTY)], DS), lambda: ingest_reviews(lake, [str(BEAUTY)], DS))
    assert _unique(lake, "bronze.reviews", "review_id") == (4242, 4242)


def test_crowdflower_upserts_at_once_keep_one_judgment_per_key(lake, tmp_path, cf_subset):
    """Two files sharing half their judgments, one with changed labels: every key once, and each
    shared key holds one of the two labels, from one file."""
    import pandas as pd

    base = pd.read_csv(cf_subset, dtype=str, keep_default_na=False)
    a, b = base.head(300), base.tail(300).copy()
    shared = set(a.id) & set(b.id)
    b.loc[b.id.isin(shared), "median_relevance"] = b.loc[b.id.isin(shared), "median_relevance"].map(
        {"1": "4", "2": "3", "3": "2", "4": "1"})
    fa, fb = tmp_path / "a.csv", tmp_path / "b.csv"
    a.to_csv(fa, index=False)
    b.to_csv(fb, index=False)
    ingest_relevance(lake, [str(cf_subset)], "crowdflower", DS)  # both upserts touch stored data files
    run_concurrently(lambda: ingest_relevance(lake, [str(fa)], "crowdflower", DS),
              lambda: ingest_relevance(lake, [str(fb)], "crowdflower", DS))
    j = lake.read_pandas("bronze.judgments")
    assert len(j) == j.judgment_id.nunique() == 400
    winners = set(j[j.judgment_id.isin({f"crowdflower:{i}" for i in shared})].source_file)
    assert len(winners) == 1  # the shared keys all come from the writer that committed last
    assert lake.read_pandas("bronze.products").product_id.is_unique


@pytest.mark.slow
def test_two_precis_ingest_processes_on_one_file_store_each_review_once(tmp_path):
    """Two separate `precis ingest` processes (two JVMs, two delta-rs committers) on one lake."""
    lake_dir = tmp_path / "lake"
    env = dict(os.environ, PRECIS__SPARK__MASTER="local[1]")
    cmd = [sys.executable, "-m", "jobs.cli", "--lake", str(lake_dir), "ingest", "reviews", str(BEAUTY), "--date", DS]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    from deltalake import DeltaTable

    ids = DeltaTable(str(lake_dir / "bronze" / "reviews")).to_pyarrow_table(columns=["review_id"]).column(0).to_pylist()
    assert len(ids) == len(set(ids)) == 4242
    new = sorted(int(o.split(" new in bronze.reviews")[0].rsplit(", ", 1)[-1]) for o in outs)
    assert sum(new) == 4242  # one process stored them all, the other found them stored
