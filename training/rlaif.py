"""RLAIF for SUMFORU (seed 2): GRPO on persona-aware summaries, rewarded by an AI judge (a
generator backend with a versioned judge prompt) for persona alignment, consistency with the
reviews and grounding, and, where the persona-holder rated the product, for a suitability that
agrees with that rating (`training.train.rlaif_agreement`). The reward itself is
`training.rewards.JudgeReward`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.common import RunLog
from training.config import TrainingConfig
from training.grpo import run_grpo
from training.rewards import JudgeReward


def run_rlaif(base_model: str, rows: list[dict[str, Any]], judge, cfg: TrainingConfig, out: Path,
              parent_adapter: str | Path | None = None) -> tuple[RunLog, JudgeReward]:
    """`rows`: {"prompt", "persona", "reviews", "actual_rating"} (the rating NaN where the
    persona-holder did not rate the product); `judge`: a backend with `score`."""
    reward = JudgeReward(judge, cfg.train.rlaif_agreement)
    return run_grpo(base_model, rows, reward, cfg, out, parent_adapter), reward
