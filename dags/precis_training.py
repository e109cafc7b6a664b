"""The weekly training DAG. Only wiring: steps of `jobs.pipeline`, built by the same factory as the
daily DAG. For each task of `jobs.train.WEEKLY` (ReLSum best-of-N, EXP3RT rating rationales,
SUMFORU anchored suitability) the new adapter is a candidate until its promote step finds it better
than the current one on validation rows; the decision and its numbers go to eval.training_runs.

build_training_sets -> train_<task> -> evaluate_<task>_adapter -> promote_<task>_adapter  (one chain per task)
"""

from datetime import datetime

from airflow.sdk import DAG

from jobs.orchestration import dag_config, default_args, step_task
from jobs.train import WEEKLY

cfg = dag_config()

with DAG(
    dag_id="precis_training",
    description="Label training sets; train, validate and promote-if-better an adapter of each of "
                + ", ".join(w.task for w in WEEKLY),
    schedule="@weekly",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,  # one training at a time: each uses every core of the machine
    default_args={**default_args(cfg), "trigger_rule": "all_success"},
    tags=["precis", "training"],
) as dag:
    labelled = step_task("build_training_sets", cfg)
    for chain in WEEKLY:
        train, evaluate, promote = (step_task(name, cfg) for name in chain.steps)
        labelled >> train >> evaluate >> promote
