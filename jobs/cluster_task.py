"""The cluster column's Airflow task: one step of `jobs.pipeline` through spark-submit.

spark-submit reports only an exit status, so the expected stop the in-process task turns into a
skip (`NoRanker`: no ranker trained yet) is checked here, on the Airflow worker, before anything is
submitted: a step in `jobs.pipeline.NEEDS_RANKER` is skipped when the configured ranker does not
resolve, exactly as `jobs.orchestration.run_in_process` skips it on the embedded default.

`spark-submit` is looked up on the worker's PATH, as Airflow's hook does; when it is not there, the
one pyspark installed beside this interpreter (a virtualenv's `bin/`) is used, and when there is
none either the task fails saying what to install.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
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
        _spark_submit_on_path()
        return super().execute(context)


def _spark_submit_on_path() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    if shutil.which("spark-submit"):
        return
    beside = Path(sys.executable).parent
    if not (beside / "spark-submit").is_file():
        raise AirflowFailException(
            "spark-submit is not on this worker's PATH: install pyspark in the worker's environment "
            "(it provides bin/spark-submit) or put $SPARK_HOME/bin on the PATH")
    os.environ["PATH"] = f"{beside}{os.pathsep}{os.environ.get('PATH', '')}"
