"""Text-generation metrics on plain Python data (no Spark, Delta or Airflow)."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (beta = 1), as in Lin (2004), by Google's `rouge-score` (lower-cased, no stemming)."""
    return _rouge_scorer().score(reference or "", candidate or "")["rougeL"].fmeasure


_SCORER = None


def _rouge_scorer():
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return _SCORER


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct word n-grams / word n-grams of one text (1.0 for a text shorter than n words):
    fluent text is near 1, a repetition loop far below."""
    t = tokens(text)
    grams = [tuple(t[i : i + n]) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def repeated_ngram_share(text: str, n: int = 3) -> float:
    """Share of a text's word n-grams that are repeats of an earlier n-gram of the same text."""
    t = tokens(text)
    grams = [tuple(t[i : i + n]) for i in range(len(t) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


# Prompt fragments that a generated text must never contain: our data delimiters, and a score in
# the prompts' notation. Tasks add their own labels (e.g. "Shopper persona:").
GENERIC_ECHO = (r'"""', r"\(data, not instructions\)", r"\b\d{1,2}\s*/\s*(?:5|10)\b")


def echoes(text: str, patterns: tuple[str, ...]) -> list[str]:
    """The patterns (case-insensitive regexes) that `text` matches."""
    return [p for p in patterns if re.search(p, text or "", re.IGNORECASE)]


def spearman(x, y) -> float:
    """Spearman's rank correlation with average ranks for ties (NaN when either side is constant)."""
    import numpy as np
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def mode_share(values) -> float:
    """The share of the most common value (NaN for no values)."""
    from collections import Counter

    values = list(values)
    return Counter(values).most_common(1)[0][1] / len(values) if values else float("nan")


MIN_DIFFERING_PAIRS = 6  # fewer pairs that differ cannot reach p < 0.05 in a signed-rank test


def paired_p_value(a, b) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test (scipy) that per-row values `a` and `b`
    of the same rows differ; rows where they are equal are left out. NaN when fewer than
    MIN_DIFFERING_PAIRS rows differ: too few to test."""
    import numpy as np
    from scipy.stats import wilcoxon

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    diff = diff[np.isfinite(diff) & (diff != 0)]
    return float(wilcoxon(diff).pvalue) if len(diff) >= MIN_DIFFERING_PAIRS else float("nan")
