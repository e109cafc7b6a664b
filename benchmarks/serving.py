"""The latency case for precomputed summaries, through the service a ranker calls (`precis serve`).

    .venv/bin/python benchmarks/serving.py --lake LAKE [--summaries ADAPTER] [--requests 40]

Four instances of the real service (`jobs.serve.create_app` on uvicorn, loopback). Three score with
the serving graph (`ranker.scorer.serving_model_file`, the calibrated int8 by default) and differ
only in the text each product is ranked on: the title alone, title + full description (truncated
only at `--max-length` tokens, 512 by default: the encoder's own limit, not the scorer's 128), and
title + the ReLSum summary of `--summaries` from gold.product_summaries (the adapter tag, or `base`;
default: the set with the most rows). The fourth ranks title + summary with the fused fp32 graph,
the alternative to int8. Then, in one run:

1. latency: `--requests` POST /rerank calls of 50 candidates each (a held-out query's judged
   products, filled up with other described products), the same candidates for every variant,
   the variants interleaved so that machine noise falls on all three; p50 and p99 over HTTP;
2. quality: NDCG@5 of each variant on the ranker's held-out queries, reranked through the same
   services (only products that have a description and a summary, so all rank the same
   candidates), and the summary's share of the description's NDCG gain over the title;
3. int8 against fp32 on title + summary: latency ratio, NDCG@5, and mean / max |score difference|
   over every held-out candidate.

Target (issue 17): title + summary p99 at most a quarter of title + description's, at 90% or
more of its NDCG gain.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


@dataclass
class Fixed:
    """What `create_app` reads from a service: one snapshot and a scorer, never refreshed."""

    snapshot: object
    scorer: object


def start(app) -> tuple[object, str]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", required=True, help="a lake with a ranker and gold.product_summaries")
    ap.add_argument("--summaries", default=None, help="adapter_version of the summaries (default: the most rows)")
    ap.add_argument("--requests", type=int, default=40, help="rerank calls per variant for the latency figures")
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--max-length", type=int, default=512, help="tokens the scorer reads (query + text)")
    args = ap.parse_args()

    import httpx

    from jobs.config import load_config
    from jobs.lake import Lake
    from jobs.ranking import judged_pairs, ranker_folder
    from jobs.serve import Snapshot, create_app
    from ranker import registry
    from ranker.metrics import ndcg_at_k
    from ranker.rerank import ProductView
    from ranker.scorer import OnnxScorer

    cfg = load_config(None, lake=args.lake)
    lake = Lake(cfg)
    folder = ranker_folder(lake)
    held = set(registry.manifest(folder)["split"]["val_queries"])
    pairs = judged_pairs(lake).select("query_id", "query", "product_id", "title", "description", "gain").toPandas()
    pairs = pairs[pairs.description.fillna("").str.strip() != ""]
    gold = lake.read_pandas("gold.product_summaries", ["product_id", "summary", "adapter_version"])
    tag = args.summaries or gold.adapter_version.value_counts().index[0]
    chosen = gold[gold.adapter_version == tag]
    summaries = dict(zip(chosen.product_id, chosen.summary))
    products = pairs.drop_duplicates("product_id").set_index("product_id")
    texts = {
        "title": {p: ProductView(p, r.title) for p, r in products.iterrows()},
        "title + description": {p: ProductView(p, r.title, r.description) for p, r in products.iterrows()},
        "title + summary": {p: ProductView(p, r.title, summaries.get(p)) for p, r in products.iterrows()},
    }
    s = cfg.ranker.scorer
    serving = OnnxScorer.configured(folder, s, serving=True, max_length=args.max_length)
    fp32 = OnnxScorer(folder, "model.opt.onnx", s.batch_size, args.max_length, s.threads, s.provider)
    FP32 = "title + summary, fp32"
    services = {**{name: (views, serving) for name, views in texts.items()}, FP32: (texts["title + summary"], fp32)}
    urls, servers = {}, []
    for name, (views, scorer) in services.items():
        snap = Snapshot(None, None, None, "benchmark", views)
        server, urls[name] = start(create_app(Fixed(snap, scorer)))
        servers.append(server)
    summarised = {p for p in products.index if p in summaries}
    print(f"{len(products)} described products, {len(summarised)} with a '{tag}' summary; ranker {folder.name}, "
          f"serving graph {s.serving_model_file} (and {fp32.path.name} for '{FP32}') reading up to "
          f"{args.max_length} tokens; {len(services)} services on loopback")
    int8_manifest = registry.manifest(folder).get("int8")
    if int8_manifest:
        print(f"int8 calibration: {len(int8_manifest['kept_fp32'])} of {int8_manifest['nodes']} nodes kept in fp32, "
              f"mean |int8 - fp32| {int8_manifest['mean_abs_diff']:.4f} on {int8_manifest['pairs']} training pairs "
              f"(tolerance {int8_manifest['tolerance']})")

    rng = random.Random(13)
    heldout = pairs[pairs.query_id.isin(held)]
    queries = [(q, g) for q, g in heldout.groupby("query_id")]
    pool = sorted(summarised)
    clients = {n: httpx.Client(base_url=u, timeout=120) for n, u in urls.items()}
    times = {n: [] for n in services}
    for i in range(args.requests):
        _, g = queries[i % len(queries)]
        cand = [p for p in g.product_id if p in summarised][: args.candidates]
        cand += rng.sample([p for p in pool if p not in set(cand)], args.candidates - len(cand))
        body = {"query": g["query"].iloc[0], "product_ids": cand}
        for name in rng.sample(list(services), len(services)):  # interleaved, in a shuffled order
            t0 = time.perf_counter()
            r = clients[name].post("/rerank", json=body)
            times[name].append(time.perf_counter() - t0)
            r.raise_for_status()

    ndcg = {n: [] for n in services}
    scores = {n: [] for n in (FP32, "title + summary")}
    for _, g in queries:
        g = g[g.product_id.isin(summarised)].drop_duplicates("product_id")
        if len(g) < 2:
            continue
        gains = dict(zip(g.product_id, g.gain))
        for name in services:
            ranked = clients[name].post("/rerank", json={"query": g["query"].iloc[0], "product_ids": list(g.product_id)}).json()
            got = {r["product_id"]: r["score"] for r in ranked["ranked"]}
            ndcg[name].append(ndcg_at_k(got, gains, 5))
            if name in scores:
                scores[name].append(np.array([got[p] for p in g.product_id]))
    for c in clients.values():
        c.close()
    for server in servers:
        server.should_exit = True

    print(f"\nPOST /rerank of {args.candidates} candidates, {args.requests} calls per variant:")
    print(f"  {'variant':22} {'p50 ms':>8} {'p99 ms':>8} {'NDCG@5':>8}  ({len(ndcg['title'])} held-out queries)")
    stats = {}
    for name in services:
        p50, p99 = (1000 * np.percentile(times[name], q) for q in (50, 99))
        stats[name] = (p50, p99, float(np.mean(ndcg[name])))
        print(f"  {name:22} {p50:8.1f} {p99:8.1f} {stats[name][2]:8.4f}")
    d, sm, t = stats["title + description"], stats["title + summary"], stats["title"]
    gain = (sm[2] - t[2]) / (d[2] - t[2]) if d[2] != t[2] else float("nan")
    print(f"\n  summary / description p99: {sm[1] / d[1]:.2f} (target <= 0.25); p50: {sm[0] / d[0]:.2f}")
    print(f"  summary's share of the description's NDCG@5 gain over the title: {gain:.0%} (target >= 90%)")
    f, i = stats[FP32], stats["title + summary"]
    diff = np.abs(np.concatenate(scores["title + summary"]) - np.concatenate(scores[FP32]))
    print(f"  {s.serving_model_file} against fp32 on title + summary: p50 {i[0] / f[0]:.2f}x, p99 {i[1] / f[1]:.2f}x "
          f"the time; NDCG@5 {i[2]:.4f} vs {f[2]:.4f}; |score difference| mean {diff.mean():.4f}, max {diff.max():.4f} "
          f"over {diff.size} held-out candidates")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
