"""The feature jobs: SUMFORU's review selection, then the generation of every gold feature.

Cost is bounded by configuration (`generation:`): with U = n_users, P = n_products (golden) and
R = relsum_max_products, one run generates at most
    R summaries + U personas + U*P persona summaries (top_users_x_golden)
    + (reviews of the U users + P * item_reviews) preferences + U + P profiles
    + U*P ratings + U*P rewrites,
and a re-run generates only rows whose inputs, model, adapter or prompt changed.
"""

from __future__ import annotations

import json
import logging

from jobs.generation import BackendSettings, GenerationJob, GenerationReport, run_generation
from jobs.lake import Lake
from jobs.lake import tables as T

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- filter_reviews (SUMFORU selection)
def latest(df):
    """Rows of the newest `ds` partition of a snapshot-per-run table."""
    from pyspark.sql import functions as F

    newest = df.agg(F.max("ds")).first()[0]
    return df.where(F.col("ds") == newest)


def filter_reviews(lake: Lake, ds: str) -> dict[str, int]:
    """Active users and their histories; golden products and their seeded samples of 15-50
    reviews stratified by rating: one review of every rating present, then each rating's share of
    the sample following its share of the product's reviews (systematic sampling over rating
    strata in a seeded random order)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    f = lake.cfg.filter
    reviews = lake.read("bronze.reviews")
    per_user = reviews.groupBy("user_id").agg(F.count("*").alias("n_reviews"), F.avg("rating").alias("mean_rating"))
    active = per_user.where(F.col("n_reviews") >= f.active_min_reviews)
    per_product = reviews.groupBy("product_id").agg(F.count("*").alias("product_reviews"))
    golden = per_product.where(F.col("product_reviews") >= f.golden_min_reviews)

    h = F.sha2(F.concat(F.lit(str(f.seed)), F.col("review_id")), 256)
    stratum = Window.partitionBy("product_id", "rating")
    g = reviews.join(golden, "product_id").withColumn("h", h)
    rank = F.row_number().over(stratum.orderBy("h"))
    # Each rating's first review comes before all others, so every rating present is in the sample
    # (minority opinions matter to a persona); the rest follows each rating's share.
    g = g.withColumn("pos", F.when(rank == 1, F.lit(0.0)).otherwise((rank - 0.5) / F.count("*").over(stratum)))
    g = g.withColumn("sample_rank", F.row_number().over(Window.partitionBy("product_id").orderBy("pos", "h")))
    size = F.least(F.col("product_reviews"), F.lit(f.sample_max))
    samples = g.where(F.col("sample_rank") <= size).select(
        "product_id", "review_id", "user_id", "rating", "title", "text", "product_reviews", F.col("sample_rank").cast("long")
    )
    small = golden.where(F.col("product_reviews") < f.sample_min).count()
    if small:
        log.warning("%d golden products have fewer than %d reviews; their samples are all their reviews", small, f.sample_min)

    hist = reviews.join(active.select("user_id"), "user_id").groupBy("user_id").agg(
        F.sort_array(F.collect_list(F.struct("review_time", "review_id", "product_id", "rating", "title", "text"))).alias("r")
    )
    fields = ["review_id", "product_id", "rating", "title", "text", "review_time"]
    hist = hist.select(
        "user_id", F.transform("r", lambda x: F.struct(*[x[c].alias(c) for c in fields])).alias("reviews")
    ).join(active, "user_id").select("user_id", "n_reviews", "mean_rating", "reviews")
    lake.replace_partition(T.SILVER_REVIEW_SAMPLES, samples, ds)
    lake.replace_partition(T.SILVER_USER_HISTORIES, hist, ds)
    s = latest(lake.read(T.SILVER_REVIEW_SAMPLES))
    u = latest(lake.read(T.SILVER_USER_HISTORIES))
    counts = {
        "active_users": u.count(),
        "golden_products": s.select("product_id").distinct().count(),
        "sampled_reviews": s.count(),
    }
    log.info("filter_reviews: %s", counts)
    return counts


# ---------------------------------------------------------------- executor-side task wiring
def _relsum_task():
    from generator.tasks import relsum

    return relsum.task()


def _relsum_prepare(row):
    from generator.tasks import relsum

    return relsum.prepare(row["title"], row["description"], int(row["max_tokens"]))


def _relsum_out(row, value):
    return {"product_id": row["product_id"], "summary": value["summary"]}


def _reviews_of(payload: str, limit: int = 12) -> list[tuple[float, str]]:
    items = json.loads(payload or "[]")[-limit:]
    return [(float(r.get("rating") or 0), " ".join(x for x in (r.get("title"), r.get("text")) if x)) for r in items]


def _persona_task():
    from generator.tasks import sumforu

    return sumforu.persona_task()


def _persona_prepare(row):
    from generator.tasks import sumforu

    return sumforu.prepare_persona(_reviews_of(row["history"]))


def _persona_out(row, value):
    return {"user_id": row["user_id"], "persona": value["persona"]}


def _psum_task():
    from generator.tasks import sumforu

    return sumforu.summary_task()


def _psum_prepare(row):
    from generator.tasks import sumforu

    return sumforu.prepare_summary(row["persona"], _reviews_of(row["sample"], 20))


def _psum_out(row, value):
    return {"user_id": row["user_id"], "product_id": row["product_id"], **value}


def _prefs_task():
    from generator.tasks import exp3rt

    return exp3rt.preferences_task()


def _prefs_prepare(row):
    from generator.tasks import exp3rt

    return exp3rt.prepare_preferences(float(row["rating"]), row["title"], row["text"])


def _prefs_out(row, value):
    return {"review_id": row["review_id"], "user_id": row["user_id"], "product_id": row["product_id"],
            "rating": float(row["rating"]), **value}


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


def _rating_task():
    from generator.tasks import exp3rt

    return exp3rt.rating_task()


def _rating_prepare(row):
    from generator.tasks import exp3rt

    return exp3rt.prepare_rating(row["user_profile"], row["item_profile"])


def _rating_out(row, value):
    actual = row.get("actual_rating")
    return {"user_id": row["user_id"], "product_id": row["product_id"], **value,
            "actual_rating": None if actual is None or actual != actual else float(actual)}


def _rpo_task():
    from generator.tasks import rpo

    return rpo.task()


def _rpo_prepare(row):
    from generator.retrieval import top_k
    from generator.tasks import rpo

    history = json.loads(row["history"])
    texts = [" ".join(x for x in (h.get("title"), h.get("text")) if x) for h in history]
    picked = top_k(row["generic_text"], texts, int(row["k"]))
    inputs = rpo.prepare(row["generic_text"], [texts[i] for i in picked])
    inputs["retrieved_ids"] = [history[i]["review_id"] for i in picked]
    return inputs


def _rpo_out(row, value):
    return {"user_id": row["user_id"], "product_id": row["product_id"], "generic_text": row["generic_text"],
            "personalized_text": value["personalized_text"], "history_review_ids": value["history_review_ids"]}


JOBS = {
    "relsum": GenerationJob("relsum", T.GOLD_PRODUCT_SUMMARIES, ("product_id",), ("title", "description", "max_tokens"),
                            _relsum_task, _relsum_prepare, _relsum_out),
    "personas": GenerationJob("sumforu_persona", T.GOLD_PERSONAS, ("user_id",), ("history",),
                              _persona_task, _persona_prepare, _persona_out),
    "persona_summaries": GenerationJob("sumforu_summary", T.GOLD_PERSONA_SUMMARIES, ("user_id", "product_id"),
                                       ("persona", "sample"), _psum_task, _psum_prepare, _psum_out),
    "preferences": GenerationJob("exp3rt_preferences", T.SILVER_REVIEW_PREFERENCES, ("review_id",),
                                 ("rating", "title", "text"), _prefs_task, _prefs_prepare, _prefs_out),
    "user_profiles": GenerationJob("exp3rt_user_profile", T.GOLD_USER_PROFILES, ("user_id",), ("prefs", "subject"),
                                   _profile_task, _profile_prepare, _user_profile_out),
    "item_profiles": GenerationJob("exp3rt_item_profile", T.GOLD_ITEM_PROFILES, ("product_id",), ("prefs", "subject"),
                                   _profile_task, _profile_prepare, _item_profile_out),
    "ratings": GenerationJob("exp3rt_rating", T.GOLD_RATING_PREDICTIONS, ("user_id", "product_id"),
                             ("user_profile", "item_profile"), _rating_task, _rating_prepare, _rating_out),
    "rpo": GenerationJob("rpo", T.GOLD_PERSONALIZED_TEXTS, ("user_id", "product_id"), ("generic_text", "history", "k"),
                         _rpo_task, _rpo_prepare, _rpo_out),
}


# ---------------------------------------------------------------- driver side: which rows, then generate
def backend_settings(lake: Lake, job: str) -> BackendSettings:
    """The generator of one generation job (a key of JOBS): the configured model with the task's
    adapter from the registry (`generation.adapters[<task>]`: latest, base or a pinned version)."""
    from generator.models import resolve
    from training import registry

    g = lake.cfg.generation
    name = g.model or lake.cfg.models.generator
    task = JOBS[job].name
    folder = registry.select(lake.cfg.adapters_dir, task, g.adapters.get(task, "latest"))
    return BackendSettings(g.backend, resolve(name, lake.cfg.cache_dir), name, str(folder) if folder else None,
                           registry.tag(folder), g.batch_size, g.threads, g.dtype)


def _current(lake: Lake, table, task_name: str):
    """Rows of a generated table made by its job's configured model, adapter and current prompt."""
    from pyspark.sql import functions as F

    settings = backend_settings(lake, task_name)
    version = JOBS[task_name].make_task().prompt_version
    return (lake.read(table).where(F.col("model_id") == settings.model_id)
            .where(F.col("adapter_version") == settings.adapter_version).where(F.col("prompt_version") == version))


