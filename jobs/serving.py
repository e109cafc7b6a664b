"""What online rankers read: each product's title and its published summary.

Reads go through delta-rs with a filter on the ids asked for (no Spark session), so a lookup or
rerank answers in well under a second. Summaries come from `serving.product_summaries`, which
publish replaces in one commit; each read pins one version of it. A product without a published
summary is served on its title alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobs.lake import Lake
from jobs.lake.tables import SERVING_PRODUCT_SUMMARIES
from ranker.rerank import ProductView


def product_views(lake: Lake, product_ids: Sequence[str]) -> dict[str, ProductView]:
    ids = sorted(set(product_ids))
    if not ids or not lake.exists("bronze.products"):
        return {}
    titles = lake.read_arrow("bronze.products", ["product_id", "title"], {"product_id": ids}).to_pylist()
    summaries: dict[str, dict] = {}
    if lake.exists(SERVING_PRODUCT_SUMMARIES):
        serving = lake.delta_table(SERVING_PRODUCT_SUMMARIES)  # one version for the whole read
        version = serving.version()
        cols = ["product_id", "summary", "model_id", "adapter_version", "published_ds"]
        for r in lake.read_arrow(SERVING_PRODUCT_SUMMARIES, cols, {"product_id": ids}, dt=serving).to_pylist():
            r["source"] = (f"serving.product_summaries v{version} (published {r['published_ds']}; "
                           f"{r['model_id']}/{r['adapter_version']})")
            summaries[r["product_id"]] = r
    views = {}
    for r in titles:
        s = summaries.get(r["product_id"])
        views[r["product_id"]] = ProductView(r["product_id"], r["title"], s and s["summary"], s and s["source"])
    return views
