"""SUMFORU's suitability student, anchored to real preferences: training targets whose suitability
agrees with the persona-holder's actual rating of the product (1-5 stars -> suitability 2, 4, 6, 8,
10), after a summary of the product's own review sentences closest to that persona
(`generator.tasks.sumforu.persona_extract`). No LLM writes the target: the 135M base model repeats
itself and invents, and the seed's 235B teacher does not exist offline; an extract is grounded by
construction and costs an embedding instead of a generation.

The student learns the score only (`score_examples`): the loss is on the suitability, read exactly
where the daily job reads it (after the summary, the persona-holder's rating history and the score
label: `ScoreSpec.reply`). A
40-step run that also learnt the extracts as summaries wrote mostly empty or title-only summaries
and scored everything 10; trained on the score alone, the summaries stay the base model's. The
targets are mostly 10 (most shoppers give 5 stars), so the rarer scores are repeated
(`balanced`) until each is at least `MIN_SHARE` of the most common one, at most `MAX_COPIES`
times each.

The training pairs (`jobs.train.pairs`) are users the evaluation never uses, each with its newest
train review as the target. The persona comes from the reviews before it, by the daily persona
job's generator and pick (`jobs.train.personas`); the product's reviews are its sampled train
reviews without any target, as the daily summary job gives them; the rating history leaves the
target out.
"""

from __future__ import annotations

import logging
from typing import Any

from jobs.features.sumforu import SUMMARY_REVIEWS
from jobs.lake import Lake
from jobs.train.pairs import TrainingPairs, training_pairs
from jobs.train.personas import reviews_of, training_personas

log = logging.getLogger(__name__)

TEACHER_ID = "persona-extract+actual-rating"  # what silver.teacher_outputs records as the targets' author
MIN_SHARE = 0.25  # each target score is repeated until it is at least this share of the most common one ...
MAX_COPIES = 4  # ... or each of its rows is there this many times


def summary_rows(lake: Lake, pairs: TrainingPairs) -> list[dict[str, Any]]:
    """Per user of `pairs`: the daily summary job's inputs (the persona by the daily persona
    generator, the product's sampled reviews, the rating history without the target) and the
    actual rating; users whose persona failed or whose product has no reviews are dropped."""
    from generator.tasks import sumforu

    persona = {u: p for u, (_, p) in training_personas(lake, pairs).items()}
    reviews = {p: reviews_of(g.head(SUMMARY_REVIEWS)) for p, g in pairs.samples.groupby("product_id")}
    rows = []
    for t in pairs.targets.itertuples():
        if t.user_id in persona and reviews.get(t.product_id):
            inputs = sumforu.prepare_summary(persona[t.user_id], reviews[t.product_id], pairs.history_of(t))
            rows.append({"inputs": inputs, "rating": float(t.rating), "user_id": t.user_id, "product_id": t.product_id,
                         "persona": persona[t.user_id], "reviews": reviews[t.product_id]})
    return rows


def anchored_examples(lake: Lake, limit: int, seed: int) -> list[dict[str, Any]]:
    """Per training user: the student's summary inputs and a target of the persona extract with the
    suitability the user's actual rating maps to (users whose persona failed, or whose product has
    no reviews or no usable sentence, are dropped and counted)."""
    from generator.tasks import sumforu

    pairs = training_pairs(lake, limit, seed)
    targets = pairs.targets
    rows = summary_rows(lake, pairs)
    out = []
    for r in rows:
        summary = sumforu.persona_extract(r["persona"], r["reviews"])
        if summary:
            out.append({**r, "completion": sumforu.suitability_target(summary, r["rating"])})
    log.info("sumforu anchored targets: %d of %d training users (%d without persona or reviews, %d without a usable "
             "review sentence)", len(out), len(targets), len(targets) - len(rows), len(rows) - len(out))
    return out


def score_examples(tokenizer, task, targets: list[tuple[dict[str, Any], str]]) -> list[dict[str, str]]:
    """SFT rows whose loss is on the score alone: the prompt is the daily job's scoring prompt (the
    summary prompt, then as the reply the target's summary, the score's lead line and label,
    `ScoreSpec.reply`) and the completion the target score and EOS. `targets`: (inputs,
    '<summary>\n<label> <score>') pairs."""
    from generator.backends import render_prompt

    label = task.score.label
    out = []
    for inputs, target in targets:
        summary, _, score = target.rpartition(label)
        if not summary or not score.strip():
            raise ValueError(f"a {task.name} target has no '{label} N' at its end: {target[-80:]!r}")
        prompt = render_prompt(tokenizer, task.score_messages(inputs, summary.rstrip()))
        out.append({"prompt": prompt, "completion": " " + score.strip() + tokenizer.eos_token})
    return out


def balanced(rows: list[dict[str, str]], min_share: float = MIN_SHARE, max_copies: int = MAX_COPIES) -> list[dict[str, str]]:
    """`rows` with the rows of each completion (score) repeated until that score is at least
    `min_share` of the most common one's count, or each of its rows is there `max_copies` times
    (the copies are appended; the trainer shuffles)."""
    by: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by.setdefault(r["completion"], []).append(r)
    if not by:
        return []
    top = max(len(v) for v in by.values())
    out = list(rows)
    for group in by.values():
        copies = min(-(-int(top * min_share) // len(group)), max_copies)  # ceil(wanted / n), capped
        out += group * (copies - 1)
    return out