def selected_users(lake: Lake):
    from pyspark.sql import functions as F

    hist = latest(lake.read(T.SILVER_USER_HISTORIES))
    return hist.orderBy(F.desc("n_reviews"), "user_id").limit(lake.cfg.generation.n_users)


def selected_products(lake: Lake):
    from pyspark.sql import functions as F

    s = latest(lake.read(T.SILVER_REVIEW_SAMPLES))
    top = s.select("product_id", "product_reviews").distinct().orderBy(F.desc("product_reviews"), "product_id")
    return top.limit(lake.cfg.generation.n_products)


def selected_pairs(lake: Lake):
    from pyspark.sql import functions as F

    users = selected_users(lake)
    if lake.cfg.generation.pairs == "own_reviews":
        return users.select("user_id", F.explode("reviews").alias("r")).select("user_id", F.col("r.product_id").alias("product_id")).distinct()
    return users.select("user_id").crossJoin(selected_products(lake).select("product_id"))


def _relsum_inputs(lake: Lake):
    from pyspark.sql import functions as F

    g = lake.cfg.generation
    products = lake.read("bronze.products").where(F.trim(F.coalesce("description", F.lit(""))) != "")
    # Products of the ranker's held-out queries first, whole queries at a time (smallest first), so
    # that evaluate_ranking can compare summary variants on queries they fully cover.
    order = []  # a bare integer literal would be read as a column position
    try:
        from jobs.ranking import ranker_folder
        from ranker import registry

        held = registry.manifest(ranker_folder(lake))["split"]["val_queries"]
        judged = (lake.read("bronze.judgments").where(F.col("query_id").isin(held)).select("query_id", "product_id")
                  .distinct().join(products.select("product_id"), "product_id"))
        sizes = sorted((r["n"], r["query_id"]) for r in judged.groupBy("query_id").agg(F.count("*").alias("n")).collect())
        rank = lake.spark.createDataFrame([(q, i) for i, (_, q) in enumerate(sizes)], "query_id string, q_rank int")
        first = judged.join(rank, "query_id").groupBy("product_id").agg(F.min("q_rank").alias("q_rank"))
        products = products.join(first, "product_id", "left")
        order = [F.coalesce(F.col("q_rank"), F.lit(1 << 30))]
    except FileNotFoundError:
        pass
    return (products.orderBy(*order, "product_id").limit(g.relsum_max_products)
            .select("product_id", "title", "description", F.lit(g.relsum_max_tokens).alias("max_tokens")))


