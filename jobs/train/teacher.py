"""Teacher labelling for SFT: a stronger generator (or the model itself, `self`) answers a task's
training inputs; outputs that pass the task's own parser become `silver.teacher_outputs` rows, the
SFT targets. EXP3RT's rating rationales are labelled by `jobs.train.rationales` instead (the
teacher is given the observed rating)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from jobs.lake import Lake
from jobs.lake import tables as T
from jobs.train import datasets as D
from jobs.train.datasets import base_model, load_tokenizer, render

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherSet:
    """What the teacher labels for one task: its training inputs and the task it answers."""

    rows: Callable[[Lake, Any, int], list[dict[str, Any]]]  # (lake, tokenizer, limit) -> rows with "inputs"
    task_module: str  # generator.tasks.<x>
    task_factory: str  # the module's function that builds the Task

    def make_task(self):
        import importlib

        return getattr(importlib.import_module(self.task_module), self.task_factory)()


RELSUM = TeacherSet(D.relsum_rows, "generator.tasks.relsum", "task")
SUMFORU = TeacherSet(D.sumforu_rows, "generator.tasks.sumforu", "summary_task")
EXP3RT_PREFERENCES = TeacherSet(D.exp3rt_rows, "generator.tasks.exp3rt", "preferences_task")
RPO = TeacherSet(D.rpo_rows, "generator.tasks.rpo", "task")


def _spec(lake: Lake):
    from generator.models import resolve
    from training.teacher import parse_teacher

    return parse_teacher(lake.cfg.training.teacher, base_model(lake), lambda n: resolve(n, lake.cfg.cache_dir))


def teacher_id(lake: Lake) -> str:
    """What silver.teacher_outputs records as the configured teacher."""
    return _spec(lake).teacher_id


def configured_teacher(lake: Lake):
    """(teacher id, backend) of `training.teacher`."""
    from training.teacher import load_teacher

    cfg = lake.cfg
    spec = _spec(lake)
    return spec.teacher_id, load_teacher(spec, cfg.training.teacher_api_key_env, batch_size=cfg.generation.batch_size,
                                         threads=0, dtype=cfg.generation.dtype)


def store(lake: Lake, task, teacher_id: str, labelled: list[tuple[dict[str, Any], str]], ds: str) -> pd.DataFrame:
    """(inputs, SFT target) pairs of `task` -> silver.teacher_outputs (an existing row is kept).
    A target holding a contact detail or markup is dropped, never stored: it would be learnt."""
    from generator.safety import unsafe_reason
    from generator.tasks.base import input_hash
    from jobs.lake.lake import spark_schema

    kept = [(inputs, text) for inputs, text in labelled if unsafe_reason(text) is None]
    if len(kept) < len(labelled):
        log.warning("teacher %s: %d of %d %s targets dropped (contact details or markup)", teacher_id,
                    len(labelled) - len(kept), len(labelled), task.name)
    labelled = kept

    now = datetime.now(timezone.utc)
    out = pd.DataFrame([{"task": task.name, "input_hash": input_hash(inputs),
                         "inputs": json.dumps(inputs, sort_keys=True, default=str), "output_text": text,
                         "teacher_id": teacher_id, "prompt_version": task.prompt_version, "labelled_at": now, "ds": ds}
                        for inputs, text in labelled], columns=T.SILVER_TEACHER_OUTPUTS.schema.names)
    out = out.drop_duplicates(["task", "input_hash", "teacher_id", "prompt_version"])
    if len(out):
        lake.merge(T.SILVER_TEACHER_OUTPUTS, lake.spark.createDataFrame(out, spark_schema(T.SILVER_TEACHER_OUTPUTS.schema)),
                   when_matched="ignore")
    return out


def stored(lake: Lake, task, teacher: str) -> pd.DataFrame:
    """The stored outputs of `task`'s current prompt labelled by `teacher` (a teacher id)."""
    if not lake.exists(T.SILVER_TEACHER_OUTPUTS):
        return pd.DataFrame(columns=T.SILVER_TEACHER_OUTPUTS.schema.names)
    rows = lake.read_pandas(T.SILVER_TEACHER_OUTPUTS)
    return rows[(rows.task == task.name) & (rows.prompt_version == task.prompt_version) & (rows.teacher_id == teacher)]


def build_teacher_set(lake: Lake, teacher_set: TeacherSet, ds: str) -> pd.DataFrame:
    """Label the task's training inputs with the configured teacher -> silver.teacher_outputs."""
    from training.teacher import label

    rows = teacher_set.rows(lake, load_tokenizer(lake), lake.cfg.training.train.max_examples)
    teacher_id, teacher = configured_teacher(lake)
    task = teacher_set.make_task()
    labelled = label(teacher, task, [r["inputs"] for r in rows], lake.cfg.generation.max_attempts)
    out = store(lake, task, teacher_id, [(x["inputs"], x["output_text"]) for x in labelled], ds)
    log.info("teacher %s labelled %d of %d %s inputs", teacher_id, len(out), len(rows), task.name)
    return out


def sft_examples(lake: Lake, teacher_set: TeacherSet, ds: str) -> list[dict[str, str]]:
    """The teacher's stored outputs for the task's current prompt (labelled first when there are none)."""
    tokenizer = load_tokenizer(lake)
    task = teacher_set.make_task()
    teacher = stored(lake, task, teacher_id(lake))
    if teacher.empty:
        teacher = build_teacher_set(lake, teacher_set, ds)
    return [{"prompt": render(tokenizer, task, json.loads(t.inputs)), "completion": t.output_text + tokenizer.eos_token}
            for t in teacher.itertuples()]
