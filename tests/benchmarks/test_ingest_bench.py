"""benchmarks/ingest.py as `make bench` runs it (a script, so benchmarks/ is on sys.path first), on
two copies of the Beauty sample and one master: it runs, and it ingests what it says it does; with
--pin, local[1] runs on one CPU."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_ingest_benchmark_runs_as_a_script_and_counts_exactly():
    out = subprocess.run([sys.executable, "benchmarks/ingest.py", "--repeat", "2", "--distinct", "--masters", "local[1]",
                          "--pin"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    print(out.stdout)
    assert "10,538 review lines" in out.stdout and "reviews/s" in out.stdout
    # the sample holds 4,242 distinct reviews; the second copy's ids are new, so twice that
    assert "2054 duplicates, 8484 distinct, 8484 new in bronze.reviews" in out.stdout
    # pinned: the JVM and its Python workers inherit one CPU, and the busy cores are measured
    assert re.search(r"local\[1\]: .* cores busy on CPUs \[\d+\] ", out.stdout), out.stdout
