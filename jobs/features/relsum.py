"""ReLSum: one concise, ranking-oriented summary of each product's description.

Its ground-truth signal is ranking quality (NDCG@5 and R@90P of title + summary against the other
product-text variants), measured by `jobs.ranking.evaluate_ranking`; here it declares the
generation job, the content rules of its summaries, and their support: the share of a summary's
words found in the product's own title or description (`generator.tasks.relsum.support`), which the
ranker cannot see and a summary that invents attributes fails.
"""

from __future__ import annotations

from jobs.features.spec import FeatureJob, MetricRow, Seed, Signal, TextColumn
from jobs.generation import GenerationJob
from jobs.lake import Lake
from jobs.lake import tables as T
from precis.errors import NoRanker

MIN_SUPPORT = 0.8  # a summary with fewer of its words in the product's text counts as low-support
MAX_TITLE_SHARE = 0.5  # a summary with more of its words the title's restates the title


def _task():
    from generator.tasks import relsum

    return relsum.task()


def _prepare(row):
    from generator.tasks import relsum

    return relsum.prepare(row["title"], row["description"], int(row["max_tokens"]))


def _outputs(row, value):
    return {"product_id": row["product_id"], "summary": value["summary"]}


def build_inputs(lake: Lake):
    """Products with a description, those of the ranker's held-out queries first (whole queries at a
    time, smallest first), so that evaluate_ranking can compare summary variants on queries they
    fully cover."""
    from pyspark.sql import functions as F

    g = lake.cfg.generation
    products = lake.read("bronze.products").where(F.trim(F.coalesce("description", F.lit(""))) != "")
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
    except NoRanker:
        pass
    return (products.orderBy(*order, "product_id").limit(g.relsum_max_products)
            .select("product_id", "title", "description", F.lit(g.relsum_max_tokens).alias("max_tokens")))


def summary_metrics(lake: Lake, rows) -> list[MetricRow]:
    """Support of one generator's summaries in their product's own text: the mean share, and the
    share of summaries below `MIN_SUPPORT`."""
    from generator.tasks import relsum

    products = lake.read_pandas(T.BRONZE_PRODUCTS, ["product_id", "title", "description"]).drop_duplicates("product_id")
    joined = rows[["product_id", "summary"]].merge(products, on="product_id", how="inner")
    if joined.empty:
        return []
    given = [(r.summary, relsum.prepare(r.title, r.description)) for r in joined.itertuples()]
    shares = [relsum.support(s, x) for s, x in given]
    title = [relsum.title_share(s, x) for s, x in given]
    n = len(shares)
    return [("support_mean", sum(shares) / n, n), ("low_support_share", sum(x < MIN_SUPPORT for x in shares) / n, n),
            ("title_share_mean", sum(title) / n, n), ("restates_title_share", sum(x > MAX_TITLE_SHARE for x in title) / n, n)]


SUMMARIES = FeatureJob(
    key="relsum",
    generation=GenerationJob("relsum", T.GOLD_PRODUCT_SUMMARIES, ("product_id",), ("title", "description", "max_tokens"),
                             _task, _prepare, _outputs, inputs_complete=False),
    build_inputs=build_inputs,
    texts=(TextColumn("summary"),),
    echo=(r"\bproduct (?:title|description)\s*(?:\(data[^)]*\)\s*)?:", r"^\s*summary\s*:"),
    metrics=summary_metrics,
    signals=(Signal("support_mean", "higher", threshold=MIN_SUPPORT,
                    question="are the summary's words the product's own (not invented)?"),
             Signal("title_share_mean", "lower", threshold=MAX_TITLE_SHARE,
                    question="... and mostly not the title's again?")),
)

SEED = Seed("relsum", (SUMMARIES,))
