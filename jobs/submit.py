"""spark-submit entry point of the cluster DAG tasks: `spark-submit jobs/submit.py job STEP --date DS`."""

import sys

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main())