def build_inputs(lake: Lake, name: str):
    from pyspark.sql import functions as F

    g = lake.cfg.generation
    if name == "relsum":
        return _relsum_inputs(lake)
    if name == "personas":
        return selected_users(lake).select("user_id", F.to_json("reviews").alias("history"))
    samples = latest(lake.read(T.SILVER_REVIEW_SAMPLES))
    if name == "persona_summaries":
        personas = _current(lake, T.GOLD_PERSONAS, "personas").select("user_id", "persona")
        sample = samples.groupBy("product_id").agg(
            F.to_json(F.sort_array(F.collect_list(F.struct("sample_rank", "rating", "title", "text")))).alias("sample"))
        return selected_pairs(lake).join(personas, "user_id").join(sample, "product_id")
    if name == "preferences":
        user_reviews = selected_users(lake).select(F.explode("reviews").alias("r"), "user_id").select(
            "r.review_id", "user_id", "r.product_id", "r.rating", "r.title", "r.text")
        item_reviews = samples.join(selected_products(lake).select("product_id"), "product_id").where(
            F.col("sample_rank") <= g.item_reviews).select("review_id", "user_id", "product_id", "rating", "title", "text")
        return user_reviews.unionByName(item_reviews).dropDuplicates(["review_id"])
    prefs = _current(lake, T.SILVER_REVIEW_PREFERENCES, "preferences")
    if name in ("user_profiles", "item_profiles"):
        key = "user_id" if name == "user_profiles" else "product_id"
        scope = selected_users(lake).select("user_id") if key == "user_id" else selected_products(lake).select("product_id")
        return prefs.join(scope, key).groupBy(key).agg(
            F.to_json(F.sort_array(F.collect_list(F.struct("review_id", "likes", "dislikes")))).alias("prefs"),
            F.count("*").alias("n"),
        ).withColumn("subject", F.lit("user" if key == "user_id" else "product"))
    up = _current(lake, T.GOLD_USER_PROFILES, "user_profiles").select("user_id", F.col("profile").alias("user_profile"))
    ip = _current(lake, T.GOLD_ITEM_PROFILES, "item_profiles").select("product_id", F.col("profile").alias("item_profile"))
    if name == "ratings":
        actual = lake.read("bronze.reviews").groupBy("user_id", "product_id").agg(F.avg("rating").alias("actual_rating"))
        return selected_pairs(lake).join(up, "user_id").join(ip, "product_id").join(actual, ["user_id", "product_id"], "left")
    if name == "rpo":
        hist = selected_users(lake).select("user_id", F.to_json("reviews").alias("history"))
        return (selected_pairs(lake).join(hist, "user_id").join(ip.select("product_id", F.col("item_profile").alias("generic_text")), "product_id")
                .withColumn("k", F.lit(g.history_k)))
    raise KeyError(f"unknown generation job '{name}'; known: {', '.join(JOBS)}")


ORDER = ("relsum", "personas", "persona_summaries", "preferences", "user_profiles", "item_profiles", "ratings", "rpo")


def generate(lake: Lake, name: str, ds: str) -> GenerationReport:
    settings = backend_settings(lake, name)
    job = JOBS[name]
    inputs = build_inputs(lake, name)
    g = lake.cfg.generation
    return run_generation(lake, job, inputs, ds, settings, g.chunk_size, g.max_attempts)
