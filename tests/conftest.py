"""Shared fixtures: one real local Spark session for the whole run, and a fresh lake per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
BEAUTY = SAMPLES / "reviews" / "amazon2018_all_beauty_5core.jsonl.gz"
CROWDFLOWER = SAMPLES / "relevance" / "crowdflower_search_relevance_dev.csv.gz"
ESCI_CSV = SAMPLES / "relevance" / "esci_us_exact_sample.csv.gz"
ESCI_PARQUET = SAMPLES / "relevance" / "esci_us_graded_fixture_examples.parquet"
ESCI_VESPA = SAMPLES / "relevance" / "esci_us_graded_fixture_products.jsonl"

os.chdir(REPO)  # conf/local.yaml and relative paths resolve the same from any invocation folder


@pytest.fixture(scope="session")
def spark():
    from jobs.config import load_config
    from jobs.spark import get_spark

    cfg = load_config(None, environ={"PRECIS__SPARK__MASTER": "local[2]", "PRECIS__SPARK__SHUFFLE_PARTITIONS": "4"})
    session = get_spark(cfg)
    yield session
    session.stop()


def make_lake(root: Path, spark, **env: str):
    from jobs.config import load_config
    from jobs.lake import Lake

    environ = {f"PRECIS__{k.upper()}": v for k, v in env.items()}
    return Lake(load_config(None, lake=str(root), environ=environ), spark)


@pytest.fixture
def lake(tmp_path, spark):
    return make_lake(tmp_path / "lake", spark)


@pytest.fixture(scope="session")
def cf_subset(tmp_path_factory) -> Path:
    """The first 400 CrowdFlower judgments (about 10 queries), as a CSV file: big enough to split
    by query and rank, small enough to score in seconds."""
    import pandas as pd

    path = tmp_path_factory.mktemp("cf") / "crowdflower_400.csv"
    pd.read_csv(CROWDFLOWER, dtype=str, keep_default_na=False).head(400).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def ranked_lake(tmp_path_factory, spark, cf_subset):
    """A lake with the CrowdFlower subset ingested, a trained ranker (3 steps: real training and
    export, not a useful model) and an untrained-head ranker, both made by the real job code."""
    from jobs.ingest.job import ingest_relevance
    from jobs.ranking import train_ranker

    root = tmp_path_factory.mktemp("ranked")
    lake = make_lake(root / "lake", spark, ranker__train__batch_size="8")
    ingest_relevance(lake, [str(cf_subset)], "crowdflower", "2024-05-01")
    train_ranker(lake, max_steps=3)
    train_ranker(lake, untrained=True)
    return lake
