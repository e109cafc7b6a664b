"""Weekly: every task in `WEEKLY` is trained, its candidate adapter judged on validation rows
(`jobs.train.validation`), and promoted only if it beats the current one by
`training.min_improvement`; each decision and its numbers go to eval.training_runs.

    WEEKLY            (recipe, validation) per task: the precis_training DAG's chains
    evaluate_candidate  measure the newest candidate and the current adapter on the same rows
    promote           ready if better, else rejected
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from jobs.lake import Lake
from jobs.lake import tables as T
from jobs.train.recipes import Recipe, recipe
from jobs.train.validation import RATING_MAE, RELSUM_REWARD, SUITABILITY_SPEARMAN, Validation
from precis.errors import MissingPrerequisite


@dataclass(frozen=True)
class WeeklyTraining:
    """One chain of the weekly DAG: train_<task> -> evaluate_<task>_adapter -> promote_<task>_adapter."""

    recipe: Recipe
    validation: Validation
    needs_ranker: bool = False  # its data or reward reads the trained ranker (the DAG skips it without one)

    @property
    def task(self) -> str:
        return self.recipe.task

    @property
    def steps(self) -> tuple[str, str, str]:
        return f"train_{self.task}", f"evaluate_{self.task}_adapter", f"promote_{self.task}_adapter"


# The tasks the weekly DAG trains: each with the method whose student carries signal on the sample
# data (README, "Signal"), and the validation metric of what that student is for. RPO and the
# SUMFORU personas have no validation metric yet, so they are trained by hand only.
WEEKLY: tuple[WeeklyTraining, ...] = (
    WeeklyTraining(recipe("relsum", "best-of-n"), RELSUM_REWARD, needs_ranker=True),
    WeeklyTraining(recipe("exp3rt", "rationale-sft"), RATING_MAE),
    WeeklyTraining(recipe("sumforu", "anchored-sft"), SUITABILITY_SPEARMAN),
)


def record_run(lake: Lake, row: dict[str, Any]) -> None:
    from jobs.lake.lake import spark_schema

    df = pd.DataFrame([row], columns=T.EVAL_TRAINING_RUNS.schema.names)
    lake.merge(T.EVAL_TRAINING_RUNS, lake.spark.createDataFrame(df, spark_schema(T.EVAL_TRAINING_RUNS.schema)))


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _stored(value: float) -> float | None:
    """NaN (not measurable on these rows) is stored as null."""
    return None if math.isnan(value) else value


def evaluate_candidate(lake: Lake, chain: WeeklyTraining, ds: str) -> str:
    """Measure the newest candidate of the chain's adapter task and the current (newest ready)
    adapter, or the base model when there is none, on the same validation rows."""
    from training import registry

    root, task, v = lake.cfg.adapters_dir, chain.recipe.adapter_task, chain.validation
    candidate = registry.newest(root, task, "candidate")
    if candidate is None:
        raise MissingPrerequisite(f"no candidate {task} adapter to evaluate", f"the {chain.steps[0]} step registers one")
    current = registry.latest(root, task)
    (value, base_value), count = v.measure(lake, [candidate, current])
    registry.set_status(candidate, "candidate", evaluation={
        "metric": v.metric, "value": _stored(value), "baseline": _stored(base_value), "baseline_adapter": registry.tag(current),
        "higher_is_better": v.higher_is_better, "rows": count})
    row = _run_row(lake, f"{task}/{registry.tag(candidate)}")
    row.update(eval_metric=v.metric, eval_value=_stored(value), baseline_value=_stored(base_value))
    record_run(lake, row)
    return (f"evaluate {task}/{candidate.name}: {v.metric} {_fmt(value)} vs {_fmt(base_value)} for "
            f"{current.name if current else 'the base model'} ({count} validation rows; "
            f"{'higher' if v.higher_is_better else 'lower'} is better)")


def promote(lake: Lake, chain: WeeklyTraining, ds: str) -> str:
    """Promote the evaluated candidate only if it beats the current adapter by more than
    `training.min_improvement`; otherwise reject it. The decision and its numbers are recorded."""
    from training import registry

    root, task, v = lake.cfg.adapters_dir, chain.recipe.adapter_task, chain.validation
    candidate = registry.newest(root, task, "candidate")
    if candidate is None:
        raise MissingPrerequisite(f"no candidate {task} adapter to promote", "the train and evaluate steps make one")
    ev = registry.manifest(candidate).get("evaluation")
    if not ev:
        raise MissingPrerequisite(f"{task}/{candidate.name} has not been evaluated", f"run `precis job {chain.steps[1]}` first")
    value, baseline = (float("nan") if x is None else float(x) for x in (ev["value"], ev["baseline"]))
    better = v.better(value, baseline, lake.cfg.training.min_improvement)
    registry.set_status(candidate, "ready" if better else "rejected", decided=ds)
    row = _run_row(lake, f"{task}/{registry.tag(candidate)}")
    row.update(promoted=better)
    record_run(lake, row)
    verdict = "promoted" if better else "rejected (not better than the current one)"
    return (f"{task}/{candidate.name} {verdict}: {ev['metric']} {_fmt(value)} vs {_fmt(baseline)} "
            f"({ev['baseline_adapter']}), min improvement {lake.cfg.training.min_improvement}")


def _run_row(lake: Lake, run_id: str) -> dict[str, Any]:
    runs = lake.read_pandas(T.EVAL_TRAINING_RUNS)
    match = runs[runs.run_id == run_id]
    if match.empty:
        raise MissingPrerequisite(f"no training run {run_id} in eval.training_runs", "`precis sql 'SELECT run_id FROM eval.training_runs'` lists them")
    row = match.iloc[0].to_dict()
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
