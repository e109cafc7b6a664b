"""`precis train TASK --method M`: a recipe (`jobs.train.recipes.RECIPES`) turns the lake's
training rows into an adapter, which is registered as a new version of its generation task, with a
manifest (base model, data snapshot, configuration, metrics, log) and a row in `eval.training_runs`.

    datasets.py    training inputs per task, from train rows only
    teacher.py     teacher labelling -> silver.teacher_outputs (SFT targets)
    rationales.py  EXP3RT: rating-conditioned rationales on users the evaluation never uses
    rewards.py     rewards and judges built from the lake's models
    recipes.py     RECIPES[(task, method)]
    validation.py  the metric a candidate adapter is judged on, on validation rows (weekly)
    promotion.py   WEEKLY: the tasks the weekly DAG trains; evaluate a candidate, promote it only if better
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from generator.models import hub_id
from jobs.lake import Lake
from jobs.train.datasets import base_model, snapshot
from jobs.train.promotion import WEEKLY, WeeklyTraining, evaluate_candidate, promote, record_run
from jobs.train.recipes import METHODS, RECIPES, TASKS, RecipeRun, adapter_task, recipe

log = logging.getLogger(__name__)

__all__ = ["METHODS", "RECIPES", "TASKS", "WEEKLY", "TrainReport", "WeeklyTraining", "adapter_task",
           "evaluate_candidate", "label", "promote", "recipe", "train_task"]


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


def label(lake: Lake, task: str, ds: str, method: str = "sft"):
    """`--teacher-only`: label the recipe's training set into silver.teacher_outputs, no training."""
    r = recipe(task, method)
    if r.label is None:
        raise ValueError(f"{task} {method} has no teacher-labelled training set")
    return r.label(lake, ds)


def train_task(lake: Lake, name: str, method: str, ds: str, max_steps: int | None = None,
               parent: str | None = "latest", status: str = "ready") -> TrainReport:
    from training import registry

    chosen = recipe(name, method)
    cfg = lake.cfg.training.model_copy(deep=True)
    if max_steps is not None:
        cfg.train.max_steps = max_steps
    base = base_model(lake)
    reg_task = chosen.adapter_task
    parent_folder = None
    if chosen.from_parent and parent != "base":
        parent_folder = registry.select(lake.cfg.adapters_dir, reg_task, parent or "latest")
    version, tmp = registry.staging(lake.cfg.adapters_dir, reg_task)
    try:
        result = chosen.run(RecipeRun(lake, cfg, base, tmp, parent_folder, ds))
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    run, reward = result.run, result.reward
    snap = snapshot(lake, *chosen.snapshot)
    r_first, r_last = run.first_last("reward")
    l_first, l_last = run.first_last("loss")
    png = curve_png(run, tmp / "curve.png", f"{name} {method} {version}")
    meta = {"task": reg_task, "method": method, "recipe": f"{name} {method}", "scope": chosen.scope,
            # portable: the registry name (what `resolve` loads on any machine) and its Hugging Face id
            "base_model": lake.cfg.generation.model or lake.cfg.models.generator, "base_model_hub_id": hub_id(base),
            "parent_adapter": str(parent_folder) if parent_folder else None,
            "config": cfg.public_dump(), "data_snapshot": json.loads(snap), "examples": result.examples,
            "metrics": {"reward_first10": r_first, "reward_last10": r_last, "loss_first10": l_first, "loss_last10": l_last,
                        "seconds": run.seconds, **result.metrics},
            "reward": getattr(reward, "__name__", None), "judge_prompt_version": getattr(reward, "prompt_version", None),
            "command": f"precis train {name} --method {method}" + (f" --max-steps {max_steps}" if max_steps else ""),
            "log": run.steps}
    folder = registry.publish(tmp, version, meta, status)
    adapter = registry.tag(folder)  # what generated rows will record, so runs join to them
    row = {"run_id": f"{reg_task}/{adapter}", "task": reg_task, "method": method, "adapter_version": adapter,
           "parent_adapter": registry.tag(parent_folder) if parent_folder else None, "base_model": Path(base).name,
           "examples": result.examples, "steps": int(max([s["step"] for s in run.steps], default=cfg.train.max_steps)),
           "seconds": run.seconds, "reward_first10": r_first, "reward_last10": r_last, "loss_first10": l_first,
           "loss_last10": l_last, "reward_share": (reward.stats.seconds / run.seconds) if reward and run.seconds else None,
           "eval_metric": None, "eval_value": None, "baseline_value": None, "promoted": None,
           "curve_png": str(folder / "curve.png") if png else None, "data_snapshot": snap, "ds": ds}
    record_run(lake, row)
    return TrainReport(name, method, folder, row)
