"""How a product is shown to the cross-encoder. One function, so training, scoring, offline
evaluation and the online reranker all build exactly the same text."""

from __future__ import annotations

SEPARATOR = " | "


def product_text(title: str, extra: str | None = None) -> str:
    """`title` alone, or `[title; extra]` where extra is a description or a summary."""
    title = (title or "").strip()
    extra = (extra or "").strip()
    return f"{title}{SEPARATOR}{extra}" if extra else title


def summary_like(description: str | None, words: int = 30) -> str | None:
    """A stand-in for a short summary while training: the description's first `words` words."""
    if not description:
        return None
    toks = description.split()
    return " ".join(toks[:words]) if toks else None


def variant_text(variant: str, title: str, description: str | None, summary_words: int = 30) -> str | None:
    """The text of one training variant, or None when the product lacks what the variant needs."""
    if variant == "title":
        return product_text(title)
    if not description or not description.strip():
        return None
    if variant == "title_desc":
        return product_text(title, description)
    if variant == "title_summary":
        return product_text(title, summary_like(description, summary_words))
    raise ValueError(f"unknown text variant '{variant}'")
