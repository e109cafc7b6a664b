"""Output tokens per second: our batched transformers backend against a naive loop calling
`pipeline("text-generation")` one prompt at a time. Same model (SmolLM2-135M-Instruct from the
model cache), same ReLSum prompts built from real CrowdFlower products, greedy, same run.

    .venv/bin/python benchmarks/generate.py [--prompts 32] [--batch-size 16] [--max-new-tokens 48]

On a GPU machine with the `gpu` extra installed, `--vllm` adds vLLM against our transformers
backend on the GPU, and prints the GPU's name.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generator.backends import SamplingParams, TransformersBackend  # noqa: E402
from generator.models import SMOLLM2, resolve  # noqa: E402
from generator.tasks import relsum  # noqa: E402
from jobs.config import load_config  # noqa: E402
from jobs.ingest.records import clean_html  # noqa: E402


def prompts(n: int) -> list:
    df = pd.read_csv(REPO / "data/samples/relevance/crowdflower_search_relevance_dev.csv.gz", dtype=str, keep_default_na=False)
    df = df[df.product_description.str.len() > 50].drop_duplicates("product_title").head(n)
    task = relsum.task()
    return [task.messages(relsum.prepare(t, clean_html(d))) for t, d in zip(df.product_title, df.product_description)]


def naive(path: str, msgs: list, max_new_tokens: int) -> tuple[int, float]:
    import torch
    from transformers import pipeline

    pipe = pipeline("text-generation", model=path, dtype=torch.float32)
    tok = pipe.tokenizer
    pipe(msgs[0], max_new_tokens=4, do_sample=False)  # warm-up
    tokens, t0 = 0, time.perf_counter()
    for m in msgs:
        out = pipe(m, max_new_tokens=max_new_tokens, do_sample=False, return_full_text=False)
        tokens += len(tok(out[0]["generated_text"], add_special_tokens=False)["input_ids"]) + 1  # + EOS
    return tokens, time.perf_counter() - t0


def ours(backend, msgs: list, max_new_tokens: int) -> tuple[int, float]:
    backend.generate(msgs[:2], SamplingParams(max_new_tokens=4))  # warm-up
    t0 = time.perf_counter()
    gens = backend.generate(msgs, SamplingParams(max_new_tokens=max_new_tokens))
    return sum(g.completion_tokens for g in gens), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--vllm", action="store_true", help="also vLLM vs our backend on the GPU")
    args = ap.parse_args()
    path = resolve(SMOLLM2, load_config(None, environ={}).cache_dir)
    msgs = prompts(args.prompts)
    print(f"{len(msgs)} ReLSum prompts, max {args.max_new_tokens} new tokens, greedy; cpus={os.cpu_count()}")
    n_tok, n_s = naive(path, msgs, args.max_new_tokens)
    print(f"  naive pipeline, one prompt at a time: {n_tok:5d} tokens in {n_s:6.1f}s = {n_tok / n_s:7.1f} tokens/s")
    rates = {}
    for dtype in ("float32", "auto"):
        backend = TransformersBackend(path, SMOLLM2, batch_size=args.batch_size, device="cpu", dtype=dtype)
        o_tok, o_s = ours(backend, msgs, args.max_new_tokens)
        label = f"batch {args.batch_size}, {backend.model.dtype}".replace("torch.", "")
        rates[dtype] = o_tok / o_s
        print(f"  our backend, {label:20} {o_tok:5d} tokens in {o_s:6.1f}s = {o_tok / o_s:7.1f} tokens/s  "
              f"({(o_tok / o_s) / (n_tok / n_s):.2f}x naive)")
    print(f"  speed-up of our default (dtype auto) over the naive float32 loop: {rates['auto'] / (n_tok / n_s):.2f}x "
          f"(batching alone: {rates['float32'] / (n_tok / n_s):.2f}x)")
    if args.vllm:
        import torch

        from generator.backends import VLLMBackend

        gpu = TransformersBackend(path, SMOLLM2, batch_size=args.batch_size, device="cuda")
        g_tok, g_s = ours(gpu, msgs * 8, args.max_new_tokens)
        v = VLLMBackend(path, SMOLLM2)
        v_tok, v_s = ours(v, msgs * 8, args.max_new_tokens)
        print(f"GPU {torch.cuda.get_device_name(0)}: transformers {g_tok / g_s:.1f} tokens/s, vLLM {v_tok / v_s:.1f} tokens/s, "
              f"ratio {(v_tok / v_s) / (g_tok / g_s):.2f}x")


if __name__ == "__main__":
    main()
