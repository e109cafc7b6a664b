"""Training inputs per task, read from the lake: rendered prompts and what each reward or target
needs. Only training rows: ReLSum uses the ranker's training queries (its held-out queries evaluate),
and EXP3RT/RPO/SUMFORU read train reviews (silver.review_split keeps the held-out ones out).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pandas as pd

from generator.review_text import review_text
from generator.tasks.history import RatingHistory
from jobs.lake import Lake
from jobs.lake import tables as T
from precis.errors import MissingPrerequisite

log = logging.getLogger(__name__)


def load_tokenizer(lake: Lake):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model(lake))


def base_model(lake: Lake) -> str:
    from generator.models import resolve

    return resolve(lake.cfg.generation.model or lake.cfg.models.generator, lake.cfg.cache_dir)


def render(tokenizer, task, inputs: dict[str, Any]) -> str:
    from generator.backends import render_prompt

    return render_prompt(tokenizer, task.messages(inputs))


def snapshot(lake: Lake, *tables: str) -> str:
    return json.dumps({t: {"version": lake.delta_table(t).version(), "rows": lake.count(t)} for t in tables if lake.exists(t)})


def reviews_payload(df: pd.DataFrame) -> list[tuple[float, str]]:
    return [(float(r.rating), " ".join(x for x in (r.title, r.text) if isinstance(x, str))) for r in df.itertuples()]


RELSUM_PARTS = ("train", "validation", "heldout")


def relsum_rows(lake: Lake, tokenizer, limit: int, part: str = "train") -> list[dict[str, Any]]:
    """Prompts from silver.relsum_pairs (else all judged pairs), with what the reward reads.

    `part`: `train` (the default) draws from the ranker's training queries, in a seeded order;
    `validation` takes the pairs that follow the first `training.train.max_examples` of that order
    and whose product none of those has (what the weekly DAG judges a candidate on, so no
    evaluation row is used to pick an adapter); `heldout` draws from the ranker's held-out queries
    (evaluation only)."""
    from generator.tasks import relsum
    from jobs.ranking import judged_pairs, ranker_folder
    from ranker import registry as ranker_registry

    if part not in RELSUM_PARTS:
        raise ValueError(f"relsum_rows: part must be one of {RELSUM_PARTS}, got {part!r}")
    held = set(ranker_registry.manifest(ranker_folder(lake))["split"]["val_queries"])
    cols = ["query_id", "query", "product_id", "title", "description", "gain"]

    def usable(df):
        df = df[df.query_id.isin(held) == (part == "heldout")]
        return df[df.description.fillna("").str.strip() != ""].sort_values(["query_id", "product_id"])

    pairs = usable(lake.read_pandas(T.SILVER_RELSUM_PAIRS, cols)) if lake.exists(T.SILVER_RELSUM_PAIRS) else None
    if pairs is None or pairs.empty:  # no description_delta pairs (yet): every judged pair
        pairs = usable(judged_pairs(lake).select(*cols).toPandas())
    pairs = pairs.sample(frac=1.0, random_state=lake.cfg.training.train.seed)
    if part == "validation":
        trained = pairs.head(lake.cfg.training.train.max_examples)
        pairs = pairs.iloc[len(trained):]
        pairs = pairs[~pairs.product_id.isin(set(trained.product_id))]
    pairs = pairs.head(limit)
    task, cap = relsum.task(lake.cfg.generation.relsum_max_tokens), lake.cfg.generation.relsum_max_tokens
    rows = []
    for p in pairs.itertuples():
        inputs = relsum.prepare(p.title, p.description, cap)
        rows.append({"prompt": render(tokenizer, task, inputs), "query": p.query, "title": p.title,
                     "gain": float(p.gain), "max_words": inputs["max_words"], "inputs": inputs})
    return rows


def sumforu_rows(lake: Lake, tokenizer, limit: int) -> list[dict[str, Any]]:
    """RLAIF rows: each persona with each sampled product's reviews. `actual_rating` is the
    persona-holder's own train rating of the product (NaN where they did not review it), for the
    reward's agreement term; those pairs come first, and their rating history leaves that rating
    out, as an anchored target's does."""
    from generator.tasks import sumforu

    personas = lake.read_pandas(T.GOLD_PERSONAS, ["user_id", "persona"]).drop_duplicates("user_id")
    if personas.empty:
        raise MissingPrerequisite("no personas in gold.personas", "run `precis job generate_personas` first")
    samples = lake.read_pandas(T.SILVER_REVIEW_SAMPLES)
    samples = samples[samples.ds == samples.ds.max()]
    users, items = train_rating_stats(lake)
    rated = train_ratings(lake)
    task = sumforu.summary_task()
    rows = []
    for product_id, g in sorted(samples.groupby("product_id"), key=lambda x: -len(x[1])):
        reviews = reviews_payload(g.sort_values("sample_rank").head(12))
        for persona in personas.itertuples():
            stars = rated.get((persona.user_id, product_id))
            u = users.loc[persona.user_id] if persona.user_id in users.index else None
            i = items.loc[product_id] if product_id in items.index else None
            history = RatingHistory(*_without(u, "user", stars), *_without(i, "item", stars))
            inputs = sumforu.prepare_summary(persona.persona, reviews, history)
            rows.append({"prompt": render(tokenizer, task, inputs), "persona": persona.persona,
                         "reviews": "\n".join(t for _, t in reviews), "inputs": inputs,
                         "actual_rating": float("nan") if stars is None else stars})
    rows.sort(key=lambda r: r["actual_rating"] != r["actual_rating"])  # rated pairs first (stable)
    rows = rows[:limit]
    log.info("sumforu rlaif rows: %d, %d of them rated by the persona-holder (agreement term)",
             len(rows), sum(r["actual_rating"] == r["actual_rating"] for r in rows))
    return rows


