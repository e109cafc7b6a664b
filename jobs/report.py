"""`precis evaluate`: a Markdown report with PNG plots of the lake's evaluation tables.

Sections: the quality gates of the day, the ranking table (variants x all/head/tail x NDCG@5 and
R@90P), each variant's precision-recall curve with the 90%-precision line, the generation metrics
(validity, lengths, ROUGE-L against the teacher where one labelled the inputs), output-length
distributions, rating-prediction error against user-mean and item-mean baselines, the serving
version, and the training runs when there are any.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.lake import Lake
from jobs.lake import tables as T

log = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _on(df: pd.DataFrame, ds: str) -> pd.DataFrame:
    """Rows of the evaluation partition `ds` itself: a report of a day shows that day's evaluation,
    never another day's."""
    return df[df.ds == ds] if len(df) else df


def _missing_day(df: pd.DataFrame, ds: str, what: str, command: str) -> str:
    """What to say when `df` has no row for `ds`: the latest earlier day to report on, if any."""
    before = sorted(d for d in df.ds.unique() if d < ds) if len(df) else []
    if before:
        return f"_No {what} on {ds}; the latest before it is {before[-1]} (`precis evaluate --report-only --date {before[-1]}`)._\n"
    return f"_No {what} yet (`{command}`)._\n"


def _as_of(lake: Lake, table: str, columns: list[str], ds: str) -> pd.DataFrame:
    """A gold table as it stood on `ds`: its rows written that day or before (generation is
    incremental, so an unchanged row keeps the day it was written)."""
    df = lake.read_pandas(table, [*columns, "ds"])
    return df[df.ds <= ds].drop(columns="ds")


