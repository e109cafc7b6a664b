"""The daily Precis pipeline. Only wiring: every task is a step of `jobs.pipeline`, built by
`jobs.orchestration.step_task` (in-process on the embedded default, spark-submit on a cluster).

ingest -> gate_bronze -> filter_reviews, description_delta -> gate_silver -> generate_* ->
gate_gold -> publish -> evaluate_ranking, evaluate_generation -> report
"""

from datetime import datetime

from airflow.sdk import DAG

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
        "generate_relsum", "generate_personas", "generate_persona_summaries", "generate_preferences",
        "generate_user_profiles", "generate_item_profiles", "generate_ratings", "generate_rpo",
        "gate_gold", "publish", "evaluate_ranking", "evaluate_generation", "report",
    )}
    t["ingest"] >> t["gate_bronze"] >> [t["filter_reviews"], t["description_delta"]] >> t["gate_silver"]
    t["gate_silver"] >> [t["generate_relsum"], t["generate_personas"], t["generate_preferences"]]
    t["generate_personas"] >> t["generate_persona_summaries"]
    t["generate_preferences"] >> [t["generate_user_profiles"], t["generate_item_profiles"]]
    [t["generate_user_profiles"], t["generate_item_profiles"]] >> t["generate_ratings"]
    t["generate_item_profiles"] >> t["generate_rpo"]
    [t[n] for n in t if n.startswith("generate_")] >> t["gate_gold"]
    t["gate_gold"] >> t["publish"] >> [t["evaluate_ranking"], t["evaluate_generation"]] >> t["report"]
