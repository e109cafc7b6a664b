"""Reviews as prompts and metrics read them: Amazon's default titles dropped, a kept title ended."""

import pytest

from generator.review_text import content_title, review_text
from generator.tasks import exp3rt


@pytest.mark.parametrize("title", ["Five Stars", "five stars", "One Star", "Four Stars.", " Three Stars "])
def test_default_titles_are_dropped(title):
    assert content_title(title) is None
    assert review_text(title, "Excellent product.") == "Excellent product."


def test_a_shoppers_title_is_kept_as_its_own_sentence():
    assert review_text("Love it", "Smells great.") == "Love it. Smells great."
    assert review_text("Love it!", "Smells great.") == "Love it! Smells great."
    # a title that merely mentions stars is the shopper's
    assert review_text("Five stars for the scent", "Lasts all day.") == "Five stars for the scent. Lasts all day."
    assert review_text("Nice", None) == "Nice" and review_text(None, " Soft. ") == "Soft."
    assert review_text("Five Stars", None) == "" and review_text(None, None) == ""


def test_the_preferences_prompt_and_source_carry_no_default_title():
    inputs = exp3rt.prepare_preferences(5, "Five Stars", "Excellent product, soft scent.")
    prompt = exp3rt.preferences_task().messages(inputs)[1]["content"]
    assert "Five Stars" not in prompt and "(5/5) Excellent product, soft scent." in prompt
    assert inputs["source"] == "Excellent product, soft scent."
