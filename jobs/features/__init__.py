"""The features: one module per seed (`relsum`, `sumforu`, `exp3rt`, `rpo`), each declaring its
generation jobs, their inputs, tables, content rules and ground-truth metrics (`spec.FeatureJob`).

This registry is what the rest of Precis reads: `JOBS` (key -> FeatureJob), `ORDER` (the
generation steps in an order where every job runs after the jobs whose outputs it reads), and
`generate(lake, key, ds)`. The quality gates, the evaluation, publish, the DAG and the tests all
take their lists from here. Adding a feature touches `generator/tasks/<x>.py`,
`jobs/lake/tables.py` and one seed module.

Cost is bounded by configuration (`generation:`): with U = n_users, P = n_products (golden),
R = relsum_max_products and pairs = U (held-out pairs) or U*P (`top_users_x_golden`), one run
generates at most R summaries + U personas + pairs persona summaries + (train reviews of the U
users + products in pairs * item_reviews) preferences + U + products-in-pairs profiles + pairs
ratings + pairs rewrites, and a re-run generates only rows whose inputs, model, adapter or prompt
changed.
"""

from __future__ import annotations

from jobs.features import exp3rt, relsum, rpo, sumforu
from jobs.features.selection import filter_reviews, latest
from jobs.features.spec import FeatureJob, Seed
from jobs.generation import BackendSettings, GenerationReport, run_generation
from jobs.lake import Lake

SEEDS: tuple[Seed, ...] = (relsum.SEED, sumforu.SEED, exp3rt.SEED, rpo.SEED)
JOBS: dict[str, FeatureJob] = {job.key: job for seed in SEEDS for job in seed.jobs}


def _order(jobs: dict[str, FeatureJob]) -> tuple[str, ...]:
    """Declaration order, except that a job always follows the jobs it reads (a stable topological
    sort); an unknown or circular dependency is an error at import."""
    done: list[str] = []
    visiting: set[str] = set()

    def visit(key: str, path: tuple[str, ...]) -> None:
        if key in done:
            return
        if key not in jobs:
            raise ValueError(f"feature job {path[-1]} reads unknown job '{key}'")
        if key in visiting:
            raise ValueError(f"feature jobs read each other in a circle: {' -> '.join((*path, key))}")
        visiting.add(key)
        for dep in jobs[key].reads:
            visit(dep, (*path, key))
        visiting.discard(key)
        done.append(key)

    for key in jobs:
        visit(key, ())
    return tuple(done)


ORDER: tuple[str, ...] = _order(JOBS)


def backend_settings(lake: Lake, key: str) -> BackendSettings:
    """The generator of one job: the configured model with the task's adapter from the registry
    (`generation.adapters[<task>]`: latest, base or a pinned version). Rows record the model by
    its Hugging Face id (HuggingFaceTB/SmolLM2-135M-Instruct), not by the local cache alias."""
    from generator.models import hub_id, resolve
    from training import registry

    g = lake.cfg.generation
    name = g.model or lake.cfg.models.generator
    task = JOBS[key].name
    folder = registry.select(lake.cfg.adapters_dir, task, g.adapters.get(task, "latest"))
    return BackendSettings(g.backend, resolve(name, lake.cfg.cache_dir), hub_id(name), str(folder) if folder else None,
                           registry.tag(folder), g.batch_size, g.threads, g.dtype, registry.scope(folder),
                           g.max_new_tokens)


def current_prompt_version(lake: Lake, key: str) -> str:
    """The prompt version a job's rows get under this configuration (its task, capped by
    `generation.max_new_tokens` when that is set)."""
    return JOBS[key].generation.make_task().capped(lake.cfg.generation.max_new_tokens).prompt_version


def current_rows(lake: Lake, key: str):
    """Rows of a job's table made by its configured model, adapter and current prompt."""
    from pyspark.sql import functions as F

    job = JOBS[key]
    settings = backend_settings(lake, key)
    return (lake.read(job.table).where(F.col("model_id") == settings.model_id)
            .where(F.col("adapter_version") == settings.adapter_version)
            .where(F.col("prompt_version") == current_prompt_version(lake, key)))


def build_inputs(lake: Lake, key: str):
    if key not in JOBS:
        raise KeyError(f"unknown generation job '{key}'; known: {', '.join(JOBS)}")
    return JOBS[key].build_inputs(lake)


def generate(lake: Lake, key: str, ds: str) -> GenerationReport:
    g = lake.cfg.generation
    return run_generation(lake, JOBS[key].generation, build_inputs(lake, key), ds, backend_settings(lake, key),
                          g.chunk_size, g.max_attempts)


__all__ = ["JOBS", "ORDER", "SEEDS", "FeatureJob", "backend_settings", "build_inputs", "current_prompt_version", "current_rows",
           "filter_reviews", "generate", "latest"]
