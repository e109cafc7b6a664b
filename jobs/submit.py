"""spark-submit entry point of the cluster DAG tasks: `spark-submit jobs/submit.py job STEP --date DS`.

The step's exit status is the task's outcome, so it must survive interpreter teardown: a native
thread pool left running (delta-rs's or pyarrow's) can abort the process after the step succeeded
("terminate called without an active exception", exit 134), which Airflow would record as a
failure. The Spark session is stopped, the output flushed, and the process leaves with the step's
own status without running native destructors.
"""

import os
import sys

from jobs.cli import main

if __name__ == "__main__":
    code = main()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)
