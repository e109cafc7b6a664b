"""EXP3RT: preferences extracted from each review, user and item profiles aggregated from them, and
step-by-step reasoning followed by a 1-5 rating prediction for (user, product).

Only train reviews feed preferences and profiles (`silver.review_split`), so a held-out pair's
actual rating is ground truth the prediction never saw. The prediction must beat the baselines a
recommender would otherwise use on the same pairs (global, user and item means, leave-one-out).
A profile must describe its owner: it is closer to the owner's held-out reviews than the other
profiles are (`ground_truth.owner_match_metrics`).

The seed's second use, top-k reranking: with `generation.rerank_candidates`, ratings are also
predicted for products each user never reviewed (`selection.candidate_pairs`), and the signal table
ranks each user's held-out product among them by expected rating, against popularity and item-mean
orderings (`ground_truth.topk_metrics`).
"""

from __future__ import annotations

import json

import pandas as pd

from jobs.features import ground_truth
from jobs.features.selection import (candidate_pairs, latest, pair_products, rating_history, selected_pairs,
                                     selected_users, train_rating_stats)
from jobs.features.spec import FeatureJob, MetricRow, ScoreColumn, Seed, Signal, TextColumn
from jobs.generation import GenerationJob
from jobs.lake import Lake
from jobs.lake import tables as T

# Prompt labels of the EXP3RT templates that an output must not copy.
_ECHO = (r"user profile\s*:", r"product profile\s*:", r"rating\s*\(1\s*-\s*5\)")


# ---------------------------------------------------------------- preferences
def _prefs_task():
    from generator.tasks import exp3rt

    return exp3rt.preferences_task()


def _prefs_prepare(row):
    from generator.tasks import exp3rt

    return exp3rt.prepare_preferences(float(row["rating"]), row["title"], row["text"])


def _prefs_out(row, value):
    return {"review_id": row["review_id"], "user_id": row["user_id"], "product_id": row["product_id"],
            "rating": float(row["rating"]), **value}


def _prefs_inputs(lake: Lake):
    """The selected users' train reviews, and the first `item_reviews` train reviews of the sample of
    every product in a pair (held-out reviews are in neither)."""
    from pyspark.sql import functions as F

    user_reviews = selected_users(lake).select(F.explode("reviews").alias("r"), "user_id").select(
        "r.review_id", "user_id", "r.product_id", "r.rating", "r.title", "r.text")
    item_reviews = (latest(lake.read(T.SILVER_REVIEW_SAMPLES)).join(pair_products(lake), "product_id")
                    .where(F.col("sample_rank") <= lake.cfg.generation.item_reviews)
                    .select("review_id", "user_id", "product_id", "rating", "title", "text"))
    return user_reviews.unionByName(item_reviews).dropDuplicates(["review_id"])


PREFERENCES = FeatureJob(
    key="preferences",
    generation=GenerationJob("exp3rt_preferences", T.SILVER_REVIEW_PREFERENCES, ("review_id",),
                             ("rating", "title", "text"), _prefs_task, _prefs_prepare, _prefs_out),
    build_inputs=_prefs_inputs,
    texts=(TextColumn("likes", may_be_empty=True), TextColumn("dislikes", may_be_empty=True)),
)


# ---------------------------------------------------------------- profiles
def _profile_task():
    from generator.tasks import exp3rt

    return exp3rt.profile_task()


def _profile_prepare(row):
    from generator.tasks import exp3rt

    prefs = [(p["likes"], p["dislikes"]) for p in json.loads(row["prefs"])]
    return exp3rt.prepare_profile(row["subject"], prefs)


def _user_profile_out(row, value):
    return {"user_id": row["user_id"], "profile": value["profile"], "n_reviews": int(row["n"])}


def _item_profile_out(row, value):
    return {"product_id": row["product_id"], "profile": value["profile"], "n_reviews": int(row["n"])}


def _profile_inputs(key: str):
    def build(lake: Lake):
        from pyspark.sql import functions as F

        from jobs.features import current_rows

        prefs = current_rows(lake, "preferences")
        if key == "user_id":
            scope, subject = selected_users(lake).select("user_id"), "user"
            prefs = prefs.join(scope, "user_id")
        else:
            scope, subject = pair_products(lake), "product"
            # an item's profile comes from its sampled reviews' preferences, not from the selected
            # users' other reviews of it (those would be few and unrepresentative)
            sampled = (latest(lake.read(T.SILVER_REVIEW_SAMPLES)).where(F.col("sample_rank") <= lake.cfg.generation.item_reviews)
                       .select("review_id"))
            prefs = prefs.join(scope, "product_id").join(sampled, "review_id")
        return prefs.groupBy(key).agg(
            F.to_json(F.sort_array(F.collect_list(F.struct("review_id", "likes", "dislikes")))).alias("prefs"),
            F.count("*").alias("n"),
        ).withColumn("subject", F.lit(subject))

    return build


def _profile_metrics(key: str):
    def metrics(lake: Lake, rows: pd.DataFrame) -> list[MetricRow]:
        texts = rows.drop_duplicates(key).set_index(key)["profile"]
        return ground_truth.owner_match_metrics(texts, ground_truth.heldout_reviews(lake, key), key)

    return metrics


