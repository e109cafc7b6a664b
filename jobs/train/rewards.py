"""Rewards and judges built from the lake's models: the frozen ONNX ranker (ReLSum),
MiniLM similarity to the user's own review (RPO), the RLAIF judge (SUMFORU)."""

from __future__ import annotations

from jobs.lake import Lake
from jobs.train.datasets import base_model


def relsum_reward(lake: Lake):
    from jobs.ranking import ranker_folder
    from ranker.scorer import OnnxScorer
    from training.rewards import RelsumReward

    s = lake.cfg.ranker.scorer
    scorer = OnnxScorer.configured(ranker_folder(lake), s)
    return RelsumReward(scorer.score, lake.cfg.training.train.length_penalty)


def personalization_reward(lake: Lake):
    from generator.models import resolve
    from generator.retrieval import embed
    from training.rewards import PersonalizationReward

    path = resolve(lake.cfg.models.encoder, lake.cfg.cache_dir)
    return PersonalizationReward(lambda texts: embed(texts, path))


def judge_backend(lake: Lake):
    from generator.models import resolve
    from training.teacher import load_teacher, parse_teacher

    cfg = lake.cfg
    spec = parse_teacher(cfg.training.judge, base_model(lake), lambda n: resolve(n, cfg.cache_dir))
    return load_teacher(spec, cfg.training.teacher_api_key_env, batch_size=cfg.generation.batch_size,
                        threads=cfg.generation.threads, dtype=cfg.generation.dtype)
