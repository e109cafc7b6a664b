"""Which of the two scoring architectures a ranker folder holds, and its calibration head.

- `bi-encoder` (two towers, the default): the query and the product text are embedded apart, as
  all-MiniLM-L6-v2 was pre-trained to (mean pooling over tokens, unit length), and
  r(q, t) = sigmoid(scale * cos(q, t) + bias). The exported graph returns embeddings; the scorer
  applies this head. It starts from what the base model already knows about similarity, so a few
  thousand judgments refine it instead of teaching relevance from nothing, and a query or a text
  is encoded once however many pairs it is in.
- `cross-encoder`: the query and the text are read together ([CLS] q [SEP] t [SEP]) by the encoder
  with a fresh one-output head; the exported graph ends in a sigmoid and returns r(q, t) itself
  (`scale` and `bias` are unused).

The head is written to `<folder>/head.json` before the ONNX export, so the scorer reads it without
torch. A folder without one is a cross-encoder: every folder written before the bi-encoder existed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

HEAD_FILE = "head.json"
BI, CROSS = "bi-encoder", "cross-encoder"
Architecture = Literal["bi-encoder", "cross-encoder"]


@dataclass(frozen=True)
class Head:
    architecture: Architecture
    scale: float = 1.0  # bi-encoder: logit = scale * cos + bias
    bias: float = 0.0

    def __post_init__(self) -> None:
        if self.architecture not in (BI, CROSS):
            raise ValueError(f"unknown ranker architecture '{self.architecture}'; expected '{BI}' or '{CROSS}'")
        if not (math.isfinite(self.scale) and math.isfinite(self.bias)):
            raise ValueError(f"ranker head scale and bias must be finite, got {self.scale}, {self.bias}")
        if self.architecture == BI and self.scale <= 0:
            raise ValueError(f"a bi-encoder head needs scale > 0 (higher cosine, higher score), got {self.scale}")

    def score(self, cosine: np.ndarray) -> np.ndarray:
        """r in [0, 1] from cosine similarities (bi-encoder only)."""
        return (1.0 / (1.0 + np.exp(-(self.scale * cosine + self.bias)))).astype(np.float32)

    def pair_scores(self, queries: Sequence[str], texts: Sequence[str],
                    embed: Callable[[list[str]], np.ndarray],
                    read_pairs: Callable[[list[tuple[str, str]]], np.ndarray]) -> np.ndarray:
        """r(q, t) in [0, 1] for each pair, whatever runs the model (ONNX, PyTorch): a bi-encoder
        `embed`s each distinct query and text once, however many pairs it is in, and this head
        scores their cosines; a cross-encoder's `read_pairs` returns the scores itself."""
        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries but {len(texts)} texts")
        if not queries:
            return np.zeros(0, dtype=np.float32)
        if self.architecture == BI:
            distinct = sorted(set(map(str, queries)) | set(map(str, texts)))
            at = {t: i for i, t in enumerate(distinct)}
            emb = embed(distinct)
            q = emb[[at[str(x)] for x in queries]]
            t = emb[[at[str(x)] for x in texts]]
            return self.score((q * t).sum(-1))
        return read_pairs(list(zip(map(str, queries), map(str, texts)))).reshape(-1)

    def save(self, folder: Path) -> None:
        (Path(folder) / HEAD_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> Head:
        path = Path(folder) / HEAD_FILE
        if not path.exists():
            return cls(CROSS)
        return cls(**json.loads(path.read_text()))
