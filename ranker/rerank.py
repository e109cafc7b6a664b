"""Online reranking on title + precomputed summary: what a search ranker does at query time.

The model and the product texts are loaded once; a call scores the candidates in one batch. A
product without a summary is scored on its title alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ranker.scorer import OnnxScorer
from ranker.texts import product_text


@dataclass(frozen=True)
class ProductView:
    """What the ranker reads for one product."""

    product_id: str
    title: str
    summary: str | None = None
    summary_source: str | None = None  # e.g. gold.product_summaries@<model>/<adapter>

    @property
    def text(self) -> str:
        return product_text(self.title, self.summary)


@dataclass(frozen=True)
class Ranked:
    product_id: str
    score: float
    used_summary: bool


class Reranker:
    def __init__(self, scorer: OnnxScorer, products: Mapping[str, ProductView]):
        self.scorer = scorer
        self.products = products  # read only; not copied (the service's snapshot holds the whole catalogue)

    def rerank(self, query: str, product_ids: Sequence[str]) -> list[Ranked]:
        unknown = [p for p in product_ids if p not in self.products]
        if unknown:
            raise KeyError(f"unknown product ids: {', '.join(unknown[:10])}")
        views = [self.products[p] for p in product_ids]
        scores = self.scorer.score([query] * len(views), [v.text for v in views])
        ranked = [Ranked(v.product_id, float(s), v.summary is not None) for v, s in zip(views, scores)]
        return sorted(ranked, key=lambda r: (-r.score, r.product_id))
