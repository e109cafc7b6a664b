"""The Great Expectations gates on real tables: they pass on good data and stop bad batches."""

import gzip
import json
import shutil

import pandas as pd
import pytest

from jobs.quality import QualityGateFailed, gate, run_gate
from tests.conftest import BEAUTY, SMALL_GENERATION, make_lake


def _half_sevens(path):
    """A planted bad batch: 40 real reviews, half of them with the rating changed to 7."""
    with gzip.open(BEAUTY, "rt") as src:
        lines = [json.loads(next(src)) for _ in range(40)]
    for i, r in enumerate(lines):
        r["reviewerID"] = f"planted-{i}"
        if i % 2:
            r["overall"] = 7.0
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return path


def test_bronze_gate_passes_on_the_sample_and_stops_a_batch_with_half_its_ratings_7(tmp_path, spark, cf_subset):
    from jobs.ingest.job import ingest_relevance, ingest_reviews

    lake = make_lake(tmp_path / "lake", spark)
    ingest_reviews(lake, [str(BEAUTY)], "2024-05-01")
    ingest_relevance(lake, [str(cf_subset)], "crowdflower", "2024-05-01")
    good = gate(lake, "bronze", "2024-05-01")
    assert good.success and good.rows["bronze.reviews"] > 4000
    kinds = {o.expectation for o in good.outcomes}
    assert {"expect_column_values_to_be_unique", "expect_column_values_to_be_between",
            "expect_table_columns_to_match_set", "expect_column_values_to_not_be_null"} <= kinds

    ingest_reviews(lake, [str(_half_sevens(tmp_path / "bad.jsonl"))], "2024-05-02")
    with pytest.raises(QualityGateFailed, match="bronze.intake.*bad_share"):
        gate(lake, "bronze", "2024-05-02")
    # the bad records are quarantined with their reason, the good half is in bronze, nothing is lost
    q = lake.read_pandas("bronze.quarantine")
    assert (q.reason.str.contains("outside 1-5")).sum() == 20
    assert (lake.read_pandas("bronze.reviews").ds == "2024-05-02").sum() == 20
    # the outcome is stored for analysts, with the failed expectation
    stored = lake.read_pandas("eval.quality_results")
    bad = stored[(stored.ds == "2024-05-02") & ~stored.success]
    assert list(bad.table_name) == ["bronze.intake"] and "0.5" in bad.observed.iloc[0]
    assert (tmp_path / "lake" / "_quality" / "ds=2024-05-02" / "bronze.json").exists()


def test_gold_gate_passes_on_real_generations_and_fails_when_most_generations_fail(generated_lake, tmp_path, spark):
    lake0, _ = generated_lake
    shutil.copytree(lake0.root, tmp_path / "lake")
    lake = make_lake(tmp_path / "lake", spark, **SMALL_GENERATION)
    ok = run_gate(lake, "gold", "2024-05-01")
    assert ok.success, ok.text()
    assert ok.rows["gold.persona_summaries"] > 0 and ok.rows["gold.product_summaries"] > 0

    # A planted bad run: on 2024-05-02 five summaries were generated and fifteen failed validation.
    summaries = lake.read_pandas("gold.product_summaries")
    fresh = pd.concat([summaries.head(1)] * 5, ignore_index=True)
    fresh["product_id"] = [f"p{i}" for i in range(5)]
    fresh["ds"] = "2024-05-02"
    from jobs.lake.lake import spark_schema
    from jobs.lake import tables as T

    lake.merge(T.GOLD_PRODUCT_SUMMARIES, spark.createDataFrame(fresh, spark_schema(T.GOLD_PRODUCT_SUMMARIES.schema)))
    fails = pd.DataFrame([{**fresh.iloc[0][["model_id", "adapter_version", "prompt_version", "input_hash", "generated_at"]].to_dict(),
                           "task": "relsum", "entity_key": f"bad{i}", "reason": "summary has 90 words, over the cap",
                           "raw_output": "x", "attempts": 2, "ds": "2024-05-02"} for i in range(15)])
    lake.merge(T.SILVER_GENERATION_FAILURES, spark.createDataFrame(
        fails[T.SILVER_GENERATION_FAILURES.schema.names], spark_schema(T.SILVER_GENERATION_FAILURES.schema)))
    bad = run_gate(lake, "gold", "2024-05-02")
    assert not bad.success
    assert [(o.table, o.column) for o in bad.failed] == [("gold.generation", "bad_share")]
    assert '"unexpected_count": 1' in bad.failed[0].observed  # the relsum task, 15 of 20 failed


def test_gold_gate_catches_out_of_range_scores_and_empty_text(generated_lake, tmp_path, spark):
    lake0, _ = generated_lake
    shutil.copytree(lake0.root, tmp_path / "lake")
    lake = make_lake(tmp_path / "lake", spark, **SMALL_GENERATION)
    from jobs.lake import tables as T
    from jobs.lake.lake import spark_schema

    rows = lake.read_pandas("gold.persona_summaries").head(2).copy()
    rows["suitability"] = [0, 11]
    rows["summary"] = ["", "ok summary"]
    rows["user_id"] = ["u-planted-1", "u-planted-2"]
    rows["ds"] = "2024-05-03"
    lake.merge(T.GOLD_PERSONA_SUMMARIES, spark.createDataFrame(rows, spark_schema(T.GOLD_PERSONA_SUMMARIES.schema)))
    result = run_gate(lake, "gold", "2024-05-03")
    failed = {(o.table, o.expectation, o.column) for o in result.failed}
    assert ("gold.persona_summaries", "expect_column_values_to_be_between", "suitability") in failed
    assert ("gold.persona_summaries", "expect_column_value_lengths_to_be_between", "summary") in failed


def test_spark_engine_gives_the_same_outcomes(tmp_path, spark, cf_subset):
    from jobs.ingest.job import ingest_relevance

    lake = make_lake(tmp_path / "lake", spark)
    ingest_relevance(lake, [str(cf_subset)], "crowdflower", "2024-05-01")
    pandas_result = run_gate(lake, "bronze", "2024-05-01")
    spark_lake = make_lake(tmp_path / "lake", spark, quality__engine="spark")
    spark_result = run_gate(spark_lake, "bronze", "2024-05-01")
    key = lambda r: sorted((o.table, o.expectation, o.column, o.success) for o in r.outcomes)  # noqa: E731
    assert key(pandas_result) == key(spark_result) and pandas_result.success
