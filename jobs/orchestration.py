"""Airflow wiring shared by the DAG files and `precis run`.

`step_task` is the one factory every DAG task goes through. On the embedded default
(`spark.master: local[...]`) a task runs its step in the worker's own process (a PythonOperator,
so `precis run` keeps one Spark session for the whole DAG). When the configuration names a
cluster master it is a SparkSubmitOperator that runs `precis job STEP --date {{ ds }}` through
spark-submit. Either way the step is the same function in `jobs.pipeline`.

`run_dag` is `precis run`: it points Airflow at a SQLite metadata database in the state folder,
loads the real DAG files, runs one DAG run with `dag.test()` and reports each task's state.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from jobs.config import PrecisConfig, load_config
from precis.errors import UsageError

log = logging.getLogger(__name__)

DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"
NO_RETRY = ("gate_", "publish", "promote")  # a failed gate or a refused publish is not transient


# ------------------------------------------------------------------ task factory (used by dags/)
def dag_config() -> PrecisConfig:
    """The configuration the DAG files are parsed with: $PRECIS_CONFIG, else conf/local.yaml of the
    working directory, else the project's own (jobs.config.load_config)."""
    return load_config(None)


def default_args(cfg: PrecisConfig) -> dict:
    o = cfg.orchestration
    return {
        "owner": "precis",
        "retries": o.retries,
        "retry_delay": timedelta(seconds=o.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        # a skipped step (no ranker yet) does not block what follows; a failed one does
        "trigger_rule": "none_failed",
    }


def is_local(cfg: PrecisConfig) -> bool:
    return cfg.spark.master.startswith("local")


def step_task(step: str, cfg: PrecisConfig):
    """The Airflow task that runs `jobs.pipeline.STEPS[step]` for {{ ds }}."""
    retries = 0 if step.startswith(NO_RETRY) else cfg.orchestration.retries
    if is_local(cfg):
        from airflow.providers.standard.operators.python import PythonOperator

        return PythonOperator(task_id=step, python_callable=run_in_process, op_kwargs={"step": step},
                              retries=retries)
    from jobs.cluster_task import StepSubmitOperator
    from jobs.spark import spark_options

    # the master comes from the Airflow connection and the name from the task
    conf = {k: v for k, v in spark_options(cfg).items() if k not in ("spark.master", "spark.app.name")}
    return StepSubmitOperator(
        step=step,
        task_id=step,
        application=str(Path(__file__).resolve().parent / "submit.py"),
        application_args=[*submit_config_args(cfg), "job", step, "--date", "{{ ds }}"],
        conn_id=cfg.orchestration.spark_conn_id,
        name=f"precis-{step}",
        conf=conf,
        env_vars=submit_env(),
        retries=retries,
    )


def submit_config_args(cfg: PrecisConfig) -> list[str]:
    """The global options that make a submitted step read the configuration the DAG was built
    from: its file (when there is one) and the lake root it resolved."""
    file = ["--config", str(Path(cfg.source).resolve())] if cfg.source != "<defaults>" else []
    return [*file, "--lake", cfg.lake_root]


_SECRET_NAME = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")


def submit_env() -> dict[str, str]:
    """The environment of a submitted step: the Python that runs the driver (spark-submit would
    otherwise start whatever `python3` is first on its PATH), and the PRECIS_* settings the DAG saw,
    except any whose name marks a secret: on YARN and Kubernetes the operator turns these into
    `--conf` arguments, which it logs, so secrets must come from the cluster's own environment."""
    env = {"PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
           "PYSPARK_DRIVER_PYTHON": os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable)}
    env.update({k: v for k, v in os.environ.items()
                if k.startswith("PRECIS") and not any(word in k.upper() for word in _SECRET_NAME)})
    return env


