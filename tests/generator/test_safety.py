"""Contact details in untrusted text and in model outputs: phone numbers by numbering plan
(phonenumbers), checked on every line, redacted before anything is stored."""

import pytest

from generator.safety import contains_pii, redact_pii, unsafe_reason
from generator.tasks import exp3rt
from generator.tasks.base import InvalidOutput
from jobs.generation import failure_text

PHONES = ["5551234567", "+15551234567", "(555) 123-4567", "555.123.4567", "1-800-591-3869", "800.933.2887",
          "+44 20 7946 0958", "+49 30 901820", "(020) 7946 0958", "020 7946 0958"]
NOT_PHONES = ["2016 2017 2018", "2019 2018 2017", "Pouch 40285 40310", "Ray-Ban RB3016 112685", "model 1234567",
              "Size 12 x 14 inches, 2024 model, SKU 1234", "$1,299.99 or 3 for $2,500", "2 x 10/100/1000 ports",
              "Hangers Model# 6478-1621-15-BGE"]


@pytest.mark.parametrize("phone", PHONES)
def test_phone_numbers_are_found_and_redacted(phone):
    text = f"call me at {phone} today"
    assert contains_pii(text)
    assert redact_pii(text) == "call me at [phone] today"


@pytest.mark.parametrize("text", NOT_PHONES)
def test_year_lists_and_product_codes_are_not_phones(text):
    assert not contains_pii(text) and redact_pii(text) == text


def test_email_and_phone_together():
    assert redact_pii("a.b@shop.co or 5551234567") == "[email] or [phone]"


def test_preference_parser_checks_every_line():
    """The parser keeps the first line of each field; a number on a later line still rejects it."""
    review = exp3rt.prepare_preferences(3, "Soft", "Soft texture, odd smell.")
    ok = exp3rt.parse_preferences("Likes: soft texture\nDislikes: smell", review)
    assert ok == {"likes": "soft texture", "dislikes": "smell"}
    with pytest.raises(InvalidOutput, match="phone"):
        exp3rt.parse_preferences("Likes: soft texture\ncall 5551234567\nDislikes: smell", review)
    with pytest.raises(InvalidOutput, match="phone"):
        exp3rt.parse_preferences("Likes: soft texture\nDislikes: smell\nmail +15551234567", review)


def test_failed_outputs_are_stored_redacted_and_never_cut_mid_number():
    raw = "x" * 1990 + " call 5551234567 now"
    stored = failure_text(raw)
    assert len(stored) <= 2000 and not contains_pii(stored) and "555123" not in stored
    assert failure_text("Rating: 9/10, mail a@b.co") == "Rating: 9/10, mail [email]"


def test_unsafe_teacher_targets():
    assert unsafe_reason("Likes: soft\nDislikes: none") is None
    assert unsafe_reason("Likes: soft\nDislikes: call 5551234567") == "contains an e-mail address or phone number"
    assert unsafe_reason("A lamp &lt;script&gt;x&lt;/script&gt;") == "contains markup"
    assert unsafe_reason("size 3 < 5") is None
