"""Scores read from the model's distribution over the allowed values, not from its first token.

A score ("Rating (1-5): _") is one of a few short strings. Each choice is spelt by one or more
token sequences (`"10"` is `1`,`0`; `" 10"` is `Ġ`,`1`,`0` in SmolLM2's tokenizer), and those
sequences form a trie. The probability that the model writes exactly choice `c` is the sum, over
the sequences that spell `c`, of

    P(sequence) x (1 - P(any token that would continue it into a longer choice))

so `"1"` does not also count the mass of `"10"`. The masses are renormalised over the choices.
Greedy choice of the first token picks "1" and "10" for almost every input of a small model; the
expected value over this distribution varies with the input, and its entropy says how sure the
model is.

A backend supplies one function: given (prompt index, token prefix) requests and the tokens whose
log-probabilities it needs after each prefix, return them. `choice_distributions` does the rest, so
every backend computes the same quantity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TokenSeq = tuple[int, ...]
# requests [(prompt index, prefix)] and, per request, the token ids wanted -> per request {token: logprob}
NextLogprobs = Callable[[list[tuple[int, TokenSeq]], list[list[int]]], list[dict[int, float]]]


@dataclass(frozen=True)
class ScoreDistribution:
    """The model's probabilities over a score's choices (they sum to 1)."""

    probs: dict[str, float]

    def __post_init__(self) -> None:
        if not self.probs:
            raise ValueError("a score distribution needs at least one choice")
        total = sum(self.probs.values())
        if not math.isclose(total, 1.0, rel_tol=1e-6, abs_tol=1e-6) or min(self.probs.values()) < 0:
            raise ValueError(f"probabilities must be non-negative and sum to 1, got {total:.6f}")

    @classmethod
    def from_masses(cls, masses: dict[str, float]) -> "ScoreDistribution":
        """Renormalised masses; all-zero masses (nothing allowed was likely) become uniform."""
        total = sum(max(0.0, m) for m in masses.values())
        if total <= 0:
            return cls({c: 1.0 / len(masses) for c in masses})
        return cls({c: max(0.0, m) / total for c, m in masses.items()})

    @classmethod
    def one_hot(cls, choices: Sequence[str], pick: str) -> "ScoreDistribution":
        """A backend that only returns its answer (no log-probabilities)."""
        if pick not in choices:
            raise ValueError(f"{pick!r} is none of {list(choices)}")
        return cls({c: float(c == pick) for c in choices})

    @property
    def expected(self) -> float:
        """The expected value (choices must be numbers)."""
        return float(sum(float(c) * p for c, p in self.probs.items()))

    @property
    def entropy(self) -> float:
        """Shannon entropy in bits: 0 when certain, log2(number of choices) when uniform."""
        return float(-sum(p * math.log2(p) for p in self.probs.values() if p > 0))

    @property
    def rounded(self) -> str:
        """The choice nearest the expected value (ties go up: 4.5 -> 5)."""
        ev = self.expected
        return min(self.probs, key=lambda c: (abs(float(c) - ev), -float(c)))

    @property
    def median(self) -> str:
        """The smallest choice (in numeric order) whose cumulative probability reaches 1/2: the
        integer that minimises the expected absolute error, as the EV minimises the squared one."""
        total = 0.0
        ordered = sorted(self.probs, key=float)
        for c in ordered:
            total += self.probs[c]
            if total >= 0.5 - 1e-12:
                return c
        return ordered[-1]

    def pick(self, reading: str) -> str:
        """The choice a score's `reading` names: `median` or `rounded-expected`."""
        if reading == "median":
            return self.median
        if reading == "rounded-expected":
            return self.rounded
        raise ValueError(f"unknown score reading {reading!r}; use median or rounded-expected")

    @property
    def mode(self) -> str:
        return max(self.probs, key=lambda c: (self.probs[c], c))


def spellings(choices: Sequence[str], encode: Callable[[str], list[int]]) -> dict[TokenSeq, str]:
    """Every token sequence that spells a choice: the bare choice and the choice after a space."""
    seqs: dict[TokenSeq, str] = {}
    for c in choices:
        for variant in (c, " " + c):
            ids = tuple(encode(variant))
            if not ids:
                raise ValueError(f"choice {c!r} encodes to no tokens")
            if ids in seqs and seqs[ids] != c:
                raise ValueError(f"choices {seqs[ids]!r} and {c!r} are spelt by the same tokens")
            seqs[ids] = c
    return seqs


def choice_distributions(n_prompts: int, choices: Sequence[str], seqs: dict[TokenSeq, str],
                         next_logprobs: NextLogprobs) -> list[ScoreDistribution]:
    """For each of `n_prompts` prompts, the distribution over `choices` (see the module docstring).
    `next_logprobs` is asked once, for every (prompt, internal trie node) at once."""
    children: dict[TokenSeq, set[int]] = {}
    for s in seqs:
        for k in range(len(s)):
            children.setdefault(s[:k], set()).add(s[k])
    nodes = sorted(children, key=lambda n: (len(n), n))
    requests = [(i, node) for i in range(n_prompts) for node in nodes]
    wanted = [sorted(children[node]) for _, node in requests]
    answers = next_logprobs(requests, wanted) if requests else []
    table = {req: ans for req, ans in zip(requests, answers)}

    out = []
    for i in range(n_prompts):
        masses = {c: 0.0 for c in choices}
        for s, c in seqs.items():
            logp = sum(table[(i, s[:k])].get(s[k], -math.inf) for k in range(len(s)))
            p = math.exp(logp) if logp > -math.inf else 0.0
            if s in children:  # a longer choice continues this one: that mass is not this choice's
                p *= max(0.0, 1.0 - sum(math.exp(table[(i, s)].get(t, -math.inf)) for t in children[s]))
            masses[c] += p
        out.append(ScoreDistribution.from_masses(masses))
    return out
