"""Offline evaluation of the generated features -> eval.generation_metrics, and the signal table.

Per feature job (jobs/features) and generator (model_id, adapter_version), over the rows it made
with its newest prompt version (rows of an older prompt are stale, as the generation job treats them):
- `validity`: valid rows / (valid + failed generations);
- text metrics of the main text: `mean_chars`, `p95_chars`, `distinct_2` (mean per row),
  `repeated_3gram_share` (mean per row), `template_echo_share` (rows that copy a prompt fragment);
- `rouge_l` against the teacher's output for the same inputs, where a teacher labelled them;
- the job's ground-truth metrics (`FeatureJob.metrics`): for ratings MAE, RMSE and Spearman against
  the actual rating beside global-, user- and item-mean baselines (leave-one-out) and the mode
  shares; for suitability Spearman with the persona-holder's actual rating; for rewrites ROUGE-L
  against the user's own review beside the generic text's.

`signal_table` turns these into one line per declared `Signal`: metric, baseline, verdict. The
metrics of a run replace that run's `ds` partition.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from generator.metrics import GENERIC_ECHO, distinct_n, echoes, repeated_ngram_share, rouge_l
from jobs.features.spec import FeatureJob, MetricRow
from jobs.lake import Lake
from jobs.lake import tables as T

log = logging.getLogger(__name__)


def text_metrics(texts: pd.Series, echo: tuple[str, ...]) -> list[MetricRow]:
    """Length, diversity and template echo of one text column."""
    texts = texts.fillna("")
    n = len(texts)
    if not n:
        return []
    lengths = texts.str.len()
    return [
        ("mean_chars", float(lengths.mean()), n),
        ("p95_chars", float(lengths.quantile(0.95)), n),
        ("distinct_2", float(np.mean([distinct_n(t, 2) for t in texts])), n),
        ("repeated_3gram_share", float(np.mean([repeated_ngram_share(t, 3) for t in texts])), n),
        ("template_echo_share", float(np.mean([bool(echoes(t, echo)) for t in texts])), n),
    ]


def _teacher(lake: Lake) -> pd.DataFrame | None:
    spec = T.TABLES.get("silver.teacher_outputs")
    if spec is None or not lake.exists(spec):
        return None
    return lake.read_pandas(spec, ["task", "input_hash", "output_text"])


def job_metrics(lake: Lake, job: FeatureJob, rows: pd.DataFrame, failed: int, teacher: pd.DataFrame | None) -> list[MetricRow]:
    """Every metric of one generator's rows of one job."""
    out: list[MetricRow] = [("validity", len(rows) / (len(rows) + failed), len(rows) + failed)]
    out += text_metrics(rows[job.main_text], (*GENERIC_ECHO, *job.echo))
    if teacher is not None:
        ref = rows.merge(teacher[teacher.task == job.name], on="input_hash")
        if len(ref):
            out.append(("rouge_l", float(np.mean([rouge_l(a, b) for a, b in zip(ref[job.main_text], ref["output_text"])])), len(ref)))
    if job.metrics is not None:
        out += job.metrics(lake, rows.reset_index(drop=True))
    return out


def failures_of(failures: pd.DataFrame, task: str, model: str, adapter: str, prompt_version: str) -> int:
    """The recorded failures of one generator (model, adapter, prompt): those a validity share
    weighs against that generator's rows. A refusal under another prompt says nothing about this one."""
    mine = ((failures.task == task) & (failures.model_id == model) & (failures.adapter_version == adapter)
            & (failures.prompt_version == prompt_version))
    return int(mine.sum())


def generation_metrics(lake: Lake) -> pd.DataFrame:
    from jobs.features import JOBS, current_prompt_version

    failures = lake.read_pandas(T.SILVER_GENERATION_FAILURES, ["task", "model_id", "adapter_version", "prompt_version"])
    teacher = _teacher(lake)
    out = []
    for key, job in JOBS.items():
        if not lake.exists(job.table):
            continue
        df = lake.read_pandas(job.table)
        current = current_prompt_version(lake, key)
        for (model, adapter), g in df.groupby(["model_id", "adapter_version"]):
            # the rows of the task's current prompt; for a generator that has none, its newest prompt's
            version = current if (g.prompt_version == current).any() else g.sort_values("generated_at").prompt_version.iloc[-1]
            g = g[g.prompt_version == version]
            bad = failures_of(failures, job.name, model, adapter, version)
            out += [{"task": job.name, "model_id": model, "adapter_version": adapter, "metric": m, "value": v, "n": int(n)}
                    for m, v, n in job_metrics(lake, job, g, bad, teacher)]
    return pd.DataFrame(out, columns=["task", "model_id", "adapter_version", "metric", "value", "n"])


def signal_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One line per declared signal and generator: does the feature carry signal?"""
    from jobs.features import JOBS

    rows = []
    for job in JOBS.values():
        mine = metrics[metrics.task == job.name]
        for (model, adapter), g in mine.groupby(["model_id", "adapter_version"]):
            values = dict(zip(g.metric, g.value.astype(float)))
            counts = dict(zip(g.metric, g.n))
            for s in job.signals:
                value, ref, verdict = s.verdict(values)
                p = values.get(s.p_value, float("nan")) if s.p_value else float("nan")
                rows.append({"task": job.name, "adapter_version": adapter, "question": s.question, "metric": s.metric,
                             "value": value, "baseline": s.baseline or f"threshold {s.threshold:g}", "baseline_value": ref,
                             "p": p, "n": int(counts.get(s.metric, 0)), "verdict": verdict})
    return pd.DataFrame(rows, columns=["task", "adapter_version", "question", "metric", "value", "baseline",
                                       "baseline_value", "p", "n", "verdict"])


def evaluate_generation(lake: Lake, ds: str) -> str:
    metrics = generation_metrics(lake)
    df = lake.spark.createDataFrame(metrics.assign(ds=ds), schema=_spark_schema())
    lake.replace_partition(T.EVAL_GENERATION_METRICS, df, ds)
    lines = [f"evaluate_generation ds={ds}: {len(metrics)} metrics over {metrics.task.nunique()} tasks"]
    signals = signal_table(metrics)
    for r in signals.itertuples():
        value = "n/a" if r.value is None or r.value != r.value else f"{r.value:.3f}"
        ref = "n/a" if r.baseline_value is None or r.baseline_value != r.baseline_value else f"{r.baseline_value:.3f}"
        lines.append(f"  {r.task:<18} {r.adapter_version:<16} {r.metric:<18} {value:>7} vs {r.baseline} {ref:>7} "
                     f"(n={r.n}): {r.verdict.upper()}")
    return "\n".join(lines)


def _spark_schema():
    from jobs.lake.lake import spark_schema

    return spark_schema(T.EVAL_GENERATION_METRICS.schema)
