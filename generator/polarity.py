"""Which side of a review an aspect is on, by VADER (vaderSentiment, Hutto and Gilbert 2014: a
lexicon and rules for short social-media text, shipped with its lexicon in the package).

SmolLM2-135M puts praise among the dislikes ("disliked Smelled awesome", "disliked thank you") as
readily as in the likes; the words are the review's, so the grounding check keeps them. An aspect
whose sentiment clearly points the other way from its line is not a preference of that side:

- a dislike with a compound score of DISLIKE_CEILING or more ("Smelled awesome" 0.63, "thank you"
  0.36, "Great gift" 0.79) is dropped;
- a like with a compound score of LIKE_FLOOR or less ("broke after a week" -0.42) is dropped. The
  floor is further from 0 than the ceiling because VADER reads a liked absence as mildly negative
  ("no smell" -0.30, a like for a shopper who wants unscented things).

Most aspects score 0 ("too expensive", "does not last", "price"): VADER has no word for them, and
they are kept. So this removes the contradictions it can see and claims nothing about the rest.
"""

from __future__ import annotations

from functools import lru_cache

DISLIKE_CEILING = 0.3
LIKE_FLOOR = -0.4


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def compound(text: str) -> float:
    """VADER's compound score of `text`, from -1 (most negative) to 1 (most positive)."""
    return float(_analyzer().polarity_scores(text)["compound"])


def on_the_wrong_side(aspect: str, side: str) -> bool:
    """True when `aspect`, listed as a `like` or a `dislike`, clearly reads as the other side."""
    if side == "like":
        return compound(aspect) <= LIKE_FLOOR
    if side == "dislike":
        return compound(aspect) >= DISLIKE_CEILING
    raise ValueError(f"side must be 'like' or 'dislike', not {side!r}")
