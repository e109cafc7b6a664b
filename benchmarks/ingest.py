"""Ingestion throughput: the Beauty sample repeated to about one million reviews, ingested on
Spark local[1] and local[2] into fresh lakes; prints reviews per second and the ratio.

    .venv/bin/python benchmarks/ingest.py [--repeat 190] [--gzip] [--distinct]

The input is written once as plain JSON lines (split into line-aligned ~32 MiB tasks) or, with
--gzip, as one .gz file (one task: gzip is not splittable). Each master runs in its own process
because a JVM's Spark master is fixed once started; the time measured is the ingest call alone
(JVM start-up excluded and printed separately).

Each run also prints the cores it kept busy (machine-wide CPU time over wall time, from
/proc/stat, so run it on a quiet machine): `local[1]` runs one Spark task at a time, but the Python
worker parsing that task's records, the JVM's JIT and garbage collector and Arrow's threads run
beside it, so on a 2-core machine local[1] already keeps more than one core busy and `local[N]`
against `local[1]` understates what N cores give. With --pin, each master's process tree is
confined to as many CPUs as it has task slots (`local[1]` to one, `local[2]` to two; Linux
`sched_setaffinity`, inherited by the JVM and its Python workers): that ratio is the speed-up
from one core to two.

By default every copy repeats the same records (a re-delivered feed): nearly every record is a
duplicate, so the work measured is reading, parsing, validating, hashing and de-duplicating, not
writing. With --distinct, copy k > 0 suffixes user and product ids with `~k`, so every record is a
new review and the work includes shuffling and writing a million rows.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# run as a script, benchmarks/ is sys.path[0] and its ranker.py would shadow the ranker package
if sys.path and Path(sys.path[0]).resolve() == REPO / "benchmarks":
    sys.path[0] = str(REPO)
BEAUTY = REPO / "data" / "samples" / "reviews" / "amazon2018_all_beauty_5core.jsonl.gz"


def make_input(folder: Path, repeat: int, gz: bool, distinct: bool) -> tuple[Path, int]:
    lines = gzip.decompress(BEAUTY.read_bytes()).rstrip(b"\n") + b"\n"
    records = [json.loads(line) for line in lines.splitlines()] if distinct else []
    n = lines.count(b"\n") * repeat
    path = folder / ("beauty_x%d%s.jsonl%s" % (repeat, "_distinct" if distinct else "", ".gz" if gz else ""))
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        for k in range(repeat):
            if distinct and k:
                fh.write("".join(json.dumps({**r, "reviewerID": f"{r['reviewerID']}~{k}", "asin": f"{r['asin']}~{k}"})
                                 + "\n" for r in records).encode())
            else:
                fh.write(lines)
    return path, n


def busy_seconds() -> float:
    """CPU seconds spent by the whole machine so far (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def task_slots(master: str) -> int | None:
    """The N of `local[N]` (`local` is 1); None for any other master, which --pin leaves alone."""
    m = re.fullmatch(r"local(?:\[(\d+)\])?", master.strip())
    return int(m.group(1) or 1) if m else None


def worker(master: str, lake: str, file: str, pin: bool) -> None:
    if pin and task_slots(master):  # before the JVM starts, so it and its Python workers inherit the mask
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: task_slots(master)]))
    os.environ["PRECIS__SPARK__MASTER"] = master
    t0 = time.time()
    from jobs.config import load_config
    from jobs.ingest.job import ingest_reviews
    from jobs.lake import Lake

    lake_obj = Lake(load_config(None, lake=lake))
    lake_obj.spark.range(1).count()  # start the JVM and a Python worker outside the timing
    started = time.time() - t0
    t1, busy = time.time(), busy_seconds()
    report = ingest_reviews(lake_obj, [file], "2024-01-01")
    seconds = time.time() - t1
    cores = (busy_seconds() - busy) / seconds
    print(json.dumps({"master": master, "seconds": seconds, "startup": started, "line": report.line(),
                      "cores": cores, "cpus": sorted(os.sched_getaffinity(0)),
                      "records": report.records.get("review", 0) + report.quarantined}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=190, help="copies of the 5,269-line file (190: ~1.0M)")
    ap.add_argument("--gzip", action="store_true", help="one gzip file instead of plain JSON lines")
    ap.add_argument("--distinct", action="store_true", help="distinct ids in every copy: a million new reviews")
    ap.add_argument("--masters", default="local[1],local[2]")
    ap.add_argument("--pin", action="store_true",
                    help="confine local[N] to N CPUs, so the ratio is one core against two (Linux)")
    ap.add_argument("--worker", nargs=3, metavar=("MASTER", "LAKE", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker, pin=args.pin)
        return
    if args.pin and max(task_slots(m) or 0 for m in args.masters.split(",")) > len(os.sched_getaffinity(0)):
        sys.exit(f"--pin: {args.masters} needs more CPUs than the {len(os.sched_getaffinity(0))} this process may use")
    with tempfile.TemporaryDirectory(prefix="precis-bench-") as tmp:
        path, n = make_input(Path(tmp), args.repeat, args.gzip, args.distinct)
        print(f"input: {path.name}, {n:,} review lines, {path.stat().st_size / 1e6:.0f} MB, cpus={os.cpu_count()}")
        results = {}
        for master in args.masters.split(","):
            lake = Path(tmp) / f"lake-{master.strip('local[]')}"
            out = subprocess.run(
                [sys.executable, __file__, "--worker", master, str(lake), str(path), *(["--pin"] if args.pin else [])],
                capture_output=True, text=True, cwd=REPO,
            )
            if out.returncode != 0:
                sys.exit(f"{master} failed:\n{out.stderr[-3000:]}")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[master] = res
            rate = res["records"] / res["seconds"]
            print(f"{master:>9}: {res['seconds']:7.1f} s  {rate:10,.0f} reviews/s  {res['cores']:.2f} cores busy on "
                  f"CPUs {res['cpus']}  (JVM start {res['startup']:.1f} s)")
            print(f"           {res['line']}")
        masters = list(results)
        if len(masters) == 2:
            a, b = (results[m]["seconds"] for m in masters)
            print(f"speed-up {masters[1]} / {masters[0]}{' (pinned: one core against two)' if args.pin else ''}: {a / b:.2f}x")


if __name__ == "__main__":
    main()
