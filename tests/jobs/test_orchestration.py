"""The DAG's task factory on the cluster column: a step runs through spark-submit, and a step that
needs a ranker is skipped before anything is submitted when none is trained (spark-submit reports
only an exit status, so the check cannot wait for the step's NoRanker)."""

from __future__ import annotations

import pytest
import yaml


@pytest.fixture
def cluster_cfg(tmp_path, monkeypatch):
    from jobs.config import load_config

    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"lake": {"root": str(tmp_path / "lake")},
                                    "spark": {"master": "spark://127.0.0.1:7077", "conf": {"spark.executor.memory": "2g"}}}))
    monkeypatch.setenv("PRECIS_CONFIG", str(path))
    return load_config(None)


def test_a_cluster_step_is_a_spark_submit_of_precis_job(cluster_cfg):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from jobs.orchestration import is_local, step_task

    task = step_task("filter_reviews", cluster_cfg)
    assert not is_local(cluster_cfg) and isinstance(task, SparkSubmitOperator)
    assert task.step == "filter_reviews" and task.application.endswith("jobs/submit.py")
    assert task.application_args == ["--config", cluster_cfg.source, "--lake", cluster_cfg.lake_root,
                                     "job", "filter_reviews", "--date", "{{ ds }}"]


def test_a_cluster_step_submits_the_configurations_spark_settings_and_environment(cluster_cfg, monkeypatch):
    import sys

    from jobs.config import load_config
    from jobs.jars import fetch
    from jobs.orchestration import step_task

    monkeypatch.setenv("PRECIS_TEACHER_API_KEY", "sk-not-for-logs")
    task = step_task("filter_reviews", cluster_cfg)
    conf = task.conf
    assert "PRECIS_TEACHER_API_KEY" not in task.env_vars  # on YARN the operator logs env_vars as --conf
    assert conf["spark.executor.memory"] == "2g" and conf["spark.sql.shuffle.partitions"] == str(cluster_cfg.spark.shuffle_partitions)
    assert "spark.master" not in conf  # the Airflow connection names the master
    assert task.env_vars["PYSPARK_PYTHON"] == sys.executable and task.env_vars["PRECIS_CONFIG"] == cluster_cfg.source
    # spark-delta: the Delta session settings and the jars `precis jars pull` fetched go with it
    monkeypatch.setenv("PRECIS__LAKE__ENGINE", "spark-delta")
    delta = step_task("filter_reviews", load_config(None)).conf
    assert delta["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert delta["spark.jars"] == ",".join(map(str, fetch(cluster_cfg.spark.jars_dir)["delta"]))  # fetched by `make test`


@pytest.mark.parametrize("step", ["description_delta", "evaluate_ranking", "train_relsum"])
def test_a_cluster_step_that_needs_a_ranker_is_skipped_before_submitting_when_none_is_trained(cluster_cfg, step):
    from airflow.sdk.exceptions import AirflowSkipException

    from jobs.orchestration import step_task
    from jobs.pipeline import NEEDS_RANKER, STEPS

    assert NEEDS_RANKER <= set(STEPS) and step in NEEDS_RANKER
    with pytest.raises(AirflowSkipException, match="precis train ranker"):
        step_task(step, cluster_cfg).execute({})


def test_precis_run_defines_the_spark_connection_from_the_master_unless_the_environment_has_one(cluster_cfg, monkeypatch):
    import json

    from jobs.orchestration import airflow_env

    monkeypatch.delenv("AIRFLOW_CONN_SPARK_DEFAULT", raising=False)
    env = airflow_env(cluster_cfg, cluster_cfg.source)
    conn = json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"])
    assert conn == {"conn_type": "spark", "host": "spark://127.0.0.1:7077"}
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "yarn", "extra": {"queue": "q"}}')
    assert "AIRFLOW_CONN_SPARK_DEFAULT" not in airflow_env(cluster_cfg, cluster_cfg.source)  # a deployment's own wins
    monkeypatch.setenv("PRECIS__SPARK__MASTER", "local[2]")
    from jobs.config import load_config

    assert not any(k.startswith("AIRFLOW_CONN_") for k in airflow_env(load_config(None), None))
