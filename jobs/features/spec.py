"""What a seed module declares about each of its generation jobs.

A `FeatureJob` is everything the rest of Precis needs to know about one generated table: how its
inputs are built and turned into prompts (the engine's `GenerationJob`), which other jobs' outputs
it reads (the step order is derived from that), the text and score columns the gold gate checks,
the prompt fragments an output must not echo, and how its rows are measured against ground truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from jobs.generation import GenerationJob

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from jobs.lake import Lake

MetricRow = tuple[str, float, int]  # (metric, value, rows it is computed over)


@dataclass(frozen=True)
class TextColumn:
    """A generated text column: its length is gated, and distinct-2 and template echo are checked."""

    name: str
    may_be_empty: bool = False  # e.g. a review may praise without complaint: empty dislikes are valid


@dataclass(frozen=True)
class ScoreColumn:
    """A numeric model output: gated to [low, high], and checked for degenerate concentration
    against the ground truth of the same rows (`FeatureJob.truth`)."""

    name: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"score column {self.name}: low {self.low} must be below high {self.high}")


SIGNIFICANCE = 0.05  # a win over a baseline with a paired test counts when p is below this


@dataclass(frozen=True)
class Signal:
    """One line of the signal table: a ground-truth metric of the job, and what it must beat.

    `baseline` names another metric of the same rows (e.g. `user_mean_mae`), or is None to compare
    with `threshold`. `better` says which direction wins. `p_value` names a metric holding the
    p-value of a test of the two on the same rows (paired, or binomial against chance): a win with
    p >= SIGNIFICANCE, or with too few rows to test, is `not significant`, not `signal`."""

    metric: str
    better: Literal["lower", "higher"]
    baseline: str | None = None
    threshold: float | None = None
    question: str = ""  # what the line answers, for the report
    margin: float = 0.0  # "lower" also passes up to baseline + margin ("higher": down to baseline - margin)
    p_value: str | None = None  # the metric holding the paired test's p-value (needs `baseline`)

    def verdict(self, metrics: dict[str, float]) -> tuple[float | None, float | None, str]:
        """(value, what it is compared with, verdict): `signal`, `not significant` (a win the
        paired test does not support), `no signal`, or `not measured` when the metric or its
        baseline was not computed (no rows with ground truth)."""
        import math

        value = metrics.get(self.metric)
        ref = metrics.get(self.baseline) if self.baseline is not None else self.threshold
        if value is None or ref is None or math.isnan(value) or math.isnan(ref):
            return value, ref, "not measured"
        ok = value < ref + self.margin if self.better == "lower" else value > ref - self.margin
        if not ok:
            return value, ref, "no signal"
        if self.p_value is not None:
            p = metrics.get(self.p_value)
            if p is None or math.isnan(p) or p >= SIGNIFICANCE:
                return value, ref, "not significant"
        return value, ref, "signal"

    def __post_init__(self) -> None:
        if (self.baseline is None) == (self.threshold is None):
            raise ValueError(f"signal {self.metric}: give exactly one of baseline or threshold")
        if self.p_value is not None and self.baseline is None:
            raise ValueError(f"signal {self.metric}: a p_value compares with a baseline; this one has a threshold")


@dataclass(frozen=True)
class FeatureJob:
    """One generation job of a seed."""

    key: str  # the daily step is generate_<key>
    generation: GenerationJob
    build_inputs: Callable[["Lake"], "DataFrame"]
    texts: tuple[TextColumn, ...]  # the main text first
    reads: tuple[str, ...] = ()  # keys of the jobs whose outputs build_inputs reads
    scores: tuple[ScoreColumn, ...] = ()
    echo: tuple[str, ...] = ()  # regexes of this task's prompt labels that an output must not contain
    truth: Callable[["Lake", "pd.DataFrame"], "pd.Series"] | None = None
    """Per row of the job's table, the actual rating (1-5) of the pair, NaN where there is none."""
    grounding: Callable[["Lake", "pd.DataFrame"], list] | None = None
    """Per row of the job's table, a `generator.grounding.Grounding` of its main text against the
    row's own evidence; the gold gate fails a row with no supported sentence."""
    metrics: Callable[["Lake", "pd.DataFrame"], list[MetricRow]] | None = None
    """Ground-truth metrics of one generator's rows (the text metrics are computed for every job)."""
    signals: tuple[Signal, ...] = field(default=())

    def __post_init__(self) -> None:
        columns = set(self.generation.table.schema.names)
        missing = [c.name for c in (*self.texts, *self.scores) if c.name not in columns]
        if missing:
            raise ValueError(f"feature job {self.key}: columns {missing} are not in {self.table.qualified_name}")
        if not self.texts:
            raise ValueError(f"feature job {self.key}: declare at least its main text column")
        if self.key in self.reads:
            raise ValueError(f"feature job {self.key} cannot read its own output")
        if self.scores and self.truth is None:
            raise ValueError(f"feature job {self.key}: score columns need a `truth` to be checked against")

    @property
    def name(self) -> str:
        """The task name recorded in failures and metrics (e.g. exp3rt_rating)."""
        return self.generation.name

    @property
    def table(self):
        return self.generation.table

    @property
    def main_text(self) -> str:
        return self.texts[0].name

    @property
    def prompt_version(self) -> str:
        return self.generation.make_task().prompt_version


@dataclass(frozen=True)
class Seed:
    """One seed paper's features: its jobs, in the module that implements it."""

    name: str  # relsum | sumforu | exp3rt | rpo
    jobs: tuple[FeatureJob, ...]
