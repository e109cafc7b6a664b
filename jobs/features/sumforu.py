"""SUMFORU: shopper personas from review histories, and persona-aware review summaries with a 1-10
suitability score for (persona, product).

Ground truth: the persona-holder's actual rating of the product (held-out pairs have one). The
suitability should rank products the way the user rated them (Spearman), and must not sit on one
value. The 1-5 rating maps to the 1-10 scale as 2 * rating (1 -> 2, 5 -> 10) where a distance is
needed; Spearman and the mode-share rule are scale-free.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from generator.metrics import mode_share, spearman
from jobs.features import ground_truth
from jobs.features.selection import (latest, pair_products, rating_history, selected_pairs, selected_users,
                                     train_rating_stats)
from jobs.features.spec import FeatureJob, MetricRow, ScoreColumn, Seed, Signal, TextColumn
from jobs.generation import GenerationJob
from jobs.lake import Lake
from jobs.lake import tables as T


def reviews_of(payload: str, limit: int = 12) -> list[tuple[float, str]]:
    """(rating, review text as `generator.review_text` joins it) of the last `limit` reviews of a
    JSON list of review structs."""
    from generator.review_text import review_text

    items = json.loads(payload or "[]")[-limit:]
    return [(float(r.get("rating") or 0), review_text(r.get("title"), r.get("text"))) for r in items]


# How the prompts list each review ("- (5/5) ..."): an output that copies it echoes the prompt.
_REVIEW_MARKER = r"\(\s*\d(?:\.\d)?\s*/\s*5\s*\)"


# ---------------------------------------------------------------- personas
def _persona_task():
    from generator.tasks import sumforu

    return sumforu.persona_task()


def _persona_prepare(row):
    from generator.tasks import sumforu

    return sumforu.prepare_persona(reviews_of(row["history"]))


def _persona_out(row, value):
    return {"user_id": row["user_id"], "persona": value["persona"]}


def _persona_inputs(lake: Lake):
    from pyspark.sql import functions as F

    return selected_users(lake).select("user_id", F.to_json("reviews").alias("history"))


def persona_grounding(lake: Lake, rows: pd.DataFrame) -> list:
    """Each persona's sentences checked against the persona-holder's own train reviews."""
    from generator.grounding import ground
    from generator.review_text import review_text

    hist = lake.read_arrow(T.SILVER_USER_HISTORIES, ["user_id", "reviews", "ds"],
                           where={"user_id": list(rows.user_id.unique())}).to_pandas()
    hist = hist[hist.ds == hist.ds.max()]  # the newest snapshot
    reviews = {u: [review_text(v["title"], v["text"]) for v in rs] for u, rs in zip(hist.user_id, hist.reviews)}
    return [ground(p, reviews.get(u, [])) for u, p in zip(rows.user_id, rows.persona)]


def persona_metrics(lake: Lake, rows: pd.DataFrame) -> list[MetricRow]:
    """Grounding: the share of persona sentences supported by the user's own reviews (mean over
    personas), the count of unsupported claims, and personas with no supported sentence; and the
    share of persona sentences that are about the shopper (`sumforu.describes_shopper`), which
    grounding cannot see: a sentence describing the product is supported by its reviews."""
    from generator.tasks.sumforu import describes_shopper

    checks = [g for g in persona_grounding(lake, rows) if g.claims]
    if not checks:
        return []
    n = len(checks)
    return [("grounding_share", float(np.mean([g.share for g in checks])), n),
            ("unsupported_claims", float(sum(len(g.unsupported_claims) for g in checks)), n),
            ("ungrounded_personas", float(sum(g.supported == 0 for g in checks)), n),
            ("about_shopper_share", float(np.mean([np.mean([describes_shopper(c) for c in g.claims]) for g in checks])), n)]


PERSONAS = FeatureJob(
    key="personas",
    generation=GenerationJob("sumforu_persona", T.GOLD_PERSONAS, ("user_id",), ("history",),
                             _persona_task, _persona_prepare, _persona_out),
    build_inputs=_persona_inputs,
    texts=(TextColumn("persona"),),
    echo=(r"^\s*persona\s*:", _REVIEW_MARKER),
    grounding=persona_grounding,
    metrics=persona_metrics,
    signals=(Signal("grounding_share", "higher", threshold=0.5,
                    question="are most persona sentences supported by the user's own reviews?"),
             Signal("about_shopper_share", "higher", threshold=0.8,
                    question="are persona sentences about the shopper, not the product or its maker?")),
)


# ---------------------------------------------------------------- persona summaries
# A summary reads its product's first SUMMARY_REVIEWS sampled reviews, in sample order (every rating
# present comes first). Its input holds only those, so a review further down the sample does not
# re-run it; the suitability training targets (jobs.train.suitability) give the same reviews.
SUMMARY_REVIEWS = 20


def _summary_task():
    from generator.tasks import sumforu

    return sumforu.summary_task()


def _summary_prepare(row):
    from generator.tasks import sumforu

    return sumforu.prepare_summary(row["persona"], reviews_of(row["sample"], SUMMARY_REVIEWS), rating_history(row))


def _summary_out(row, value):
    return {"user_id": row["user_id"], "product_id": row["product_id"], **value}


def _summary_inputs(lake: Lake):
    from pyspark.sql import functions as F

    from jobs.features import current_rows

    personas = current_rows(lake, "personas").select("user_id", "persona")
    samples = (latest(lake.read(T.SILVER_REVIEW_SAMPLES)).where(F.col("sample_rank") <= SUMMARY_REVIEWS)
               .join(pair_products(lake), "product_id"))
    sample = samples.groupBy("product_id").agg(
        F.to_json(F.sort_array(F.collect_list(F.struct("sample_rank", "rating", "title", "text")))).alias("sample"))
    users, items = train_rating_stats(lake)
    return (selected_pairs(lake).join(personas, "user_id").join(sample, "product_id")
            .join(users, "user_id", "left").join(items, "product_id", "left"))


def summary_metrics(lake: Lake, rows: pd.DataFrame) -> list[MetricRow]:
    """Suitability against the persona-holder's actual rating of the product."""
    actual = ground_truth.actual_rating(lake, rows)
    known = actual.notna()
    n = int(known.sum())
    out = [("mode_share", mode_share(rows["suitability"]), len(rows)), ("rated_pairs", float(n), len(rows))]
    if n:
        s, a = rows.loc[known, "suitability"], actual[known]
        out += [("spearman", spearman(s, a), n), ("actual_mode_share", mode_share(a.round()), n),
                ("mae_vs_2x_rating", float((s - 2 * a).abs().mean()), n)]
    return out + ground_truth.expected_value_metrics(rows["suitability_expected"], actual, scale=2.0)


