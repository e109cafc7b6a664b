"""`precis serve`: a real uvicorn server on loopback over a real lake, called over HTTP (httpx):
lookup and rerank from one published version, bad requests answered 4xx with a reason, and a
newly published version picked up without a restart, never mixed with the old in one answer."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import datetime, timezone

import httpx
import pytest

from tests.conftest import make_lake


def _publish(lake, spark, product_ids, tag):
    """A serving version whose summaries all name `tag`, written as publish writes it (one commit)."""
    from jobs.lake.lake import spark_schema
    from jobs.lake.tables import SERVING_PRODUCT_SUMMARIES

    now = datetime.now(timezone.utc)
    rows = [(p, f"summary {tag} of {p}", "HuggingFaceTB/SmolLM2-135M-Instruct", "base", "pv", "h", now, "2024-05-0" + tag[-1], now)
            for p in product_ids]
    df = spark.createDataFrame(rows, spark_schema(SERVING_PRODUCT_SUMMARIES.schema))
    lake.replace_table(SERVING_PRODUCT_SUMMARIES, df)


@pytest.fixture
def served(tmp_path, spark, ranked_lake):
    import uvicorn

    from jobs.ranking import ranker_folder
    from jobs.serve import Service, create_app
    from ranker.scorer import OnnxScorer

    root = tmp_path / "lake"
    shutil.copytree(ranked_lake.root, root)
    lake = make_lake(root, spark)
    ids = sorted(lake.read_pandas("bronze.products", ["product_id"]).product_id)[:6]
    _publish(lake, spark, ids[:4], "v1")
    s = lake.cfg.ranker.scorer
    service = Service(lake, OnnxScorer(ranker_folder(lake), s.model_file, s.batch_size, s.max_length), poll_seconds=0.2)
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    service.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield lake, service, client, ids
    service.stop()
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_serve_answers_lookup_and_rerank_from_one_published_version_and_picks_up_the_next(served, spark):
    from ranker.rerank import Reranker

    lake, service, client, ids = served
    assert client.get("/health").json() == {"status": "ok", "serving_version": 0}
    about = client.get("/version").json()
    assert about["serving_version"] == 0 and about["summaries"] == 4 and about["products"] >= 6

    got = client.post("/lookup", json={"product_ids": [ids[0], ids[5], "nope"]}).json()
    assert got["serving_version"] == 0 and got["unknown"] == ["nope"]
    by = {p["product_id"]: p for p in got["products"]}
    assert by[ids[0]]["summary"] == f"summary v1 of {ids[0]}" and "serving.product_summaries v0" in by[ids[0]]["source"]
    assert by[ids[5]]["summary"] is None and by[ids[5]]["title"]  # not published: its title alone

    ranked = client.post("/rerank", json={"query": "led lights", "product_ids": ids}).json()
    direct = Reranker(service.scorer, service.snapshot.views).rerank("led lights", ids)
    assert [r["product_id"] for r in ranked["ranked"]] == [r.product_id for r in direct]
    assert [r["score"] for r in ranked["ranked"]] == pytest.approx([r.score for r in direct])
    assert [r["used_summary"] for r in ranked["ranked"]] == [r.used_summary for r in direct]

    # bad requests: 4xx with the reason
    r = client.post("/rerank", json={"product_ids": ids})
    assert r.status_code == 422 and "query" in r.text
    r = client.post("/rerank", json={"query": "x", "product_ids": [ids[0], "nope"]})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    assert client.post("/lookup", json={"product_ids": []}).status_code == 422
    assert client.post("/lookup", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422

    # a new published version, while lookups run: each answer is wholly one version
    answers, stop = [], threading.Event()

    def hammer():
        with httpx.Client(base_url=str(client.base_url), timeout=30) as c:
            while not stop.is_set():
                answers.append(c.post("/lookup", json={"product_ids": ids[:4]}).json())

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for w in workers:
        w.start()
    _publish(lake, spark, ids[:5], "v2")
    deadline = time.monotonic() + 30
    while client.get("/version").json()["serving_version"] != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    for w in workers:
        w.join()
    assert client.get("/version").json()["serving_version"] == 1  # no restart
    seen = set()
    for a in answers:
        tags = {p["summary"].split()[1] for p in a["products"]}
        assert tags == {f"v{a['serving_version'] + 1}"}, a  # never two versions in one answer
        seen.add(a["serving_version"])
    assert 1 in seen
    got = client.post("/lookup", json={"product_ids": [ids[4]]}).json()
    assert got["serving_version"] == 1 and got["products"][0]["summary"] == f"summary v2 of {ids[4]}"
