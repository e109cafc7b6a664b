"""Grounding of generated claims in the user's own words: is each sentence of a text supported by
some sentence of the evidence (a user's reviews)?

A claim is *supported* when its all-MiniLM-L6-v2 embedding has cosine similarity of at least
`SUPPORT_THRESHOLD` with some evidence sentence. The threshold was calibrated on the Beauty sample
(the 150 most active users; each one's held-out review against their train reviews, and another
user's review against the same train reviews): at 0.5, 73% of a user's own held-out sentences are
supported and 11% of another user's sentences are (0.45: 77% / 19%; 0.55: 71% / 9%). So a persona
sentence that passes is about as close to the reviews as the user's own next review is, and one
that fails says something their reviews do not.

A short *aspect* ("fine hair", "too sweet") is checked in words instead (`in_own_words`): most of
its content words, Porter-stemmed as ROUGE stems them (`rouge-score`), occur in the source text.
An aspect the model copied from the prompt's instructions ("comma-separated aspects"), invented,
or reduced to a star marker ("5") is not in the source's words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SUPPORT_THRESHOLD = 0.5
MIN_CLAIM_WORDS = 4  # shorter fragments ("Persona: Ava.") make no checkable claim

_SENTENCE = re.compile(r"[^.!?\n;]+[.!?]?")

# Words that carry no aspect: function words, the praise and verbs every review uses ("great",
# "love", "product"), which would ground any aspect in any review, and star counts ("Five Stars",
# the title of many reviews).
_NOT_CONTENT = frozenset("""
a about after all also am an and any are as at be been but by can could did do does doing don for
from get got had has have he her here him his how i if in into is it its just me more most my no
not of on one or our out over she so some than that the their them then there these they this
those to too us very was we were what when which who will with would you your
great good nice love loved like liked likes product products item really well
star stars one two three four five six seven eight nine ten
""".split())
MIN_ASPECT_SUPPORT = 0.5  # share of an aspect's content words that must occur in the source
_TOKENIZER = None  # rouge-score's stemming tokenizer, made on first use


def _stems(text: str) -> list[str]:
    """ROUGE's tokenisation: lower case, alphanumeric runs, Porter stems of words over 3 letters."""
    from rouge_score.tokenizers import DefaultTokenizer

    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = DefaultTokenizer(use_stemmer=True)
    return _TOKENIZER.tokenize(text or "")


def content_stems(text: str) -> list[str]:
    """The stemmed words of `text` that can name an aspect (no function words, numbers or praise)."""
    words = [w for w in re.findall(r"[a-z]+", (text or "").lower()) if len(w) > 2 and w not in _NOT_CONTENT]
    return _stems(" ".join(words))


def in_own_words(aspect: str, source: str | set[str], min_support: float = MIN_ASPECT_SUPPORT) -> bool:
    """Whether at least `min_support` of `aspect`'s content words occur in `source` (a text, or the
    set of its stems from `source_stems`). An aspect with no content word is never grounded."""
    words = content_stems(aspect)
    if not words:
        return False
    have = source if isinstance(source, set) else source_stems(source)
    return sum(w in have for w in words) / len(words) >= min_support


def source_stems(text: str) -> set[str]:
    """Every stemmed word of `text`: what `in_own_words` looks an aspect's words up in."""
    return set(_stems(text))


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
