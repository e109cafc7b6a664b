"""A review as prompts, grounding and metrics read it: its title and its text as two sentences,
without the titles Amazon wrote for the shopper.

Amazon's 2018 review form titled a review "Five Stars" (or "One Star" ... "Four Stars") when the
shopper gave none: 1,177 of the Beauty sample's 4,242 reviews carry "Five Stars", 52 "Four Stars".
Such a title says nothing the star rating beside it does not, and joined to the text without a
stop ("Five Stars Excellent product.") SmolLM2 copied it into persona summaries as if it were the
shopper's words. `review_text` drops it and ends a kept title with a full stop.
"""

from __future__ import annotations

import re

# "Five Stars", "one star", "Four Stars." : the titles the review form filled in
DEFAULT_TITLE = re.compile(r"^\s*(?:one|two|three|four|five)\s+stars?\s*[.!]?\s*$", re.IGNORECASE)


def content_title(title: str | None) -> str | None:
    """The title when the shopper wrote it; None for a blank or a default title."""
    if not isinstance(title, str) or not title.strip() or DEFAULT_TITLE.match(title):
        return None
    return title.strip()


def review_text(title: str | None, text: str | None) -> str:
    """'<title>. <text>' (a title already ending in '.', '!' or '?' keeps its own stop), either part
    left out when blank, the title when it is a default one ("Five Stars"). Empty for a review that
    is only a default title (4 of the Beauty sample's): its stars are all it says."""
    head = content_title(title)
    body = text.strip() if isinstance(text, str) else ""
    if head and body:
        return f"{head} {body}" if head[-1] in ".!?" else f"{head}. {body}"
    return head or body
