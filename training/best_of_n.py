"""Best-of-N rejection sampling, then SFT on what was kept (ReLSum's CPU-sized alternative to GRPO).

For every distinct prompt (one product) the policy samples `best_of_n` completions. `keep(row,
text)` turns a completion into the text the student is trained on, or raises `InvalidOutput` with
the reason it is not worth keeping (it does not parse, it is not supported by the product's text).
The kept candidates are scored by the reward over *every* row of that prompt (a product judged
under several queries: their mean), and the best one is kept when it beats the `baseline` text (for
ReLSum the empty summary, the title alone) under the same reward: a summary that does not help the
ranker teaches nothing. Then SFT on the kept (prompt, completion) pairs, from the same starting
adapter. `Selection` counts what was kept and why the rest was not, for the manifest.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from precis.errors import InvalidOutput
from training.common import RunLog, load_policy, sample
from training.config import TrainingConfig

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """What best-of-N kept, and the reward it saw."""

    examples: list[dict[str, str]] = field(default_factory=list)  # {"prompt", "completion"} for SFT
    prompts: int = 0
    candidates: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> candidates not kept
    not_better: int = 0  # prompts whose best candidate did not beat the baseline text
    reward_best: list[float] = field(default_factory=list)  # the kept candidates' reward
    reward_baseline: list[float] = field(default_factory=list)  # the baseline's reward on the same prompts
    reward_all: list[float] = field(default_factory=list)  # every scored candidate's reward

    def metrics(self) -> dict[str, Any]:
        mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
        return {"prompts": self.prompts, "candidates": self.candidates, "kept": len(self.examples),
                "rejected": dict(self.rejected), "not_better_than_baseline": self.not_better,
                "reward_kept_mean": mean(self.reward_best), "reward_baseline_mean": mean(self.reward_baseline),
                "reward_candidates_mean": mean(self.reward_all)}


def _reason(exc: InvalidOutput) -> str:
    """The reason as a count key: numbers masked, so "52 words" and "60 words" count together."""
    return re.sub(r"\d+", "N", str(exc))[:80]


def by_prompt(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by prompt, in first-seen order: rows that share a prompt are one product."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["prompt"], []).append(row)
    return groups


def select_best(groups: dict[str, list[dict[str, Any]]], samples: list[list[str]], reward,
                keep: Callable[[dict[str, Any], str], str], baseline: str = "", eos: str = "") -> Selection:
    """`groups`: prompt -> its rows ({"prompt", ...the reward's columns}); `samples`: the candidate
    completions of each prompt, in the same order."""
    prompts = list(groups)
    if len(samples) != len(prompts):
        raise ValueError(f"{len(samples)} candidate lists for {len(prompts)} prompts")
    sel = Selection(prompts=len(prompts))

    def score(group: list[dict[str, Any]], texts: list[str]) -> np.ndarray:
        """Mean reward of each text over the group's rows, in one reward call."""
        cols = {k: [r[k] for r in group for _ in texts] for k in group[0] if k != "prompt"}
        flat = reward([g["prompt"] for g in group for _ in texts], [x for _ in group for x in texts], **cols)
        return np.asarray(flat, dtype=float).reshape(len(group), len(texts)).mean(axis=0)

    for prompt, candidates in zip(prompts, samples):
        group = groups[prompt]
        sel.candidates += len(candidates)
        kept: list[str] = []
        for text in candidates:
            try:
                kept.append(keep(group[0], text))
            except InvalidOutput as exc:
                sel.rejected[_reason(exc)] += 1
        if not kept:
            continue
        unique = list(dict.fromkeys(kept))
        scores = score(group, unique + [baseline])
        base = float(scores[-1])
        sel.reward_all.extend(scores[:-1].tolist())
        best = int(np.argmax(scores[:-1]))
        if scores[best] <= base:
            sel.not_better += 1
            continue
        sel.reward_best.append(float(scores[best]))
        sel.reward_baseline.append(base)
        sel.examples.append({"prompt": prompt, "completion": unique[best] + eos})
    log.info("best of N: %d prompts, %d candidates, kept %d (%d rejected by reason %s, %d no better than the "
             "baseline)", sel.prompts, sel.candidates, len(sel.examples), sum(sel.rejected.values()),
             dict(sel.rejected), sel.not_better)
    return sel


def run_best_of_n(base_model: str, rows: list[dict[str, Any]], reward, cfg: TrainingConfig, out: Path,
                  keep: Callable[[dict[str, Any], str], str], parent_adapter: str | Path | None = None,
                  baseline: str = "") -> tuple[RunLog, Selection]:
    from training.sft import run_sft

    t = cfg.train
    model, tokenizer, _ = load_policy(base_model, parent_adapter, cfg)
    groups = by_prompt(rows)
    samples = sample(model, tokenizer, list(groups), t.best_of_n, t.max_completion_length, t.temperature, t.seed)
    del model
    sel = select_best(groups, samples, reward, keep, baseline, tokenizer.eos_token)
    if not sel.examples:
        raise ValueError(f"best-of-{cfg.train.best_of_n} kept no candidate of {sel.prompts} prompts "
                         f"({dict(sel.rejected)} rejected, {sel.not_better} no better than the baseline): raise "
                         "training.train.best_of_n or training.train.max_examples")
    return run_sft(base_model, sel.examples, cfg, out, parent_adapter), sel
