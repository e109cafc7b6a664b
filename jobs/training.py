"""`precis train TASK --method ...`: training sets from the tables, a training run from
`training/`, a new adapter version in the registry, and a row in `eval.training_runs`.

Tasks and methods (the seeds' recipes):
    relsum   sft (teacher) | grpo (reward: frozen ONNX cross-encoder) | dpo (pairs from that reward)
    sumforu  sft (teacher) | rlaif (GRPO with an AI judge's reward)
    exp3rt   sft (teacher distillation of preference extraction)
    rpo      sft (teacher rewrites) | grpo (RL under the 2-to-6-shot history curriculum)
RL methods start from the task's newest adapter (the SFT one) when there is one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs.lake import Lake
from jobs.lake import tables as T

log = logging.getLogger(__name__)

METHODS = {"relsum": ("sft", "grpo", "dpo"), "sumforu": ("sft", "rlaif"), "exp3rt": ("sft",), "rpo": ("sft", "grpo")}
REGISTRY_TASK = {"relsum": "relsum", "sumforu": "sumforu_summary", "exp3rt": "exp3rt_preferences", "rpo": "rpo"}


@dataclass
class TrainReport:
    task: str
    method: str
    folder: Path
    row: dict[str, Any]

    def text(self) -> str:
        r = self.row
        lines = [f"{self.task} {self.method}: adapter {r['adapter_version']} -> {self.folder}",
                 f"  {r['examples']} examples, {r['steps']} steps in {r['seconds']:.0f} s"
                 + (f" (parent {r['parent_adapter']})" if r["parent_adapter"] else "")]
        if r["reward_first10"] is not None:
            lines.append(f"  mean reward: first 10 steps {r['reward_first10']:.4f} -> last 10 steps {r['reward_last10']:.4f}"
                         f" (reward computation {100 * (r['reward_share'] or 0):.1f}% of the run)")
        if r["loss_first10"] is not None:
            lines.append(f"  loss: first 10 steps {r['loss_first10']:.4f} -> last 10 steps {r['loss_last10']:.4f}")
        if r["curve_png"]:
            lines.append(f"  curve: {r['curve_png']}")
        return "\n".join(lines)


# ------------------------------------------------------------------ helpers
def _tokenizer(lake: Lake):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_base_model(lake))


def _base_model(lake: Lake) -> str:
    from generator.models import resolve

    return resolve(lake.cfg.generation.model or lake.cfg.models.generator, lake.cfg.cache_dir)


def _render(tokenizer, task, inputs: dict[str, Any]) -> str:
    from generator.backends import render_prompt

    return render_prompt(tokenizer, task.messages(inputs))


def _snapshot(lake: Lake, *tables: str) -> str:
    return json.dumps({t: {"version": lake.delta_table(t).version(), "rows": lake.count(t)} for t in tables if lake.exists(t)})


def _reviews_payload(df: pd.DataFrame) -> list[tuple[float, str]]:
    return [(float(r.rating), " ".join(x for x in (r.title, r.text) if isinstance(x, str))) for r in df.itertuples()]


# ------------------------------------------------------------------ training inputs per task
def relsum_rows(lake: Lake, tokenizer, limit: int, heldout: bool = False) -> list[dict[str, Any]]:
    """Prompts from silver.relsum_pairs (else all judged pairs) of the ranker's training queries
    (`heldout=True`: of its held-out queries, for evaluation), with what the reward reads."""
    from generator.tasks import relsum
    from jobs.ranking import judged_pairs, ranker_folder
    from ranker import registry as ranker_registry

    held = set(ranker_registry.manifest(ranker_folder(lake))["split"]["val_queries"])
    cols = ["query_id", "query", "product_id", "title", "description", "gain"]

    def usable(df):
        df = df[df.query_id.isin(held) == heldout]
        return df[df.description.fillna("").str.strip() != ""].sort_values(["query_id", "product_id"])

    pairs = usable(lake.read_pandas(T.SILVER_RELSUM_PAIRS, cols)) if lake.exists(T.SILVER_RELSUM_PAIRS) else None
    if pairs is None or pairs.empty:  # no description_delta pairs (yet): every judged pair
        pairs = usable(judged_pairs(lake).select(*cols).toPandas())
    pairs = pairs.sample(frac=1.0, random_state=lake.cfg.training.train.seed).head(limit)
    task, cap = relsum.task(lake.cfg.generation.relsum_max_tokens), lake.cfg.generation.relsum_max_tokens
    rows = []
    for p in pairs.itertuples():
        inputs = relsum.prepare(p.title, p.description, cap)
        rows.append({"prompt": _render(tokenizer, task, inputs), "query": p.query, "title": p.title,
                     "gain": float(p.gain), "max_words": inputs["max_words"], "inputs": inputs})
    return rows


def sumforu_rows(lake: Lake, tokenizer, limit: int) -> list[dict[str, Any]]:
    from generator.tasks import sumforu

    personas = lake.read_pandas(T.GOLD_PERSONAS, ["user_id", "persona"]).drop_duplicates("user_id")
    if personas.empty:
        raise FileNotFoundError("no personas in gold.personas; run `precis job generate_personas` first")
    samples = lake.read_pandas(T.SILVER_REVIEW_SAMPLES)
    samples = samples[samples.ds == samples.ds.max()]
    task = sumforu.summary_task()
    rows = []
    for product_id, g in sorted(samples.groupby("product_id"), key=lambda x: -len(x[1])):
        reviews = _reviews_payload(g.sort_values("sample_rank").head(12))
        for persona in personas.itertuples():
            inputs = sumforu.prepare_summary(persona.persona, reviews)
            rows.append({"prompt": _render(tokenizer, task, inputs), "persona": persona.persona,
                         "reviews": "\n".join(t for _, t in reviews), "inputs": inputs})
            if len(rows) >= limit:
                return rows
    return rows


def exp3rt_rows(lake: Lake, tokenizer, limit: int) -> list[dict[str, Any]]:
    from generator.tasks import exp3rt

    samples = lake.read_pandas(T.SILVER_REVIEW_SAMPLES).sort_values(["product_id", "sample_rank"]).head(limit)
    task = exp3rt.preferences_task()
    rows = []
    for r in samples.itertuples():
        inputs = exp3rt.prepare_preferences(float(r.rating), r.title, r.text)
        rows.append({"prompt": _render(tokenizer, task, inputs), "inputs": inputs})
    return rows


def rpo_items(lake: Lake, limit: int) -> list[dict[str, Any]]:
    """(generic text, history, target): the generic text is another shopper's review of a product
    the user reviewed; the target is the user's own review of it; the history is their other reviews."""
    hist = lake.read_pandas(T.SILVER_USER_HISTORIES)
    hist = hist[hist.ds == hist.ds.max()].sort_values(["n_reviews", "user_id"], ascending=[False, True])
    reviews = lake.read_pandas(T.BRONZE_REVIEWS, ["user_id", "product_id", "title", "text"])
    items = []
    for h in hist.itertuples():
        mine = list(h.reviews)
        for own in mine:
            other = reviews[(reviews.product_id == own["product_id"]) & (reviews.user_id != h.user_id)].head(1)
            if other.empty:
                continue
            text = lambda x: " ".join(v for v in (x.get("title"), x.get("text")) if isinstance(v, str))  # noqa: E731
            items.append({"generic": text(other.iloc[0].to_dict()), "target": text(own),
                          "history": [text(m) for m in mine if m["review_id"] != own["review_id"]]})
            if len(items) >= limit:
                return items
    return items


