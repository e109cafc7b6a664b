"""Ground truth the features are measured against, read from the lake as pandas.

Each (user, product) pair's actual rating is the user's mean rating of the product over their
reviews of it; its actual review is their review text. Baselines a recommender would otherwise
use are computed on the same pairs, leave-one-out so the answer is never in the baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from generator.metrics import mode_share, paired_p_value, spearman
from jobs.features.spec import MetricRow
from jobs.lake import Lake
from jobs.lake import tables as T


# A distribution-read score whose expected value moves less than this across inputs (std, in
# points of its scale) ignores its input.
EXPECTED_MIN_STD = 0.05


def reviews(lake: Lake) -> pd.DataFrame:
    return lake.read_pandas(T.BRONZE_REVIEWS, ["user_id", "product_id", "rating", "title", "text"])


def review_text(r: pd.DataFrame) -> pd.Series:
    """A review as the metrics read it (`generator.review_text`): "<title>. <text>", no default title."""
    from generator.review_text import review_text as joined

    return pd.Series([joined(t, x) for t, x in zip(r["title"], r["text"])], index=r.index, dtype=object)


def pair_truth(lake: Lake, pairs: pd.DataFrame) -> pd.DataFrame:
    """`pairs` (user_id, product_id, ...) with `actual_rating` and `actual_review` (NaN / None where
    the user never reviewed the product), in the order of `pairs`."""
    r = reviews(lake)
    r["review"] = review_text(r)
    agg = r.groupby(["user_id", "product_id"]).agg(actual_rating=("rating", "mean"), actual_review=("review", " ".join))
    return pairs.join(agg, on=["user_id", "product_id"])


def actual_rating(lake: Lake, rows: pd.DataFrame) -> pd.Series:
    return pair_truth(lake, rows[["user_id", "product_id"]])["actual_rating"]


def leave_one_out_means(reviews: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per (user_id, product_id): the mean rating of `key`'s other reviews (NaN when it has none)."""
    g = reviews.groupby(key)["rating"].agg(["sum", "count"]).rename(columns={"sum": "s", "count": "n"})
    pair = reviews.groupby(["user_id", "product_id"])["rating"].agg(["sum", "count"]).reset_index()
    pair = pair.join(g, on=key)
    rest = pair["n"] - pair["count"]
    pair["baseline"] = np.where(rest > 0, (pair["s"] - pair["sum"]) / rest.where(rest > 0, 1), np.nan)
    return pair[["user_id", "product_id", "baseline"]]


def _errors(prefix: str, predicted: pd.Series, actual: pd.Series) -> list[MetricRow]:
    e = predicted.astype(float).to_numpy() - actual.astype(float).to_numpy()
    n = len(e)
    return [(f"{prefix}mae", float(np.abs(e).mean()), n), (f"{prefix}rmse", float(np.sqrt((e**2).mean())), n)]


def _baseline_errors(name: str, baseline: pd.Series, predicted: pd.Series, actual: pd.Series) -> list[MetricRow]:
    """A baseline's MAE and RMSE, and `<name>_mae_p`: the p-value of the paired test that its
    absolute errors and the prediction's differ (`generator.metrics.paired_p_value`)."""
    a = actual.astype(float).to_numpy()
    p = paired_p_value(np.abs(predicted.astype(float).to_numpy() - a), np.abs(baseline.astype(float).to_numpy() - a))
    return _errors(f"{name}_", baseline, actual) + [(f"{name}_mae_p", p, len(a))]


