"""SFT: LoRA fine-tuning on the teacher's outputs with trl's SFTTrainer (prompt-completion data,
loss on the completion only)."""

from __future__ import annotations

from pathlib import Path

from training.common import RunLog, load_policy, step_logger, train, trl_args
from training.config import TrainingConfig


def run_sft(base_model: str, examples: list[dict[str, str]], cfg: TrainingConfig, out: Path,
            parent_adapter: str | Path | None = None) -> RunLog:
    """`examples`: {"prompt": rendered chat prompt, "completion": target text ending in EOS}."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if not examples:
        raise ValueError("SFT needs at least one (prompt, completion) example; label some with the teacher first")
    model, tokenizer, peft_config = load_policy(base_model, parent_adapter, cfg)
    args = SFTConfig(**trl_args(cfg, out), per_device_train_batch_size=cfg.train.batch_size,
                     completion_only_loss=True, max_length=1024, packing=False, dataset_text_field=None)
    run = RunLog()
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples), processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[step_logger(run, cfg.train.max_seconds)])
    return train(trainer, run, out, tokenizer)
