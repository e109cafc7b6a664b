"""Training pairs for the score students (EXP3RT's rating, SUMFORU's suitability), built to mirror
the evaluation exactly, on users the evaluation never uses:

- users: active users outside the evaluation users (the `generation.n_users` most active), with at
  least 3 train reviews, in a seeded hash order; each contributes its newest train review as the
  target pair, so its profile or persona, like an evaluated user's, comes from the reviews before it;
  training draws the first users of that order, the weekly DAG validates a candidate on the next
  ones (`skip`);
- the target product's sampled train reviews other than any target feed its item side, and the
  rating history (user and product means) leaves the target out.

No held-out review is read: everything comes from the train side of `silver.review_split`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from generator.tasks.history import RatingHistory
from jobs.lake import Lake
from jobs.lake import tables as T
from jobs.train.datasets import train_rating_stats

log = logging.getLogger(__name__)

MIN_TRAIN_REVIEWS = 3  # a training user keeps >= 2 reviews for the profile after its target
MAX_HISTORY = 6  # the user's newest train reviews before the target that feed the profile or persona
PROGRESS_EVERY = 32  # inputs per progress line


@dataclass(frozen=True)
class TrainingPairs:
    targets: pd.DataFrame  # one row per training user: review_id, user_id, product_id, rating, title, text
    history: pd.DataFrame  # the users' train reviews before the target (newest MAX_HISTORY)
    samples: pd.DataFrame  # the target products' sampled train reviews, no target among them, by sample_rank
    stats: tuple[pd.DataFrame, pd.DataFrame]  # train_rating_stats without the targets

    def history_of(self, target) -> RatingHistory:
        users, items = self.stats

        def get(frame: pd.DataFrame, key: str, mean: str, n: str) -> tuple[float | None, int]:
            if key not in frame.index:
                return None, 0
            return float(frame.loc[key, mean]), int(frame.loc[key, n])

        return RatingHistory(*get(users, target.user_id, "user_mean", "user_n"),
                             *get(items, target.product_id, "item_mean", "item_n"))


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.ds == df.ds.max()] if len(df) else df


def _order(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def training_pairs(lake: Lake, limit: int, seed: int, skip: int = 0) -> TrainingPairs:
    """Up to `limit` users of the seeded order, after its first `skip` (the weekly DAG's
    validation users follow the `training.train.max_examples` that training draws)."""
    split = _latest(lake.read_pandas(T.SILVER_REVIEW_SPLIT))
    train_ids = set(split.loc[split.split == "train", "review_id"])
    reviews = lake.read_pandas(T.BRONZE_REVIEWS, ["review_id", "user_id", "product_id", "rating", "title", "text", "review_time"])
    train = reviews[reviews.review_id.isin(train_ids)]
    hist = _latest(lake.read_pandas(T.SILVER_USER_HISTORIES, ["user_id", "n_reviews", "ds"]))
    evaluated = set(hist.sort_values(["n_reviews", "user_id"], ascending=[False, True]).head(lake.cfg.generation.n_users).user_id)

    counts = train.groupby("user_id").size()
    eligible = sorted((u for u, n in counts.items() if n >= MIN_TRAIN_REVIEWS and u not in evaluated),
                      key=lambda u: _order(seed, u))[skip : skip + limit]
    mine = train[train.user_id.isin(eligible)].sort_values(["review_time", "review_id"], ascending=[False, True])
    targets = mine.groupby("user_id").head(1)
    targets = targets.assign(order=targets.user_id.map(lambda u: _order(seed, u))).sort_values("order").reset_index(drop=True)
    target_ids = set(targets.review_id)
    history = mine[~mine.review_id.isin(target_ids)].groupby("user_id").head(MAX_HISTORY)

    samples = _latest(lake.read_pandas(T.SILVER_REVIEW_SAMPLES, ["product_id", "review_id", "sample_rank", "ds"]))
    samples = samples[samples.product_id.isin(set(targets.product_id)) & ~samples.review_id.isin(target_ids)]
    samples = samples.drop(columns="ds").merge(train.drop(columns="product_id"), on="review_id").sort_values(["product_id", "sample_rank"])
    log.info("training pairs: %d users (not among the %d evaluated), %d products, %d history and %d sampled reviews",
             len(targets), len(evaluated), targets.product_id.nunique(), len(history), len(samples))
    return TrainingPairs(targets, history, samples, train_rating_stats(lake, leave_out=target_ids))


def run_logged(backend, task, inputs: list[dict[str, Any]], attempts: int) -> list:
    """run_task in chunks, with a progress line per chunk (a 2-core CPU labels about 1 input a second)."""
    from generator.tasks.base import run_task

    out: list = []
    started = time.monotonic()
    for start in range(0, len(inputs), PROGRESS_EVERY):
        out += run_task(backend, task, inputs[start : start + PROGRESS_EVERY], attempts)
        failed = sum(r.status != "ok" for r in out)
        log.info("%s: %d/%d done (%d failed) in %.0f s", task.name, len(out), len(inputs), failed, time.monotonic() - started)
    return out


def in_process(settings):
    """A daily job's generator settings, loaded in this process with every core."""
    import dataclasses

    return dataclasses.replace(settings, threads=0).load()
