"""Weekly: a candidate adapter is evaluated on held-out prompts, and promoted only if it beats the
current one by `training.min_improvement`; each decision and its numbers go to eval.training_runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs.lake import Lake
from jobs.lake import tables as T
from jobs.train.datasets import base_model, load_tokenizer, relsum_rows
from jobs.train.recipes import adapter_task
from jobs.train.rewards import relsum_reward
from precis.errors import MissingPrerequisite


def record_run(lake: Lake, row: dict[str, Any]) -> None:
    from jobs.lake.lake import spark_schema

    df = pd.DataFrame([row], columns=T.EVAL_TRAINING_RUNS.schema.names)
    lake.merge(T.EVAL_TRAINING_RUNS, lake.spark.createDataFrame(df, spark_schema(T.EVAL_TRAINING_RUNS.schema)))


def heldout_reward(lake: Lake, adapter: Path | None, n: int) -> tuple[float, int]:
    """Mean ReLSum reward of greedy summaries on prompts of the ranker's held-out queries."""
    from generator.backends import load_backend
    from generator.tasks import relsum
    from generator.tasks.base import run_task
    from training import registry

    rows = relsum_rows(lake, load_tokenizer(lake), n, heldout=True)
    g = lake.cfg.generation
    backend = load_backend(g.backend, base_model(lake), "eval", str(adapter) if adapter else None,
                           registry.tag(adapter) if adapter else None,
                           **({"batch_size": g.batch_size, "threads": g.threads, "dtype": g.dtype} if g.backend == "transformers" else {}))
    results = run_task(backend, relsum.task(g.relsum_max_tokens), [r["inputs"] for r in rows], 1)
    summaries = [r.value["summary"] if r.status == "ok" else "" for r in results]
    reward = relsum_reward(lake)
    cols = {k: [r[k] for r in rows] for k in ("query", "title", "gain", "max_words")}
    return float(np.mean(reward([r["prompt"] for r in rows], summaries, **cols))), len(rows)


def evaluate_candidate(lake: Lake, name: str, ds: str) -> str:
    from training import registry

    if name != "relsum":
        raise ValueError("adapter evaluation before promotion exists for relsum (held-out reward) only")
    root, task = lake.cfg.adapters_dir, adapter_task(name)
    candidate = registry.newest(root, task, "candidate")
    if candidate is None:
        raise MissingPrerequisite(f"no candidate {task} adapter to evaluate", "the train step registers one")
    current = registry.latest(root, task)
    n = lake.cfg.training.eval_examples
    value, count = heldout_reward(lake, candidate, n)
    base_value, _ = heldout_reward(lake, current, n)
    registry.set_status(candidate, "candidate", evaluation={
        "metric": "heldout_mean_reward", "value": value, "baseline": base_value, "baseline_adapter": registry.tag(current),
        "prompts": count})
    row = _run_row(lake, f"{task}/{registry.tag(candidate)}")
    row.update(eval_metric="heldout_mean_reward", eval_value=value, baseline_value=base_value)
    record_run(lake, row)
    return (f"evaluate {task}/{candidate.name}: held-out mean reward {value:.4f} vs {base_value:.4f} for "
            f"{current.name if current else 'the base model'} ({count} prompts)")


def promote(lake: Lake, name: str, ds: str) -> str:
    """Promote the evaluated candidate only if it beats the current adapter by more than
    `training.min_improvement`; otherwise reject it. The decision and its numbers are recorded."""
    from training import registry

    root, task = lake.cfg.adapters_dir, adapter_task(name)
    candidate = registry.newest(root, task, "candidate")
    if candidate is None:
        raise MissingPrerequisite(f"no candidate {task} adapter to promote", "the train and evaluate steps make one")
    ev = registry.manifest(candidate).get("evaluation")
    if not ev:
        raise ValueError(f"{task}/{candidate.name} has not been evaluated; run the evaluate step first")
    better = ev["value"] > ev["baseline"] + lake.cfg.training.min_improvement
    registry.set_status(candidate, "ready" if better else "rejected", decided=ds)
    row = _run_row(lake, f"{task}/{registry.tag(candidate)}")
    row.update(promoted=better)
    record_run(lake, row)
    verdict = "promoted" if better else "rejected (not better than the current one)"
    return (f"{task}/{candidate.name} {verdict}: held-out mean reward {ev['value']:.4f} vs {ev['baseline']:.4f} "
            f"({ev['baseline_adapter']}), min improvement {lake.cfg.training.min_improvement}")


def _run_row(lake: Lake, run_id: str) -> dict[str, Any]:
    runs = lake.read_pandas(T.EVAL_TRAINING_RUNS)
    match = runs[runs.run_id == run_id]
    if match.empty:
        raise MissingPrerequisite(f"no training run {run_id} in eval.training_runs", "`precis sql 'SELECT run_id FROM eval.training_runs'` lists them")
    row = match.iloc[0].to_dict()
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
