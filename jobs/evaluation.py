"""Offline evaluation of the generated features -> eval.generation_metrics.

Per task and generator (model_id, adapter_version), over all rows it has made:
- `validity`: valid rows / (valid + failed generations);
- `mean_chars`, `p95_chars`: length of the main generated text;
- `rouge_l`: ROUGE-L F1 against the teacher's output for the same inputs, where a teacher labelled them;
- ratings: `mae` and `rmse` of predicted against actual ratings, next to the same errors of two
  baselines that a recommender would otherwise use (`user_mean_*`, `item_mean_*`: the user's or the
  item's mean rating over their other reviews, leave-one-out so the answer is not in the baseline);
- persona summaries: `mean_suitability`.
The metrics of a run replace that run's `ds` partition.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from generator.metrics import rouge_l
from jobs.lake import Lake
from jobs.lake import tables as T

log = logging.getLogger(__name__)

MAIN_TEXT = {
    "relsum": ("product_summaries", "summary"),
    "sumforu_persona": ("personas", "persona"),
    "sumforu_summary": ("persona_summaries", "summary"),
    "exp3rt_preferences": ("review_preferences", "likes"),
    "exp3rt_user_profile": ("user_profiles", "profile"),
    "exp3rt_item_profile": ("item_profiles", "profile"),
    "exp3rt_rating": ("rating_predictions", "reasoning"),
    "rpo": ("personalized_texts", "personalized_text"),
}


def leave_one_out_means(reviews: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per (user_id, product_id): the mean rating of `key`'s other reviews (NaN when it has none)."""
    g = reviews.groupby(key)["rating"].agg(["sum", "count"]).rename(columns={"sum": "s", "count": "n"})
    pair = reviews.groupby(["user_id", "product_id"])["rating"].agg(["sum", "count"]).reset_index()
    pair = pair.join(g, on=key)
    rest = pair["n"] - pair["count"]
    pair["baseline"] = np.where(rest > 0, (pair["s"] - pair["sum"]) / rest.where(rest > 0, 1), np.nan)
    return pair[["user_id", "product_id", "baseline"]]


def rating_metrics(pred: pd.DataFrame, reviews: pd.DataFrame) -> list[tuple[str, float, int]]:
    """MAE/RMSE of predictions and of user-mean and item-mean baselines on the same pairs."""
    rows = []
    p = pred.dropna(subset=["actual_rating"])
    if p.empty:
        return rows
    err = p["predicted_rating"].astype(float) - p["actual_rating"]
    rows += [("mae", float(err.abs().mean()), len(p)), ("rmse", float(np.sqrt((err**2).mean())), len(p))]
    for key, name in (("user_id", "user_mean"), ("product_id", "item_mean")):
        b = p.merge(leave_one_out_means(reviews, key), on=["user_id", "product_id"], how="left")
        # a pair whose user (item) has no other review falls back to the global mean
        base = b["baseline"].fillna(reviews["rating"].mean())
        e = base - b["actual_rating"]
        rows += [(f"{name}_mae", float(e.abs().mean()), len(b)), (f"{name}_rmse", float(np.sqrt((e**2).mean())), len(b))]
    return rows


def _teacher(lake: Lake) -> pd.DataFrame | None:
    spec = T.TABLES.get("silver.teacher_outputs")
    if spec is None or not lake.exists(spec):
        return None
    return lake.read_pandas(spec, ["task", "input_hash", "output_text"])


def generation_metrics(lake: Lake) -> pd.DataFrame:
    failures = lake.read_pandas(T.SILVER_GENERATION_FAILURES, ["task", "model_id", "adapter_version"])
    teacher = _teacher(lake)
    reviews = None
    out = []
    for task, (name, col) in MAIN_TEXT.items():
        layer = "silver" if name == "review_preferences" else "gold"
        spec = T.get_table(f"{layer}.{name}")
        if not lake.exists(spec):
            continue
        df = lake.read_pandas(spec)
        for (model, adapter), g in df.groupby(["model_id", "adapter_version"]):
            bad = int(((failures.task == task) & (failures.model_id == model) & (failures.adapter_version == adapter)).sum())
            lengths = g[col].str.len()
            rows = [("validity", len(g) / (len(g) + bad), len(g) + bad),
                    ("mean_chars", float(lengths.mean()), len(g)), ("p95_chars", float(lengths.quantile(0.95)), len(g))]
            if teacher is not None:
                ref = g.merge(teacher[teacher.task == task], on="input_hash")
                if len(ref):
                    scores = [rouge_l(a, b) for a, b in zip(ref[col], ref["output_text"])]
                    rows.append(("rouge_l", float(np.mean(scores)), len(ref)))
            if task == "sumforu_summary":
                rows.append(("mean_suitability", float(g["suitability"].mean()), len(g)))
            if task == "exp3rt_rating":
                if reviews is None:
                    reviews = lake.read_pandas(T.BRONZE_REVIEWS, ["user_id", "product_id", "rating"])
                rows += rating_metrics(g, reviews)
            out += [{"task": task, "model_id": model, "adapter_version": adapter, "metric": m, "value": v, "n": int(n)}
                    for m, v, n in rows]
    return pd.DataFrame(out, columns=["task", "model_id", "adapter_version", "metric", "value", "n"])


def evaluate_generation(lake: Lake, ds: str) -> str:
    metrics = generation_metrics(lake)
    df = lake.spark.createDataFrame(metrics.assign(ds=ds), schema=_spark_schema())
    lake.replace_partition(T.EVAL_GENERATION_METRICS, df, ds)
    shown = metrics[metrics.metric.isin(["validity", "mae", "user_mean_mae", "item_mean_mae", "rouge_l"])]
    lines = [f"evaluate_generation ds={ds}: {len(metrics)} metrics over {metrics.task.nunique()} tasks"]
    lines += [f"  {r.task:<22} {r.adapter_version:<10} {r.metric:<14} {r.value:.3f} (n={r.n})" for r in shown.itertuples()]
    return "\n".join(lines)


def _spark_schema():
    from jobs.lake.lake import spark_schema

    return spark_schema(T.EVAL_GENERATION_METRICS.schema)
