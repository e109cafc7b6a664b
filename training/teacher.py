"""Teacher labelling: outputs of a stronger generator for a task's inputs, validated by the task's
own parser, as SFT targets. The teacher is any backend: `self` (the generator model), a model name
or folder from the model cache (a larger local model), `vllm:<model>` (GPU), or
`http(s)://host/v1|<model>` (an OpenAI-compatible endpoint; its key comes from an env var)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.safety import public_url
from generator.tasks.base import Task, run_task


@dataclass(frozen=True)
class TeacherSpec:
    kind: str  # transformers | vllm | http
    model: str  # model path, or the endpoint's model name
    url: str | None = None

    @property
    def teacher_id(self) -> str:
        """Recorded with every stored output and logged: an endpoint's credentials never appear."""
        if self.kind == "http":
            return f"http:{self.model}@{public_url(self.url or '')}"
        return f"{self.kind}:{Path(self.model).name}"


def parse_teacher(spec: str, default_model: str, resolve=lambda name: name) -> TeacherSpec:
    if spec in ("self", ""):
        return TeacherSpec("transformers", default_model)
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("|")
        if not model:
            raise ValueError(f"teacher endpoint '{spec}' needs its model name: http://host/v1|MODEL")
        return TeacherSpec("http", model, url)
    if spec.startswith("vllm:"):
        return TeacherSpec("vllm", resolve(spec[len("vllm:"):]))
    return TeacherSpec("transformers", resolve(spec))


def load_teacher(spec: TeacherSpec, api_key_env: str, **options):
    from generator.backends import OpenAICompatBackend, load_backend

    if spec.kind == "http":
        return OpenAICompatBackend(spec.url, spec.model, api_key_env)
    return load_backend(spec.kind, spec.model, spec.teacher_id, **(options if spec.kind == "transformers" else {}))


def label(backend, task: Task, inputs: Sequence[dict[str, Any]], attempts: int = 2) -> list[dict[str, Any]]:
    """One row per input the teacher answered validly: the raw output (the SFT target) and the parsed value."""
    out = []
    for inp, result in zip(inputs, run_task(backend, task, inputs, attempts)):
        if result.status == "ok":
            # run_task keeps the model's own text; SFT trains on what follows any reply prefix
            out.append({"inputs": inp, "output_text": result.raw, "value": result.value})
    return out
