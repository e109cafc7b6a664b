"""Grounding of generated claims in the user's own words: is each sentence of a text supported by
some sentence of the evidence (a user's reviews)?

A claim is *supported* when its all-MiniLM-L6-v2 embedding has cosine similarity of at least
`SUPPORT_THRESHOLD` with some evidence sentence. The threshold was calibrated on the Beauty sample
(the 150 most active users; each one's held-out review against their train reviews, and another
user's review against the same train reviews): at 0.5, 73% of a user's own held-out sentences are
supported and 11% of another user's sentences are (0.45: 77% / 19%; 0.55: 71% / 9%). So a persona
sentence that passes is about as close to the reviews as the user's own next review is, and one
that fails says something their reviews do not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SUPPORT_THRESHOLD = 0.5
MIN_CLAIM_WORDS = 4  # shorter fragments ("Persona: Ava.") make no checkable claim

_SENTENCE = re.compile(r"[^.!?\n;]+[.!?]?")


def claim_sentences(text: str | None, min_words: int = MIN_CLAIM_WORDS) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text or "") if len(s.split()) >= min_words]


@dataclass(frozen=True)
class Grounding:
    claims: list[str]
    best: list[float]  # per claim, the highest cosine with any evidence sentence
    threshold: float

    @property
    def supported(self) -> int:
        return sum(b >= self.threshold for b in self.best)

    @property
    def unsupported_claims(self) -> list[str]:
        return [c for c, b in zip(self.claims, self.best) if b < self.threshold]

    @property
    def share(self) -> float:
        return self.supported / len(self.claims) if self.claims else float("nan")


def ground(text: str, evidence: Sequence[str], threshold: float = SUPPORT_THRESHOLD,
           model_path: str | None = None) -> Grounding:
    """Check each sentence of `text` against the sentences of `evidence`."""
    from generator.retrieval import embed

    claims = claim_sentences(text)
    pieces = [s for e in evidence for s in claim_sentences(e, 1)]
    if not claims:
        return Grounding([], [], threshold)
    if not pieces:
        return Grounding(claims, [0.0] * len(claims), threshold)
    vecs = embed([*claims, *pieces], model_path)
    sims = vecs[: len(claims)] @ vecs[len(claims) :].T
    return Grounding(claims, [float(x) for x in np.max(sims, axis=1)], threshold)
