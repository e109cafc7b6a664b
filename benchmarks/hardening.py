"""Hardening figures, measured on real Spark, real Delta tables and real processes: what a hostile
feed and parallel writers do to the lake. Prints one line per check, and zeros where zeros are
promised (the hardening issue's "done when").

    .venv/bin/python benchmarks/hardening.py [--kills 3] [--writers 3]

1. Poison records: one file holding every bad-record kind next to good ones; kinds tried,
   quarantined with a reason, and files failed (promised: 0 failed, every kind quarantined).
2. Kills: `precis ingest` SIGKILLed at spread-out moments, then run again to the end; rows lost
   and duplicated (promised: 0 and 0), orphan files left for `precis vacuum`.
3. Concurrent writers: N `precis ingest` processes on the same file at once (separate JVMs and
   committers), then N threads upserting overlapping CrowdFlower files; duplicate keys (promised: 0).
4. Untrusted text: SQL escapes refused, markup cases neutralised, PII cases redacted, injection
   shapes kept inside the delimiters (promised: all).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.chdir(REPO)
BEAUTY = REPO / "data" / "samples" / "reviews" / "amazon2018_all_beauty_5core.jsonl.gz"
CROWDFLOWER = REPO / "data" / "samples" / "relevance" / "crowdflower_search_relevance_dev.csv.gz"
DS = "2024-03-01"
DISTINCT_BEAUTY = 4242
GOOD = {"user_id": "U1", "asin": "P1", "parent_asin": "P1", "rating": 4.0, "title": "ok", "text": "fine",
        "timestamp": 1700000000000, "helpful_vote": 1, "verified_purchase": True}
POISON = {  # kind -> one raw JSON line
    "lone surrogate": b'{"user_id": "U", "asin": "P", "rating": 5, "text": "x \\ud83d"}',
    "5,000-deep nesting": b'{"user_id": "U", "asin": "P", "rating": 5, "text": "t", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "vote: Infinity": b'{"reviewerID": "U", "asin": "P", "overall": 5, "reviewText": "t", "vote": Infinity}',
    "helpful_vote: 1e19": b'{"user_id": "U", "asin": "P", "rating": 5, "text": "t", "helpful_vote": 1e19}',
    "helpful_vote beyond 64 bits": b'{"user_id": "U", "asin": "P", "rating": 5, "text": "t", "helpful_vote": 10000000000000000000}',
    "not JSON": b'{"user_id": "U", "asin": ',
    "not an object": b"[1, 2, 3]",
    "invalid UTF-8": b'{"user_id": "U", "asin": "P", "rating": 5, "text": "\xff\xfe"}',
    "rating out of range": b'{"user_id": "U", "asin": "P", "rating": 9, "text": "t"}',
    "missing user": b'{"asin": "P", "rating": 5, "text": "t"}',
}


def _lake(root: Path, master: str = "local[2]"):
    from jobs.config import load_config
    from jobs.lake import Lake

    return Lake(load_config(None, lake=str(root), environ={"PRECIS__SPARK__MASTER": master,
                                                           "PRECIS__SPARK__SHUFFLE_PARTITIONS": "4"}))


def _precis(lake_root: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PRECIS__SPARK__MASTER="local[1]")
    return subprocess.Popen([sys.executable, "-m", "jobs.cli", "--lake", str(lake_root), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _review_ids(lake_root: Path) -> list[str]:
    from deltalake import DeltaTable

    path = str(lake_root / "bronze" / "reviews")
    if not DeltaTable.is_deltatable(path):
        return []
    return DeltaTable(path).to_pyarrow_table(columns=["review_id"]).column(0).to_pylist()


def poison(tmp: Path) -> None:
    from jobs.ingest.job import ingest_reviews

    lines = [json.dumps(GOOD).encode(), *POISON.values(), json.dumps(dict(GOOD, user_id="U2")).encode()]
    f = tmp / "poison.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    lake = _lake(tmp / "poison_lake")
    try:
        report = ingest_reviews(lake, [str(f), str(BEAUTY)], DS)
        failed = 0
    except Exception as exc:  # the promise is that this never happens
        print(f"  poison: the ingest failed: {exc}")
        return
    q = lake.read_pandas("bronze.quarantine")
    reasons = dict(zip(q.source_line, q.reason))
    caught = [kind for line, kind in enumerate(POISON, start=2) if reasons.get(line)]
    print(f"poison records: {len(POISON)} kinds tried, {len(caught)} quarantined with a reason, "
          f"{failed} files failed; good rows kept {report.written.get('bronze.reviews', 0) - DISTINCT_BEAUTY} of 2")
    for line, kind in enumerate(POISON, start=2):
        print(f"  {kind:<28} -> {reasons.get(line, 'NOT QUARANTINED')[:70]}")


def kills(tmp: Path, n: int) -> None:
    """Each kill on its own fresh lake, at a later moment of the run (JVM start, parsing, commit)."""
    from deltalake import DeltaTable

    killed, lost, duplicated, orphans, failed = 0, 0, 0, 0, 0
    for k in range(n):
        root = tmp / f"kill_lake_{k}"
        proc = _precis(root, "ingest", "reviews", str(BEAUTY), "--date", DS)
        time.sleep(4 + 4 * k)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
        else:
            proc.communicate()
        table = root / "bronze" / "reviews"
        files = set(table.rglob("*.parquet")) if table.exists() else set()
        live = {Path(u.removeprefix("file://")) for u in DeltaTable(str(table)).file_uris()} if DeltaTable.is_deltatable(str(table)) else set()
        orphans += len(files - live)
        done = _precis(root, "ingest", "reviews", str(BEAUTY), "--date", DS)
        out = done.communicate(timeout=900)[0]
        failed += done.returncode != 0
        if done.returncode:
            print(out[-2000:])
        ids = _review_ids(root)
        lost += DISTINCT_BEAUTY - len(set(ids))
        duplicated += len(ids) - len(set(ids))
    print(f"kills: {killed} of {n} ingests SIGKILLed mid-run (each on its own lake, {4}-{4 + 4 * (n - 1)} s in), each "
          f"then run again to the end ({failed} failed): rows lost {lost}, duplicated {duplicated}; "
          f"{orphans} orphan Parquet files left by the kills, for `precis vacuum`")


def concurrent(tmp: Path, writers: int) -> None:
    import threading

    import pandas as pd

    from jobs.ingest.job import ingest_relevance

    root = tmp / "race_lake"
    procs = [_precis(root, "ingest", "reviews", str(BEAUTY), "--date", DS) for _ in range(writers)]
    codes = [p.wait(timeout=900) for p in procs]
    ids = _review_ids(root)
    print(f"concurrent ingest: {writers} `precis ingest` processes on one file at once, exits {codes}: "
          f"{len(ids)} rows, duplicate review_ids {len(ids) - len(set(ids))}")

    lake = _lake(tmp / "upsert_lake")
    base = pd.read_csv(CROWDFLOWER, dtype=str, keep_default_na=False).head(600)
    files = []
    for w in range(writers):
        part = base.iloc[w * 100: w * 100 + 300].copy()  # overlapping slices
        part["median_relevance"] = str(1 + w % 4)  # conflicting labels on the shared keys
        f = tmp / f"cf_{w}.csv"
        part.to_csv(f, index=False)
        files.append(f)
    ingest_relevance(lake, [str(tmp / "cf_0.csv")], "crowdflower", DS)  # the upserts touch stored files
    errors = []

    def run(f):
        try:
            ingest_relevance(lake, [str(f)], "crowdflower", DS)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    j = lake.read_pandas("bronze.judgments")
    expected = len(set().union(*(set(pd.read_csv(f, dtype=str).id) for f in files)))
    print(f"concurrent upserts: {writers} CrowdFlower upserts of overlapping files at once, {len(errors)} failed: "
          f"{len(j)} judgments for {expected} keys, duplicate keys {len(j) - j.judgment_id.nunique()}")


def untrusted_text() -> None:
    from generator.markup import TAG_START
    from generator.safety import clean_input, contains_pii, strip_markup
    from tests.generator.test_injection import PROMPTS, TASK_OF, _outside
    from tests.generator.test_markup import CASES
    from tests.generator.test_safety import NOT_PHONES, PHONES
    from tests.jobs.lake.test_sql import ESCAPES

    markup_ok = sum(strip_markup(raw) == want and clean_input(raw) == want and not TAG_START.search(want)
                    for raw, want in CASES)
    pii_ok = sum(contains_pii(f"call {p} today") for p in PHONES)
    false_pii = sum(contains_pii(t) for t in NOT_PHONES)
    inj_ok = 0
    for name, make in PROMPTS.items():
        prompt = next(m["content"] for m in TASK_OF[name].messages(make()) if m["role"] == "user")
        inj_ok += "Ignore the instructions" not in _outside(prompt)
    print(f"markup: {markup_ok} of {len(CASES)} cases come out as the expected plain text, no tag left")
    print(f"PII: {pii_ok} of {len(PHONES)} phone shapes found; {false_pii} of {len(NOT_PHONES)} year lists / product codes "
          "taken for phones")
    print(f"injection: {inj_ok} of {len(PROMPTS)} prompt builders keep the attack text inside the delimiters")
    _sql(ESCAPES)


def _sql(escapes) -> None:
    import duckdb

    from jobs.ingest.job import ingest_relevance
    from jobs.lake.sql import run_sql
    from precis.errors import QueryRefused

    with tempfile.TemporaryDirectory() as d:
        lake = _lake(Path(d) / "lake")
        ingest_relevance(lake, [str(CROWDFLOWER)], "crowdflower", DS)
        log = f"{lake.path('bronze.products')}/_delta_log/00000000000000000000.json"
        refused = 0
        for query, _ in escapes:
            try:
                run_sql(lake, query.format(log=log))
            except (QueryRefused, duckdb.Error):
                refused += 1
        print(f"sql: {len(escapes)} escapes tried (COPY over a _delta_log, EXPORT, ATTACH, INSTALL/LOAD, SET, "
              f"read_text/read_csv outside the lake), {refused} refused")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=3, help="ingest runs to SIGKILL before the one that finishes")
    ap.add_argument("--writers", type=int, default=3, help="concurrent writers")
    args = ap.parse_args()
    print(f"precis hardening figures, cpus={os.cpu_count()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        untrusted_text()
        poison(tmp)
        concurrent(tmp, args.writers)
        kills(tmp, args.kills)


if __name__ == "__main__":
    main()