def _profile_signals(owner: str) -> tuple[Signal, ...]:
    return (Signal("own_cosine", "higher", baseline="other_cosine", p_value="own_cosine_p",
                   question=f"is a profile closer to its {owner}'s held-out reviews than other {owner}s' profiles are?"),
            Signal("own_top_share", "higher", baseline="chance_top_share", p_value="own_top_share_p",
                   question="... is it the closest of all more often than chance?"))


USER_PROFILES = FeatureJob(
    key="user_profiles",
    generation=GenerationJob("exp3rt_user_profile", T.GOLD_USER_PROFILES, ("user_id",), ("prefs", "subject"),
                             _profile_task, _profile_prepare, _user_profile_out),
    build_inputs=_profile_inputs("user_id"),
    reads=("preferences",),
    texts=(TextColumn("profile"),),
    echo=(r"^\s*-?\s*likes\s*:",),
    metrics=_profile_metrics("user_id"),
    signals=_profile_signals("user"),
)
ITEM_PROFILES = FeatureJob(
    key="item_profiles",
    generation=GenerationJob("exp3rt_item_profile", T.GOLD_ITEM_PROFILES, ("product_id",), ("prefs", "subject"),
                             _profile_task, _profile_prepare, _item_profile_out),
    build_inputs=_profile_inputs("product_id"),
    reads=("preferences",),
    texts=(TextColumn("profile"),),
    echo=(r"^\s*-?\s*likes\s*:",),
    metrics=_profile_metrics("product_id"),
    signals=_profile_signals("product"),
)


# ---------------------------------------------------------------- rating prediction
def _rating_task():
    from generator.tasks import exp3rt

    return exp3rt.rating_task()


def _rating_prepare(row):
    from generator.tasks import exp3rt

    return exp3rt.prepare_rating(row["user_profile"], row["item_profile"], rating_history(row))


def _rating_out(row, value):
    actual = row.get("actual_rating")
    return {"user_id": row["user_id"], "product_id": row["product_id"], **value,
            "actual_rating": None if actual is None or actual != actual else float(actual)}


def _rating_inputs(lake: Lake):
    from pyspark.sql import functions as F

    from jobs.features import current_rows
    from jobs.features.selection import actual_ratings

    up = current_rows(lake, "user_profiles").select("user_id", F.col("profile").alias("user_profile"))
    ip = current_rows(lake, "item_profiles").select("product_id", F.col("profile").alias("item_profile"))
    users, items = train_rating_stats(lake)
    pairs = selected_pairs(lake).unionByName(candidate_pairs(lake)).distinct()
    return (actual_ratings(lake, pairs).join(up, "user_id").join(ip, "product_id")
            .join(users, "user_id", "left").join(items, "product_id", "left"))


def _stored_actual(lake: Lake, rows: pd.DataFrame) -> pd.Series:
    return rows["actual_rating"]


def rating_metrics(lake: Lake, rows: pd.DataFrame) -> list[MetricRow]:
    split = lake.read_pandas(T.SILVER_REVIEW_SPLIT, ["user_id", "product_id", "rating", "split", "ds"])
    split = split[split.ds == split.ds.max()]
    return (ground_truth.rating_metrics(rows, ground_truth.reviews(lake))
            + ground_truth.expected_value_metrics(rows["predicted_rating_expected"], rows["actual_rating"])
            + ground_truth.topk_metrics(rows, split))


RATINGS = FeatureJob(
    key="ratings",
    generation=GenerationJob("exp3rt_rating", T.GOLD_RATING_PREDICTIONS, ("user_id", "product_id"),
                             ("user_profile", "item_profile", "user_mean", "user_n", "item_mean", "item_n"),
                             _rating_task, _rating_prepare, _rating_out),
    build_inputs=_rating_inputs,
    reads=("user_profiles", "item_profiles"),
    texts=(TextColumn("reasoning"),),
    scores=(ScoreColumn("predicted_rating", 1, 5),),
    echo=_ECHO,
    truth=_stored_actual,
    metrics=rating_metrics,
    signals=(
        Signal("mae", "lower", baseline="user_mean_mae", p_value="user_mean_mae_p",
               question="does it beat the user's mean rating?"),
        Signal("mae", "lower", baseline="item_mean_mae", p_value="item_mean_mae_p",
               question="does it beat the item's mean rating?"),
        Signal("spearman", "higher", threshold=0.0, question="do predictions rise with the actual rating?"),
        Signal("expected_spearman", "higher", threshold=0.0,
               question="does the expected rating rise with the actual rating?"),
        Signal("expected_std", "higher", threshold=ground_truth.EXPECTED_MIN_STD,
               question=f"does the expected rating move with the input (std > {ground_truth.EXPECTED_MIN_STD})?"),
        Signal("mode_share", "lower", baseline="actual_mode_share", margin=0.05,
               question="is it no more concentrated than the actual ratings (within 5 points)?"),
        Signal("topk_ndcg@5", "higher", baseline="popularity_topk_ndcg@5", p_value="popularity_topk_ndcg@5_p",
               question="ranking a user's candidates by expected rating: does it beat popularity (NDCG@5)?"),
        Signal("topk_ndcg@5", "higher", baseline="item_mean_topk_ndcg@5", p_value="item_mean_topk_ndcg@5_p",
               question="... and the item's mean rating (NDCG@5)?"),
    ),
)

SEED = Seed("exp3rt", (PREFERENCES, USER_PROFILES, ITEM_PROFILES, RATINGS))
