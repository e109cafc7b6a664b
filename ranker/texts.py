"""How a product is shown to the ranker. One function, so training, scoring, offline
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


def leading_sentences(description: str | None, max_words: int) -> str | None:
    """The extractive baseline a summary must beat: the description's leading whole sentences
    within `max_words` words (the first sentence cut at `max_words` when it alone is longer)."""
    if not description or not description.strip():
        return None
    text = " ".join(description.split())
    words, out = 0, []
    rest = text
    while rest:
        cut = min((i + 1 for i in (rest.find(e) for e in (". ", "! ", "? ")) if i >= 0), default=len(rest))
        sentence, rest = rest[:cut].strip(), rest[cut:].strip()
        n = len(sentence.split())
        if words + n > max_words:
            if not out:
                out.append(" ".join(sentence.split()[:max_words]))
            break
        out.append(sentence)
        words += n
    return " ".join(out) or None
