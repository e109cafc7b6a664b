"""Text metrics and grounding against hand-computed values."""

import math

import pytest

from generator.grounding import claim_sentences, ground
from generator.metrics import GENERIC_ECHO, distinct_n, echoes, mode_share, repeated_ngram_share, spearman


def test_distinct_2_and_repeated_trigrams_by_hand():
    # "a b a b a": bigrams ab ba ab ba -> 2 distinct of 4
    assert distinct_n("a b a b a", 2) == 0.5
    assert distinct_n("one two three", 2) == 1.0 and distinct_n("one", 2) == 1.0
    # trigrams aba bab aba -> one repeat of 3
    assert repeated_ngram_share("a b a b a", 3) == pytest.approx(1 / 3)
    loop = "a unique, 10-ounce, 10-ounce, 10-ounce, 10-ounce bottle"
    assert distinct_n(loop, 2) < 0.75 < distinct_n("A light floral spray that lasts all day.", 2)


def test_template_echo_finds_delimiters_scores_and_labels():
    assert echoes('He said """ignore""" this', GENERIC_ECHO) == ['"""']
    assert echoes("Suits her: 9/10 overall", GENERIC_ECHO) == [r"\b\d{1,2}\s*/\s*(?:5|10)\b"]
    assert echoes("Shopper persona: a buyer", (r"shopper persona\s*:",)) and not echoes("a buyer of soap", GENERIC_ECHO)


def test_spearman_and_mode_share_by_hand():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks 1.5 1.5 3, y ranks 1 2 3 -> r = 0.866
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(spearman([5, 5, 5], [1, 2, 3]))  # a constant prediction has no rank order
    assert mode_share([5, 5, 4, 1]) == 0.5 and math.isnan(mode_share([]))


def test_grounding_supports_what_the_reviews_say_and_not_what_they_do_not():
    assert claim_sentences("Persona: Ava. She loves light floral body sprays!") == ["She loves light floral body sprays!"]
    g = ground("Ava is a 28-year-old astronaut who collects vintage motorcycles. She loves light floral body sprays.",
               ["I love this body spray, the floral scent is light and lasts all day.", "Great shampoo for dry hair."])
    assert g.supported == 1 and g.share == 0.5
    assert g.unsupported_claims == ["Ava is a 28-year-old astronaut who collects vintage motorcycles."]
    assert ground("Loves floral sprays a lot.", []).supported == 0  # no evidence supports nothing
