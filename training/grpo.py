"""GRPO with trl's GRPOTrainer and LoRA: ReLSum against the frozen ONNX ranker (seed 1),
and the generic loop that RLAIF and the RPO curriculum reuse with their own rewards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.common import RunLog, load_policy, step_logger, train, trl_args
from training.config import TrainingConfig


def run_grpo(base_model: str, rows: list[dict[str, Any]], reward, cfg: TrainingConfig, out: Path,
             parent_adapter: str | Path | None = None, shuffle: bool = True) -> RunLog:
    """`rows`: {"prompt": rendered chat prompt, ...columns the reward reads}. Each step samples
    `num_generations` completions for `batch_size` prompts and scores them in one reward call.
    `shuffle=False` keeps the rows' order (the RPO curriculum orders them by step)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    if not rows:
        raise ValueError("GRPO needs at least one prompt")
    t = cfg.train
    model, tokenizer, peft_config = load_policy(base_model, parent_adapter, cfg)
    tokenizer.padding_side = "left"
    args = GRPOConfig(
        **trl_args(cfg, out),
        per_device_train_batch_size=t.batch_size * t.num_generations,
        num_generations=t.num_generations,
        max_completion_length=t.max_completion_length,
        temperature=t.temperature,
        beta=t.beta,
        shuffle_dataset=shuffle,
        log_completions=False,
    )
    run = RunLog()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, peft_config=peft_config, callbacks=[step_logger(run, cfg.train.max_seconds)])
    return train(trainer, run, out, tokenizer)
