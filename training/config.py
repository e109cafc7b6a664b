"""Typed configuration of LLM training, documented field by field (after TRL's `*_config.py`).

Embedded in `jobs.config.PrecisConfig` under `training:`; plain pydantic, usable without Precis.
The defaults are sized for a CPU smoke run on SmolLM2-135M; a GPU run raises steps and batch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(_Strict):
    r: int = Field(default=8, ge=1, description="LoRA rank.")
    alpha: int = Field(default=16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: tuple[str, ...] = Field(
        default=("q_proj", "k_proj", "v_proj", "o_proj"), description="Linear layers that get adapters (Llama names)."
    )


class TrainSettings(_Strict):
    max_steps: int = Field(default=8, ge=1, description="Optimisation steps of one run.")
    learning_rate: float = Field(default=2e-4, gt=0, description="AdamW peak learning rate (LoRA parameters only).")
    batch_size: int = Field(default=4, ge=1, description="Prompts (SFT/DPO: examples) per optimisation step.")
    grad_accum: int = Field(default=1, ge=1, description="Gradient accumulation steps.")
    seed: int = Field(default=13, description="Seeds data order, sampling and LoRA initialisation.")
    max_examples: int = Field(default=256, ge=1, description="Training inputs drawn from the tables, at most.")
    max_prompt_chars: int = Field(
        default=6000, ge=100,
        description="Training prompts longer than this (characters of the rendered chat prompt) are dropped, "
                    "with a log line; bounds memory and step time.",
    )
    # generation during RL
    num_generations: int = Field(default=4, ge=2, description="GRPO group size: completions sampled per prompt.")
    max_completion_length: int = Field(default=48, ge=4, description="Tokens generated per completion.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature of RL rollouts.")
    beta: float = Field(default=0.0, ge=0, description="GRPO KL coefficient against the reference (0: no reference model).")
    length_penalty: float = Field(
        default=0.0, ge=0,
        description="ReLSum: reward minus this times the share of words over the summary's word cap.",
    )
    rlaif_agreement: float = Field(
        default=0.5, ge=0, le=1,
        description="SUMFORU RLAIF: weight of the agreement term where the persona-holder rated the product (train "
                    "reviews): reward = (1 - w) x judge + w x (1 - |suitability - 2 x stars| / 9). Rows without a "
                    "rating get the judge's reward alone.",
    )
    # DPO
    dpo_beta: float = Field(default=0.1, gt=0, description="DPO temperature of the implicit reward.")
    dpo_candidates: int = Field(default=4, ge=2, description="Completions per prompt scored to build one (chosen, rejected) pair.")
    # best-of-N (ReLSum)
    best_of_n: int = Field(default=8, ge=2, description="Best-of-N: summaries sampled per product, the best kept for SFT.")
    min_support: float = Field(
        default=0.8, ge=0, le=1,
        description="Best-of-N: a candidate is kept only when at least this share of its words (3+ letters, or "
                    "numbers) occurs in the product's own title or description (generator.tasks.relsum.support): the "
                    "ranker's reward alone does not see an invented attribute.",
    )
    max_title_share: float = Field(
        default=0.5, ge=0, le=1,
        description="Best-of-N: a candidate more than this share of whose words are the title's restates the title "
                    "(generator.tasks.relsum.title_share) and is not kept: the ranker's reward favours title terms, and "
                    "without this rule 62% of a best-of-N student's summaries were the title again.",
    )
    # RPO curriculum
    curriculum_start: int = Field(default=2, ge=1, description="RPO: retrieved history items at the first step.")
    curriculum_end: int = Field(default=6, ge=1, description="RPO: retrieved history items at the last step (rises linearly).")
    # bookkeeping
    logging_steps: int = Field(default=1, ge=1, description="Log (and record on the reward curve) every N steps.")
    report_to: Literal["none", "tensorboard", "mlflow"] = Field(
        default="none", description="trl/transformers reporting integration, written under the run folder."
    )
    use_cpu: bool | None = Field(default=None, description="Force CPU; default: CPU unless CUDA is available.")
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass to save memory (trl's own default is True). Off: "
                    "a small LoRA policy fits easily, and recomputation costs about a third more backward time.",
    )
    bf16: bool | None = Field(
        default=None,
        description="bf16 autocast. Default: on a GPU, and on a CPU with native bf16 instructions (AVX512-BF16 or "
                    "AMX), where it halves a step's forward and backward time (benchmarks/train_step.py).",
    )
    checkpoint_steps: int | None = Field(
        default=None, ge=1,
        description="Save a resumable checkpoint (adapter, optimiser, scheduler, RNG) every N steps under the run "
                    "folder; a re-run into the same folder resumes from the newest one. None: no checkpoints.",
    )
    max_seconds: float | None = Field(
        default=None, gt=0,
        description="Stop after this much wall time, saving a checkpoint first, so that a run longer than one "
                    "command's limit (a lent GPU's 10 minutes) continues in the next. Needs checkpoint_steps.",
    )

    @model_validator(mode="after")
    def _deadline_needs_checkpoints(self) -> TrainSettings:
        if self.max_seconds is not None and self.checkpoint_steps is None:
            raise ValueError("training.train.max_seconds stops a run part-way; set training.train.checkpoint_steps "
                             "too, or the stopped run could not be resumed")
        return self


class TrainingConfig(_Strict):
    lora: LoraSettings = Field(default_factory=LoraSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    teacher: str = Field(
        default="self",
        description="Who labels SFT data: `self` (the generator model), a model name or folder from the model "
        "cache (a larger local model), `vllm:<model>`, or `http://host/v1|<model>` for an OpenAI-compatible "
        "endpoint whose key is read from the environment variable named by `teacher_api_key_env`.",
    )
    teacher_api_key_env: str = Field(default="PRECIS_TEACHER_API_KEY", description="Env var that holds the endpoint's key; never logged.")
    judge: str = Field(default="self", description="RLAIF judge model, named like `teacher`.")

    def public_dump(self) -> dict:
        """The settings as an adapter.json records them: an endpoint's credentials hidden."""
        from generator.safety import public_url

        out = self.model_dump()
        for key in ("teacher", "judge"):
            url, sep, model = out[key].partition("|")
            out[key] = public_url(url) + sep + model
        return out
    adapters_dir: str | None = Field(default=None, description="Adapter registry; default <lake.root>/_artifacts/adapters.")
    eval_examples: int = Field(default=16, ge=1, description="Validation rows (ReLSum pairs, EXP3RT and SUMFORU users) a candidate adapter is judged on before promotion (weekly DAG).")
    min_improvement: float = Field(
        default=0.0, description="Weekly DAG: promote a new adapter only if its eval metric beats the current one by more than this.")
