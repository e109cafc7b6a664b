"""The real daily DAG through `precis run` (Airflow dag.test, SQLite metadata), end to end.

One lake for the module, in order: train a tiny ranker, run the DAG for D1, run it again for D1
(nothing changes), then plant a bad batch and run D2 (it stops at the bronze gate and the serving
version stays). Each run is a separate `precis` process, as a user would run it.
"""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import BEAUTY, SMALL_GENERATION

REPO = Path(__file__).resolve().parents[2]
PRECIS = str(Path(sys.executable).parent / "precis")
D1, D2 = "2024-06-01", "2024-06-02"


def _config(folder: Path, cf_subset: Path, extra_reviews: list[str] = ()) -> Path:
    generation = {k.split("__", 1)[1]: yaml.safe_load(v) for k, v in SMALL_GENERATION.items()}
    cfg = {
        "lake": {"root": str(folder / "lake")},
        "spark": {"master": "local[2]", "shuffle_partitions": 4},
        "ranker": {"train": {"max_length": 64, "batch_size": 16}},
        "generation": generation,
        "inputs": {
            "reviews": [{"path": str(BEAUTY), "category": "All Beauty"}] + [{"path": p} for p in extra_reviews],
            "relevance": [{"paths": [str(cf_subset)], "format": "crowdflower"}],
        },
        "orchestration": {"state_dir": str(folder / "state"), "retries": 0},
        # as in conf/local.yaml: zero-shot output carries no signal yet; these tests are about the wiring
        "quality": {"content": {rule: "warn" for rule in ("constant_score", "score_concentration", "distinct_2",
                                                           "template_echo", "ungrounded_persona")}},
        # 8-token summaries of 3 products: the weekly ReLSum recipe's title rule is tested elsewhere (test_best_of_n)
        "training": {"eval_examples": 2, "train": {"max_examples": 3, "batch_size": 1, "num_generations": 2,
                                                     "max_completion_length": 8, "max_steps": 2, "best_of_n": 4,
                                                     "max_title_share": 1.0}},
    }
    path = folder / ("bad.yaml" if extra_reviews else "daily.yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


def precis(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRECIS", "AIRFLOW"))}
    try:
        p = subprocess.run([PRECIS, "--config", str(config), *args], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=1500)
    except subprocess.TimeoutExpired as exc:  # say which step it was in: the logs name each one as it starts
        tail = lambda b: (b.decode(errors="replace") if isinstance(b, bytes) else b or "")[-4000:]  # noqa: E731
        raise AssertionError(f"precis {' '.join(args)} ran past {exc.timeout:.0f} s:\n{tail(exc.stdout)}\n{tail(exc.stderr)}") from exc
    if check and p.returncode != 0:
        raise AssertionError(f"precis {' '.join(args)} exited {p.returncode}:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


def versions(folder: Path) -> dict:
    from deltalake import DeltaTable

    out = {}
    for layer in (folder / "lake").iterdir():
        for table in layer.iterdir() if layer.is_dir() and not layer.name.startswith("_") else []:
            if (table / "_delta_log").exists():
                out[f"{layer.name}.{table.name}"] = DeltaTable(str(table)).version()
    return out


@pytest.fixture(scope="module")
def daily(tmp_path_factory, cf_subset):
    folder = tmp_path_factory.mktemp("daily")
    config = _config(folder, cf_subset)
    precis(config, "ingest", "relevance", str(cf_subset), "--format", "crowdflower", "--date", D1)
    precis(config, "train", "ranker", "--max-steps", "3")
    first = precis(config, "run", "--date", D1)
    print(first.stdout[first.stdout.rfind("precis_daily ds="):])  # each task's time, for `pytest -s` and failures
    return folder, config, first


def test_daily_dag_runs_every_task_and_ends_with_the_report(daily):
    folder, config, first = daily
    out = first.stdout
    tasks = [line.split() for line in out.split(f"precis_daily ds={D1}: success")[1].splitlines()[1:] if line.startswith("  ")]
    assert len(tasks) == 18 and all(state == "success" for _, state, *_ in tasks), tasks
    # each task's line ends with Airflow's duration of it, in seconds
    assert all(len(t) == 4 and t[2].isdigit() and t[3] == "s" for t in tasks), tasks
    report = folder / "lake" / "_reports" / D1 / "report.md"
    assert out.rstrip().endswith(f"report: {report}")
    text = report.read_text()
    assert "| bronze | " in text and "PASSED" in text and "FAILED" not in text
    assert "| summary:base |" in text and "| none |" in text and "| bm25 |" in text
    assert (report.parent / "pr_curves.png").stat().st_size > 5000
    assert (report.parent / "ndcg.png").stat().st_size > 5000 and "![NDCG@5 per variant](ndcg.png)" in text
    # what rankers read is the published summary
    from deltalake import DeltaTable

    serving = DeltaTable(str(folder / "lake" / "serving" / "product_summaries")).to_pandas()
    assert len(serving) > 0 and serving.adapter_version.eq("base").all()
    look = precis(config, "lookup", serving.product_id.iloc[0])
    assert serving.summary.iloc[0] in look.stdout and "serving.product_summaries v0" in look.stdout


def test_airflow_sees_no_import_errors(daily):
    folder, config, _ = daily
    from jobs.config import load_config
    from jobs.orchestration import airflow_env

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRECIS", "AIRFLOW"))}
    env.update(airflow_env(load_config(config), str(config)))
    p = subprocess.run([str(Path(sys.executable).parent / "airflow"), "dags", "list-import-errors"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "No data found" in p.stdout, p.stdout + p.stderr
    listed = subprocess.run([str(Path(sys.executable).parent / "airflow"), "dags", "list"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert "precis_daily" in listed.stdout and "precis_training" in listed.stdout


def test_second_run_of_the_same_date_changes_no_table(daily):
    folder, config, _ = daily
    before = versions(folder)
    again = precis(config, "run", "--date", D1)
    assert versions(folder) == before
    generated = [line for line in again.stdout.splitlines() if " generated, " in line]
    assert len(generated) == 8 and all(" 0 generated, " in line for line in generated), generated


def test_every_sql_file_runs_on_the_lake(daily):
    folder, config, _ = daily
    files = sorted((REPO / "sql").glob("*.sql"))
    assert len(files) >= 5
    for f in files:
        p = precis(config, "sql", "-f", str(f))
        assert "error" not in p.stderr.lower(), (f.name, p.stderr)
    coverage = precis(config, "sql", "-f", str(REPO / "sql" / "summary_coverage_by_category.sql")).stdout
    assert "search:crowdflower" in coverage and "All Beauty" in coverage
    suit = precis(config, "sql", "-f", str(REPO / "sql" / "suitability_by_persona.sql")).stdout
    assert "mean_suitability" in suit and "(no rows" not in suit


def test_planted_bad_batch_stops_at_the_bronze_gate_and_serving_stays(daily, cf_subset, tmp_path):
    folder, _, _ = daily
    with gzip.open(BEAUTY, "rt") as src:
        rows = [json.loads(next(src)) for _ in range(60)]
    for i, r in enumerate(rows):
        r["reviewerID"] = f"planted-{i}"
        r["overall"] = 7.0 if i % 2 else r["overall"]
    bad = tmp_path / "inbox_reviews.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = _config(folder, cf_subset, [str(bad)])
    serving_before = versions(folder)["serving.product_summaries"]
    p = precis(config, "run", "--date", D2, check=False)
    assert p.returncode == 1
    assert "failed at task gate_bronze" in p.stderr
    assert "bronze.intake" in p.stdout and "bad_share" in p.stdout
    states = dict(line.split()[:2] for line in p.stdout.split(f"precis_daily ds={D2}: failed")[1].splitlines()[1:] if line.startswith("  "))
    assert states["ingest"] == "success" and states["gate_bronze"] == "failed"
    assert states["publish"] == "upstream_failed" and states["generate_relsum"] == "upstream_failed"
    assert versions(folder)["serving.product_summaries"] == serving_before


def test_weekly_training_dag_trains_validates_and_promotes_every_weekly_task(daily):
    folder, config, _ = daily
    p = precis(config, "run", "--dag", "precis_training", "--date", D1)
    assert "precis_training ds=2024-06-01: success" in p.stdout
    assert "labelled exp3rt rationale-sft" in p.stdout and "sumforu anchored-sft" in p.stdout
    from deltalake import DeltaTable

    from jobs.train import WEEKLY

    runs = DeltaTable(str(folder / "lake" / "eval" / "training_runs")).to_pandas()
    adapters = folder / "lake" / "_artifacts" / "adapters"
    assert {w.task for w in WEEKLY} == {"relsum", "exp3rt", "sumforu"}
    for w in WEEKLY:
        task = w.recipe.adapter_task
        row = runs[runs.run_id.str.startswith(f"{task}/v0001-")].iloc[0]
        assert row.method == w.recipe.method and row.eval_metric == w.validation.metric, row
        assert w.validation.metric in p.stdout
        # the decision follows the metric's direction; a value the rows cannot measure is never promoted
        value = float("nan") if row.eval_value is None else row.eval_value
        baseline = float("nan") if row.baseline_value is None else row.baseline_value
        assert row.promoted == w.validation.better(value, baseline, 0.0), row
        status = json.loads((adapters / task / "v0001" / "adapter.json").read_text())["status"]
        assert status == ("ready" if row.promoted else "rejected")
    relsum = runs[runs.run_id.str.startswith("relsum/v0001-")].iloc[0]
    assert relsum.eval_value <= 0 and relsum.baseline_value <= 0  # rewards are -|r - label|
    exp3rt = runs[runs.run_id.str.startswith("exp3rt_rating/v0001-")].iloc[0]
    assert 0 <= exp3rt.eval_value <= 4 and 0 <= exp3rt.baseline_value <= 4  # MAE of 1-5 ratings