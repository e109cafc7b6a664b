"""The Great Expectations gates on real tables: they pass on good data and stop bad batches."""

import gzip
import json
import shutil

import pandas as pd
import pytest

from jobs.quality import QualityGateFailed, gate, run_gate
from tests.conftest import BEAUTY, SMALL_LAKE, make_lake


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
    lake = make_lake(tmp_path / "lake", spark, **SMALL_LAKE)
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
    lake = make_lake(tmp_path / "lake", spark, **SMALL_LAKE)
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


# ---------------------------------------------------------------- content rules, on planted batches
DAY = "2024-06-01"
# conf/local.yaml has every content rule at `fail`, the small zero-shot lake relaxes the two text rules; these tests check
# the rules at their default severity, `fail`.
STRICT = {f"quality__content__{rule}": "fail"
          for rule in ("constant_score", "score_concentration", "distinct_2", "template_echo", "ungrounded_persona",
                       "empty_table")}


@pytest.fixture
def strict(tmp_path, spark):
    return make_lake(tmp_path / "lake", spark, **STRICT)


def _planted(lake, spark, table, rows: list[dict]):
    """Merge rows into a generated table, with the provenance columns every model output carries."""
    from datetime import datetime, timezone

    from jobs.lake.lake import spark_schema
    from jobs.lake.tables import get_table

    spec = get_table(table)
    prov = {"model_id": "planted", "adapter_version": "base", "prompt_version": "p1",
            "generated_at": datetime(2024, 6, 1, tzinfo=timezone.utc), "ds": DAY}
    full = [{**prov, "input_hash": f"h{i}", **r} for i, r in enumerate(rows)]
    lake.merge(spec, spark.createDataFrame(pd.DataFrame(full)[spec.schema.names], spark_schema(spec.schema)))


REASONINGS = [
    "The user likes light floral scents and this spray is light and floral.",
    "This cream is heavy while the user prefers light lotions for daily use.",
    "The shopper values value for money and the price here is fair for the size.",
    "Strong perfume notes may bother a user who dislikes strong smells.",
    "A gentle formula suits the user's sensitive skin and past good reviews.",
]


def _ratings(predicted, actual):
    return [{"user_id": f"u{i}", "product_id": f"p{i}", "reasoning": REASONINGS[i % 5] + f" Pair {i}.",
             "predicted_rating": int(p), "predicted_rating_expected": float(p), "predicted_rating_entropy": 0.0,
             "actual_rating": float(a)} for i, (p, a) in enumerate(zip(predicted, actual))]


ACTUAL = [5.0] * 10 + [4.0] * 5 + [3.0] * 5 + [1.0] * 5  # the most common actual rating is 40% of rows


def _content_failures(result):
    return {(o.table, o.expectation, o.column) for o in result.failed}


def test_a_constant_rating_on_every_row_fails_the_gold_gate(strict, spark):
    _planted(strict, spark, "gold.rating_predictions", _ratings([1] * 25, ACTUAL))
    result = run_gate(strict, "gold", DAY)
    assert not result.success
    assert ("gold.rating_predictions", "expect_column_unique_value_count_to_be_between", "predicted_rating") in _content_failures(result)


def test_ratings_far_more_concentrated_than_the_actual_ones_fail_the_gold_gate(strict, spark):
    # 23 of 25 predictions say 5 (92%) where the actual ratings' mode is 40%: excess 0.52 > 0.15
    _planted(strict, spark, "gold.rating_predictions", _ratings([5] * 23 + [4, 3], ACTUAL))
    result = run_gate(strict, "gold", DAY)
    assert ("gold.concentration", "expect_column_values_to_be_between", "excess") in _content_failures(result)
    assert '"unexpected_count": 1' in next(o.observed for o in result.failed if o.table == "gold.concentration")


def test_healthy_ratings_pass_every_content_rule(strict, spark):
    predicted = [5] * 9 + [4] * 6 + [3] * 4 + [2] * 3 + [1] * 3  # mode 36%, close to the actual 40%
    _planted(strict, spark, "gold.rating_predictions", _ratings(predicted, ACTUAL))
    result = run_gate(strict, "gold", DAY)
    assert result.success, result.text()
    assert result.rows["gold.rating_predictions"] == 25