def _table(df: pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    if df.empty:
        return "_(none)_\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("" if math.isnan(v) else floatfmt.format(v))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ranking_table(metrics: pd.DataFrame) -> pd.DataFrame:
    if metrics.empty:
        return metrics
    m = metrics.assign(col=metrics.metric.str.upper() + " " + metrics.split)
    wide = m.pivot_table(index="variant", columns="col", values="value", aggfunc="first")
    order = [f"{metric} {split}" for metric in ("NDCG@5", "R@90P") for split in ("all", "head", "tail", "summarised")]
    order.append("COVERAGE all")  # share of the evaluation pairs whose product has the variant's text
    wide = wide[[c for c in order if c in wide.columns]].sort_values(wide.columns[0], ascending=False)
    return wide.reset_index()


RANKING_GLOSSARY = """\
- Variants: the text the ranker reads beside the query. `none`: the title alone; `desc`: title +
  description; `extractive`: title + the description's leading sentences within the summaries'
  word budget; `summary:<adapter>`: title + the precomputed ReLSum summary (`base`: zero-shot); a
  product without a summary falls back to `none`; `bm25`: BM25 over title + description, no ranker;
  `untrained`: the ranker's architecture before fine-tuning.
- NDCG@5: per query, then the mean over queries. R@90P: over all (query, product) pairs pooled,
  the recall at the score threshold with the most recall whose precision is still 90%, a pair
  counting as relevant when it has the top grade (0 when no threshold reaches 90%).
- Splits: `head` queries have at least `ranker.head_min_judgments` judgments, `tail` the others;
  `summarised`: queries whose described products all have a summary in every summary variant;
  `COVERAGE all`: the share of evaluation pairs whose product has the variant's text.
"""


def queries_per_split(metrics: pd.DataFrame) -> pd.DataFrame:
    """How many queries each split's figures rest on."""
    counts = metrics[metrics.metric.str.upper() == "NDCG@5"].groupby("split").n_queries.max()
    return pd.DataFrame([{s: int(counts[s]) for s in ("all", "head", "tail", "summarised") if s in counts}])


def paired_ndcg_tests(scores: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """The variant with the best mean NDCG@k against each other one on the queries both ranked:
    the mean per-query difference, how many queries differ, and the two-sided p-value of the
    Wilcoxon signed-rank test (scipy) over those per-query differences."""
    from generator.metrics import paired_p_value
    from ranker.metrics import Judged, ndcg_per_query

    if scores.empty:
        return pd.DataFrame()
    per = {v: ndcg_per_query([Judged(r.query_id, r.product_id, r.gain, r.score) for r in g.itertuples()], k)
           for v, g in scores.groupby("variant")}
    best = max(per, key=lambda v: np.mean(list(per[v].values())))
    rows = []
    for other in sorted(set(per) - {best}):
        shared = sorted(set(per[best]) & set(per[other]))
        mine, theirs = np.array([per[best][q] for q in shared]), np.array([per[other][q] for q in shared])
        diff = mine - theirs
        differ = int(np.sum(diff != 0))
        p = paired_p_value(mine, theirs)
        rows.append({"best": best, "vs": other, "queries": len(shared), "queries that differ": differ,
                     f"mean NDCG@{k} difference": float(diff.mean()) if len(diff) else float("nan"), "p (Wilcoxon)": p})
    return pd.DataFrame(rows)


def pr_curves(scores: pd.DataFrame, out: Path, ds: str) -> Path | None:
    """Precision-recall per variant for the top relevance grade, each variant's average precision
    and pair count in its legend, distinct line styles so overlapping curves stay visible."""
    from ranker.metrics import average_precision, precision_recall_curve

    if scores.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    top = scores.gain.max()
    styles = ("-", "--", "-.", ":")
    for i, (variant, g) in enumerate(sorted(scores.groupby("variant"))):
        relevant = np.isclose(g.gain.to_numpy(), top)
        p, r, _ = precision_recall_curve(relevant, g.score.to_numpy())
        ap = average_precision(relevant, g.score.to_numpy())
        ax.plot(r, p, label=f"{variant}: AP {ap:.3f}, {len(g)} pairs", linewidth=1.4, linestyle=styles[i % len(styles)])
    ax.axhline(0.9, color="black", linestyle="--", linewidth=0.8, label="90% precision")
    ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    ax.set_title(f"Precision-recall per product-text variant, ds {ds}\n(relevant: the top relevance grade)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def ndcg_plot(metrics: pd.DataFrame, out: Path) -> Path | None:
    """NDCG@5 per product-text variant (all, head and tail queries), each labelled with its coverage
    (the share of the evaluation pairs whose product has that text)."""
    ndcg = metrics[metrics.metric.str.upper() == "NDCG@5"]
    if ndcg.empty:
        return None
    wide = ndcg.pivot_table(index="variant", columns="split", values="value", aggfunc="first")
    wide = wide.sort_values("all" if "all" in wide.columns else wide.columns[0])
    cover = metrics[(metrics.metric.str.upper() == "COVERAGE") & (metrics.split == "all")].set_index("variant").value
    splits = [s for s in ("all", "head", "tail") if s in wide.columns]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(wide) * max(len(splits), 1) / 2))
    height = 0.8 / len(splits)
    y = np.arange(len(wide))
    for k, split in enumerate(splits):
        ax.barh(y + k * height, wide[split].to_numpy(), height=height, label=split)
    for i, variant in enumerate(wide.index):
        if variant in cover.index:
            ax.text(1.005, i + (len(splits) - 1) * height / 2, f"{cover[variant]:.0%}", va="center", fontsize=7)
    lo = max(0.0, np.floor((np.nanmin(wide[splits].to_numpy()) - 0.05) * 10) / 10)  # the differences are small
    ax.set_yticks(y + (len(splits) - 1) * height / 2, wide.index)
    ax.set(xlabel=f"NDCG@5 (axis from {lo:.1f}; coverage on the right)", xlim=(lo, 1),
           title="NDCG@5 per product-text variant (held-out queries)")
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(1.06, 0))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def length_plot(lake: Lake, out: Path, ds: str) -> Path | None:
    from jobs.features import JOBS

    series = {}
    for job in JOBS.values():
        if lake.exists(job.table):
            lengths = _as_of(lake, job.table, [job.main_text], ds)[job.main_text].str.len()
            if len(lengths):
                series[job.name] = lengths.to_numpy()
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.boxplot(list(series.values()), orientation="horizontal")
    ax.set_yticks(range(1, len(series) + 1), list(series))
    ax.set(xlabel="characters", title=f"Generated text lengths per task, as of ds {ds}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def sample_outputs(lake: Lake, ds: str, n: int = 2, chars: int = 180) -> list[str]:
    """The newest `n` outputs of each task as of `ds` (its keys, main text cut at `chars`, its
    scores), so a reader sees what the metrics are computed over."""
    from jobs.features import JOBS

    rows = []
    for job in JOBS.values():
        if not lake.exists(job.table):
            continue
        cols = [*job.generation.keys, job.main_text, *(c.name for c in job.scores), "generated_at"]
        df = _as_of(lake, job.table, cols, ds).sort_values("generated_at", ascending=False).head(n)
        for r in df.to_dict("records"):
            text = " ".join(str(r[job.main_text]).split())
            text = text if len(text) <= chars else text[: chars - 3] + "..."
            rows.append({"task": job.name, "keys": " / ".join(str(r[k]) for k in job.generation.keys),
                         "output": text.replace("|", "\\|"),
                         "scores": ", ".join(f"{c.name} {r[c.name]}" for c in job.scores)})
    if not rows:
        return []
    return [f"\n### Sample outputs (the newest {n} per task, as of {ds})\n\n", _table(pd.DataFrame(rows))]


def signal_section(lake: Lake, ds: str, folder: Path) -> list[str]:
    """'Does this feature carry signal?': one line per declared signal (jobs/features), with the
    plots a person would rather look at."""
    from generator.metrics import MIN_DIFFERING_PAIRS
    from jobs.evaluation import signal_table
    from jobs.features.spec import SIGNIFICANCE

    md = ["## Signal: does each feature carry signal against ground truth?\n\n"]
    all_days = lake.read_pandas(T.EVAL_GENERATION_METRICS)
    gen = _on(all_days, ds)
    table = signal_table(gen) if len(gen) else pd.DataFrame()
    if table.empty:
        md.append(_missing_day(all_days, ds, "generation metrics", "precis job evaluate_generation") + "\n")
        return md
    md.append(_table(table, "{:.3f}"))
    md.append("\nGround truth: each selected user's held-out review (`silver.review_split`), never seen by "
              "generation. `p`: two-sided Wilcoxon signed-rank test of the feature against the baseline on "
              f"the same rows; `not significant`: better than the baseline on these rows, but p >= {SIGNIFICANCE:g} "
              f"(or fewer than {MIN_DIFFERING_PAIRS} rows differ). `not measured`: no row with ground truth for that "
              "generator.\n\n")
    for name, plot in (("predicted vs actual rating", rating_plot), ("suitability by actual rating", suitability_plot)):
        path = plot(lake, folder, ds)
        if path:
            md.append(f"![{name}]({path.name})\n\n")
    md += grounding_examples(lake, ds)
    return md


def grounding_examples(lake: Lake, ds: str, n: int = 3) -> list[str]:
    """Persona sentences that the persona-holder's own reviews do not support (generator.grounding)."""
    from generator.grounding import SUPPORT_THRESHOLD
    from jobs.features.sumforu import persona_grounding

    if not lake.exists(T.GOLD_PERSONAS):
        return []
    personas = _as_of(lake, T.GOLD_PERSONAS, ["user_id", "persona"], ds).head(20)
    if personas.empty:
        return []
    rows = [(u, c, b) for u, g in zip(personas.user_id, persona_grounding(lake, personas))
            for c, b in zip(g.claims, g.best) if b < SUPPORT_THRESHOLD]
    if not rows:
        return ["Every persona sentence checked is supported by its user's own reviews.\n\n"]
    table = pd.DataFrame(rows[:n], columns=["user_id", "unsupported persona sentence", "best cosine with a review"])
    return [f"Persona sentences with no support in the user's own reviews (cosine < {SUPPORT_THRESHOLD}), "
            f"{len(rows)} among the first {len(personas)} personas:\n\n", _table(table, "{:.2f}"), "\n"]


def rating_plot(lake: Lake, folder: Path, ds: str) -> Path | None:
    if not lake.exists(T.GOLD_RATING_PREDICTIONS):
        return None
    df = _as_of(lake, T.GOLD_RATING_PREDICTIONS, ["predicted_rating", "predicted_rating_expected", "actual_rating"], ds).dropna()
    if df.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    counts = df.groupby(["actual_rating", "predicted_rating"]).size().reset_index(name="n")
    ax.scatter(counts.actual_rating, counts.predicted_rating, s=30 + 30 * counts.n, alpha=0.3, label="rounded")
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(df))
    ax.scatter(df.actual_rating + jitter, df.predicted_rating_expected, s=12, color="black", label="expected value")
    ax.plot([1, 5], [1, 5], color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=8, loc="upper left")
    ax.set(xlabel="actual rating", ylabel="predicted rating", xlim=(0.5, 5.5), ylim=(0.5, 5.5),
           title=f"EXP3RT: predicted vs actual ({len(df)} pairs)")
    fig.tight_layout()
    out = folder / "ratings.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def suitability_plot(lake: Lake, folder: Path, ds: str) -> Path | None:
    from jobs.features.ground_truth import actual_rating

    if not lake.exists(T.GOLD_PERSONA_SUMMARIES):
        return None
    df = _as_of(lake, T.GOLD_PERSONA_SUMMARIES, ["user_id", "product_id", "suitability_expected"], ds)
    df["actual"] = actual_rating(lake, df).to_numpy()
    df = df.dropna(subset=["actual"])
    if df.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    groups = sorted(df.actual.round().unique())
    ax.boxplot([df.suitability_expected[df.actual.round() == g].to_numpy() for g in groups], positions=groups)
    ax.set(xlabel="persona-holder's actual rating", ylabel="expected suitability (1-10)", ylim=(0.5, 10.5),
           title=f"SUMFORU: suitability by actual rating ({len(df)} pairs)")
    fig.tight_layout()
    out = folder / "suitability.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_report(lake: Lake, ds: str) -> Path:
    folder = Path(lake.cfg.report_dir(ds))
    folder.mkdir(parents=True, exist_ok=True)
    md = [f"# Precis evaluation report — ds {ds}\n\n", f"Lake: `{lake.root}`\n\n"]

    md += signal_section(lake, ds, folder)

    quality = lake.read_pandas(T.EVAL_QUALITY_RESULTS)
    quality = quality[quality.ds == ds]
    md.append("## Quality gates\n\n")
    if quality.empty:
        md.append("_No gate ran for this date._\n")
    else:
        blocking = ~quality.success & (quality.severity.fillna("fail") == "fail")
        summary = quality.assign(blocking=blocking).groupby("layer").agg(
            expectations=("success", "size"), passed=("success", "sum"), blocking=("blocking", "sum")).reset_index()
        summary["result"] = np.where(summary.blocking == 0, "PASSED", "FAILED")
        md.append(_table(summary))
        failed = quality[~quality.success][["table_name", "expectation", "column_name", "severity", "observed"]]
        if len(failed):
            md.append("\nFailed expectations (severity `warn` is reported without blocking publish):\n\n" + _table(failed))

    md.append("\n## Ranking (the ranker on held-out queries)\n\n")
    all_days = lake.read_pandas(T.EVAL_RANKING_METRICS)
    metrics = _on(all_days, ds)
    if metrics.empty:
        md.append(_missing_day(all_days, ds, "ranking evaluation",
                               "precis train ranker`, then `precis job evaluate_ranking"))
    else:
        n_q = int(metrics.n_queries.max())
        md.append(f"{metrics.ds.iloc[0]}, {n_q} queries, ranker {metrics.ranker_version.dropna().iloc[0] if metrics.ranker_version.notna().any() else '-'}\n\n")
        md.append(_table(ranking_table(metrics)))
        md.append("\nQueries each split rests on:\n\n" + _table(queries_per_split(metrics)))
        scores = _on(lake.read_pandas(T.EVAL_RANKING_SCORES), ds)
        tests = paired_ndcg_tests(scores)
        if not tests.empty:
            md.append("\nIs the best variant's lead real? A paired test over the queries (p < 0.05: unlikely to be "
                      "chance; empty: fewer than 6 queries differ):\n\n" + _table(tests, "{:.3f}"))
        md.append("\n" + RANKING_GLOSSARY)
        plot = ndcg_plot(metrics, folder / "ndcg.png")
        if plot:
            md.append(f"\n![NDCG@5 per variant]({plot.name})\n")
        plot = pr_curves(scores, folder / "pr_curves.png", ds)
        if plot:
            md.append(f"\n![precision-recall curves]({plot.name})\n")

    md.append("\n## Generation\n\n")
    all_days = lake.read_pandas(T.EVAL_GENERATION_METRICS)
    gen = _on(all_days, ds)
    if gen.empty:
        md.append(_missing_day(all_days, ds, "generation metrics", "precis job evaluate_generation"))
    else:
        wide = gen[~gen.metric.str.contains("mae|rmse")].pivot_table(
            index=["task", "adapter_version"], columns="metric", values="value", aggfunc="first").reset_index()
        md.append(_table(wide, "{:.3f}"))
        rating = gen[gen.metric.str.contains("mae|rmse")]
        if len(rating):
            md.append("\n### Rating prediction against baselines\n\n")
            r = rating.pivot_table(index="adapter_version", columns="metric", values="value", aggfunc="first").reset_index()
            md.append(_table(r, "{:.3f}"))
            md.append(f"\n{int(rating.n.max())} (user, product) pairs with a known rating. Baselines: the user's "
                      "(item's) mean rating over their other reviews.\n")
        plot = length_plot(lake, folder / "lengths.png", ds)
        if plot:
            md.append(f"\n![generated text lengths]({plot.name})\n")
        md += sample_outputs(lake, ds)

    md.append("\n## Serving\n\n")
    s = (lake.read_pandas(T.SERVING_PRODUCT_SUMMARIES, ["published_ds", "adapter_version"])
         if lake.exists(T.SERVING_PRODUCT_SUMMARIES) else pd.DataFrame())
    s = s[s.published_ds <= ds] if len(s) else s
    if len(s):
        md.append(f"As of {ds}: {len(s)} products with a summary, published {', '.join(sorted(s.published_ds.unique()))}; "
                  f"adapters {', '.join(sorted(s.adapter_version.unique()))}.\n")
    else:
        md.append(f"_Nothing published by {ds}._\n")

    runs_spec = T.TABLES.get("eval.training_runs")
    if runs_spec is not None and lake.exists(runs_spec):
        runs = lake.read_pandas(runs_spec)
        if len(runs):
            md.append("\n## Training runs\n\n")
            cols = [c for c in ("run_id", "task", "method", "adapter_version", "steps", "reward_first10", "reward_last10",
                                "eval_metric", "eval_value", "promoted") if c in runs.columns]
            md.append(_table(runs[cols].tail(20), "{:.4f}"))

    path = folder / "report.md"
    path.write_text("".join(s if s.endswith("\n") else s + "\n" for s in md))
    log.info("report written to %s", path)
    return path
