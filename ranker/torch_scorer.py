"""The ranker scored with PyTorch, on a GPU where there is one: the same r(query, text) in [0, 1]
as `ranker.scorer.OnnxScorer`, from the same folder's `hf/` weights and head, for a machine that
has no onnxruntime-gpu (a lent GPU: GRPO's reward then runs beside the policy instead of on 16
CPU threads). Same tokenisation (the fast tokenizer, pairs truncated longest-first at
`max_length`), same length-sorted batches; parity with the ONNX scorer is measured by the caller
(`training.gpu_run` checks it against scores the ONNX scorer wrote at pack time).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ranker.architecture import BI, Head


class TorchScorer:
    """r(query, text) in [0, 1] from a ranker folder's `hf/` model and `head.json`. Weights stored in
    half precision are computed in `dtype` (float32 by default: the reward is a small share of a
    GRPO step, and float32 keeps it within 1e-3 of the ONNX graph)."""

    def __init__(self, model_dir: str | Path, device: str = "auto", batch_size: int = 256, max_length: int = 256,
                 dtype: str = "float32"):
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        model_dir = Path(model_dir)
        self.head = Head.load(model_dir)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir / "hf")
        cls = AutoModel if self.head.architecture == BI else AutoModelForSequenceClassification
        self.model = cls.from_pretrained(model_dir / "hf", dtype=getattr(torch, dtype)).to(self.device).eval()

    def score(self, queries: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        return self.head.pair_scores(queries, texts, lambda distinct: self._run([(t,) for t in distinct]), self._run)

    def _run(self, inputs: list[tuple[str, ...]]) -> np.ndarray:
        """One output per input (a text, or a (query, text) pair), in input order."""
        import torch

        from ranker.models import mean_pooled

        lengths = [sum(len(x) for x in row) for row in inputs]  # characters: a cheap proxy for the sort
        order = np.argsort(lengths, kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            rows = [inputs[i] for i in idx]
            if self.head.architecture == BI:
                enc = self.tokenizer([r[0] for r in rows], padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt")
            else:
                enc = self.tokenizer([r[0] for r in rows], [r[1] for r in rows], padding=True, truncation="longest_first",
                                     max_length=self.max_length, return_tensors="pt")
            enc = enc.to(self.device)
            with torch.inference_mode():
                if self.head.architecture == BI:
                    got = mean_pooled(self.model(**enc).last_hidden_state, enc["attention_mask"])
                else:
                    got = torch.sigmoid(self.model(**enc).logits[:, 0])
            got = got.float().cpu().numpy()
            if out is None:
                out = np.empty((len(inputs), *got.shape[1:]), dtype=np.float32)
            out[idx] = got
        return out
