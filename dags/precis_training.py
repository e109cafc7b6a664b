"""The weekly training DAG. Only wiring: steps of `jobs.pipeline`, built by the same factory as the
daily DAG. The new adapter is a candidate until `promote_relsum_adapter` finds it better than the
current one on held-out prompts; the decision and its numbers go to eval.training_runs.

build_training_sets -> train_relsum -> evaluate_relsum_adapter -> promote_relsum_adapter
"""

from datetime import datetime

from airflow.sdk import DAG

from jobs.orchestration import dag_config, default_args, step_task

cfg = dag_config()

with DAG(
    dag_id="precis_training",
    description="Label training sets, train the ReLSum adapter with GRPO, evaluate it, promote it if better",
    schedule="@weekly",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={**default_args(cfg), "trigger_rule": "all_success"},
    tags=["precis", "training"],
) as dag:
    steps = [step_task(name, cfg) for name in
             ("build_training_sets", "train_relsum", "evaluate_relsum_adapter", "promote_relsum_adapter")]
    for upstream, downstream in zip(steps, steps[1:]):
        upstream >> downstream
