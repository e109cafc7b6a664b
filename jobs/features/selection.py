"""Which users, products and (user, product) pairs the features are generated for, and the
evaluation split that keeps ground truth away from every input.

`filter_reviews` (a daily step) writes three snapshot tables for the run's `ds`:

- `silver.review_split`: each active user's most recent review is held out (ties broken by a
  seeded hash of the review id), the rest is train. Fixed and reproducible: the same reviews give
  the same split on every run.
- `silver.user_histories`: active users with their *train* reviews;
- `silver.review_samples`: every product's seeded sample of up to `filter.sample_max` *train*
  reviews, stratified by rating (SUMFORU's selection): one review of every rating present, then
  each rating's share of the sample following its share of the product's reviews. Its order
  hashes the review id with its own salt, not the split's tie-break hash: the held-out review is
  the one with the smallest split hash among a user's newest (timestamps are days, so ties are
  common), and when it returns to train (the user reviewed again) it would otherwise sort to the
  front of its product's sample and move the first reviews every profile and summary read.

So a persona, a profile, a history retrieved for RPO or a review sample never contains a held-out
review, and the held-out (user, product) pairs carry an actual rating and review to measure against.
"""

from __future__ import annotations

import logging

from jobs.lake import Lake
from jobs.lake import tables as T
from precis.errors import MissingPrerequisite

log = logging.getLogger(__name__)


def latest(df):
    """Rows of the newest `ds` partition of a snapshot-per-run table."""
    from pyspark.sql import functions as F

    newest = df.agg(F.max("ds")).first()[0]
    return df.where(F.col("ds") == newest)


def filter_reviews(lake: Lake, ds: str) -> dict[str, int]:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    f = lake.cfg.filter
    reviews = lake.read("bronze.reviews")
    h = F.sha2(F.concat(F.lit(str(f.seed)), F.col("review_id")), 256)
    active = reviews.groupBy("user_id").agg(F.count("*").alias("n_all")).where(F.col("n_all") >= f.active_min_reviews)
    newest_first = Window.partitionBy("user_id").orderBy(F.desc("review_time"), "h")
    split = (
        reviews.join(active.select("user_id"), "user_id").withColumn("h", h)
        .withColumn("split", F.when(F.row_number().over(newest_first) == 1, "heldout").otherwise("train"))
        .select("review_id", "user_id", "product_id", "rating", "split")
    )
    lake.replace_partition(T.SILVER_REVIEW_SPLIT, split, ds)
    heldout = latest(lake.read(T.SILVER_REVIEW_SPLIT)).where(F.col("split") == "heldout").select("review_id")
    train = reviews.join(heldout, "review_id", "left_anti")

    per_product = reviews.groupBy("product_id").agg(F.count("*").alias("product_reviews"))
    stratum = Window.partitionBy("product_id", "rating")
    # salted apart from the split's `h` (see the module docstring)
    sample_h = F.sha2(F.concat(F.lit(f"sample:{f.seed}:"), F.col("review_id")), 256)
    g = train.join(per_product, "product_id").withColumn("h", sample_h)
    rank = F.row_number().over(stratum.orderBy("h"))
    # Each rating's first review comes before all others, so every rating present is in the sample
    # (minority opinions matter to a persona); the rest follows each rating's share.
    g = g.withColumn("pos", F.when(rank == 1, F.lit(0.0)).otherwise((rank - 0.5) / F.count("*").over(stratum)))
    g = g.withColumn("sample_rank", F.row_number().over(Window.partitionBy("product_id").orderBy("pos", "h")))
    samples = g.where(F.col("sample_rank") <= f.sample_max).select(
        "product_id", "review_id", "user_id", "rating", "title", "text", "product_reviews", F.col("sample_rank").cast("long")
    )

    train_active = train.join(active.select("user_id"), "user_id")
    fields = ["review_id", "product_id", "rating", "title", "text", "review_time"]
    hist = train_active.groupBy("user_id").agg(
        F.sort_array(F.collect_list(F.struct("review_time", "review_id", "product_id", "rating", "title", "text"))).alias("r"),
        F.count("*").alias("n_reviews"), F.avg("rating").alias("mean_rating"),
    ).select("user_id", "n_reviews", "mean_rating",
             F.transform("r", lambda x: F.struct(*[x[c].alias(c) for c in fields])).alias("reviews"))
    lake.replace_partition(T.SILVER_REVIEW_SAMPLES, samples, ds)
    lake.replace_partition(T.SILVER_USER_HISTORIES, hist, ds)
    s = latest(lake.read(T.SILVER_REVIEW_SAMPLES))
    u = latest(lake.read(T.SILVER_USER_HISTORIES))
    counts = {
        "active_users": u.count(),
        "heldout_reviews": heldout.count(),
        "golden_products": s.where(F.col("product_reviews") >= f.golden_min_reviews).select("product_id").distinct().count(),
        "sampled_reviews": s.count(),
    }
    log.info("filter_reviews: %s", counts)
    return counts


def selected_users(lake: Lake):
    from pyspark.sql import functions as F

    hist = latest(lake.read(T.SILVER_USER_HISTORIES))
    return hist.orderBy(F.desc("n_reviews"), "user_id").limit(lake.cfg.generation.n_users)