def rpo_rows(lake: Lake, tokenizer, limit: int, k: int | None = None) -> list[dict[str, Any]]:
    from generator.tasks import rpo

    task = rpo.task()
    k = k or lake.cfg.generation.history_k
    rows = []
    for it in rpo_items(lake, limit):
        inputs = rpo.prepare(it["generic"], it["history"][:k])
        rows.append({"prompt": _render(tokenizer, task, inputs), "target": it["target"], "inputs": inputs})
    return rows


ROWS = {"relsum": relsum_rows, "sumforu": sumforu_rows, "exp3rt": exp3rt_rows, "rpo": rpo_rows}
TASKS = {"relsum": ("generator.tasks.relsum", "task"), "sumforu": ("generator.tasks.sumforu", "summary_task"),
         "exp3rt": ("generator.tasks.exp3rt", "preferences_task"), "rpo": ("generator.tasks.rpo", "task")}


def make_task(name: str):
    import importlib

    module, fn = TASKS[name]
    return getattr(importlib.import_module(module), fn)()


# ------------------------------------------------------------------ teacher
def build_teacher_set(lake: Lake, name: str, ds: str) -> pd.DataFrame:
    """Label the task's training inputs with the configured teacher -> silver.teacher_outputs."""
    from generator.models import resolve
    from generator.tasks.base import input_hash
    from training.teacher import label, load_teacher, parse_teacher

    cfg = lake.cfg
    tokenizer = _tokenizer(lake)
    rows = ROWS[name](lake, tokenizer, cfg.training.train.max_examples)
    spec = parse_teacher(cfg.training.teacher, _base_model(lake), lambda n: resolve(n, cfg.cache_dir))
    teacher = load_teacher(spec, cfg.training.teacher_api_key_env, batch_size=cfg.generation.batch_size,
                           threads=cfg.generation.threads, dtype=cfg.generation.dtype)
    task = make_task(name)
    labelled = label(teacher, task, [r["inputs"] for r in rows], cfg.generation.max_attempts)
    now = datetime.now(timezone.utc)
    out = pd.DataFrame([{"task": task.name, "input_hash": input_hash(x["inputs"]),
                         "inputs": json.dumps(x["inputs"], sort_keys=True, default=str), "output_text": x["output_text"],
                         "teacher_id": spec.teacher_id, "prompt_version": task.prompt_version, "labelled_at": now, "ds": ds}
                        for x in labelled], columns=T.SILVER_TEACHER_OUTPUTS.schema.names)
    out = out.drop_duplicates(["task", "input_hash", "teacher_id", "prompt_version"])
    if len(out):
        from jobs.lake.lake import spark_schema

        lake.merge(T.SILVER_TEACHER_OUTPUTS, lake.spark.createDataFrame(out, spark_schema(T.SILVER_TEACHER_OUTPUTS.schema)),
                   when_matched="ignore")
    log.info("teacher %s labelled %d of %d %s inputs", spec.teacher_id, len(out), len(rows), name)
    return out


