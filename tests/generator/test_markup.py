"""HTML to text with a real parser: escaped markup never comes back to life, comparisons and
attribute values are not eaten, unclosed and over-long tags do not pass."""

import pytest

from generator.markup import TAG_START, html_to_text
from generator.safety import clean_input, strip_markup
from generator.tasks import relsum
from jobs.ingest.records import clean_html

# (untrusted input, plain text expected); every one of these was a defect of the regex strippers
CASES = [
    ("&lt;script&gt;alert(1)&lt;/script&gt; Warm socks", "Warm socks"),  # un-escaped into a live <script>
    ("&lt;img src=x onerror=alert(1)&gt;A lamp", "A lamp"),
    ("&amp;lt;b&amp;gt;twice&amp;lt;/b&amp;gt; escaped", "twice escaped"),
    ("size 3 < 5 and 6 > 4 inches", "size 3 < 5 and 6 > 4 inches"),  # the regex ate "< 5 and 6 >"
    ("<!-- a > b --> after the comment", "after the comment"),  # the regex leaked "b -->"
    ('<a title="x>y" href="#">link</a> text', "link text"),  # and 'y">'
    ("nice lamp <img src=x onerror=alert(1)", "nice lamp"),  # unclosed at the end
    ("<" + "x" * 5000 + " a=1>long tag", "long tag"),  # over the regex's 400-character window
    ("AT&T cable & charger <3", "AT&T cable & charger <3"),
    ("<b>Fea</b>tures: <i>soft</i>", "Features: soft"),  # inline tags do not split words
    ("<style>p{color:red}</style><p>one</p><p>two</p>", "one two"),
    ("<div>" * 5000 + "deep" + "</div>" * 5000, "deep"),
]


@pytest.mark.parametrize("raw, expected", CASES)
def test_html_to_text(raw, expected):
    out = html_to_text(raw)
    assert out == expected
    assert not TAG_START.search(out)


@pytest.mark.parametrize("raw, expected", CASES)
def test_ingest_and_output_paths_agree(raw, expected):
    """Descriptions at ingest, prompts and model outputs all go through the same parser."""
    assert " ".join(clean_html(raw).split()) == expected
    assert strip_markup(raw) == expected
    assert clean_input(raw) == expected


def test_block_structure_kept_at_ingest():
    assert clean_html("<p>one</p><ul><li>two</li><li>three</li></ul>").splitlines() == ["one", "two", "three"]


def test_escaped_markup_in_a_model_output_never_reaches_a_gold_value():
    inputs = {"title": "Lamp", "description_block": "", "max_tokens": 64}
    out = relsum.parse("A bright desk lamp &lt;img src=x onerror=alert(1)&gt; with a dimmer.", inputs)
    assert out == {"summary": "A bright desk lamp with a dimmer."}
