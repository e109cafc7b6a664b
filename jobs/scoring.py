"""Ranker scoring inside Spark: an Arrow-batched pandas UDF whose ONNX session is loaded
once per Python worker (kept in a module-level cache that outlives tasks, since Spark reuses its
Python workers) rather than once per batch or per row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ranker.config import ScorerConfig

if TYPE_CHECKING:
    from pyspark.sql import Column

_SCORERS: dict[tuple, object] = {}


def cached_scorer(model_dir: str, cfg: ScorerConfig):
    """One OnnxScorer per (model, settings) per process."""
    from ranker.scorer import OnnxScorer

    key = (str(model_dir), cfg.model_file, cfg.batch_size, cfg.max_length, cfg.threads, cfg.provider)
    if key not in _SCORERS:
        _SCORERS[key] = OnnxScorer.configured(model_dir, cfg)
    return _SCORERS[key]


def score_udf(model_dir: str | Path, cfg: ScorerConfig):
    """A pandas UDF `(query, text) -> float score`, for `df.withColumn("score", udf("query", "text"))`."""
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import FloatType

    model_dir = str(model_dir)
    settings = cfg.model_dump()

    @pandas_udf(FloatType())  # a type object, not DDL: parsing DDL needs a live session
    def score(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        scorer = cached_scorer(model_dir, ScorerConfig(**settings))
        for queries, texts in batches:
            yield pd.Series(scorer.score(queries.fillna("").tolist(), texts.fillna("").tolist()))

    return score


def product_text_col(title: "Column", extra: "Column") -> "Column":
    """Spark twin of `ranker.texts.product_text`: title, or `title | extra` when extra is non-blank."""
    from pyspark.sql import functions as F

    from ranker.texts import SEPARATOR

    t = F.trim(F.coalesce(title, F.lit("")))
    e = F.trim(F.coalesce(extra, F.lit("")))
    return F.when(e == "", t).otherwise(F.concat(t, F.lit(SEPARATOR), e))