def _sft_examples(lake: Lake, name: str, ds: str) -> list[dict[str, str]]:
    tokenizer = _tokenizer(lake)
    task = make_task(name)
    teacher = lake.read_pandas(T.SILVER_TEACHER_OUTPUTS) if lake.exists(T.SILVER_TEACHER_OUTPUTS) else pd.DataFrame()
    if not teacher.empty:
        teacher = teacher[(teacher.task == task.name) & (teacher.prompt_version == task.prompt_version)]
    if teacher.empty:
        teacher = build_teacher_set(lake, name, ds)
    return [{"prompt": _render(tokenizer, task, json.loads(t.inputs)), "completion": t.output_text + tokenizer.eos_token}
            for t in teacher.itertuples()]


# ------------------------------------------------------------------ rewards (built here: they need the lake's models)
def relsum_reward(lake: Lake):
    from jobs.ranking import ranker_folder
    from ranker.scorer import OnnxScorer
    from training.rewards import RelsumReward

    s = lake.cfg.ranker.scorer
    scorer = OnnxScorer(ranker_folder(lake), s.model_file, s.batch_size, s.max_length, s.threads, s.provider)
    return RelsumReward(scorer.score, lake.cfg.training.train.length_penalty)


def personalization_reward(lake: Lake):
    from generator.models import resolve
    from generator.retrieval import embed
    from training.rewards import PersonalizationReward

    path = resolve(lake.cfg.models.encoder, lake.cfg.cache_dir)
    return PersonalizationReward(lambda texts: embed(texts, path))


