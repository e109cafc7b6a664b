"""The generation engine and the feature jobs with the real SmolLM2-135M on CPU."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generator.safety import contains_pii, strip_markup
from jobs.features import ORDER, filter_reviews, generate
from tests.conftest import BEAUTY, REPO, SMALL_LAKE, make_lake

GOLD = {
    "relsum": "gold.product_summaries",
    "personas": "gold.personas",
    "persona_summaries": "gold.persona_summaries",
    "preferences": "silver.review_preferences",
    "user_profiles": "gold.user_profiles",
    "item_profiles": "gold.item_profiles",
    "ratings": "gold.rating_predictions",
    "rpo": "gold.personalized_texts",
}
TEXT = {"gold.product_summaries": "summary", "gold.personas": "persona", "gold.persona_summaries": "summary",
        "gold.user_profiles": "profile", "gold.item_profiles": "profile", "gold.rating_predictions": "reasoning",
        "gold.personalized_texts": "personalized_text"}


def test_filter_reviews_selection_and_the_heldout_split(lake):
    from jobs.ingest.job import ingest_reviews

    ingest_reviews(lake, [str(BEAUTY)], "2024-05-01")
    counts = filter_reviews(lake, "2024-05-01")
    assert counts == {"active_users": 991, "heldout_reviews": 991, "golden_products": 15,
                      "sampled_reviews": counts["sampled_reviews"]}
    reviews = lake.read_pandas("bronze.reviews")
    split = lake.read_pandas("silver.review_split")
    held = split[split.split == "heldout"]
    # each active user holds out exactly one review: their most recent
    assert held.user_id.is_unique and len(held) == 991
    newest = reviews.groupby("user_id").review_time.max()
    held_time = reviews.set_index("review_id").loc[held.review_id, "review_time"].to_numpy()
    assert (held_time == newest.loc[held.user_id].to_numpy()).all()
    train = reviews[~reviews.review_id.isin(held.review_id)]

    s = lake.read_pandas("silver.review_samples")
    assert not s.review_id.isin(held.review_id).any()  # no held-out review reaches a sample
    sizes = s.groupby("product_id").size()
    assert (sizes == train.groupby("product_id").size().loc[sizes.index].clip(upper=50)).all()
    # stratified: every rating present is sampled, and each rating's count is within the number
    # of ratings present of its proportional share
    for pid, sample in s.groupby("product_id"):
        full = train[train.product_id == pid].rating.value_counts()
        got = sample.rating.value_counts()
        assert set(got.index) == set(full.index), pid
        for rating, n in full.items():
            assert abs(got[rating] - n * len(sample) / full.sum()) <= len(full), (pid, rating)
    # seeded: the same split and sample again
    filter_reviews(lake, "2024-05-01")
    assert lake.read_pandas("silver.review_samples").sort_values(["product_id", "sample_rank"]).review_id.tolist() == \
        s.sort_values(["product_id", "sample_rank"]).review_id.tolist()
    assert sorted(lake.read_pandas("silver.review_split").query("split == 'heldout'").review_id) == sorted(held.review_id)
    h = lake.read_pandas("silver.user_histories")
    assert (h.n_reviews >= 2).all() and (h.reviews.map(len) == h.n_reviews).all()
    assert not h.reviews.map(lambda rs: any(r["review_id"] in set(held.review_id) for r in rs)).any()


def test_product_stats_anchor_moves_once_every_refresh_period():
    from jobs.features.selection import product_stats_ds
    from precis.errors import MissingPrerequisite

    days = ["2026-01-01", "2026-01-02", "2026-01-07", "2026-01-08", "2026-01-09", "2026-01-16"]
    assert [product_stats_ds(days[:n], 7) for n in range(1, 7)] == \
        ["2026-01-01", "2026-01-01", "2026-01-01", "2026-01-08", "2026-01-08", "2026-01-16"]
    assert product_stats_ds(days, 1) == "2026-01-16"  # daily: the newest
    assert product_stats_ds(reversed(days[:5]), 7) == "2026-01-08"  # the order partitions are listed in does not matter
    with pytest.raises(MissingPrerequisite, match="filter_reviews"):
        product_stats_ds([], 7)


def test_a_new_review_moves_the_users_stats_at_once_and_the_products_on_the_refresh_day(lake, tmp_path):
    """Day 2 adds a review: the user's train mean and count move at once; the product whose review
    turned from held-out to train keeps day 1's (refreshed every 7 days), though today's split has
    one more train review of it."""
    import gzip
    import json

    from jobs.features.selection import train_rating_stats
    from jobs.ingest.job import ingest_reviews

    records = [json.loads(line) for line in gzip.open(BEAUTY, "rt")]
    user = records[0]["reviewerID"]
    product = next(r["asin"] for r in records
                   if all(not (q["reviewerID"] == user and q["asin"] == r["asin"]) for q in records))
    newer = max(r["unixReviewTime"] for r in records) + 86400
    day2 = tmp_path / "day2.jsonl"
    day2.write_text(json.dumps({**records[0], "asin": product, "overall": 1.0, "unixReviewTime": newer}) + "\n")

    def stats():
        users, items = train_rating_stats(lake)
        return (users.toPandas().set_index("user_id").loc[user].tolist(),
                items.toPandas().set_index("product_id").loc[old].tolist())

    assert lake.cfg.generation.product_stats_refresh_days == 7
    ingest_reviews(lake, [str(BEAUTY)], "2026-01-01")
    filter_reviews(lake, "2026-01-01")
    split = lake.read_pandas("silver.review_split")
    old = split.loc[(split.user_id == user) & (split.split == "heldout"), "product_id"].item()
    before = stats()
    ingest_reviews(lake, [str(day2)], "2026-01-02")
    filter_reviews(lake, "2026-01-02")
    user_now, item_now = stats()
    assert user_now[1] == before[0][1] + 1  # the user's held-out review of `old` is train now
    assert item_now == before[1]  # the product's mean and count as of day 1
    today = lake.read_pandas("silver.review_split").query("ds == '2026-01-02' and split == 'train'")
    assert (today.product_id == old).sum() == before[1][1] + 1  # what a daily refresh would have read


def test_held_out_reviews_that_return_to_train_enter_product_samples_no_more_often_than_chance(lake, tmp_path):
    """A user's new review makes it their held-out one, and their previous held-out review returns to
    train. The held-out review is picked by a hash among the user's newest (timestamps are days), so
    the sample must order by a differently salted hash. With the split's hash the returning reviews
    sorted to the front of their products' samples and moved the first reviews every item profile
    and summary reads: here 16 of 123 entered the first 4 where 7.1 would by chance (8 now; 27 the
    first 50, against 28)."""
    import gzip
    import json

    from jobs.ingest.job import ingest_reviews

    records = [json.loads(line) for line in gzip.open(BEAUTY, "rt")]
    newer = max(r["unixReviewTime"] for r in records) + 86400
    day2 = tmp_path / "day2.jsonl"  # every 40th review edited: a new review of the same product, today
    day2.write_text("".join(json.dumps({**r, "reviewText": f"{r.get('reviewText') or ''} Update: still using it.",
                                        "unixReviewTime": newer}) + "\n" for r in records[::40]))
    ingest_reviews(lake, [str(BEAUTY)], "2026-01-01")
    filter_reviews(lake, "2026-01-01")
    ingest_reviews(lake, [str(day2)], "2026-01-02")
    filter_reviews(lake, "2026-01-02")

    split = lake.read_pandas("silver.review_split")
    held1 = set(split.query("ds == '2026-01-01' and split == 'heldout'").review_id)
    train2 = split.query("ds == '2026-01-02' and split == 'train'")
    returning = train2[train2.review_id.isin(held1)]
    assert len(returning) >= 80
    n_train = train2.groupby("product_id").size()
    samples = lake.read_pandas("silver.review_samples").query("ds == '2026-01-02'").set_index("review_id")
    for k in (lake.cfg.generation.item_reviews, lake.cfg.filter.sample_max):
        entered = sum(samples.sample_rank.get(r, k + 1) <= k for r in returning.review_id)
        chance = sum(min(1.0, k / n_train[p]) for p in returning.product_id)
        print(f"first {k}: {entered} of {len(returning)} returning reviews entered, {chance:.1f} by chance")
        assert entered <= 1.3 * chance + 2, (k, entered, chance)


def test_every_gold_table_is_filled_and_every_row_valid(generated_lake):
    lake, reports = generated_lake
    for name in ORDER:
        print(reports[name].line())
    for name, table in GOLD.items():
        df = lake.read_pandas(table)
        assert len(df) > 0 or reports[name].failed > 0, f"{table} is empty and nothing failed"
        for col in ("model_id", "adapter_version", "prompt_version", "input_hash", "generated_at"):
            assert df[col].notna().all(), (table, col)
        assert set(df.model_id) <= {"HuggingFaceTB/SmolLM2-135M-Instruct"} and set(df.adapter_version) <= {"base"}
        if table in TEXT:
            for text in df[TEXT[table]]:
                assert text.strip() and strip_markup(text) == text.strip() and not contains_pii(text), (table, text)
    summaries = lake.read_pandas("gold.product_summaries")
    assert (summaries.summary.str.split().map(len) <= 48).all()
    ps = lake.read_pandas("gold.persona_summaries")
    assert ps.suitability.between(1, 10).all()
    assert lake.read_pandas("gold.rating_predictions").predicted_rating.between(1, 5).all()
    rpo = lake.read_pandas("gold.personalized_texts")
    assert (rpo.history_review_ids.map(len) >= 1).all()
    failures = lake.read_pandas("silver.generation_failures")
    assert failures.reason.notna().all()
    assert not failures.raw_output.dropna().map(contains_pii).any()  # redacted before storing
    # evaluation pairs are the users' held-out products: each has its actual rating, and no
    # held-out review reached a preference (so no profile saw it)
    split = lake.read_pandas("silver.review_split")
    held = split[split.split == "heldout"]
    ratings = lake.read_pandas("gold.rating_predictions")
    pairs = set(zip(held.user_id, held.product_id))
    evaluated = ratings[[p in pairs for p in zip(ratings.user_id, ratings.product_id)]]
    assert len(evaluated) and evaluated.actual_rating.notna().all()
    # the rest are reranking candidates (generation.rerank_candidates: 1 per user), never reviewed
    candidates = ratings.drop(evaluated.index)
    reviews = lake.read_pandas("bronze.reviews", ["user_id", "product_id"])
    reviewed = set(zip(reviews.user_id, reviews.product_id))
    assert 1 <= len(candidates) <= ratings.user_id.nunique() and candidates.actual_rating.isna().all()
    assert not set(zip(candidates.user_id, candidates.product_id)) & reviewed
    assert not lake.read_pandas("silver.review_preferences").review_id.isin(held.review_id).any()


def test_rerun_generates_nothing(generated_lake):
    lake, _ = generated_lake
    before = {t: (lake.count(t), lake.delta_table(t).version()) for t in GOLD.values() if lake.exists(t)}
    for name in ("relsum", "personas", "ratings"):
        report = generate(lake, name, "2024-05-02")
        assert report.generated == report.failed == 0 and report.skipped == report.total
    assert {t: (lake.count(t), lake.delta_table(t).version()) for t in before} == before


def test_rows_whose_inputs_changed_and_failed_or_left_are_retired(generated_lake, tmp_path, spark):
    """A user's history loses every review, so no persona sentence can be grounded: today's persona
    is refused, and yesterday's persona and the persona summaries made from it leave the gold
    tables (the engine's step 4). The other users' rows stay, and a re-run changes nothing. When the
    user then leaves the inputs, the recorded failure is retired too."""
    import shutil

    from pyspark.sql import functions as F

    shutil.copytree(generated_lake[0].root, tmp_path / "lake")  # the shared lake stays as it is
    lake = make_lake(tmp_path / "lake", spark, **SMALL_LAKE)
    personas, summaries = lake.read_pandas("gold.personas"), lake.read_pandas("gold.persona_summaries")
    user = sorted(set(personas.user_id) & set(summaries.user_id))[0]
    emptied = lake.read("silver.user_histories").where(F.col("user_id") == user).withColumn(
        "reviews", F.filter("reviews", lambda r: F.lit(False)))
    assert lake.merge("silver.user_histories", emptied).committed

    report = generate(lake, "personas", "2024-05-02")
    assert (report.generated, report.failed, report.retired) == (0, 1, 1), report.line()
    assert sorted(lake.read_pandas("gold.personas").user_id) == sorted(set(personas.user_id) - {user})
    failures = lake.read_pandas("silver.generation_failures")
    assert ((failures.task == "sumforu_persona") & (failures.entity_key == user)).sum() == 1

    report = generate(lake, "persona_summaries", "2024-05-02")  # the user has no persona today: no input
    assert report.generated == report.failed == 0 and report.retired == (summaries.user_id == user).sum() > 0
    after = lake.read_pandas("gold.persona_summaries")
    assert user not in set(after.user_id) and len(after) == len(summaries) - report.retired

    versions = {t: lake.delta_table(t).version() for t in ("gold.personas", "gold.persona_summaries")}
    failures_version = lake.delta_table("silver.generation_failures").version()
    for key in ("personas", "persona_summaries"):
        report = generate(lake, key, "2024-05-03")
        assert report.generated == report.failed == report.retired == 0, report.line()
    assert {t: lake.delta_table(t).version() for t in versions} == versions
    assert lake.delta_table("silver.generation_failures").version() == failures_version

    # the user leaves the inputs (last by review count, and one user selected): the failure on the
    # emptied history is no longer the last word on anything, and leaves too; the other user's
    # persona is unchanged, so nothing is generated
    lake = make_lake(tmp_path / "lake", spark, **{**SMALL_LAKE, "generation__n_users": "1"})
    last = lake.read("silver.user_histories").where(F.col("user_id") == user).withColumn("n_reviews", F.col("n_reviews") * 0 - 1)
    assert lake.merge("silver.user_histories", last).committed
    report = generate(lake, "personas", "2024-05-04")
    assert report.generated == report.failed == report.retired == 0, report.line()
    left = lake.read_pandas("silver.generation_failures")
    assert not ((left.task == "sumforu_persona") & (left.entity_key == user)).any()
    assert len(left) == len(failures) - 1


def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path, spark):
    """SIGKILL a real `precis job generate_preferences` after its first chunk commits, then re-run."""
    # one user: the run after the kill generates the rest, and a short rest is enough to show no gap;
    # 16-token answers (their own prompt version): this test is about commits, not about the text
    settings = {**SMALL_LAKE, "generation__n_users": "1", "generation__chunk_size": "2", "generation__max_attempts": "1",
                "generation__max_new_tokens": "16"}
    lake = make_lake(tmp_path / "lake", spark, **settings)
    from jobs.ingest.job import ingest_reviews

    ingest_reviews(lake, [str(BEAUTY)], "2024-05-01")
    filter_reviews(lake, "2024-05-01")
    env = dict(os.environ, **{f"PRECIS__{k.upper()}": v for k, v in settings.items()})
    cmd = [str(Path(sys.executable).with_name("precis")), "--lake", lake.root, "job", "generate_preferences", "--date", "2024-05-01"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            done = sum(lake.count(t) for t in ("silver.review_preferences", "silver.generation_failures"))
            if done >= 2:
                break
            time.sleep(1)
        assert proc.poll() is None, "the job ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    partial = sum(lake.count(t) for t in ("silver.review_preferences", "silver.generation_failures"))
    report = generate(lake, "preferences", "2024-05-01")
    assert report.skipped == partial and report.generated + report.failed == report.total - partial > 0
    prefs = lake.read_pandas("silver.review_preferences")
    fails = lake.read_pandas("silver.generation_failures")
    assert not prefs.review_id.duplicated().any() and not fails.entity_key.duplicated().any()
    assert len(prefs) + len(fails) == report.total
    assert not set(prefs.review_id) & set(fails.entity_key)
