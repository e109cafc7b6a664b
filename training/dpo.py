"""DPO for ReLSum: preference pairs built from the same reward as GRPO. For each prompt the policy
samples `dpo_candidates` completions; the ranker reward picks the best (chosen) and the
worst (rejected); prompts whose candidates tie are dropped. Then trl's DPOTrainer with LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.common import RunLog, load_policy, sample, step_logger, train, trl_args
from training.config import TrainingConfig


def preference_pairs(model, tokenizer, rows: list[dict[str, Any]], reward, cfg: TrainingConfig) -> list[dict[str, str]]:
    t = cfg.train
    candidates = sample(model, tokenizer, [r["prompt"] for r in rows], t.dpo_candidates, t.max_completion_length,
                        t.temperature, t.seed)
    pairs = []
    for row, cands in zip(rows, candidates):
        cols = {k: [v] * len(cands) for k, v in row.items() if k != "prompt"}
        scores = reward([row["prompt"]] * len(cands), cands, **cols)
        best = max(range(len(cands)), key=scores.__getitem__)
        worst = min(range(len(cands)), key=scores.__getitem__)
        if scores[best] > scores[worst] and cands[best].strip():
            eos = tokenizer.eos_token
            pairs.append({"prompt": row["prompt"], "chosen": cands[best] + eos, "rejected": cands[worst] + eos,
                          "margin": scores[best] - scores[worst]})
    return pairs


def run_dpo(base_model: str, rows: list[dict[str, Any]], reward, cfg: TrainingConfig, out: Path,
            parent_adapter: str | Path | None = None) -> tuple[RunLog, int]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model, tokenizer, peft_config = load_policy(base_model, parent_adapter, cfg)
    pairs = preference_pairs(model, tokenizer, rows, reward, cfg)
    if not pairs:
        raise ValueError("every prompt's candidates tied on the reward: no preference pairs to train on")
    model.train()
    tokenizer.padding_side = "right"
    args = DPOConfig(**trl_args(cfg, out), per_device_train_batch_size=min(cfg.train.batch_size, len(pairs)),
                     beta=cfg.train.dpo_beta, max_length=1024)
    run = RunLog()
    data = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[step_logger(run, cfg.train.max_seconds)])
    return train(trainer, run, out, tokenizer), len(pairs)