def judge_backend(lake: Lake):
    from generator.models import resolve
    from training.teacher import load_teacher, parse_teacher

    cfg = lake.cfg
    spec = parse_teacher(cfg.training.judge, _base_model(lake), lambda n: resolve(n, cfg.cache_dir))
    return load_teacher(spec, cfg.training.teacher_api_key_env, batch_size=cfg.generation.batch_size,
                        threads=cfg.generation.threads, dtype=cfg.generation.dtype)


def _within_prompt_limit(rows: list[dict[str, Any]], max_chars: int, what: str) -> list[dict[str, Any]]:
    """Drop rows whose rendered prompt is over `training.train.max_prompt_chars` (memory and step time
    grow with it), saying how many went."""
    kept = [r for r in rows if len(r["prompt"]) <= max_chars]
    if len(kept) < len(rows):
        log.info("%s: %d of %d prompts over %d characters dropped", what, len(rows) - len(kept), len(rows), max_chars)
    if rows and not kept:
        raise ValueError(f"{what}: every prompt is over training.train.max_prompt_chars={max_chars}; raise it")
    return kept


# ------------------------------------------------------------------ one run
def curve_png(run, path: Path, title: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "reward" if run.series("reward") else "loss"
    series = run.series(key)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x, y = zip(*series)
    ax.plot(x, y, marker=".", linewidth=1)
    if len(y) >= 5:
        w = max(2, len(y) // 10)
        ax.plot(x[w - 1:], np.convolve(y, np.ones(w) / w, mode="valid"), linewidth=2, label=f"moving mean ({w})")
        ax.legend(fontsize=8)
    ax.set(xlabel="step", ylabel=key, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def train_task(lake: Lake, name: str, method: str, ds: str, max_steps: int | None = None,
               parent: str | None = "latest", status: str = "ready") -> TrainReport:
    from training import registry

    if method not in METHODS.get(name, ()):
        raise ValueError(f"task '{name}' has no method '{method}'; it has: {', '.join(METHODS.get(name, ()))}")
    cfg = lake.cfg.training.model_copy(deep=True)
    if max_steps is not None:
        cfg.train.max_steps = max_steps
    base = _base_model(lake)
    reg_task = REGISTRY_TASK[name]
    parent_folder = None
    if method != "sft" and parent != "base":
        parent_folder = registry.select(lake.cfg.adapters_dir, reg_task, parent or "latest")
    version, tmp = registry.staging(lake.cfg.adapters_dir, reg_task)
    tokenizer = _tokenizer(lake)
    limit = cfg.train.max_examples
    reward = None
    pairs = None
    try:
        if method == "sft":
            data = _within_prompt_limit(_sft_examples(lake, name, ds), cfg.train.max_prompt_chars, f"{name} sft")
            from training.sft import run_sft

            run = run_sft(base, data, cfg, tmp)
            snapshot = _snapshot(lake, "silver.teacher_outputs")
        elif name == "relsum":
            data = _within_prompt_limit(relsum_rows(lake, tokenizer, limit), cfg.train.max_prompt_chars, name)
            reward = relsum_reward(lake)
            rows = [{k: v for k, v in r.items() if k != "inputs"} for r in data]
            if method == "grpo":
                from training.grpo import run_grpo

                run = run_grpo(base, rows, reward, cfg, tmp, parent_folder)
            else:
                from training.dpo import run_dpo

                run, pairs = run_dpo(base, rows, reward, cfg, tmp, parent_folder)
            snapshot = _snapshot(lake, "silver.relsum_pairs", "bronze.judgments")
        elif name == "sumforu":
            from training.rlaif import run_rlaif

            data = _within_prompt_limit(sumforu_rows(lake, tokenizer, limit), cfg.train.max_prompt_chars, name)
            rows = [{k: v for k, v in r.items() if k != "inputs"} for r in data]
            run, reward = run_rlaif(base, rows, judge_backend(lake), cfg, tmp, parent_folder)
            snapshot = _snapshot(lake, "gold.personas", "silver.review_samples")
        else:  # rpo grpo: the curriculum
            from generator.tasks import rpo
            from training.grpo import run_grpo
            from training.rpo import curriculum_rows

            task = rpo.task()
            items = rpo_items(lake, limit)
            data = curriculum_rows(items, cfg.train.max_steps * cfg.train.grad_accum, cfg.train.batch_size,
                                   cfg.train.curriculum_start, cfg.train.curriculum_end,
                                   lambda it, k: _render(tokenizer, task, rpo.prepare(it["generic"], it["history"][:k])))
            data = _within_prompt_limit(data, cfg.train.max_prompt_chars, name)
            reward = personalization_reward(lake)
            run = run_grpo(base, [{k: v for k, v in r.items() if k != "k"} for r in data], reward, cfg, tmp,
                           parent_folder, shuffle=False)
            snapshot = _snapshot(lake, "silver.user_histories", "bronze.reviews")
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    r_first, r_last = run.first_last("reward")
    l_first, l_last = run.first_last("loss")
    png = curve_png(run, tmp / "curve.png", f"{name} {method} {version}")
    meta = {"task": reg_task, "method": method, "base_model": base, "parent_adapter": str(parent_folder) if parent_folder else None,
            "config": cfg.model_dump(), "data_snapshot": json.loads(snapshot), "examples": len(data),
            "metrics": {"reward_first10": r_first, "reward_last10": r_last, "loss_first10": l_first, "loss_last10": l_last,
                        "seconds": run.seconds, "dpo_pairs": pairs},
            "reward": getattr(reward, "__name__", None), "judge_prompt_version": getattr(reward, "prompt_version", None),
            "log": run.steps}
    folder = registry.publish(tmp, version, meta, status)
    adapter = registry.tag(folder)  # what generated rows will record, so runs join to them
    row = {"run_id": f"{reg_task}/{adapter}", "task": reg_task, "method": method, "adapter_version": adapter,
           "parent_adapter": registry.tag(parent_folder) if parent_folder else None, "base_model": Path(base).name,
           "examples": len(data), "steps": int(max([s["step"] for s in run.steps], default=cfg.train.max_steps)),
           "seconds": run.seconds, "reward_first10": r_first, "reward_last10": r_last, "loss_first10": l_first,
           "loss_last10": l_last, "reward_share": (reward.stats.seconds / run.seconds) if reward and run.seconds else None,
           "eval_metric": None, "eval_value": None, "baseline_value": None, "promoted": None,
           "curve_png": str(folder / "curve.png") if png else None, "data_snapshot": snapshot, "ds": ds}
    record_run(lake, row)
    return TrainReport(name, method, folder, row)


def record_run(lake: Lake, row: dict[str, Any]) -> None:
    from jobs.lake.lake import spark_schema

    df = pd.DataFrame([row], columns=T.EVAL_TRAINING_RUNS.schema.names)
    lake.merge(T.EVAL_TRAINING_RUNS, lake.spark.createDataFrame(df, spark_schema(T.EVAL_TRAINING_RUNS.schema)))


# ------------------------------------------------------------------ weekly: evaluate and promote
def heldout_reward(lake: Lake, adapter: Path | None, n: int) -> tuple[float, int]:
    """Mean ReLSum reward of greedy summaries on prompts of the ranker's held-out queries."""
    from generator.backends import load_backend
    from generator.tasks import relsum
    from generator.tasks.base import run_task
    from training import registry

    rows = relsum_rows(lake, _tokenizer(lake), n, heldout=True)
    g = lake.cfg.generation
    backend = load_backend(g.backend, _base_model(lake), "eval", str(adapter) if adapter else None,
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
    root, task = lake.cfg.adapters_dir, REGISTRY_TASK[name]
    candidate = registry.newest(root, task, "candidate")
    if candidate is None:
        raise FileNotFoundError(f"no candidate {task} adapter to evaluate; the train step registers one")
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

    root, task = lake.cfg.adapters_dir, REGISTRY_TASK[name]
    candidate = registry.newest(root, task, "candidate")
    if candidate is None:
        raise FileNotFoundError(f"no candidate {task} adapter to promote")
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
        raise FileNotFoundError(f"no training run {run_id} in eval.training_runs")
    row = match.iloc[0].to_dict()
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