def rating_metrics(pred: pd.DataFrame, all_reviews: pd.DataFrame, column: str = "predicted_rating") -> list[MetricRow]:
    """Rating prediction against the actual rating, beside the baselines on the same pairs:
    MAE, RMSE, Spearman; global-mean, user-mean and item-mean (leave-one-out) errors, each with the
    p-value of the paired test against the prediction's errors (`<name>_mae_p`); and the share
    of the most common predicted value next to the actual ratings' (a predictor that says one value
    everywhere carries no signal however small its error)."""
    p = pred.dropna(subset=["actual_rating"]).reset_index(drop=True)
    if p.empty:
        return []
    actual = p["actual_rating"]
    rows = _errors("", p[column], actual)
    rows.append(("spearman", spearman(p[column], actual), len(p)))
    total, count = all_reviews["rating"].sum(), len(all_reviews)
    pair_sum = p.merge(all_reviews.groupby(["user_id", "product_id"])["rating"].agg(["sum", "count"]).reset_index(),
                       on=["user_id", "product_id"], how="left")
    global_loo = (total - pair_sum["sum"].fillna(0)) / (count - pair_sum["count"].fillna(0))
    rows += _baseline_errors("global_mean", global_loo, p[column], actual)
    for key, name in (("user_id", "user_mean"), ("product_id", "item_mean")):
        b = p.merge(leave_one_out_means(all_reviews, key), on=["user_id", "product_id"], how="left")
        rows += _baseline_errors(name, b["baseline"].fillna(global_loo), p[column], actual)  # no other review: global mean
    rows += [("mode_share", mode_share(p[column].round()), len(p)), ("actual_mode_share", mode_share(actual.round()), len(p))]
    return rows


def expected_value_metrics(expected: pd.Series, actual: pd.Series, scale: float = 1.0) -> list[MetricRow]:
    """A distribution-read score's expected value: its spread over every row (`expected_std`; a
    score that ignores its input does not move), and, on the rows with an actual rating, its
    Spearman with that rating and its MAE against `scale` x the rating (SUMFORU maps 1-5 stars to
    suitability 2-10)."""
    values = expected.astype(float)
    rows: list[MetricRow] = [("expected_std", float(values.std(ddof=0)) if len(values) else float("nan"), len(values))]
    known = actual.notna().to_numpy() & values.notna().to_numpy()
    if known.any():
        e, a = values[known], actual[known].astype(float)
        rows += [("expected_spearman", spearman(e, a), int(known.sum())),
                 ("expected_mae", float((e - scale * a).abs().mean()), int(known.sum()))]
    return rows


TOPK = 5  # top-k reranking is measured at this depth
RELEVANT_STARS = 4.0  # a held-out product the user rated at least this is one to rank high


def topk_metrics(pred: pd.DataFrame, split: pd.DataFrame, k: int = TOPK) -> list[MetricRow]:
    """EXP3RT's top-k reranking. For each user whose held-out product (in `split`, one snapshot of
    silver.review_split) they rated >= RELEVANT_STARS, and who has more than `k` candidates, the
    candidates are that product and the user's predicted products they never reviewed (those
    without an `actual_rating`); they are ranked by `predicted_rating_expected`, by popularity (train
    reviews of the product) and by the item's train mean rating (ties: product id, as
    `ranker.metrics`). NDCG@k and Recall@k of the held-out product, averaged over those users, and
    per baseline ordering the p-value of the paired test of its NDCG@k against the prediction's;
    nothing when no user qualifies."""
    from ranker.metrics import ndcg_at_k, rank_items

    train = split[split.split == "train"]
    popularity = train.groupby("product_id").size().astype(float)
    item_mean = train.groupby("product_id").rating.mean()
    held = split[(split.split != "train") & (split.rating >= RELEVANT_STARS)]
    relevant = held.groupby("user_id").product_id.agg(set)
    orders = {"": lambda g: g.predicted_rating_expected.astype(float),
              "popularity_": lambda g: g.product_id.map(popularity).fillna(0.0),
              "item_mean_": lambda g: g.product_id.map(item_mean).fillna(float(train.rating.mean()))}
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in orders}
    for user, g in pred.groupby("user_id"):
        mine = relevant.get(user, set())
        g = g[g.product_id.isin(mine) | g.actual_rating.isna()]
        if not mine & set(g.product_id) or len(g) <= k:
            continue
        gains = {p: float(p in mine) for p in g.product_id}
        for name, order in orders.items():
            scores = dict(zip(g.product_id, order(g)))
            top = rank_items(list(scores.items()))[:k]
            found[name].append((ndcg_at_k(scores, gains, k), sum(gains[p] for p in top) / sum(gains.values())))
    rows: list[MetricRow] = []
    for name, values in found.items():
        if values:
            rows += [(f"{name}topk_ndcg@{k}", float(np.mean([v[0] for v in values])), len(values)),
                     (f"{name}topk_recall@{k}", float(np.mean([v[1] for v in values])), len(values))]
        if name and values:  # a baseline ordering: the paired test of its NDCG against the prediction's, per user
            rows.append((f"{name}topk_ndcg@{k}_p", paired_p_value([v[0] for v in found[""]], [v[0] for v in values]),
                         len(values)))
    return rows


