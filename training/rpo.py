"""The RPO curriculum (seed 4): after SFT on the teacher's rewriting trajectories, RL where the
number of retrieved history items k rises from `curriculum_start` to `curriculum_end` over the
run. The prompts are laid out in step order (step s uses k(s)) and GRPO reads them unshuffled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def k_at(step: int, steps: int, start: int, end: int) -> int:
    """k(e): linear from `start` at step 0 to `end` at the last step."""
    if steps <= 1:
        return end
    return round(start + (end - start) * step / (steps - 1))


def curriculum_rows(items: list[dict[str, Any]], steps: int, per_step: int, start: int, end: int,
                    render: Callable[[dict[str, Any], int], str]) -> list[dict[str, Any]]:
    """`items`: {"target": the user's own text, ...}; `render(item, k)` -> the prompt with k history
    items. Returns steps * per_step rows, step s built with k(s) (items cycle if there are few)."""
    if not items:
        raise ValueError("the RPO curriculum needs at least one (generic text, history, target) item")
    rows = []
    for s in range(steps):
        k = k_at(s, steps, start, end)
        for j in range(per_step):
            item = items[(s * per_step + j) % len(items)]
            rows.append({"prompt": render(item, k), "target": item["target"], "k": k})
    return rows