def _without(stats, who: str, stars: float | None) -> tuple[float | None, int]:
    """(mean, n) of a `train_rating_stats` row, without one rating `stars` of it when given."""
    if stats is None:
        return None, 0
    mean, n = float(stats[f"{who}_mean"]), int(stats[f"{who}_n"])
    if stars is None:
        return mean, n
    return (None, 0) if n <= 1 else ((mean * n - stars) / (n - 1), n - 1)


def train_ratings(lake: Lake) -> dict[tuple[str, str], float]:
    """(user_id, product_id) -> the stars of that user's train review of the product."""
    split = lake.read_pandas(T.SILVER_REVIEW_SPLIT)
    train = split[(split.ds == split.ds.max()) & (split.split == "train")]
    return {(r.user_id, r.product_id): float(r.rating) for r in train.itertuples()}


def train_rating_stats(lake: Lake, leave_out: set[str] | frozenset[str] = frozenset()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(user_mean, user_n) by user_id and (item_mean, item_n) by product_id over train reviews,
    without the reviews in `leave_out` (a training target's own rating)."""
    split = lake.read_pandas(T.SILVER_REVIEW_SPLIT)
    train = split[(split.ds == split.ds.max()) & (split.split == "train") & ~split.review_id.isin(leave_out)]
    return (train.groupby("user_id").rating.agg(user_mean="mean", user_n="count"),
            train.groupby("product_id").rating.agg(item_mean="mean", item_n="count"))


def exp3rt_rows(lake: Lake, tokenizer, limit: int) -> list[dict[str, Any]]:
    from generator.tasks import exp3rt

    samples = lake.read_pandas(T.SILVER_REVIEW_SAMPLES).sort_values(["product_id", "sample_rank"]).head(limit)
    task = exp3rt.preferences_task()
    rows = []
    for r in samples.itertuples():
        inputs = exp3rt.prepare_preferences(float(r.rating), r.title, r.text)
        rows.append({"prompt": render(tokenizer, task, inputs), "inputs": inputs})
    return rows


def rpo_items(lake: Lake, limit: int) -> list[dict[str, Any]]:
    """(generic text, history, target): the generic text is another shopper's review of a product
    the user reviewed; the target is the user's own review of it; the history is their other reviews."""
    hist = lake.read_pandas(T.SILVER_USER_HISTORIES)
    hist = hist[hist.ds == hist.ds.max()].sort_values(["n_reviews", "user_id"], ascending=[False, True])
    reviews = lake.read_pandas(T.BRONZE_REVIEWS, ["user_id", "product_id", "title", "text"])
    items = []
    for h in hist.itertuples():
        mine = list(h.reviews)
        for own in mine:
            other = reviews[(reviews.product_id == own["product_id"]) & (reviews.user_id != h.user_id)].head(1)
            if other.empty:
                continue
            generic = other.iloc[0]
            items.append({"generic": review_text(generic["title"], generic["text"]), "target": review_text(own["title"], own["text"]),
                          "history": [review_text(m["title"], m["text"]) for m in mine if m["review_id"] != own["review_id"]]})
            if len(items) >= limit:
                return items
    return items


def rpo_rows(lake: Lake, tokenizer, limit: int, k: int | None = None) -> list[dict[str, Any]]:
    from generator.tasks import rpo

    task = rpo.task()
    k = k or lake.cfg.generation.history_k
    rows = []
    for it in rpo_items(lake, limit):
        inputs = rpo.prepare(it["generic"], it["history"][:k])
        rows.append({"prompt": render(tokenizer, task, inputs), "target": it["target"], "inputs": inputs})
    return rows




def within_prompt_limit(rows: list[dict[str, Any]], max_chars: int, what: str) -> list[dict[str, Any]]:
    """Drop rows whose rendered prompt is over `training.train.max_prompt_chars` (memory and step time
    grow with it), saying how many went."""
    kept = [r for r in rows if len(r["prompt"]) <= max_chars]
    if len(kept) < len(rows):
        log.info("%s: %d of %d prompts over %d characters dropped", what, len(rows) - len(kept), len(rows), max_chars)
    if rows and not kept:
        raise ValueError(f"{what}: every prompt is over training.train.max_prompt_chars={max_chars}; raise it")
    return kept