PERSONA_SUMMARIES = FeatureJob(
    key="persona_summaries",
    generation=GenerationJob("sumforu_summary", T.GOLD_PERSONA_SUMMARIES, ("user_id", "product_id"),
                             ("persona", "sample", "user_mean", "user_n", "item_mean", "item_n"),
                             _summary_task, _summary_prepare, _summary_out),
    build_inputs=_summary_inputs,
    reads=("personas",),
    texts=(TextColumn("summary"),),
    scores=(ScoreColumn("suitability", 1, 10),),
    echo=(r"shopper persona\s*(?:\(data[^)]*\)\s*)?:", r"suitability\s*(?:\(1\s*-\s*10\))?\s*:", _REVIEW_MARKER),
    truth=ground_truth.actual_rating,
    metrics=summary_metrics,
    signals=(Signal("spearman", "higher", threshold=0.3,
                    question="does suitability rank products the way the persona-holder rated them?"),
             Signal("expected_spearman", "higher", threshold=0.3,
                    question="does expected suitability rank them so?"),
             Signal("expected_std", "higher", threshold=ground_truth.EXPECTED_MIN_STD,
                    question=f"does expected suitability move with the input (std > {ground_truth.EXPECTED_MIN_STD})?"),
             Signal("mode_share", "lower", baseline="actual_mode_share", margin=0.05,
                    question="is suitability no more concentrated than the actual ratings (within 5 points)?")),
)

SEED = Seed("sumforu", (PERSONAS, PERSONA_SUMMARIES))
