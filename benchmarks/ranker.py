"""Ranker scoring speed and quality, and the latency case for precomputed summaries.

    .venv/bin/python benchmarks/ranker.py [--ranker DIR] [--pairs 5000]

1. Throughput on the same real CrowdFlower pairs (query, title + description), all in this run:
   - PyTorch fp32, every input padded to 128 tokens, batches of 64 in input order: what a user
     writes with sentence-transformers (a cross-encoder: `CrossEncoder.predict` on the pairs; a
     bi-encoder: `encode` of each pair's query and text, then the head on their cosine) (the baseline);
   - our ONNX fp32, ONNX graph-optimised, ONNX int8 through `ranker.scorer.OnnxScorer` (inputs
     sorted by length, each batch padded to its own longest input).
   Each prints pairs/s, the ratio to the baseline and NDCG@5 over the pairs' queries, so a speed-up
   that costs quality shows.
2. Latency of reranking 50 candidates for one query, title + description against title + a
   40-token summary, p50 and p99 over many queries. Until generated summaries exist, the summary
   stand-in is the description's first 40 tokens (the length ReLSum summaries are capped near).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from jobs.ingest.records import crowdflower_product_id, clean_html, query_key  # noqa: E402
from ranker import registry  # noqa: E402
from ranker.metrics import Judged, mean_ndcg  # noqa: E402
from ranker.scorer import OnnxScorer  # noqa: E402
from ranker.texts import product_text  # noqa: E402

CROWDFLOWER = REPO / "data" / "samples" / "relevance" / "crowdflower_search_relevance_dev.csv.gz"


def load_pairs(n: int) -> pd.DataFrame:
    df = pd.read_csv(CROWDFLOWER, dtype=str, keep_default_na=False)
    df["description"] = [clean_html(d) for d in df.product_description]
    df["text"] = [product_text(t, d) for t, d in zip(df.product_title, df.description)]
    df["gain"] = (df.median_relevance.astype(int) - 1) / 3
    df["query_id"] = [query_key(q) for q in df["query"]]
    df["product_id"] = [crowdflower_product_id(t, d or None) for t, d in zip(df.product_title, df.product_description)]
    return df.head(n).reset_index(drop=True)


def ndcg(df: pd.DataFrame, scores: np.ndarray) -> float:
    return mean_ndcg([Judged(q, str(i), g, float(s)) for q, i, g, s in zip(df.query_id, df.index, df.gain, scores)], 5)


def torch_baseline(folder: Path, queries: list[str], texts: list[str], batch: int = 64) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from ranker.architecture import BI, Head
    from ranker.models import mean_pooled

    head = Head.load(folder)
    tok = AutoTokenizer.from_pretrained(folder / "hf")
    out = []
    with torch.inference_mode():
        if head.architecture == BI:
            model = AutoModel.from_pretrained(folder / "hf").eval()

            def embed(xs):
                enc = tok(xs, padding="max_length", truncation=True, max_length=128, return_tensors="pt")
                return mean_pooled(model(**enc).last_hidden_state, enc["attention_mask"]).numpy()

            for i in range(0, len(queries), batch):
                out.append(head.score((embed(queries[i : i + batch]) * embed(texts[i : i + batch])).sum(-1)))
            return np.concatenate(out)
        model = AutoModelForSequenceClassification.from_pretrained(folder / "hf").eval()
        for i in range(0, len(queries), batch):
            enc = tok(queries[i : i + batch], texts[i : i + batch], padding="max_length", truncation=True,
                      max_length=128, return_tensors="pt")
            out.append(torch.sigmoid(model(**enc).logits[:, 0]).numpy())
    return np.concatenate(out)


def timed(fn, *args):
    t = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t


def latency(scorer: OnnxScorer, df: pd.DataFrame, n_queries: int, k: int = 50, summary_tokens: int = 40) -> dict:
    rng = np.random.default_rng(0)
    tok = scorer.tokenizer
    short = []
    for title, desc in zip(df.product_title, df.description):
        ids = tok.encode(desc or "", add_special_tokens=False).ids[:summary_tokens]
        short.append(product_text(title, tok.decode(ids) if ids else None))
    out = {}
    for name, texts in (("title + description", list(df.text)), (f"title + {summary_tokens}-token summary", short)):
        times = []
        for q in range(n_queries):
            idx = rng.choice(len(df), size=k, replace=False)
            query = df["query"].iloc[int(idx[0])]
            t = time.perf_counter()
            scorer.score([query] * k, [texts[i] for i in idx])
            times.append((time.perf_counter() - t) * 1000)
        out[name] = (np.percentile(times, 50), np.percentile(times, 99))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranker", type=Path, default=None, help="a ranker version folder (default: newest trained under lake/)")
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--latency-queries", type=int, default=200)
    args = ap.parse_args()
    folder = args.ranker or registry.latest(REPO / "lake" / "_artifacts" / "ranker")
    if folder is None:
        sys.exit("no trained ranker under lake/_artifacts/ranker: run `precis train ranker` or pass --ranker DIR")
    manifest = registry.manifest(folder)
    df = load_pairs(args.pairs)
    queries, texts = list(df["query"]), list(df.text)
    print(f"ranker {folder} ({manifest.get('architecture', 'cross-encoder')}, {manifest['kind']}, {manifest['train']['steps']} steps); {len(df)} CrowdFlower pairs "
          f"(title + description), {df.query_id.nunique()} queries; cpus={os.cpu_count()}")

    base, t_base = timed(torch_baseline, folder, queries, texts)
    rows = [("PyTorch fp32, padded to 128 (baseline)", t_base, ndcg(df, base), 0.0)]
    for label, file in (("ONNX fp32", "model.onnx"), ("ONNX optimised", "model.opt.onnx"), ("ONNX int8", "model.int8.onnx")):
        scorer = OnnxScorer(folder, file, batch_size=64, max_length=128)
        scorer.score(queries[:64], texts[:64])  # warm-up
        scores, t = timed(scorer.score, queries, texts)
        rows.append((label, t, ndcg(df, scores), float(np.abs(scores - base).max())))
    print(f"\n{'scorer':42} {'pairs/s':>9} {'vs baseline':>11} {'NDCG@5':>8} {'dNDCG':>8} {'max|ds|':>8}")
    for label, t, n, diff in rows:
        print(f"{label:42} {len(df) / t:9.0f} {t_base / t:10.2f}x {n:8.4f} {n - rows[0][2]:+8.4f} {diff:8.4f}")

    scorer = OnnxScorer(folder, "model.opt.onnx", batch_size=64, max_length=128)
    lat = latency(scorer, df, args.latency_queries)
    print(f"\nrerank 50 candidates, ONNX optimised, {args.latency_queries} queries:")
    for name, (p50, p99) in lat.items():
        print(f"  {name:32} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
    (d50, d99), (s50, s99) = lat.values()
    print(f"  description / summary latency: p50 {d50 / s50:.2f}x, p99 {d99 / s99:.2f}x")


if __name__ == "__main__":
    main()