def test_repeated_text_fails_distinct_2_and_an_echoed_template_fails_template_echo(strict, spark):
    loop = "a unique, 10-ounce, 10-ounce, 10-ounce, 10-ounce, 10-ounce, 10-ounce bottle"
    _planted(strict, spark, "gold.personas", [{"user_id": f"u{i}", "persona": loop} for i in range(5)])
    echoed = [{"user_id": f"u{i}", "product_id": "p", "suitability": 3 + i, "suitability_expected": 3.0 + i,
               "suitability_entropy": 0.5,
               "summary": f"Shopper persona: a buyer of soap number {i}. Reviews praise the scent and the price."}
              for i in range(5)]
    _planted(strict, spark, "gold.persona_summaries", echoed)
    failures = _content_failures(run_gate(strict, "gold", DAY))
    assert ("gold.personas", "expect_column_mean_to_be_between", "distinct_2__persona") in failures
    assert ("gold.persona_summaries", "expect_column_values_to_not_match_regex_list", "summary") in failures
    assert not any(t == "gold.persona_summaries" and e == "expect_column_mean_to_be_between" for t, e, _ in failures)


def test_a_content_rule_set_to_warn_reports_without_blocking_publish(tmp_path, spark):
    from jobs.publish import gate_passed

    lake = make_lake(tmp_path / "lake", spark, **{**STRICT, "quality__content__constant_score": "warn"})
    _planted(lake, spark, "gold.rating_predictions", _ratings([1] * 25, ACTUAL))
    result = run_gate(lake, "gold", DAY)
    assert [o.column for o in result.warnings] == ["predicted_rating"]
    assert "WARNING gold.rating_predictions" in result.text()
    # the concentration rule still fails: 100% of one value against 40%
    assert not result.success and not gate_passed(lake, "gold", DAY)
    lake2 = make_lake(tmp_path / "lake2", spark, **{**STRICT, "quality__content__constant_score": "warn",
                                                    "quality__content__score_concentration": "warn"})
    _planted(lake2, spark, "gold.rating_predictions", _ratings([1] * 25, ACTUAL))
    assert run_gate(lake2, "gold", DAY).success and gate_passed(lake2, "gold", DAY)
    stored = lake2.read_pandas("eval.quality_results")
    assert set(stored[~stored.success].severity) == {"warn"}


def test_silver_gate_fails_on_empty_tables_and_warns_when_description_delta_kept_nothing(strict):
    result = run_gate(strict, "silver", DAY)
    empty = {o.table for o in result.failed if o.expectation == "expect_table_row_count_to_be_between"}
    assert empty == {"silver.review_samples", "silver.user_histories", "silver.review_split"}
    assert [o.table for o in result.warnings] == ["silver.relsum_pairs"]


def test_spark_engine_gives_the_same_content_outcomes(strict, tmp_path, spark):
    _planted(strict, spark, "gold.rating_predictions", _ratings([1] * 25, ACTUAL))
    pandas_result = run_gate(strict, "gold", DAY)
    spark_lake = make_lake(tmp_path / "lake", spark, quality__engine="spark", **STRICT)
    spark_result = run_gate(spark_lake, "gold", DAY)
    key = lambda r: sorted((o.table, o.expectation, o.column, o.success, o.severity) for o in r.outcomes)  # noqa: E731
    assert key(pandas_result) == key(spark_result) and not spark_result.success


def test_a_persona_with_no_sentence_supported_by_the_users_reviews_fails_and_a_grounded_one_passes(strict, spark):
    from jobs.features import filter_reviews
    from jobs.ingest.job import ingest_reviews

    ingest_reviews(strict, [str(BEAUTY)], DAY)
    filter_reviews(strict, DAY)
    hist = strict.read_pandas("silver.user_histories").sort_values("n_reviews", ascending=False).head(2)
    grounded_user, invented_user = hist.user_id.tolist()
    first = hist.iloc[0].reviews[0]
    grounded = f"This shopper writes: {first['text']}"  # the user's own words
    invented = ("Ava is a 28-year-old astronaut who collects vintage motorcycles in Norway. "
                "She trains for marathons on the moon every weekend.")
    _planted(strict, spark, "gold.personas", [{"user_id": grounded_user, "persona": grounded},
                                              {"user_id": invented_user, "persona": invented}])
    result = run_gate(strict, "gold", DAY)
    bad = [o for o in result.failed if o.column == "supported__persona"]
    assert len(bad) == 1 and '"unexpected_count": 1' in bad[0].observed and "0" in bad[0].observed
    from jobs.features.sumforu import persona_metrics

    rows = strict.read_pandas("gold.personas").sort_values("user_id").reset_index(drop=True)
    m = {name: v for name, v, _ in persona_metrics(strict, rows)}
    assert m["ungrounded_personas"] == 1 and m["unsupported_claims"] >= 2 and 0 < m["grounding_share"] < 1
    # "She trains ..." is about the shopper, "Ava is ..." and the review's own sentences are not
    assert 0 < m["about_shopper_share"] < 1
