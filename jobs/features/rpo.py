"""RPO: a generic product text (the item's EXP3RT profile) rewritten for one user, guided by the k
items of the user's train history most similar to it.

Ground truth: the user's own review of the product (held-out pairs have one). A rewrite that
carries the user's voice is closer to that review than the generic text is: in words (ROUGE-L,
`rouge-score`) and in meaning (cosine of all-MiniLM-L6-v2 embeddings, `generator.retrieval`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from generator.metrics import paired_p_value, rouge_l
from jobs.features import ground_truth
from jobs.features.selection import selected_pairs, selected_users
from jobs.features.spec import FeatureJob, MetricRow, Seed, Signal, TextColumn
from jobs.generation import GenerationJob
from jobs.lake import Lake
from jobs.lake import tables as T


def _task():
    from generator.tasks import rpo

    return rpo.task()


def _prepare(row):
    from generator.retrieval import top_k
    from generator.review_text import review_text
    from generator.tasks import rpo

    history = json.loads(row["history"])
    texts = [review_text(h.get("title"), h.get("text")) for h in history]
    picked = top_k(row["generic_text"], texts, int(row["k"]))
    inputs = rpo.prepare(row["generic_text"], [texts[i] for i in picked])
    inputs["retrieved_ids"] = [history[i]["review_id"] for i in picked]
    return inputs


def _outputs(row, value):
    return {"user_id": row["user_id"], "product_id": row["product_id"], "generic_text": row["generic_text"],
            "personalized_text": value["personalized_text"], "history_review_ids": value["history_review_ids"]}


def _inputs(lake: Lake):
    from pyspark.sql import functions as F

    from jobs.features import current_rows

    hist = selected_users(lake).select("user_id", F.to_json("reviews").alias("history"))
    generic = current_rows(lake, "item_profiles").select("product_id", F.col("profile").alias("generic_text"))
    return (selected_pairs(lake).join(hist, "user_id").join(generic, "product_id")
            .withColumn("k", F.lit(lake.cfg.generation.history_k)))


def rewrite_metrics(lake: Lake, rows: pd.DataFrame) -> list[MetricRow]:
    """ROUGE-L and MiniLM cosine of the rewrite and of the generic text against the user's actual
    review, each with the p-value of the paired test that the two differ."""
    from generator.retrieval import embed

    truth = ground_truth.pair_truth(lake, rows[["user_id", "product_id"]])["actual_review"]
    known = truth.notna().to_numpy()
    n = int(known.sum())
    if not n:
        return []
    ref = truth[known].tolist()
    personal = [rouge_l(c, r) for c, r in zip(rows.loc[known, "personalized_text"], ref)]
    generic = [rouge_l(c, r) for c, r in zip(rows.loc[known, "generic_text"], ref)]
    vecs = embed([*ref, *rows.loc[known, "personalized_text"], *rows.loc[known, "generic_text"]])
    truth_v, personal_v, generic_v = vecs[:n], vecs[n : 2 * n], vecs[2 * n :]
    personal_cos, generic_cos = (personal_v * truth_v).sum(1), (generic_v * truth_v).sum(1)
    return [("rouge_l_vs_review", float(np.mean(personal)), n), ("generic_rouge_l_vs_review", float(np.mean(generic)), n),
            ("rouge_l_vs_review_p", paired_p_value(personal, generic), n),
            ("cosine_vs_review", float(np.mean(personal_cos)), n), ("generic_cosine_vs_review", float(np.mean(generic_cos)), n),
            ("cosine_vs_review_p", paired_p_value(personal_cos, generic_cos), n)]


REWRITES = FeatureJob(
    key="rpo",
    generation=GenerationJob("rpo", T.GOLD_PERSONALIZED_TEXTS, ("user_id", "product_id"), ("generic_text", "history", "k"),
                             _task, _prepare, _outputs),
    build_inputs=_inputs,
    reads=("item_profiles",),
    texts=(TextColumn("personalized_text"),),
    echo=(r"generic text\s*:", r"past reviews\s*:"),
    metrics=rewrite_metrics,
    signals=(Signal("rouge_l_vs_review", "higher", baseline="generic_rouge_l_vs_review", p_value="rouge_l_vs_review_p",
                    question="is the rewrite closer to the user's own review than the generic text, in words?"),
             Signal("cosine_vs_review", "higher", baseline="generic_cosine_vs_review", p_value="cosine_vs_review_p",
                    question="... and in meaning (MiniLM cosine)?")),
)

SEED = Seed("rpo", (REWRITES,))
