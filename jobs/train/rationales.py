"""EXP3RT's rating student, trained as the seed trains it: a teacher writes the reasoning *given
the observed rating*, and the student learns to write that reasoning and then the rating.

The training pairs (`jobs.train.pairs`) are users the evaluation never uses, each with its newest
train review as the target; their preferences and profiles are made by the daily jobs' own
generators (model, adapter, prompt), reusing `silver.review_preferences` rows already made, and the
rationale by the configured teacher.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from jobs.lake import Lake
from jobs.lake import tables as T
from jobs.train.pairs import TrainingPairs, in_process, run_logged, training_pairs

log = logging.getLogger(__name__)


def _preferences(lake: Lake, reviews: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """review_id -> (likes, dislikes): from silver.review_preferences where the daily job already
    made them with its current generator and prompt, else generated here the same way."""
    from generator.tasks import exp3rt
    from jobs.features import backend_settings
    from jobs.features.exp3rt import PREFERENCES

    settings = backend_settings(lake, "preferences")
    found: dict[str, tuple[str, str]] = {}
    if lake.exists(T.SILVER_REVIEW_PREFERENCES):
        made = lake.read_pandas(T.SILVER_REVIEW_PREFERENCES)
        made = made[(made.model_id == settings.model_id) & (made.adapter_version == settings.adapter_version)
                    & (made.prompt_version == PREFERENCES.prompt_version)]
        found = {r.review_id: (r.likes, r.dislikes) for r in made.itertuples()}
    todo = reviews[~reviews.review_id.isin(found)].drop_duplicates("review_id")
    if len(todo):
        log.info("exp3rt rationales: extracting preferences of %d reviews (%d reused)", len(todo), len(reviews) - len(todo))
        inputs = [exp3rt.prepare_preferences(float(r.rating), r.title, r.text) for r in todo.itertuples()]
        results = run_logged(in_process(settings), exp3rt.preferences_task(), inputs, lake.cfg.generation.max_attempts)
        for r, res in zip(todo.itertuples(), results):
            if res.status == "ok":
                found[r.review_id] = (res.value["likes"], res.value["dislikes"])
    return found


def _profiles(lake: Lake, context: pd.DataFrame, prefs: dict[str, tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(role, owner) -> profile text, by the daily profile jobs' generator."""
    from generator.tasks import exp3rt
    from jobs.features import backend_settings

    keys, inputs = [], []
    for (role, owner), g in context.groupby(["role", "owner"]):
        pairs = [prefs[r] for r in sorted(g.review_id) if r in prefs]
        if pairs:
            keys.append((role, owner))
            inputs.append(exp3rt.prepare_profile("user" if role == "user" else "product", pairs))
    log.info("exp3rt rationales: %d profiles to write", len(inputs))
    backend = in_process(backend_settings(lake, "user_profiles"))
    results = run_logged(backend, exp3rt.profile_task(), inputs, lake.cfg.generation.max_attempts)
    return {k: r.value["profile"] for k, r in zip(keys, results) if r.status == "ok"}


def rating_rows(lake: Lake, pairs: TrainingPairs) -> list[dict[str, Any]]:
    """Per user of `pairs`: the student's rating inputs (profiles by the daily generators) and the
    actual rating; users without both profiles are dropped."""
    from generator.tasks import exp3rt

    items = pairs.samples.groupby("product_id").head(lake.cfg.generation.item_reviews)
    context = pd.concat([pairs.history.assign(role="user", owner=pairs.history.user_id),
                         items.assign(role="item", owner=items.product_id)])
    prefs = _preferences(lake, context)
    profiles = _profiles(lake, context, prefs)
    rows = []
    for t in pairs.targets.itertuples():
        up, ip = profiles.get(("user", t.user_id)), profiles.get(("item", t.product_id))
        if up is not None and ip is not None:
            inputs = exp3rt.prepare_rating(up, ip, pairs.history_of(t))
            rows.append({"inputs": inputs, "rating": float(t.rating), "user_id": t.user_id, "product_id": t.product_id})
    return rows


def rationale_examples(lake: Lake, teacher, limit: int, seed: int) -> list[dict[str, Any]]:
    """Per training user: the student's rating inputs, the actual rating, and the teacher's
    rationale for it (pairs whose profiles or rationale failed validation are dropped, counted)."""
    from generator.tasks import exp3rt

    pairs = training_pairs(lake, limit, seed)
    targets = pairs.targets
    rows = rating_rows(lake, pairs)
    teacher_inputs = [{**r["inputs"], "rating": int(round(r["rating"]))} for r in rows]
    results = run_logged(teacher, exp3rt.rationale_task(), teacher_inputs, lake.cfg.generation.max_attempts)
    out = [{**r, "reasoning": res.value["reasoning"], "completion": exp3rt.rating_target(res.value["reasoning"], r["rating"])}
           for r, res in zip(rows, results) if res.status == "ok"]
    log.info("exp3rt rationales: %d of %d training users labelled (%d without both profiles, %d rationales failed)",
             len(out), len(targets), len(targets) - len(rows), len(rows) - len(out))
    return out
