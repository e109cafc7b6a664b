"""The cluster column for real: a Spark standalone master and two workers on loopback (separate
JVMs started from the pyspark distribution's own `spark-class`, stopped at the end), and daily
steps run through the DAG's own task, Airflow's SparkSubmitOperator with a real Airflow connection
and a real `spark-submit`, so each step executes in cluster processes.

The same steps then run in this process on the embedded default over the same inputs, and the
tables must be the same: one code path, picked by configuration.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BEAUTY

DS = "2024-03-01"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """spark://127.0.0.1:<port> with two registered workers of one core each."""
    import pyspark

    home = Path(pyspark.__file__).parent
    work = tmp_path_factory.mktemp("standalone")
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    log = work / "master.log"
    cls = str(home / "bin" / "spark-class")
    procs = [subprocess.Popen([cls, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                               "--webui-port", str(_free_port())], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)]
    for w in range(2):
        procs.append(subprocess.Popen(
            [cls, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
             "--webui-port", str(_free_port()), "--work-dir", str(work / f"worker{w}")],
            env=env, stdout=(work / f"worker{w}.log").open("w"), stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 120
        while log.read_text().count("Registering worker") < 2:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            assert all(p.poll() is None for p in procs), log.read_text()[-2000:]
            time.sleep(1)
        yield url, log
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def _config(tmp_path: Path, master: str) -> Path:
    reviews = tmp_path / "reviews.jsonl"
    with gzip.open(BEAUTY, "rt") as f:
        reviews.write_text("".join(next(f) for _ in range(800)))
    cfg = yaml.safe_load(Path("conf/local.yaml").read_text())
    cfg["lake"]["root"] = str(tmp_path / "cluster_lake")
    cfg["spark"]["master"] = master
    cfg["spark"]["conf"] = {"spark.executor.cores": "1", "spark.executor.memory": "1g", "spark.cores.max": "2"}
    cfg["inputs"] = {"reviews": [{"path": str(reviews), "category": "All Beauty"}], "relevance": []}
    cfg["orchestration"]["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_daily_steps_run_on_a_standalone_cluster_through_spark_submit_and_match_the_embedded_run(standalone, tmp_path,
                                                                                                monkeypatch, spark):
    from jobs.config import load_config
    from jobs.lake import Lake
    from jobs.lake import tables as T
    from jobs.orchestration import step_task
    from jobs.pipeline import STEPS

    url, master_log = standalone
    path = _config(tmp_path, url)
    monkeypatch.setenv("PRECIS_CONFIG", str(path))
    host, port = url.rsplit(":", 1)
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": host, "port": int(port)}))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # the venv's spark-submit
    cfg = load_config(None)
    for step in ("ingest", "filter_reviews"):
        task = step_task(step, cfg)
        task.application_args = [a.replace("{{ ds }}", DS) for a in task.application_args]  # as Airflow renders it
        task.execute({})
    # each step was an application of the cluster, with executors on both workers
    text = master_log.read_text()
    assert text.count("Registered app precis") == 2 and text.count("Launching executor") >= 4

    cluster = Lake(cfg, spark)
    embedded = Lake(load_config(str(path), lake=str(tmp_path / "embedded_lake")), spark)  # this process's local session
    for step in ("ingest", "filter_reviews"):
        STEPS[step](embedded, DS)
    for table in (T.BRONZE_REVIEWS, T.SILVER_REVIEW_SPLIT, T.SILVER_USER_HISTORIES, T.SILVER_REVIEW_SAMPLES):
        cols = table.content_columns
        got = sorted(map(str, cluster.read_arrow(table, cols).to_pylist()))
        want = sorted(map(str, embedded.read_arrow(table, cols).to_pylist()))
        assert got and got == want, table.qualified_name
