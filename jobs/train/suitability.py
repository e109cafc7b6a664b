"""SUMFORU's summary student, anchored to real preferences: training targets whose suitability
agrees with the persona-holder's actual rating of the product (1-5 stars -> suitability 2, 4, 6, 8,
10), with the summary the product's own review sentences closest to that persona
(`generator.tasks.sumforu.persona_extract`). No LLM writes the target: the 135M base model repeats
itself and invents, and the seed's 235B teacher does not exist offline; an extract is grounded by
construction and costs an embedding instead of a generation.

The training pairs (`jobs.train.pairs`) are users the evaluation never uses, each with its newest
train review as the target. The persona comes from the reviews before it, by the daily persona
job's generator and pick (`jobs.train.personas`); the product's reviews are its sampled train
reviews without any target, as the daily summary job gives them; the rating history leaves the
target out.
"""

from __future__ import annotations

import logging
from typing import Any

from jobs.lake import Lake
from jobs.train.pairs import training_pairs
from jobs.train.personas import reviews_of, training_personas

log = logging.getLogger(__name__)

SUMMARY_REVIEWS = 20  # reviews of the product in a summary prompt, as the daily job gives them
TEACHER_ID = "persona-extract+actual-rating"  # what silver.teacher_outputs records as the targets' author


def anchored_examples(lake: Lake, limit: int, seed: int) -> list[dict[str, Any]]:
    """Per training user: the student's summary inputs and a target of the persona extract with the
    suitability the user's actual rating maps to (users whose persona failed, or whose product has
    no reviews or no usable sentence, are dropped and counted)."""
    from generator.tasks import sumforu

    pairs = training_pairs(lake, limit, seed)
    targets = pairs.targets
    persona = {u: p for u, (_, p) in training_personas(lake, pairs).items()}
    reviews = {p: reviews_of(g.head(SUMMARY_REVIEWS)) for p, g in pairs.samples.groupby("product_id")}
    rows = []
    for t in targets.itertuples():
        if t.user_id in persona and reviews.get(t.product_id):
            inputs = sumforu.prepare_summary(persona[t.user_id], reviews[t.product_id], pairs.history_of(t))
            rows.append({"inputs": inputs, "rating": float(t.rating), "user_id": t.user_id, "product_id": t.product_id})
    out = []
    for r in rows:
        summary = sumforu.persona_extract(persona[r["user_id"]], reviews[r["product_id"]])
        if summary:
            out.append({**r, "completion": sumforu.suitability_target(summary, r["rating"])})
    log.info("sumforu anchored targets: %d of %d training users (%d without persona or reviews, %d without a usable "
             "review sentence)", len(out), len(targets), len(targets) - len(rows), len(rows) - len(out))
    return out
