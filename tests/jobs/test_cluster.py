"""The cluster column for real: a Spark standalone master and two workers on loopback (separate
JVMs started from the pyspark distribution's own `spark-class`, stopped at the end), and daily
steps run through the DAG's own task, Airflow's SparkSubmitOperator with a real Airflow connection
and a real `spark-submit`, so each step executes in cluster processes.

The daily DAG runs through `precis run` with `conf/cluster.local.yaml` (the cluster example with
loopback addresses), the lake on an S3-compatible store (moto's server), delta-spark writing
through S3A. Six tasks run, each a cluster application: ingest, filter_reviews, description_delta
(the ONNX ranker in executors), generate_relsum (the LLM in executors), gate_gold (Great
Expectations) and publish. The other twelve are marked success without running
(`--mark-success-pattern`): the other gates, generation tasks and evaluations are the same code
paths with other tables or prompts, and each cluster task costs 1-3 min of JVM start-ups and small
S3A jobs on 2 cores; tests/dags runs all 18 embedded. The test takes about 18 min alone, so
`make test-slow` runs it and CI's `make test` does not.

Its bronze and silver tables must equal those of the same steps run in this process on the
embedded default (local disk, delta-rs): one code path, picked by configuration. The store's credentials, given in the environment only, are in no table,
artifact, report or log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BEAUTY
from tests.jobs.lake.object_store import free_port



@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """spark://127.0.0.1:<port> with two registered workers of one core each."""
    import pyspark

    home = Path(pyspark.__file__).parent
    from tests.jobs.lake.object_store import CREDENTIALS

    work = tmp_path_factory.mktemp("standalone")
    # the workers' environment is the executors': the object store's credentials come from there, as
    # from an instance role on a real cluster
    env = {**os.environ, **CREDENTIALS, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    log = work / "master.log"
    cls = str(home / "bin" / "spark-class")
    procs = [subprocess.Popen([cls, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                               "--webui-port", str(free_port())], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)]
    for w in range(2):
        procs.append(subprocess.Popen(
            [cls, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
             "--webui-port", str(free_port()), "--work-dir", str(work / f"worker{w}")],
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


REPO = Path(__file__).resolve().parents[2]
D1 = "2024-06-01"
RUN = ("ingest", "filter_reviews", "description_delta", "generate_relsum", "gate_gold", "publish")
NOT_RUN = f"(?!({'|'.join(RUN)})$).*"  # every other task (see the module's docstring)


def _cluster_local(tmp_path: Path, master: str, endpoint: str, cf_subset: Path) -> Path:
    """conf/cluster.local.yaml with this run's ports and folders, the test suite's small sizes, and
    the content rules reporting (zero-shot text: this test is about where things run)."""
    from tests.conftest import SMALL_GENERATION

    cfg = yaml.safe_load((REPO / "conf" / "cluster.local.yaml").read_text())
    cfg["spark"]["master"] = master
    cfg["lake"]["storage_options"]["AWS_ENDPOINT_URL"] = endpoint
    cfg["ranker"] = {"artifacts_dir": str(tmp_path / "ranker"), "train": {"max_length": 64, "batch_size": 16}}
    cfg["training"] = {"adapters_dir": str(tmp_path / "adapters")}
    cfg["orchestration"] = {"state_dir": str(tmp_path / "state"), "report_dir": str(tmp_path / "reports"), "retries": 0}
    cfg["generation"] = {k.split("__", 1)[1]: yaml.safe_load(v) for k, v in SMALL_GENERATION.items()}
    cfg["generation"]["chunk_size"] = 64  # one commit per step: on delta-spark each commit is a few Spark jobs
    cfg["inputs"] = {"reviews": [{"path": str(BEAUTY), "category": "All Beauty"}],
                     "relevance": [{"paths": [str(cf_subset)], "format": "crowdflower"}]}
    cfg["quality"] = {"content": {rule: "warn" for rule in ("constant_score", "score_concentration", "distinct_2",
                                                             "template_echo", "ungrounded_persona")}}
    path = tmp_path / "cluster.local.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_precis_run_runs_the_daily_dag_on_the_cluster_with_the_lake_on_an_object_store(standalone, tmp_path, cf_subset,
                                                                                      spark, monkeypatch):
    from jobs.jars import fetch
    from jobs.config import load_config
    from tests.jobs.lake.object_store import BUCKET, CREDENTIALS, s3_server

    url, master_log = standalone
    fetch(load_config(None).spark.jars_dir, ("delta", "s3a"))  # `make test` fetched them; a no-op then
    apps_before = master_log.read_text().count("Registered app")
    with s3_server(tmp_path / "moto.log") as store:
        config = _cluster_local(tmp_path, url, store.endpoint, cf_subset)
        # no Airflow connection is defined: `precis run` defines it from spark.master
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PRECIS", "AIRFLOW"))}, **CREDENTIALS,
               "PATH": os.environ["PATH"].replace(f"{Path(sys.executable).parent}:", "")}  # as a user's shell, venv not active
        precis = str(Path(sys.executable).parent / "precis")

        def run(*args: str) -> subprocess.CompletedProcess:
            # a guard against a hang, not a time target: when this test ran beside the rest of the suite on
            # 2 cores, the whole DAG took 2,583 s in one run and over 3,600 s in another
            done = subprocess.run([precis, "--config", str(config), *args], cwd=REPO, env=env, capture_output=True,
                                  text=True, timeout=5000)
            assert done.returncode == 0, f"precis {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            return done

        outputs = [run("ingest", "relevance", str(cf_subset), "--format", "crowdflower", "--date", D1),
                   run("train", "ranker", "--max-steps", "3"),
                   run("run", "--date", D1, "--mark-success-pattern", NOT_RUN)]
        out = outputs[-1].stdout
        tasks = [line.split() for line in out.split(f"precis_daily ds={D1}: success")[1].splitlines()[1:] if line.startswith("  ")]
        assert len(tasks) == 18 and all(state == "success" for _, state, *_ in tasks), tasks
        ran = [task for task, _, *note in tasks if note != ["(marked,", "not", "run)"]]
        assert sorted(ran) == sorted(RUN), tasks
        # each task that ran was an application of the cluster, with executors on its workers
        apps = master_log.read_text().count("Registered app") - apps_before
        assert apps >= len(RUN), apps
        # the tables are in the bucket, written by delta-spark through S3A; the serving table was published
        keys = {key for key, _ in store.objects()}
        for table in ("bronze/reviews", "silver/review_split", "gold/product_summaries", "serving/product_summaries",
                      "eval/quality_results"):
            assert f"lake/{table}/_delta_log/00000000000000000000.json" in keys, table
        assert not [key for key in keys if key.startswith("lake/gold/rating_predictions/")]  # marked: it did not run
        look = run("sql", "select count(*) as n, min(model_id) as model from serving.product_summaries")
        assert "smollm2" in look.stdout.lower(), look.stdout
        assert not out.rstrip().splitlines()[-1].startswith("report: ")  # the report task was marked: none to point at
        # the credentials were in the environment only: no object, artifact, report or log holds them
        secrets = list(CREDENTIALS.values())
        assert not [key for key, body in store.objects() if any(v.encode() in body for v in secrets)]
        files = [f for f in tmp_path.rglob("*") if f.is_file() and f.suffix not in (".onnx", ".safetensors", ".bin", ".db")]
        names = {f.relative_to(tmp_path).as_posix() for f in files}
        assert {"cluster.local.yaml", "ranker/v0001/ranker.json"} <= names, names
        assert not [f for f in files if any(v in f.read_text(errors="replace") for v in secrets)]
        assert not [o for o in outputs if any(v in o.stdout + o.stderr for v in secrets)]
        assert BUCKET in config.read_text() and not any(v in config.read_text() for v in secrets)

        # the same steps on the embedded default, in this process, over the same inputs: the same tables
        from jobs.lake import Lake
        from jobs.lake import tables as T
        from jobs.pipeline import STEPS

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["AWS_ACCESS_KEY_ID"])  # to read the bucket from here
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        cluster = Lake(load_config(str(config), environ={}), spark)
        embedded = Lake(load_config(str(config), lake=str(tmp_path / "embedded_lake"),
                                    environ={"PRECIS__LAKE__ENGINE": "deltalake"}), spark)
        for step in ("ingest", "filter_reviews"):
            STEPS[step](embedded, D1)
        for table in (T.BRONZE_REVIEWS, T.BRONZE_JUDGMENTS, T.SILVER_REVIEW_SPLIT, T.SILVER_USER_HISTORIES,
                      T.SILVER_REVIEW_SAMPLES):
            cols = table.content_columns
            got = sorted(map(str, cluster.read_arrow(table, cols).to_pylist()))
            want = sorted(map(str, embedded.read_arrow(table, cols).to_pylist()))
            assert got and got == want, table.qualified_name
