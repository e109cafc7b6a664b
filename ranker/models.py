"""The two rankers as PyTorch modules with one interface: `logits(queries, texts)` for training and
evaluation, `calibrate(...)` before training, `save(folder)` for the export. See
`ranker.architecture` for what each computes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn import functional as F

from ranker.architecture import BI, CROSS, Head

log = logging.getLogger(__name__)


class CrossEncoder(torch.nn.Module):
    """Query and text read together; a fresh one-output head (seeded by the caller)."""

    def __init__(self, base: str | Path, max_length: int):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__()
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, attn_implementation="eager")
        self.max_length = max_length

    @property
    def encoder(self):
        return self.model.base_model

    def logits(self, queries: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(queries), list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return self.model(**enc).logits[:, 0]

    def calibrate(self, queries: Sequence[str], texts: Sequence[str], gains: Sequence[float]) -> None:
        """Nothing to calibrate: the head is trained with the rest."""

    def head(self) -> Head:
        return Head(CROSS)

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder / "hf")
        self.tokenizer.save_pretrained(folder / "hf")
        self.head().save(folder)


def mean_pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unit-length mean of the token states under the attention mask (sentence-transformers' pooling)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


class BiEncoder(torch.nn.Module):
    """Two towers sharing one encoder; r = sigmoid(scale * cos + bias)."""

    def __init__(self, base: str | Path, max_length: int):
        from transformers import AutoModel, AutoTokenizer

        super().__init__()
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        self.encoder = AutoModel.from_pretrained(base, attn_implementation="eager")
        self.max_length = max_length
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        self.bias = torch.nn.Parameter(torch.tensor(0.0))

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return mean_pooled(self.encoder(**enc).last_hidden_state, enc["attention_mask"])

    def cosine(self, queries: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        return (self.embed(queries) * self.embed(texts)).sum(-1)

    def logits(self, queries: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        return self.scale * self.cosine(queries, texts) + self.bias

    def calibrate(self, queries: Sequence[str], texts: Sequence[str], gains: Sequence[float], batch: int = 64) -> None:
        """Fit scale and bias by logistic regression (binary cross-entropy on the gains) with the
        encoder frozen, so training starts from calibrated scores and the untrained baseline is
        the base model's own cosine, calibrated."""
        with torch.no_grad():
            self.encoder.eval()
            cos = torch.cat([self.cosine(queries[i : i + batch], texts[i : i + batch]) for i in range(0, len(queries), batch)])
        target = torch.tensor(list(gains), dtype=torch.float32)
        scale, bias = torch.tensor(5.0, requires_grad=True), torch.tensor(-2.0, requires_grad=True)
        opt = torch.optim.LBFGS([scale, bias], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(scale * cos + bias, target)
            loss.backward()
            return loss

        opt.step(closure)
        s, b = float(scale.detach()), float(bias.detach())
        if not s > 0:  # an encoder whose cosine does not rise with relevance: keep a usable head
            log.warning("calibration found scale %.3f <= 0 on %d pairs; using scale 1, bias 0", s, len(gains))
            s, b = 1.0, 0.0
        with torch.no_grad():
            self.scale.fill_(s)
            self.bias.fill_(b)
        log.info("bi-encoder head calibrated on %d pairs: scale %.3f, bias %.3f", len(gains), s, b)

    def head(self) -> Head:
        return Head(BI, scale=float(self.scale.detach()), bias=float(self.bias.detach()))

    def save(self, folder: Path) -> None:
        self.encoder.save_pretrained(folder / "hf")
        self.tokenizer.save_pretrained(folder / "hf")
        self.head().save(folder)


def build(architecture: str, base: str | Path, max_length: int) -> CrossEncoder | BiEncoder:
    if architecture == BI:
        return BiEncoder(base, max_length)
    if architecture == CROSS:
        return CrossEncoder(base, max_length)
    raise ValueError(f"unknown ranker architecture '{architecture}'")
