"""What every training method shares: the model with its LoRA adapter, trl arguments from our
config, the per-step log (loss, reward) and saving the adapter into a registry staging folder."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.config import TrainingConfig

log = logging.getLogger(__name__)


@dataclass
class RunLog:
    """Per-step metrics as trl logs them, and the wall time."""

    steps: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False  # training.train.max_seconds ran out before max_steps
    resumed_from: str | None = None  # the checkpoint this run continued

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(int(s["step"]), float(s[key])) for s in self.steps if key in s]

    def first_last(self, key: str, n: int = 10) -> tuple[float | None, float | None]:
        values = [v for _, v in self.series(key)]
        if not values:
            return None, None
        k = min(n, max(1, len(values) // 2))
        return sum(values[:k]) / k, sum(values[-k:]) / k


def use_cpu(cfg: TrainingConfig) -> bool:
    import torch

    return cfg.train.use_cpu if cfg.train.use_cpu is not None else not torch.cuda.is_available()


def use_bf16(cfg: TrainingConfig) -> bool:
    import torch

    if cfg.train.bf16 is not None:
        return cfg.train.bf16
    if not use_cpu(cfg):
        return True
    cpu = getattr(torch, "cpu", None)
    return bool(cpu and (getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                         or getattr(cpu, "_is_amx_tile_supported", lambda: False)()))


_TRACKERS = {"tensorboard": ("tensorboard", "pip install 'precis[tracking]' (TensorBoard)"),
             "mlflow": ("mlflow", "pip install mlflow")}


def report_to(cfg: TrainingConfig) -> list[str]:
    """trl's `report_to`, checked up front: a missing package would otherwise fail after the model loads."""
    import importlib.util

    if cfg.train.report_to == "none":
        return []
    module, fix = _TRACKERS[cfg.train.report_to]
    if importlib.util.find_spec(module) is None:
        raise RuntimeError(f"training.train.report_to={cfg.train.report_to} needs the {module} package: {fix}")
    return [cfg.train.report_to]


def trl_args(cfg: TrainingConfig, out: Path) -> dict[str, Any]:
    """Arguments every trl config takes, from ours. On CPU trl needs use_cpu=True; bf16 there is
    autocast over fp32 weights, only where the CPU has bf16 instructions (else it is slower)."""
    t = cfg.train
    cpu = use_cpu(cfg)
    return {
        "output_dir": str(out / "trainer"),
        "max_steps": t.max_steps,
        "learning_rate": t.learning_rate,
        "gradient_accumulation_steps": t.grad_accum,
        "seed": t.seed,
        "logging_steps": t.logging_steps,
        "report_to": report_to(cfg),
        "save_strategy": "steps" if t.checkpoint_steps else "no",
        **({"save_steps": t.checkpoint_steps} if t.checkpoint_steps else {}),
        "use_cpu": cpu,
        "bf16": use_bf16(cfg),
        "gradient_checkpointing": t.gradient_checkpointing,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
    }


def lora_config(cfg: TrainingConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")


def load_policy(base_model: str, parent_adapter: str | Path | None, cfg: TrainingConfig):
    """(model, tokenizer, peft_config): a fresh LoRA on the base model, or the parent adapter made
    trainable again (then peft_config is None: the adapter is already on the model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(cfg.train.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    if parent_adapter:
        from generator.backends import load_adapter

        return load_adapter(model, parent_adapter, trainable=True), tokenizer, None
    return model, tokenizer, lora_config(cfg)


def step_logger(run: RunLog, max_seconds: float | None = None):
    """Records trl's log lines into `run`; with `max_seconds`, stops training once that much wall
    time has passed since the first step began, saving a checkpoint so a re-run can resume."""
    from transformers import TrainerCallback

    class _Log(TrainerCallback):
        started: float | None = None

        def on_step_begin(self, args, state, control, **kwargs):
            if self.started is None:
                self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if max_seconds is not None and self.started is not None and time.perf_counter() - self.started > max_seconds:
                log.info("time budget of %.0f s reached at step %d of %d: checkpointing and stopping", max_seconds,
                         state.global_step, state.max_steps)
                run.stopped_early = True
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "train_runtime" not in logs:
                run.steps.append({"step": state.global_step, **{k: float(v) for k, v in logs.items()
                                                                 if isinstance(v, (int, float))}})

    return _Log()


def last_checkpoint(out: Path) -> str | None:
    """The newest trainer checkpoint under a run folder, if a previous run left one."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = out / "trainer"
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def train(trainer, run: RunLog, out: Path, tokenizer) -> RunLog:
    """Run a trl trainer, resuming from the newest checkpoint under `out` when there is one, and
    save the adapter (and tokenizer) into `out`."""
    started = time.perf_counter()
    resume = last_checkpoint(out)
    if resume:
        log.info("resuming from %s", resume)
        run.resumed_from = resume
    trainer.train(resume_from_checkpoint=resume)
    run.seconds = time.perf_counter() - started
    trainer.model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return run


def sample(model, tokenizer, prompts: list[str], n: int, max_new_tokens: int, temperature: float, seed: int,
           max_batch: int = 32) -> list[list[str]]:
    """`n` sampled completions per prompt text (DPO pairs, best-of-N), several prompts per
    generate call (left-padded) so that a call holds up to `max_batch` sequences."""
    import torch

    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    per_call = max(1, max_batch // n)
    out = []
    model.eval()
    for i in range(0, len(prompts), per_call):
        chunk = [p for p in prompts[i:i + per_call] for _ in range(n)]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            gen = model.generate(**enc, do_sample=True, temperature=temperature, top_p=0.95,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        out.extend(texts[j:j + n] for j in range(0, len(texts), n))
        log.info("sampled %d of %d prompts x %d", min(i + per_call, len(prompts)), len(prompts), n)
    return out
