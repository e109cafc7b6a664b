"""The cluster column's Airflow task: one step of `jobs.pipeline` through spark-submit.

spark-submit reports only an exit status, so the expected stop the in-process task turns into a
skip (`NoRanker`: no ranker trained yet) is checked here, on the Airflow worker, before anything is
submitted: a step in `jobs.pipeline.NEEDS_RANKER` is skipped when the configured ranker does not
resolve, exactly as `jobs.orchestration.run_in_process` skips it on the embedded default.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from precis.errors import NoRanker


class StepSubmitOperator(SparkSubmitOperator):
    """`spark-submit jobs/submit.py job STEP --date {{ ds }}`, skipped when STEP needs a ranker and
    none is trained."""

    def __init__(self, *, step: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step

    def execute(self, context: Any) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        from jobs.orchestration import dag_config
        from jobs.pipeline import NEEDS_RANKER
        from ranker import registry

        if self.step in NEEDS_RANKER:
            cfg = dag_config()
            try:
                registry.resolve(cfg.ranker_dir, cfg.ranker.version, "trained")
            except NoRanker as exc:
                print(f"[precis] {self.step} skipped: {exc}", flush=True)
                raise AirflowSkipException(str(exc)) from None
        return super().execute(context)
