"""What a score prediction may know of earlier ratings: the user's and the product's train
ratings (never the pair's own), rendered as one line of the prompt. EXP3RT's rating and SUMFORU's
suitability prompts both carry it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RatingHistory:
    """Ratings the prediction may know: the user's and the product's earlier (train) ratings, never
    the pair's own."""

    user_mean: float | None
    user_n: int
    item_mean: float | None
    item_n: int

    def text(self) -> str:
        def one(who: str, mean: float | None, n: int) -> str:
            if not n or mean is None:
                return f"{who} has no earlier ratings"
            return f"{who} gave {mean:.1f}/5 on average over {n} review{'s' if n != 1 else ''}"

        return f"{one('this user', self.user_mean, self.user_n)}; {one('shoppers of this product', self.item_mean, self.item_n)}."

    def facts(self) -> str:
        """The same facts in a reasoning's words (no 'N/5' copied from the prompt)."""
        def one(who: str, mean: float | None, n: int) -> str:
            if not n or mean is None:
                return f"{who} have no earlier ratings" if who.endswith("s") else f"{who} has no earlier ratings"
            return f"{who} rate{'' if who.endswith('s') else 's'} {mean:.1f} on average over {n} review{'s' if n != 1 else ''}"

        return f"{one('This user', self.user_mean, self.user_n)}, and {one('shoppers', self.item_mean, self.item_n)} of this product."
