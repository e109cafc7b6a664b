"""SUMFORU's summary student, anchored to real preferences: training targets whose suitability
agrees with the persona-holder's actual rating of the product (1-5 stars -> suitability 2, 4, 6, 8,
10), with the summary text written by the configured teacher for that persona.

The training pairs (`jobs.train.pairs`) are users the evaluation never uses, each with its newest
train review as the target. The persona comes from the reviews before it, by the daily persona
job's generator; the product's reviews are its sampled train reviews without any target, as the
daily summary job gives them; the rating history leaves the target out.
"""

from __future__ import annotations

import logging
from typing import Any

from jobs.lake import Lake
from jobs.train.pairs import in_process, run_logged, training_pairs

log = logging.getLogger(__name__)

SUMMARY_REVIEWS = 20  # reviews of the product in a summary prompt, as the daily job gives them


def _reviews(frame) -> list[tuple[float, str]]:
    return [(float(r.rating), " ".join(x for x in (r.title, r.text) if isinstance(x, str))) for r in frame.itertuples()]


def anchored_examples(lake: Lake, teacher, limit: int, seed: int) -> list[dict[str, Any]]:
    """Per training user: the student's summary inputs and a target of the teacher's summary with
    the suitability the user's actual rating maps to (failed personas or summaries are dropped, counted)."""
    from generator.tasks import sumforu
    from jobs.features import backend_settings

    pairs = training_pairs(lake, limit, seed)
    targets = pairs.targets
    history = {u: _reviews(g.sort_values(["review_time", "review_id"])) for u, g in pairs.history.groupby("user_id")}
    users = [u for u in targets.user_id if u in history]
    personas = run_logged(in_process(backend_settings(lake, "personas")), sumforu.persona_task(),
                          [sumforu.prepare_persona(history[u]) for u in users], lake.cfg.generation.max_attempts)
    persona = {u: r.value["persona"] for u, r in zip(users, personas) if r.status == "ok"}
    reviews = {p: _reviews(g.head(SUMMARY_REVIEWS)) for p, g in pairs.samples.groupby("product_id")}
    rows = []
    for t in targets.itertuples():
        if t.user_id in persona and reviews.get(t.product_id):
            inputs = sumforu.prepare_summary(persona[t.user_id], reviews[t.product_id], pairs.history_of(t))
            rows.append({"inputs": inputs, "rating": float(t.rating), "user_id": t.user_id, "product_id": t.product_id})
    results = run_logged(teacher, sumforu.summary_task(), [r["inputs"] for r in rows], lake.cfg.generation.max_attempts)
    out = [{**r, "completion": sumforu.suitability_target(res.value["summary"], r["rating"])}
           for r, res in zip(rows, results) if res.status == "ok"]
    log.info("sumforu anchored targets: %d of %d training users (%d without persona or reviews, %d summaries failed)",
             len(out), len(targets), len(targets) - len(rows), len(rows) - len(out))
    return out
