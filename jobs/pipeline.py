"""The daily pipeline's steps: one registry that `precis job NAME`, the Airflow DAG and the tests share.

Each step is `f(lake, ds) -> str` (a one-line summary for logs) and is idempotent: running it
again for the same `ds` changes no table. The DAG in `dags/precis_daily.py` orders them:

    ingest -> gate_bronze -> filter_reviews, description_delta -> gate_silver -> generate_* ->
    gate_gold -> publish -> evaluate_ranking, evaluate_generation -> report
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable

from jobs.lake import Lake
from precis.errors import IngestError, NoRanker  # noqa: F401 (NoRanker: the steps of NEEDS_RANKER raise it; the DAG skips them)

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
    """Weekly: label ReLSum training inputs with the teacher (silver.teacher_outputs)."""
    from jobs.train import label

    return f"build_training_sets: teacher labelled {len(label(lake, 'relsum', ds))} relsum inputs"


def train_relsum(lake: Lake, ds: str) -> str:
    """Weekly: GRPO from the current ReLSum adapter; the result is a candidate until promoted."""
    from jobs.train import train_task

    return train_task(lake, "relsum", "grpo", ds, status="candidate").text()


def evaluate_relsum_adapter(lake: Lake, ds: str) -> str:
    from jobs.train import evaluate_candidate

    return evaluate_candidate(lake, "relsum", ds)


def promote_relsum_adapter(lake: Lake, ds: str) -> str:
    from jobs.train import promote

    return promote(lake, "relsum", ds)


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
WEEKLY_STEPS: dict[str, Step] = {  # the precis_training DAG's tasks, in order
    "build_training_sets": build_training_sets,
    "train_relsum": train_relsum,
    "evaluate_relsum_adapter": evaluate_relsum_adapter,
    "promote_relsum_adapter": promote_relsum_adapter,
}
STEPS = {**DAILY_STEPS, **WEEKLY_STEPS}
# The steps that raise NoRanker when no ranker is trained yet; the DAG skips them (the in-process
# task on the exception itself, the spark-submit task by checking first: jobs.cluster_task).
NEEDS_RANKER = frozenset({"description_delta", "evaluate_ranking", "build_training_sets", "train_relsum",
                          "evaluate_relsum_adapter"})
GENERATE = tuple(name for name in STEPS if name.startswith("generate_"))


def run_step(name: str, ds: str, config: str | None = None, lake_root: str | None = None) -> str:
    """Run one step in this process: the entry point of the DAG's in-process tasks."""
    from jobs.config import load_config

    lake = Lake(load_config(config, lake=lake_root))
    summary = STEPS[name](lake, ds)
    print(summary, flush=True)
    return summary


