"""Incremental daily runs: what a day with few changes costs, against a full first day.

    .venv/bin/python benchmarks/incremental.py [--copies 10] [--volume 10] [--max-new-tokens 8]
                                               [--change 0.01] [--work DIR]

The catalogue is built from the real samples: the Beauty reviews repeated `--copies` times with
distinct user and product ids (copy k > 0 suffixes them `~k`), and CrowdFlower as shipped (its
product ids are hashes of title and description, so copies could not stay distinct). The
generation volume is the demo's (conf/local.yaml's `generation` section) times `--volume`, with
every task capped at `--max-new-tokens` so it runs on a CPU (`generation.max_new_tokens`).

A small ranker is trained first (8 steps; the weekly DAG's job, outside the timing). Then the daily
steps run in one process, in the DAG's order, as `precis run` runs them on local Spark:

- day 1: the whole catalogue arrives (reviews and relevance files in an inbox folder);
- day 2: a new reviews file with `--change` of the catalogue's reviews: half edits of existing
  reviews (new text, a later time), half new reviews by existing users of products they had not
  reviewed; and a new relevance file with the same share of CrowdFlower rows whose description
  was edited (a new product to CrowdFlower, whose ids hash the text);
- day 3: one more file with one edited review of one selected user: the cascade of one change.

Removals are not modelled: Amazon review feeds deliver new and edited reviews, and bronze.reviews is
immutable (an edit is a new review; the old one stays).

Printed: wall time per step and LLM calls (rows sent to the model) per task on each day, the
day-2 / day-1 ratios against the targets (calls <= 2%, wall time <= 10%), and for days 2 and 3 why
each task's rows re-ran: the row's review changed, a review of its user or of its product changed,
its product's description changed, or none of these (an input that moved for another reason,
e.g. a user newly selected, or a product's train-review statistics).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# run as a script, benchmarks/ is sys.path[0] and its ranker.py would shadow the ranker package
if sys.path and Path(sys.path[0]).resolve() == REPO / "benchmarks":
    sys.path[0] = str(REPO)
BEAUTY = REPO / "data" / "samples" / "reviews" / "amazon2018_all_beauty_5core.jsonl.gz"
CROWDFLOWER = REPO / "data" / "samples" / "relevance" / "crowdflower_search_relevance_dev.csv.gz"
DAYS = ("2026-01-01", "2026-01-02", "2026-01-03")
SCALED = ("relsum_max_products", "n_users", "n_products")  # the demo's generation volume knobs
TARGET_CALLS, TARGET_WALL = 0.02, 0.10


@dataclass
class Day:
    """One daily run: seconds per step, LLM calls per generation task."""

    ds: str
    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    lines: dict[str, str] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return sum(self.seconds.values())

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


@dataclass
class Changes:
    """What a day's new files changed: review ids, and the users and products they touch."""

    reviews: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    products: set[str] = field(default_factory=set)
    described: set[str] = field(default_factory=set)  # products whose description changed
    counts: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- catalogue
def _review_lines() -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(BEAUTY.read_bytes()).decode().splitlines() if line.strip()]


def write_catalogue(inbox: Path, copies: int) -> list[dict]:
    """Day 1's files in `inbox`; returns the review records written."""
    base = _review_lines()
    out = []
    for k in range(copies):
        for r in base:
            out.append(r if k == 0 else {**r, "reviewerID": f"{r['reviewerID']}~{k}", "asin": f"{r['asin']}~{k}"})
    _write_reviews(inbox / "reviews-day1.jsonl.gz", out)
    (inbox / "relevance-day1.csv").write_bytes(gzip.decompress(CROWDFLOWER.read_bytes()))
    return out


def _write_reviews(path: Path, records: list[dict]) -> None:
    with gzip.open(path, "wt") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")


def review_id(record: dict) -> str:
    """The id ingest gives a review record (jobs.ingest.records)."""
    from jobs.ingest.records import canonical_json, sha_hex

    return sha_hex(canonical_json(record))


