"""`precis serve`: the long-lived HTTP service an online ranker calls (FastAPI on uvicorn).

Contract:

- It answers from one **snapshot**: a published version of `serving.product_summaries` (every
  row) and the titles of `bronze.products` at the version current when the snapshot was taken,
  both held in memory (a catalogue of a million products is a few hundred MB), with the ONNX
  ranker loaded once for reranking.
- A background thread polls both tables' versions every `poll_seconds`; when either changed it
  loads a complete new snapshot and then swaps one reference. A request reads that reference
  once, so an answer never mixes versions, and no request waits for a load or needs a restart.
- Endpoints (JSON): `GET /health`; `GET /version` (the snapshot's versions and when it was
  loaded); `POST /lookup {"product_ids": [...]}` -> each product's title, summary and lineage
  (unknown ids listed apart); `POST /rerank {"query": ..., "product_ids": [...]}` -> the ids
  ranked by the ranker on title + summary (title alone where there is no summary). A malformed
  request is answered 422 with the field at fault, an unknown product id in a rerank 404 with the
  ids. Every answer names the `serving_version` it came from.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobs.lake import Lake
from jobs.lake.tables import BRONZE_PRODUCTS, SERVING_PRODUCT_SUMMARIES
from ranker.rerank import ProductView, Reranker

log = logging.getLogger(__name__)

MAX_IDS = 1000  # product ids in one request


@dataclass(frozen=True)
class Snapshot:
    """Everything one answer reads: never changed once built."""

    serving_version: int | None  # None: nothing published yet (titles only)
    products_version: int | None
    published_ds: str | None
    loaded_at: str
    views: dict[str, ProductView] = field(repr=False)

    @property
    def versions(self) -> tuple[int | None, int | None]:
        return self.serving_version, self.products_version

    def about(self) -> dict[str, Any]:
        return {"serving_version": self.serving_version, "products_version": self.products_version,
                "published_ds": self.published_ds, "loaded_at": self.loaded_at, "products": len(self.views),
                "summaries": sum(v.summary is not None for v in self.views.values())}


def _version(lake: Lake, table) -> int | None:
    return lake.delta_table(table).version() if lake.exists(table) else None


def load_snapshot(lake: Lake) -> Snapshot:
    """Titles and published summaries, each table read at one version."""
    products = lake.delta_table(BRONZE_PRODUCTS) if lake.exists(BRONZE_PRODUCTS) else None
    titles = lake.read_arrow(BRONZE_PRODUCTS, ["product_id", "title"], dt=products).to_pylist() if products else []
    serving = lake.delta_table(SERVING_PRODUCT_SUMMARIES) if lake.exists(SERVING_PRODUCT_SUMMARIES) else None
    summaries: dict[str, dict] = {}
    published = None
    if serving is not None:
        cols = ["product_id", "summary", "model_id", "adapter_version", "prompt_version", "published_ds"]
        for r in lake.read_arrow(SERVING_PRODUCT_SUMMARIES, cols, dt=serving).to_pylist():
            summaries[r["product_id"]] = r
            published = r["published_ds"]
    serving_version = serving.version() if serving is not None else None
    views = {}
    for r in titles:
        s = summaries.get(r["product_id"])
        source = (f"serving.product_summaries v{serving_version} (published {s['published_ds']}; "
                  f"{s['model_id']}/{s['adapter_version']}/{s['prompt_version']})") if s else None
        views[r["product_id"]] = ProductView(r["product_id"], r["title"] or "", s and s["summary"], source)
    return Snapshot(serving_version, products.version() if products else None,
                    published, datetime.now(timezone.utc).isoformat(timespec="seconds"), views)


class Service:
    """The current snapshot, the ranker, and the thread that swaps in new published versions."""

    def __init__(self, lake: Lake, scorer, poll_seconds: float = 10.0):
        self.lake = lake
        self.scorer = scorer
        self.poll_seconds = poll_seconds
        self.snapshot = load_snapshot(lake)  # replaced whole, never modified: one attribute read is atomic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        log.info("serving version %s: %d products, %d with a summary", self.snapshot.serving_version,
                 len(self.snapshot.views), self.snapshot.about()["summaries"])

    def refresh(self) -> bool:
        """Load and swap in a new snapshot if either table has a new version; True when it did."""
        current = (_version(self.lake, SERVING_PRODUCT_SUMMARIES), _version(self.lake, BRONZE_PRODUCTS))
        if current == self.snapshot.versions:
            return False
        started = time.perf_counter()
        new = load_snapshot(self.lake)
        self.snapshot = new
        log.info("now serving version %s (products v%s), loaded in %.2f s", new.serving_version, new.products_version,
                 time.perf_counter() - started)
        return True

    def start(self) -> None:
        def poll():
            while not self._stop.wait(self.poll_seconds):
                try:
                    self.refresh()
                except Exception:  # a failed load keeps the last good snapshot; the next poll tries again
                    log.exception("could not load a new serving version; still serving %s", self.snapshot.serving_version)

        self._thread = threading.Thread(target=poll, name="precis-serve-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class Lookup(BaseModel):
    """POST /lookup's body."""

    model_config = ConfigDict(extra="forbid")
    product_ids: list[str] = Field(min_length=1, max_length=MAX_IDS, description="Products to look up.")


class Rerank(Lookup):
    """POST /rerank's body."""

    query: str = Field(min_length=1, max_length=500, description="The shopper's query.")


def create_app(service: Service):
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="Precis serving", description=__doc__)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "serving_version": service.snapshot.serving_version}

    @app.get("/version")
    def version() -> dict[str, Any]:
        return service.snapshot.about()

    @app.post("/lookup")
    def lookup(body: Lookup) -> dict[str, Any]:
        snap = service.snapshot
        found = [snap.views[p] for p in body.product_ids if p in snap.views]
        return {"serving_version": snap.serving_version,
                "products": [{"product_id": v.product_id, "title": v.title, "summary": v.summary, "source": v.summary_source}
                             for v in found],
                "unknown": [p for p in body.product_ids if p not in snap.views]}

    @app.post("/rerank")
    def rerank(body: Rerank) -> dict[str, Any]:
        snap = service.snapshot
        unknown = [p for p in body.product_ids if p not in snap.views]
        if unknown:
            raise HTTPException(404, f"unknown product ids: {', '.join(unknown[:20])}")
        ranked = Reranker(service.scorer, snap.views).rerank(body.query, body.product_ids)
        return {"serving_version": snap.serving_version, "query": body.query,
                "ranked": [{"product_id": r.product_id, "score": r.score, "used_summary": r.used_summary} for r in ranked]}

    return app


def serve(lake: Lake, scorer, host: str, port: int, poll_seconds: float) -> None:
    """Run the service until interrupted (uvicorn)."""
    import uvicorn

    service = Service(lake, scorer, poll_seconds)
    service.start()
    print(f"precis serve: serving version {service.snapshot.serving_version} on http://{host}:{port} "
          f"(GET /health, GET /version, POST /lookup, POST /rerank; new versions picked up every {poll_seconds:g} s)")
    try:
        uvicorn.run(create_app(service), host=host, port=port, log_level="warning")
    finally:
        service.stop()