def run_in_process(step: str, ds: str | None = None, **_) -> str:
    """Body of an in-process task: run the step, turning expected stops into Airflow outcomes."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from jobs.pipeline import NoRanker, STEPS
    from jobs.publish import PublishRefused
    from jobs.quality import QualityGateFailed

    started = time.monotonic()
    print(f"[precis] {step} ds={ds} ...", flush=True)
    try:
        from jobs.lake import Lake

        summary = STEPS[step](Lake(load_config(None)), ds)
    except (QualityGateFailed, PublishRefused) as exc:
        print(f"[precis] {step} FAILED: {exc}", flush=True)
        raise AirflowFailException(str(exc)) from None
    except NoRanker as exc:
        print(f"[precis] {step} skipped: {exc}", flush=True)
        raise AirflowSkipException(str(exc)) from None
    print(f"{summary}\n[precis] {step} done in {time.monotonic() - started:.1f} s", flush=True)
    return summary


# ------------------------------------------------------------------ precis run
@dataclass(frozen=True)
class TaskOutcome:
    task_id: str
    state: str  # Airflow's task-instance state: success, failed, skipped, upstream_failed, none
    seconds: float | None  # Airflow's duration of the try; None when the task did not start


@dataclass
class RunResult:
    dag_id: str
    ds: str
    state: str
    tasks: list[TaskOutcome]  # in DAG order
    marked: tuple[str, ...] = ()  # tasks marked success without running (`mark_success`)

    @property
    def failed(self) -> list[str]:
        return [t.task_id for t in self.tasks if t.state == "failed"]


def airflow_env(cfg: PrecisConfig, config_path: str | None) -> dict[str, str]:
    """Environment that makes Airflow use the state folder, and tasks use this configuration."""
    home = cfg.state_dir / "airflow"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "false",
        "PRECIS__LAKE__ROOT": cfg.lake_root,
    }
    source = config_path or (cfg.source if cfg.source != "<defaults>" else None)
    if source:
        env["PRECIS_CONFIG"] = str(Path(source).resolve())
    if not is_local(cfg):
        env.update(spark_connection_env(cfg))
    return env


def spark_connection_env(cfg: PrecisConfig) -> dict[str, str]:
    """The Airflow connection the cluster tasks submit through (`orchestration.spark_conn_id`),
    defined from `spark.master` as an `AIRFLOW_CONN_*` variable, so `precis run` with a cluster
    configuration needs nothing else. One the environment already defines is kept: a deployment's
    own connection (queue, deploy mode, a principal) wins over the configuration's master."""
    name = f"AIRFLOW_CONN_{cfg.orchestration.spark_conn_id.upper()}"
    if name in os.environ:
        log.info("cluster tasks submit through the connection in $%s", name)
        return {}
    log.info("cluster tasks submit to %s (connection %s)", cfg.spark.master, cfg.orchestration.spark_conn_id)
    return {name: json.dumps({"conn_type": "spark", "host": cfg.spark.master})}


def prepare_airflow(cfg: PrecisConfig, config_path: str | None) -> None:
    """Set the environment and create the metadata database once (before Airflow is imported)."""
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(cfg.state_dir / "airflow"):
        log.warning("airflow was imported before its environment was set; settings may not apply")
    os.environ.update(airflow_env(cfg, config_path))
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    from airflow import settings
    from airflow.utils import db

    settings.configure_orm()
    if not (home / "airflow.db").exists() or not _db_ready():
        log.info("creating the Airflow metadata database in %s", home)
        db.initdb()


def _db_ready() -> bool:
    from sqlalchemy import inspect

    from airflow import settings

    return inspect(settings.engine).has_table("dag_run")


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(DAGS_FOLDER))
    if bag.import_errors:
        errors = "\n".join(f"  {f}: {e.strip().splitlines()[-1]}" for f, e in bag.import_errors.items())
        raise RuntimeError(f"DAG files failed to import:\n{errors}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise RuntimeError(f"no DAG '{dag_id}' in {DAGS_FOLDER}; found {', '.join(sorted(bag.dag_ids))}")
    return dag


def run_dag(cfg: PrecisConfig, dag_id: str, ds: str, config_path: str | None = None,
            mark_success: str | None = None) -> RunResult:
    """One run of `dag_id` for `ds`. `mark_success` is Airflow's `dags test --mark-success-pattern`:
    tasks whose whole id matches the regular expression are marked success without running, and
    their downstream tasks run on what the lake already holds."""
    prepare_airflow(cfg, config_path)
    dag = load_dag(dag_id)
    ids = [t.task_id for t in dag.topological_sort()] if hasattr(dag, "topological_sort") else sorted(dag.task_ids)
    marked: tuple[str, ...] = ()
    if mark_success is not None:
        try:
            pattern = re.compile(mark_success)
        except re.error as e:
            raise UsageError(f"--mark-success-pattern '{mark_success}' is not a regular expression: {e}") from None
        marked = tuple(t for t in ids if pattern.fullmatch(t))
        if not marked:
            raise UsageError(f"--mark-success-pattern '{mark_success}' matches no task of {dag_id} (the whole id must "
                             f"match): {', '.join(ids)}")
        log.info("%s: %d tasks marked success without running: %s", dag_id, len(marked), ", ".join(marked))
    logical = datetime.fromisoformat(ds).replace(tzinfo=timezone.utc)
    run = dag.test(logical_date=logical, mark_success_pattern=mark_success)
    instances = {ti.task_id: ti for ti in run.get_task_instances()}
    return RunResult(dag_id, ds, _state_name(run.state), [_outcome(t, instances.get(t)) for t in ids], marked)


def _state_name(state) -> str:
    """Airflow's state enum (or a plain string, or None) as its name."""
    return str(state.value if hasattr(state, "value") else state)


def _outcome(task_id: str, ti) -> TaskOutcome:
    if ti is None:
        return TaskOutcome(task_id, "none", None)
    return TaskOutcome(task_id, _state_name(ti.state), float(ti.duration) if ti.duration is not None else None)
