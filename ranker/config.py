"""Typed configuration of the ranker: training and scoring, documented field by field.

These models are embedded in `jobs.config.PrecisConfig` under `ranker:`, so a YAML typo is an error
that names the key, but they are plain pydantic and usable without the rest of Precis.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RankerTrainConfig(_Strict):
    architecture: Literal["bi-encoder", "cross-encoder"] = Field(
        default="bi-encoder",
        description="bi-encoder: query and text embedded apart, r = sigmoid(scale * cos + bias), starting from "
        "the base model's own similarity (the default: it beats BM25 on held-out queries); cross-encoder: "
        "read together with a fresh head (see ranker/architecture.py).",
    )
    max_length: int = Field(
        default=128, ge=16,
        description="Tokens of query + product text (cross-encoder) or of each side (bi-encoder); longer text is cut.",
    )
    batch_size: int = Field(default=32, ge=1, description="Pairs per optimisation step.")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the training pairs (fractions allowed).")
    max_steps: int = Field(default=-1, description="Stop after this many steps (-1: epochs decide; 0: no training, an untrained head).")
    learning_rate: float = Field(default=5e-5, gt=0, description="AdamW peak learning rate.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    head_learning_rate: float = Field(
        default=1e-2, gt=0, description="bi-encoder: AdamW learning rate of the head's scale and bias (no decay)."
    )
    calibration_pairs: int = Field(
        default=1024, ge=0,
        description="bi-encoder: training pairs (seeded sample) the head is fitted on by logistic regression "
        "before training; 0 keeps scale 1, bias 0.",
    )
    int8_calibration_pairs: int = Field(
        default=256, ge=0,
        description="Training pairs (seeded sample) the int8 graph is calibrated on (ranker/quantize.py); "
        "0: plain dynamic int8, uncalibrated.",
    )
    int8_tolerance: float = Field(
        default=0.005, gt=0, le=1,
        description="Largest mean |int8 - fp32| score on the calibration pairs; the most sensitive nodes stay "
        "fp32 until it holds (all-int8 on the demo's ranker: 0.009, max 0.066 on held-out pairs).",
    )
    warmup_ratio: float = Field(default=0.1, ge=0, le=1, description="Share of steps with a linear warm-up.")
    seed: int = Field(default=13, description="Seeds the head's initialisation, the split and the batch order.")
    val_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of *queries* held out for validation.")
    variants: tuple[Literal["title", "title_desc", "title_summary"], ...] = Field(
        default=("title", "title_desc", "title_summary"),
        description="Product texts trained on: title alone, title + description, title + a short "
        "summary-like text (the description's first `summary_words` words).",
    )
    variants_per_pair: int = Field(
        default=1, ge=1, le=3, description="Variants drawn (seeded) per judged pair and epoch; 3 uses all."
    )
    summary_words: int = Field(default=30, ge=5, description="Length of the summary-like training text.")
    freeze_layers: int = Field(
        default=0, ge=0, description="Lower transformer layers (and embeddings) kept frozen to save CPU time."
    )
    threads: int = Field(default=0, ge=0, description="torch threads (0: all cores).")


class ScorerConfig(_Strict):
    model_file: Literal["model.onnx", "model.opt.onnx", "model.int8.onnx"] = Field(
        default="model.opt.onnx",
        description="Which exported graph scores offline (rewards, description_delta, evaluation): plain fp32, "
        "graph-optimised fp32, or int8 calibrated against fp32 (ranker/quantize.py).",
    )
    serving_model_file: Literal["model.onnx", "model.opt.onnx", "model.int8.onnx"] = Field(
        default="model.int8.onnx",
        description="Which graph the online path (`precis serve`, `precis rerank`) scores with: the calibrated int8 "
        "by default, within `ranker.train.int8_tolerance` of fp32 on training pairs and about twice as fast on CPU.",
    )
    batch_size: int = Field(default=64, ge=1, description="Pairs per onnxruntime call.")
    max_length: int = Field(default=128, ge=16, description="Tokens of query + text at scoring time (as trained).")
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads (0: onnxruntime decides).")
    provider: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when onnxruntime-gpu and a GPU are present, else CPU."
    )
