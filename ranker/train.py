"""Fine-tune the ranker r(query, product text) -> gain in [0, 1].

Base: all-MiniLM-L6-v2, as a bi-encoder (its own embeddings, with a head calibrated by logistic
regression first) or a cross-encoder (a fresh one-output head, seeded); `ranker.architecture`
says what each computes. Loss: binary cross-entropy with the gain as a soft target, so the sigmoid
output is a calibrated score in the label's range, which ReLSum's reward
-|r(q, [title; summary]) - label| needs. Train and validation are split by query, so no query is in
both. With `max_steps=0` the same code yields the untrained baseline (the bi-encoder's: the base
model's cosine, calibrated; the cross-encoder's: an untrained head).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ranker import registry
from ranker.config import RankerTrainConfig
from ranker.metrics import Judged, mean_ndcg, r_at_p
from ranker.texts import product_text, variant_text

log = logging.getLogger(__name__)

REQUIRED = ("query_id", "query", "product_id", "title", "description", "gain")


@dataclass(frozen=True)
class Split:
    train_queries: list[str]
    val_queries: list[str]


def split_queries(query_ids: list[str], val_fraction: float, seed: int) -> Split:
    qs = sorted(set(query_ids))
    rng = random.Random(seed)
    rng.shuffle(qs)
    n_val = max(1, round(len(qs) * val_fraction))
    return Split(sorted(qs[n_val:]), sorted(qs[:n_val]))


def _examples(pairs: pd.DataFrame, cfg: RankerTrainConfig, rng: random.Random) -> list[tuple[str, str, float]]:
    out = []
    for q, title, desc, gain in zip(pairs["query"], pairs["title"], pairs["description"], pairs["gain"]):
        texts = [t for v in cfg.variants if (t := variant_text(v, title, desc, cfg.summary_words))]
        for text in rng.sample(texts, min(cfg.variants_per_pair, len(texts))):
            out.append((q, text, float(gain)))
    rng.shuffle(out)
    return out


def _val_text(title: str, desc: str | None) -> str:
    return product_text(title, desc)


def evaluate_torch(model, pairs: pd.DataFrame, batch_size: int = 64) -> dict[str, float]:
    """NDCG@5, R@90P and log loss (binary cross-entropy against the gain: how well the score is
    calibrated, which ReLSum's reward |r - label| relies on) of the PyTorch model (`ranker.models`)
    on `pairs` scored on title + description."""
    import torch

    texts = [_val_text(t, d) for t, d in zip(pairs["title"], pairs["description"])]
    queries = list(pairs["query"])
    scores: list[float] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            scores.extend(torch.sigmoid(model.logits(queries[i : i + batch_size], texts[i : i + batch_size])).tolist())
    rows = [Judged(q, p, g, s) for q, p, g, s in zip(pairs["query_id"], pairs["product_id"], pairs["gain"], scores)]
    p = np.clip(np.array(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
    g = pairs["gain"].to_numpy(dtype=np.float64)
    log_loss = float(-np.mean(g * np.log(p) + (1 - g) * np.log(1 - p)))
    return {"ndcg@5": mean_ndcg(rows, 5), "r@90p": r_at_p(rows, 0.9, top_gain=1.0), "log_loss": log_loss, "pairs": len(rows)}


def train_and_export(
    pairs: pd.DataFrame,
    base_model: str,
    root: Path,
    cfg: RankerTrainConfig,
    snapshot: dict[str, Any],
    progress: bool = True,
    base_model_id: str | None = None,
) -> Path:
    """Train (or, with max_steps=0, only initialise and calibrate), export to ONNX, and publish a new version
    under `root`. `pairs` has one row per judged (query, product) with the columns in REQUIRED.
    `base_model` is the folder loaded; the manifest records `base_model_id` (a portable name such as
    sentence-transformers/all-MiniLM-L6-v2, default: the folder's name), never a machine's path."""
    import torch
    from torch.nn.functional import binary_cross_entropy_with_logits
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from ranker.models import build
    from ranker.onnx_export import export

    missing = [c for c in REQUIRED if c not in pairs.columns]
    if missing:
        raise ValueError(f"training pairs lack columns {missing}")
    if pairs.empty:
        raise ValueError("no judged pairs to train on; ingest relevance data first (precis ingest relevance ...)")
    t0 = time.time()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    split = split_queries(list(pairs["query_id"]), cfg.val_fraction, cfg.seed)
    train = pairs[pairs["query_id"].isin(split.train_queries)]
    val = pairs[pairs["query_id"].isin(split.val_queries)]
    model = build(cfg.architecture, base_model, cfg.max_length)
    calibration = _examples(train, cfg, random.Random(cfg.seed + 1))[: cfg.calibration_pairs]
    if calibration:
        model.calibrate([c[0] for c in calibration], [c[1] for c in calibration], [c[2] for c in calibration])
    if cfg.freeze_layers:
        base = model.encoder
        for p in base.embeddings.parameters():
            p.requires_grad = False
        for layer in base.encoder.layer[: cfg.freeze_layers]:
            for p in layer.parameters():
                p.requires_grad = False

    rng = random.Random(cfg.seed)
    per_epoch = len(_examples(train, cfg, random.Random(cfg.seed)))
    total = math.ceil(cfg.epochs * per_epoch / cfg.batch_size)
    if cfg.max_steps >= 0:
        total = min(total, cfg.max_steps)
    kind = "trained" if total > 0 else "untrained"
    losses: list[float] = []
    if total > 0:
        head = [p for n, p in model.named_parameters() if n in ("scale", "bias")]
        body = [p for n, p in model.named_parameters() if p.requires_grad and n not in ("scale", "bias")]
        params = body + head
        groups = [{"params": body}] + ([{"params": head, "lr": cfg.head_learning_rate, "weight_decay": 0.0}] if head else [])
        opt = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
        model.train()
        step, examples = 0, []
        # a bar on a terminal (disable=None: tqdm's own TTY check, and TQDM_DISABLE wins), else a log
        # line every tenth of the run: a bar in a log file is one line thousands of characters long
        bar = tqdm(total=total, desc="train ranker", unit="step", disable=None if progress else True)
        every = max(1, total // 10)
        while step < total:
            if not examples:
                examples = _examples(train, cfg, rng)
            batch, examples = examples[: cfg.batch_size], examples[cfg.batch_size :]
            target = torch.tensor([b[2] for b in batch], dtype=torch.float32)
            loss = binary_cross_entropy_with_logits(model.logits([b[0] for b in batch], [b[1] for b in batch]), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if bar.disable and progress and (step % every == 0 or step == total):
                log.info("train ranker: step %d/%d, loss %.4f, %.0f s", step, total, np.mean(losses[-20:]),
                         time.time() - t0)
        bar.close()
    train_seconds = time.time() - t0
    metrics = {"val": evaluate_torch(model, val)} if len(val) else {}
    log.info("%s %s: %d steps in %.0fs, held-out %s", cfg.architecture, kind, total, train_seconds, metrics.get("val"))

    name, tmp = registry.staging(root)
    model.save(tmp)
    sample_rows = val.head(64) if len(val) else pairs.head(64)
    sample = [(q, _val_text(t, d)) for q, t, d in zip(sample_rows["query"], sample_rows["title"], sample_rows["description"])]
    int8_pairs = [(q, t) for q, t, _ in _examples(train, cfg, random.Random(cfg.seed + 2))][: cfg.int8_calibration_pairs]
    exported = export(tmp, sample, int8_pairs, cfg.int8_tolerance, cfg.max_length)
    log.info("ONNX parity (max |onnx - torch|): %s", exported.parity)
    return registry.publish(
        tmp,
        name,
        {
            "version": name,
            "kind": kind,
            "architecture": cfg.architecture,
            "head": dataclasses.asdict(model.head()),
            "base_model": base_model_id or Path(base_model).name,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "config": cfg.model_dump(mode="json"),
            "split": {"train_queries": split.train_queries, "val_queries": split.val_queries},
            "snapshot": snapshot,
            "train": {"steps": total, "examples_per_epoch": per_epoch, "seconds": round(train_seconds, 1),
                      "loss_first10": float(np.mean(losses[:10])) if losses else None,
                      "loss_last10": float(np.mean(losses[-10:])) if losses else None},
            "metrics": metrics,
            "onnx_parity": exported.parity,
            "int8": exported.int8.to_json() if exported.int8 else None,
        },
    )