# Held-out reviews per owner a description is measured against (bounded: a popular product has
# hundreds, and a few dozen already decide the paired test).
MAX_HELDOUT_PER_OWNER = 20


def heldout_reviews(lake: Lake, key: str) -> pd.DataFrame:
    """(`key`, review): the held-out reviews of the newest split, at most MAX_HELDOUT_PER_OWNER per
    `key` (user_id or product_id), first by review_id."""
    split = lake.read_pandas(T.SILVER_REVIEW_SPLIT, ["review_id", key, "split", "ds"])
    held = split[(split.ds == split.ds.max()) & (split.split == "heldout")]
    held = held.sort_values([key, "review_id"]).groupby(key).head(MAX_HELDOUT_PER_OWNER)
    r = lake.read_pandas(T.BRONZE_REVIEWS, ["review_id", "title", "text"]).drop_duplicates("review_id")
    r["review"] = review_text(r)
    return held.merge(r[["review_id", "review"]], on="review_id")[[key, "review"]]


def owner_match_metrics(texts: pd.Series, heldout: pd.DataFrame, key: str) -> list[MetricRow]:
    """Does a description (a profile) describe its owner? `texts` is indexed by owner (`key`),
    `heldout` holds (`key`, review) rows no description was made from. For each held-out review of
    an owner with a description: the MiniLM cosine with its owner's description (`own_cosine`)
    against the mean cosine with every other owner's description (`other_cosine`), the paired
    test's p-value (`own_cosine_p`), and `own_top_share`: how often the owner's description is the
    closest of all (chance: 1 / number of owners, `chance_top_share`; `own_top_share_p` is the
    one-sided binomial test against chance). A description that says nothing about its owner
    ("The user profile is a summary of the preferences") is no closer to the owner's reviews than
    anyone else's is."""
    from scipy.stats import binomtest

    from generator.retrieval import embed

    texts = texts.dropna()
    held = heldout[heldout[key].isin(texts.index)]
    if len(texts) < 2 or held.empty:
        return []
    owners = list(texts.index)
    at = {o: i for i, o in enumerate(owners)}
    vecs = embed([*texts.tolist(), *held["review"].tolist()])
    sims = vecs[len(owners):] @ vecs[: len(owners)].T  # (held-out review, description)
    mine = np.array([at[o] for o in held[key]])
    own = sims[np.arange(len(held)), mine]
    other = (sims.sum(1) - own) / (len(owners) - 1)
    top = int((sims.argmax(1) == mine).sum())
    n = len(held)
    return [("own_cosine", float(own.mean()), n), ("other_cosine", float(other.mean()), n),
            ("own_cosine_p", paired_p_value(own, other), n), ("own_top_share", top / n, n),
            ("chance_top_share", 1.0 / len(owners), n),
            ("own_top_share_p", float(binomtest(top, n, 1.0 / len(owners), alternative="greater").pvalue), n)]
