"""Retrieval for RPO: the k history items most similar to a text, by cosine similarity of
all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), as sentence-transformers does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_ENCODER: dict[str, tuple] = {}


def _load(path: str):
    if path not in _ENCODER:
        from transformers import AutoModel, AutoTokenizer

        _ENCODER[path] = (AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval())
    return _ENCODER[path]


def embed(texts: Sequence[str], model_path: str | None = None, batch_size: int = 32) -> np.ndarray:
    import torch

    from generator.models import MINILM, resolve

    tok, model = _load(model_path or resolve(MINILM, None))  # type: ignore[arg-type]
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def top_k(query: str, candidates: Sequence[str], k: int, model_path: str | None = None) -> list[int]:
    """Indices of the k candidates most similar to `query`, most similar first (ties: earlier first)."""
    if not candidates:
        return []
    vecs = embed([query, *candidates], model_path)
    sims = vecs[1:] @ vecs[0]
    return [int(i) for i in np.argsort(-sims, kind="stable")[:k]]
