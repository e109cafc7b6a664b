"""The daily Precis pipeline. Only wiring: every task is a step of `jobs.pipeline`, built by
`jobs.orchestration.step_task` (in-process on the embedded default, spark-submit on a cluster).

ingest -> gate_bronze -> filter_reviews, description_delta -> gate_silver -> generate_* ->
gate_gold -> publish -> evaluate_ranking, evaluate_generation -> report
"""

from datetime import datetime

from airflow.sdk import DAG

from jobs.features import JOBS, ORDER
from jobs.orchestration import dag_config, default_args, step_task

cfg = dag_config()

with DAG(
    dag_id="precis_daily",
    description="Ingest, filter, generate, gate, publish and evaluate the day's text features",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(cfg),
    tags=["precis"],
) as dag:
    t = {name: step_task(name, cfg) for name in (
        "ingest", "gate_bronze", "filter_reviews", "description_delta", "gate_silver",
        "gate_gold", "publish", "evaluate_ranking", "evaluate_generation", "report",
    )}
    # one task per feature job, after the jobs whose outputs it reads (declared in jobs/features)
    gen = {key: step_task(f"generate_{key}", cfg) for key in ORDER}
    t["ingest"] >> t["gate_bronze"] >> [t["filter_reviews"], t["description_delta"]] >> t["gate_silver"]
    for key in ORDER:
        upstream = [gen[r] for r in JOBS[key].reads] or [t["gate_silver"]]
        upstream >> gen[key]
    list(gen.values()) >> t["gate_gold"]
    t["gate_gold"] >> t["publish"] >> [t["evaluate_ranking"], t["evaluate_generation"]] >> t["report"]
