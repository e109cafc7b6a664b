"""SUMFORU's personas of the training users, and the persona student's SFT targets.

`training_personas` runs the daily persona job's own generator and pick (best of
`sumforu.PERSONA_CANDIDATES` by grounding, unsupported sentences dropped) on each training user's
reviews before their target (`jobs.train.pairs`); the anchored suitability targets
(`jobs.train.suitability`) and the persona student both start from it.

The persona student (`sumforu --method persona-sft`) learns from the picked personas that are
grounded: every sentence supported by the user's own reviews (`generator.grounding`) and none of
them a copied review sentence. A candidate set with no supported sentence gives no target, so the
student is taught only what the check accepts, and the daily job's best-of-N then starts from
candidates written the way the accepted ones were.
"""

from __future__ import annotations

import logging
from typing import Any

from jobs.lake import Lake
from jobs.train.pairs import TrainingPairs, in_process, run_logged, training_pairs

log = logging.getLogger(__name__)

TEACHER_ID = "self+grounded-best-of-4"  # what silver.teacher_outputs records as the persona targets' author


def reviews_of(frame) -> list[tuple[float, str]]:
    """(rating, title + text) per review row, as the daily jobs give them to a prompt."""
    return [(float(r.rating), " ".join(x for x in (r.title, r.text) if isinstance(x, str))) for r in frame.itertuples()]


def training_personas(lake: Lake, pairs: TrainingPairs) -> dict[str, tuple[dict[str, Any], str]]:
    """user_id -> (persona inputs, picked persona) for the training users whose persona parsed."""
    from generator.tasks import sumforu
    from jobs.features import backend_settings

    history = {u: reviews_of(g.sort_values(["review_time", "review_id"])) for u, g in pairs.history.groupby("user_id")}
    users = [u for u in pairs.targets.user_id if u in history]
    inputs = [sumforu.prepare_persona(history[u]) for u in users]
    results = run_logged(in_process(backend_settings(lake, "personas")), sumforu.persona_task(), inputs,
                         lake.cfg.generation.max_attempts)
    return {u: (x, r.value["persona"]) for u, x, r in zip(users, inputs, results) if r.status == "ok"}


def grounded_examples(lake: Lake, limit: int, seed: int) -> list[dict[str, Any]]:
    """The persona student's SFT rows: inputs and the picked persona, for the grounded ones only."""
    from generator.grounding import ground
    from generator.tasks.sumforu import COPY_THRESHOLD

    personas = training_personas(lake, training_pairs(lake, limit, seed))
    out = []
    for user, (inputs, persona) in personas.items():
        check = ground(persona, inputs["evidence"])
        if check.claims and check.supported == len(check.claims) and max(check.best) < COPY_THRESHOLD:
            out.append({"inputs": inputs, "completion": " " + persona, "user_id": user})
    log.info("sumforu persona targets: %d grounded of %d training users' personas", len(out), len(personas))
    return out
