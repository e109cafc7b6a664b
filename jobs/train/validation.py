"""How the weekly DAG judges a candidate adapter before it may replace the current one: a metric
measured on *validation* rows that no training run draws and that the evaluation never reads, so
picking an adapter is not tuning on evaluation rows.

    relsum          mean reward (the frozen ONNX ranker) of greedy summaries of validation pairs:
                    the ranker's training queries, after the pairs training draws, other products
    exp3rt_rating   MAE of the expected rating against the actual rating of validation users: the
                    users after those training draws, in the same seeded order (`jobs.train.pairs`)
    sumforu_summary Spearman of the expected suitability with the actual rating of the same kind
                    of validation users

Each `Validation.measure(lake, adapters)` builds its rows once and returns one value per adapter
(None: the base model) and the row count. A value is NaN when the rows cannot measure it (a
Spearman over constant ratings); promotion never promotes on NaN.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.lake import Lake
from precis.errors import MissingPrerequisite

Measure = Callable[[Lake, Sequence[Path | None]], tuple[list[float], int]]


@dataclass(frozen=True)
class Validation:
    metric: str  # what eval.training_runs.eval_metric records
    higher_is_better: bool
    measure: Measure
    about: str  # one line for logs and the DAG's description

    def __post_init__(self) -> None:
        if not self.metric.startswith("validation_"):
            raise ValueError(f"validation metric {self.metric!r} must start with 'validation_' (it is not an evaluation)")

    def better(self, value: float, baseline: float, margin: float) -> bool:
        """Whether `value` beats `baseline` by more than `margin`; never on NaN."""
        if math.isnan(value):
            return False
        if math.isnan(baseline):
            return True
        return value > baseline + margin if self.higher_is_better else value < baseline - margin


def _settings(lake: Lake, job_key: str, folder: Path | None):
    """The daily job's generator with `folder` as its adapter, loaded in this process."""
    from jobs.features import backend_settings
    from training import registry

    settings = backend_settings(lake, job_key)
    return dataclasses.replace(settings, adapter_path=str(folder) if folder else None, adapter_version=registry.tag(folder),
                               adapter_scope=registry.scope(folder), threads=0).load()


def _run(lake: Lake, job_key: str, folder: Path | None, task, inputs: list[dict[str, Any]]) -> list:
    from jobs.train.pairs import run_logged

    return run_logged(_settings(lake, job_key, folder), task, inputs, lake.cfg.generation.max_attempts)


def _validation_pairs(lake: Lake):
    from jobs.train.pairs import training_pairs

    t = lake.cfg.training
    pairs = training_pairs(lake, t.eval_examples, t.train.seed, skip=t.train.max_examples)
    if pairs.targets.empty:
        raise MissingPrerequisite(
            f"no validation users after the first {t.train.max_examples} training users",
            "lower training.train.max_examples or ingest more reviews")
    return pairs


def _relsum_reward(lake: Lake, adapters: Sequence[Path | None]) -> tuple[list[float], int]:
    from generator.tasks import relsum
    from jobs.train.datasets import load_tokenizer, relsum_rows
    from jobs.train.rewards import relsum_reward

    rows = relsum_rows(lake, load_tokenizer(lake), lake.cfg.training.eval_examples, part="validation")
    if not rows:
        raise MissingPrerequisite("no ReLSum validation pairs (training queries' pairs after the training ones)",
                                  "lower training.train.max_examples or ingest more relevance labels")
    task, reward = relsum.task(lake.cfg.generation.relsum_max_tokens), relsum_reward(lake)
    cols = {k: [r[k] for r in rows] for k in ("query", "title", "gain", "max_words")}
    values = []
    for folder in adapters:
        results = _run(lake, "relsum", folder, task, [r["inputs"] for r in rows])
        summaries = [r.value["summary"] if r.status == "ok" else "" for r in results]
        values.append(float(np.mean(reward([r["prompt"] for r in rows], summaries, **cols))))
    return values, len(rows)


def _score_metric(lake: Lake, adapters: Sequence[Path | None], job_key: str, task, rows: list[dict[str, Any]],
                  metric: Callable[[np.ndarray, np.ndarray], float]) -> tuple[list[float], int]:
    """`metric(expected, actual)` per adapter: the expected score of each row by the daily job's
    generator with that adapter against the row's actual rating (rows whose output failed are left
    out; NaN when none is left)."""
    key = f"{task.score.field}_expected"
    actual = np.array([r["rating"] for r in rows], dtype=float)
    values = []
    for folder in adapters:
        results = _run(lake, job_key, folder, task, [r["inputs"] for r in rows])
        expected = np.array([r.value[key] if r.status == "ok" else np.nan for r in results], dtype=float)
        ok = ~np.isnan(expected)
        values.append(float(metric(expected[ok], actual[ok])) if ok.any() else float("nan"))
    return values, len(rows)


def _rating_mae(lake: Lake, adapters: Sequence[Path | None]) -> tuple[list[float], int]:
    from generator.tasks import exp3rt
    from jobs.train.rationales import rating_rows

    return _score_metric(lake, adapters, "ratings", exp3rt.rating_task(), rating_rows(lake, _validation_pairs(lake)),
                         lambda expected, actual: np.abs(expected - actual).mean())


def _suitability_spearman(lake: Lake, adapters: Sequence[Path | None]) -> tuple[list[float], int]:
    from generator.metrics import spearman
    from generator.tasks import sumforu
    from jobs.train.suitability import summary_rows

    return _score_metric(lake, adapters, "persona_summaries", sumforu.summary_task(),
                         summary_rows(lake, _validation_pairs(lake)), spearman)


RELSUM_REWARD = Validation("validation_mean_reward", True, _relsum_reward,
                           "mean ranker reward of greedy summaries on validation pairs")
RATING_MAE = Validation("validation_rating_mae", False, _rating_mae,
                        "MAE of the expected rating against validation users' actual ratings")
SUITABILITY_SPEARMAN = Validation("validation_suitability_spearman", True, _suitability_spearman,
                                  "Spearman of the expected suitability with validation users' actual ratings")