def golden_products(lake: Lake):
    """The N most reviewed golden products (>= filter.golden_min_reviews reviews)."""
    from pyspark.sql import functions as F

    s = latest(lake.read(T.SILVER_REVIEW_SAMPLES)).where(F.col("product_reviews") >= lake.cfg.filter.golden_min_reviews)
    top = s.select("product_id", "product_reviews").distinct().orderBy(F.desc("product_reviews"), "product_id")
    return top.limit(lake.cfg.generation.n_products)


def heldout_pairs(lake: Lake):
    """(user_id, product_id, actual_rating) of each selected user's held-out review(s)."""
    from pyspark.sql import functions as F

    split = latest(lake.read(T.SILVER_REVIEW_SPLIT)).where(F.col("split") == "heldout")
    return (split.join(selected_users(lake).select("user_id"), "user_id")
            .groupBy("user_id", "product_id").agg(F.avg("rating").alias("actual_rating")))


def selected_pairs(lake: Lake):
    """The (user_id, product_id) pairs of `generation.pairs`."""
    users = selected_users(lake).select("user_id")
    heldout = heldout_pairs(lake).select("user_id", "product_id")
    cross = users.crossJoin(golden_products(lake).select("product_id"))
    choice = lake.cfg.generation.pairs
    if choice == "heldout":
        return heldout
    if choice == "top_users_x_golden":
        return cross
    return heldout.unionByName(cross).distinct()


def candidate_pairs(lake: Lake):
    """EXP3RT's reranking candidates: per selected user, up to `generation.rerank_candidates`
    products that have an item profile (`pair_products`) and that the user never reviewed, in a
    seeded hash order of (user, product). They have no actual rating: the signal table ranks each
    user's held-out product among them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    reviewed = lake.read("bronze.reviews").select("user_id", "product_id").distinct()
    pool = selected_users(lake).select("user_id").crossJoin(pair_products(lake)).join(reviewed, ["user_id", "product_id"], "left_anti")
    h = F.sha2(F.concat_ws(":", F.lit(str(lake.cfg.filter.seed)), "user_id", "product_id"), 256)
    order = F.row_number().over(Window.partitionBy("user_id").orderBy(h, "product_id"))
    return pool.withColumn("r", order).where(F.col("r") <= lake.cfg.generation.rerank_candidates).select("user_id", "product_id")


def pair_products(lake: Lake):
    """Every product that appears in a selected pair or among the golden products."""
    return selected_pairs(lake).select("product_id").unionByName(golden_products(lake).select("product_id")).distinct()


def actual_ratings(lake: Lake, pairs):
    """`pairs` with `actual_rating`: the user's mean rating of the product over all their reviews
    of it (NaN where the user never reviewed it)."""
    reviews = lake.read("bronze.reviews")
    from pyspark.sql import functions as F

    actual = reviews.groupBy("user_id", "product_id").agg(F.avg("rating").alias("actual_rating"))
    return pairs.join(actual, ["user_id", "product_id"], "left")


def rating_history(row):
    """The RatingHistory of an input row with train_rating_stats' columns."""
    from generator.tasks.history import RatingHistory

    def mean(v):
        return None if v is None or v != v else float(v)

    def count(v):
        return 0 if v is None or v != v else int(v)

    return RatingHistory(mean(row["user_mean"]), count(row["user_n"]), mean(row["item_mean"]), count(row["item_n"]))


def product_stats_ds(partitions, every_days: int) -> str:
    """The `silver.review_split` partition that products' train statistics are read from.

    Anchors walk the partitions oldest first: the oldest is one, and so is each later partition at
    least `every_days` days after the previous anchor; the newest anchor is returned. So the
    statistics move once every `every_days` days, not with every new review (1: the newest
    partition, daily). Reading an older partition leaks nothing: reviews are only ever added, so a
    review that was train then is train now, and a held-out review of today was held out then or
    did not exist."""
    from datetime import date

    anchor = None
    for ds in sorted(set(partitions)):
        if anchor is None or (date.fromisoformat(ds) - date.fromisoformat(anchor)).days >= every_days:
            anchor = ds
    if anchor is None:
        raise MissingPrerequisite("silver.review_split has no partition", "run `precis job filter_reviews` first")
    return anchor


def train_rating_stats(lake: Lake):
    """(user_mean, user_n) per user and (item_mean, item_n) per product over train reviews only:
    what a rating prediction may know besides the profiles (no held-out rating is in them).

    The user's come from today's split. The products' come from the split of the last refresh
    (`generation.product_stats_refresh_days`, `product_stats_ds`): a product's mean and count are
    in the prompt of every pair with it, so refreshing them daily would re-rate all of those pairs
    for each new review of the product."""
    from pyspark.sql import functions as F

    train = lake.read(T.SILVER_REVIEW_SPLIT).where(F.col("split") == "train")
    days = [r[0] for r in train.select("ds").distinct().collect()]  # one listing: today's and the anchor
    every = lake.cfg.generation.product_stats_refresh_days
    anchor = product_stats_ds(days, every)
    log.info("product rating statistics: silver.review_split ds=%s (refreshed every %d day(s))", anchor, every)
    users = (train.where(F.col("ds") == max(days))
             .groupBy("user_id").agg(F.avg("rating").alias("user_mean"), F.count("*").alias("user_n")))
    items = (train.where(F.col("ds") == anchor)
             .groupBy("product_id").agg(F.avg("rating").alias("item_mean"), F.count("*").alias("item_n")))
    return users, items