def write_changes(inbox: Path, name: str, catalogue: list[dict], n_reviews: int, n_products: int,
                  seed: int, users: list[str] | None = None) -> Changes:
    """A new reviews file with `n_reviews` changes (half edits, half new reviews) and, when
    `n_products`, a new relevance file with that many CrowdFlower descriptions edited. With `users`,
    the changed reviews are those users' (day 3's one change)."""
    rng = random.Random(seed)
    ch = Changes()
    pool = [r for r in catalogue if users is None or r["reviewerID"] in users]
    latest = max(r["unixReviewTime"] for r in catalogue)
    reviewed = {(r["reviewerID"], r["asin"]) for r in catalogue}
    products = sorted({r["asin"] for r in catalogue})
    new = []
    n_edit = n_reviews - n_reviews // 2 if users is None else n_reviews
    for r in rng.sample(pool, n_edit):
        edited = {**r, "reviewText": (r.get("reviewText") or "") + " Update after a month: still using it.",
                  "unixReviewTime": latest + 86400}
        new.append(edited)
    for r in rng.sample(pool, n_reviews - n_edit):
        other = next(p for p in (rng.choice(products) for _ in range(1000)) if (r["reviewerID"], p) not in reviewed)
        donor = rng.choice(catalogue)
        new.append({**donor, "reviewerID": r["reviewerID"], "reviewerName": r.get("reviewerName"), "asin": other,
                    "unixReviewTime": latest + 86400})
    for r in new:
        ch.reviews.add(review_id(r))
        ch.users.add(r["reviewerID"])
        ch.products.add(r["asin"])
    _write_reviews(inbox / f"reviews-{name}.jsonl.gz", new)
    ch.counts = {"reviews edited": n_edit, "reviews added": n_reviews - n_edit}
    if n_products:
        from jobs.ingest.records import crowdflower_product_id

        rows = list(csv.DictReader(io.StringIO(gzip.decompress(CROWDFLOWER.read_bytes()).decode())))
        picked = rng.sample(rows, n_products)
        for row in picked:
            row["product_description"] = (row["product_description"] or "") + " New for this season."
            ch.described.add(crowdflower_product_id(row["product_title"], row["product_description"]))
        with open(inbox / f"relevance-{name}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(picked)
        ch.counts["descriptions edited"] = n_products
    return ch


def write_config(work: Path, volume: float, max_new_tokens: int, overrides: dict | None = None) -> Path:
    """conf/local.yaml with the inbox as inputs, the generation volume scaled and every task capped."""
    cfg = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    cfg["lake"]["root"] = str(work / "lake")
    cfg["orchestration"]["state_dir"] = str(work / "state")
    g = cfg["generation"]
    for knob in SCALED:
        g[knob] = max(1, round(g[knob] * volume))
    g["max_new_tokens"] = max_new_tokens
    g["relsum_max_tokens"] = max(8, max_new_tokens)
    cfg["inputs"] = {
        "reviews": [{"path": str(work / "inbox" / "reviews-*.jsonl.gz"), "category": "All Beauty"}],
        "relevance": [{"paths": [str(work / "inbox" / "relevance-*.csv")], "format": "crowdflower"}],
    }
    # capped outputs are short by design and fail their rules more often: the gold gate's content
    # rules and failure share report instead of blocking the run (the benchmark measures cost)
    cfg["quality"]["content"] = {k: "warn" for k in cfg["quality"]["content"]}
    cfg["quality"]["max_failure_share"] = 1.0
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        cfg[section][key] = value
    path = work / "precis.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---------------------------------------------------------------------------------- running
def run_day(lake, ds: str, steps: tuple[str, ...] | None = None) -> Day:
    """Every daily step (or `steps`) for `ds` in the DAG's order, timed; a step that needs a ranker
    when there is none is skipped, as the DAG skips it."""
    from jobs.features import generate
    from jobs.pipeline import DAILY_STEPS
    from precis.errors import NoRanker

    day = Day(ds)
    for name in steps or tuple(DAILY_STEPS):
        t0 = time.perf_counter()
        try:
            if name.startswith("generate_"):
                report = generate(lake, name.removeprefix("generate_"), ds)
                day.calls[report.task] = report.generated + report.failed
                line = report.line()
            else:
                line = DAILY_STEPS[name](lake, ds)
        except NoRanker:
            line = "skipped (no ranker)"
        day.seconds[name] = time.perf_counter() - t0
        day.lines[name] = str(line).splitlines()[0] if line else ""
        print(f"  {ds} {name:<28} {day.seconds[name]:7.1f} s  {day.lines[name][:110]}", flush=True)
    return day


def rerun_reasons(lake, ds: str, ch: Changes) -> dict[str, dict[str, int]]:
    """Per task, the rows generated (or failed) on `ds`, by why they re-ran (the first that applies)."""
    from jobs.features import JOBS
    from jobs.lake import tables as T

    reviews = lake.read_pandas("bronze.reviews", ["review_id", "user_id", "product_id"])
    of_review = reviews.set_index("review_id")[["user_id", "product_id"]].to_dict("index")
    # a changed user's previous held-out review becomes train: its product's statistics and sample move
    shifted = set(reviews[reviews.user_id.isin(ch.users)].product_id)
    failures = lake.read_pandas(T.SILVER_GENERATION_FAILURES) if lake.exists(T.SILVER_GENERATION_FAILURES) else None
    out: dict[str, dict[str, int]] = {}
    for job in (j.generation for j in JOBS.values()):
        rows = []
        if lake.exists(job.table):
            made = lake.read_pandas(job.table)
            rows += made[made.ds == ds][list(job.keys)].to_dict("records")
        if failures is not None:
            bad = failures[(failures.ds == ds) & (failures.task == job.name)]
            rows += [dict(zip(job.keys, k.split("|"))) for k in bad.entity_key]
        why: dict[str, int] = {}
        for r in rows:
            r = {**of_review.get(r.get("review_id"), {}), **r}
            if r.get("review_id") in ch.reviews:
                reason = "its review changed"
            elif r.get("product_id") in ch.described:
                reason = "its description changed"
            elif r.get("user_id") in ch.users:
                reason = "a review of its user changed"
            elif r.get("product_id") in ch.products:
                reason = "a review of its product changed"
            elif r.get("product_id") in shifted:
                reason = "its product's train reviews moved (a changed user's held-out review)"
            else:
                reason = "other input moved"
            why[reason] = why.get(reason, 0) + 1
        if why:
            out[job.name] = why
    return out


def _print_days(days: list[Day]) -> None:
    steps = list(days[0].seconds)
    print("\nwall time per step (s):")
    print(f"  {'step':<28}" + "".join(f"{d.ds:>12}" for d in days))
    for s in steps:
        print(f"  {s:<28}" + "".join(f"{d.seconds.get(s, 0):12.1f}" for d in days))
    print(f"  {'total':<28}" + "".join(f"{d.wall:12.1f}" for d in days))
    print("\nLLM calls per task (rows sent to the model):")
    for t in days[0].calls:
        print(f"  {t:<28}" + "".join(f"{d.calls.get(t, 0):12d}" for d in days))
    print(f"  {'total':<28}" + "".join(f"{d.total_calls:12d}" for d in days))


def ratios(day1: Day, day2: Day) -> dict[str, float]:
    return {"calls": day2.total_calls / max(1, day1.total_calls), "wall": day2.wall / max(1e-9, day1.wall)}


def selected_users(lake) -> list[str]:
    from jobs.features.selection import selected_users as pick

    return [r.user_id for r in pick(lake).select("user_id").collect()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=10, help="copies of the Beauty reviews, distinct ids (10: 52,690 lines)")
    ap.add_argument("--volume", type=float, default=10.0, help="generation volume as a multiple of the demo's")
    ap.add_argument("--max-new-tokens", type=int, default=8, help="every task's generation cap (CPU)")
    ap.add_argument("--change", type=float, default=0.01, help="share of reviews (and of CrowdFlower rows) changed on day 2")
    ap.add_argument("--ranker-steps", type=int, default=8, help="training steps of the ranker made before day 1")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    args = ap.parse_args()
    import logging
    import os

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' loading bars on every Python worker
    with tempfile.TemporaryDirectory(prefix="precis-incremental-") as tmp:
        work = args.work or Path(tmp)
        bench(work, args.copies, args.volume, args.max_new_tokens, args.change, args.ranker_steps)


def bench(work: Path, copies: int, volume: float, max_new_tokens: int, change: float, ranker_steps: int,
          overrides: dict | None = None, steps: tuple[str, ...] | None = None, spark=None) -> dict:
    """The whole benchmark; returns the days, ratios and re-run reasons (the test reads them).
    `steps` runs a subset of the daily steps; `spark` reuses a session (the test suite's)."""
    import os

    from jobs.config import load_config
    from jobs.lake import Lake
    from jobs.ranking import train_ranker

    inbox = work / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    catalogue = write_catalogue(inbox, copies)
    config = write_config(work, volume, max_new_tokens, overrides)
    lake = Lake(load_config(config), spark)
    print(f"catalogue: {len(catalogue):,} review lines ({copies} copies), CrowdFlower as shipped; generation "
          f"{', '.join(f'{k}={getattr(lake.cfg.generation, k)}' for k in SCALED)}, max_new_tokens {max_new_tokens}; "
          f"cpus={os.cpu_count()}, spark {lake.cfg.spark.master}", flush=True)
    t0 = time.perf_counter()
    lake.spark.range(1).count()
    print(f"JVM start: {time.perf_counter() - t0:.1f} s (outside the days)", flush=True)
    if ranker_steps:
        from jobs.ingest.job import ingest_relevance

        ingest_relevance(lake, [str(inbox / "relevance-day1.csv")], "crowdflower", DAYS[0])
        t0 = time.perf_counter()
        train_ranker(lake, max_steps=ranker_steps)
        print(f"ranker: {ranker_steps} steps in {time.perf_counter() - t0:.0f} s (the weekly job, outside the days)", flush=True)

    day1 = run_day(lake, DAYS[0], steps)
    n = max(2, round(change * len(catalogue)))
    ch2 = write_changes(inbox, "day2", catalogue, n, round(change * 6269) if ranker_steps else 0, seed=2)
    print(f"day 2 changes: {ch2.counts}", flush=True)
    day2 = run_day(lake, DAYS[1], steps)
    reasons2 = rerun_reasons(lake, DAYS[1], ch2)
    one = selected_users(lake)[0]
    ch3 = write_changes(inbox, "day3", catalogue, 1, 0, seed=3, users=[one])
    print(f"day 3 changes: one edited review of user {one}", flush=True)
    day3 = run_day(lake, DAYS[2], steps)
    reasons3 = rerun_reasons(lake, DAYS[2], ch3)

    days = [day1, day2, day3]
    _print_days(days)
    r = ratios(day1, day2)
    print(f"\nday 2 / day 1: LLM calls {day2.total_calls}/{day1.total_calls} = {r['calls']:.1%} (target <= {TARGET_CALLS:.0%}), "
          f"wall time {day2.wall:.0f}/{day1.wall:.0f} s = {r['wall']:.1%} (target <= {TARGET_WALL:.0%})")
    for label, reasons in (("day 2 (%s)" % ", ".join(f"{v} {k}" for k, v in ch2.counts.items()), reasons2),
                           ("day 3 (one edited review)", reasons3)):
        print(f"\nwhy rows re-ran on {label}:")
        for task, why in reasons.items():
            print(f"  {task:<22} " + "; ".join(f"{v} {k}" for k, v in sorted(why.items(), key=lambda kv: -kv[1])))
    return {"days": days, "ratios": r, "reasons": {"day2": reasons2, "day3": reasons3}, "changes": [ch2, ch3]}


if __name__ == "__main__":
    sys.exit(main())
