"""What online rankers read: each product's title and current precomputed summary.

Reads go through delta-rs with a filter on the ids asked for (no Spark session), so a lookup or
rerank answers in well under a second. Until a summary table is published, products are served
on their title alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobs.lake import Lake
from ranker.rerank import ProductView

SUMMARY_TABLE = "gold.product_summaries"


def product_views(lake: Lake, product_ids: Sequence[str]) -> dict[str, ProductView]:
    ids = sorted(set(product_ids))
    if not ids or not lake.exists("bronze.products"):
        return {}
    rows = lake.delta_table("bronze.products").to_pyarrow_table(
        columns=["product_id", "title"], filters=[("product_id", "in", ids)]
    ).to_pylist()
    # TODO(issue 4/6): read the published summary of each product from the serving version.
    return {r["product_id"]: ProductView(r["product_id"], r["title"]) for r in rows}
