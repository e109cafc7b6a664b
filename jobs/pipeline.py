"""The pipelines' steps: one registry that `precis job NAME`, the Airflow DAGs and the tests share.

Each step is `f(lake, ds) -> str` (a one-line summary for logs). A daily step is idempotent:
running it again for the same `ds` changes no table. The DAG in `dags/precis_daily.py` orders them:

    ingest -> gate_bronze -> filter_reviews, description_delta -> gate_silver -> generate_* ->
    gate_gold -> publish -> evaluate_ranking, evaluate_generation -> report

The weekly DAG (`dags/precis_training.py`) labels the training sets, then for each task of
`jobs.train.WEEKLY` trains a candidate adapter, measures it against the current one on validation
rows and promotes it only if better (each run is a new candidate, so these are not idempotent):

    build_training_sets -> train_<task> -> evaluate_<task>_adapter -> promote_<task>_adapter
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobs.lake import Lake
from precis.errors import IngestError, NoRanker  # noqa: F401 (NoRanker: the steps of NEEDS_RANKER raise it; the DAG skips them)

if TYPE_CHECKING:
    from jobs.train import WeeklyTraining

log = logging.getLogger(__name__)

Step = Callable[[Lake, str], str]


def _expand(pattern: str) -> list[str]:
    matches = sorted(glob.glob(pattern))
    if matches:
        return matches
    if glob.has_magic(pattern):
        log.warning("inputs: no file matches %s", pattern)
        return []
    raise IngestError(f"input file {pattern} does not exist (listed under `inputs:` in the configuration)")


def ingest(lake: Lake, ds: str) -> str:
    """Ingest every file listed under `inputs:`; files ingested before add nothing."""
    from jobs.ingest.job import ingest_relevance, ingest_reviews

    lines = []
    for item in lake.cfg.inputs.reviews:
        files = _expand(item.path)
        if files:
            lines.append(ingest_reviews(lake, files, ds, category=item.category).line())
    for item in lake.cfg.inputs.relevance:
        files = [f for p in item.paths for f in _expand(p)]
        if files:
            lines.append(ingest_relevance(lake, files, item.format, ds).line())
    if not lines:
        return "ingest: no inputs configured (see `inputs:` in conf/local.yaml)"
    return "\n".join(lines)


def _gate(layer: str) -> Step:
    def run(lake: Lake, ds: str) -> str:
        from jobs.quality import gate

        return gate(lake, layer, ds).text()

    run.__doc__ = f"The {layer} quality gate (Great Expectations); fails when an expectation fails."
    return run


def filter_reviews(lake: Lake, ds: str) -> str:
    from jobs.features import filter_reviews as run

    counts = run(lake, ds)
    return "filter_reviews: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())


def description_delta(lake: Lake, ds: str) -> str:
    from jobs import ranking

    return ranking.description_delta(lake, ds).text()


def evaluate_ranking(lake: Lake, ds: str) -> str:
    from jobs import ranking

    return ranking.format_metrics(ranking.evaluate_ranking(lake, ds))


def _generate(name: str) -> Step:
    def run(lake: Lake, ds: str) -> str:
        from jobs.features import generate

        return generate(lake, name, ds).line()

    return run


def publish(lake: Lake, ds: str) -> str:
    from jobs.publish import publish as run

    return run(lake, ds).line()


def evaluate_generation(lake: Lake, ds: str) -> str:
    from jobs.evaluation import evaluate_generation as run

    return run(lake, ds)


def report(lake: Lake, ds: str) -> str:
    from jobs.report import write_report

    path = write_report(lake, ds)
    return f"report: {path}"


def build_training_sets(lake: Lake, ds: str) -> str:
    """Weekly: label the training sets of the weekly recipes that have one (silver.teacher_outputs),
    so each week trains on the week's data."""
    from jobs.train import WEEKLY

    counts = [f"{w.task} {w.recipe.method} {len(w.recipe.label(lake, ds))}" for w in WEEKLY if w.recipe.label]
    return "build_training_sets: labelled " + (", ".join(counts) or "nothing (no weekly recipe has a labelled set)")


def _weekly_steps() -> dict[str, Step]:
    """build_training_sets, then train -> evaluate -> promote for each task of `jobs.train.WEEKLY`."""
    from jobs.train import WEEKLY

    steps: dict[str, Step] = {"build_training_sets": build_training_sets}
    for chain in WEEKLY:
        train, evaluate, promote = chain.steps
        steps[train] = _train(chain.task, chain.recipe.method)
        steps[evaluate] = _evaluate(chain)
        steps[promote] = _promote(chain)
    return steps


def _train(task: str, method: str) -> Step:
    def run(lake: Lake, ds: str) -> str:
        from jobs.train import train_task

        return train_task(lake, task, method, ds, status="candidate").text()

    run.__doc__ = f"Weekly: train {task} by {method}; the adapter is a candidate until promoted."
    return run


def _evaluate(chain: WeeklyTraining) -> Step:
    def run(lake: Lake, ds: str) -> str:
        from jobs.train import evaluate_candidate

        return evaluate_candidate(lake, chain, ds)

    run.__doc__ = f"Weekly: measure the {chain.task} candidate and the current adapter on validation rows."
    return run


def _promote(chain: WeeklyTraining) -> Step:
    def run(lake: Lake, ds: str) -> str:
        from jobs.train import promote

        return promote(lake, chain, ds)

    run.__doc__ = f"Weekly: promote the {chain.task} candidate if it beats the current adapter."
    return run


def _daily_steps() -> dict[str, Step]:
    from jobs.features import ORDER

    steps: dict[str, Step] = {
        "ingest": ingest,
        "gate_bronze": _gate("bronze"),
        "filter_reviews": filter_reviews,
        "description_delta": description_delta,
        "gate_silver": _gate("silver"),
    }
    steps.update({f"generate_{name}": _generate(name) for name in ORDER})
    steps.update({
        "gate_gold": _gate("gold"),
        "publish": publish,
        "evaluate_ranking": evaluate_ranking,
        "evaluate_generation": evaluate_generation,
        "report": report,
    })
    return steps


DAILY_STEPS = _daily_steps()  # the precis_daily DAG's tasks, in order
WEEKLY_STEPS = _weekly_steps()  # the precis_training DAG's tasks
STEPS = {**DAILY_STEPS, **WEEKLY_STEPS}


def _needs_ranker() -> frozenset[str]:
    from jobs.train import WEEKLY

    return frozenset({"description_delta", "evaluate_ranking",
                      *(step for w in WEEKLY if w.needs_ranker for step in w.steps[:2])})


# The steps that raise NoRanker when no ranker is trained yet; the DAG skips them (the in-process
# task on the exception itself, the spark-submit task by checking first: jobs.cluster_task).
NEEDS_RANKER = _needs_ranker()
GENERATE = tuple(name for name in STEPS if name.startswith("generate_"))


def run_step(name: str, ds: str, config: str | None = None, lake_root: str | None = None) -> str:
    """Run one step in this process: the entry point of the DAG's in-process tasks."""
    from jobs.config import load_config

    lake = Lake(load_config(config, lake=lake_root))
    summary = STEPS[name](lake, ds)
    print(summary, flush=True)
    return summary


