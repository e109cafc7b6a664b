"""HTML to plain text with a maintained parser (Beautiful Soup on Python's `html.parser`), for
untrusted descriptions at ingest and for model outputs before they reach a table.

The order, decided once and used for both:

1. **Parse as HTML.** Comments, doctype and processing instructions are dropped; the contents of
   `script`, `style`, `template`, `noscript`, `iframe`, `object` and `svg` are dropped; every other
   tag is removed, block tags (`p`, `br`, `li`, `div`, headings, table rows) becoming line breaks
   when `lines=True`; entities are decoded exactly once. A parser, unlike a regex, keeps
   `size 3 < 5 and 6 > 4 inches` whole and is not fooled by `<!-- a > b -->` or `title="x>y"`.
2. **Parse what is left again while it still holds a tag.** Decoding turns
   `&lt;script&gt;alert(1)&lt;/script&gt;` into a live `<script>`: escaped markup in the source
   is markup all the same for whoever renders our tables, so the decoded text is parsed again
   (at most `MAX_ROUNDS` times) until no tag is left. Text escaped twice (`&amp;lt;b&amp;gt;`)
   decodes once per round like any other entity.
3. **Cut what no parser closes.** A tag left unclosed at the end (`<img src=x onerror=alert(1)`)
   is text to the parser but a tag to a lenient browser; everything from its `<` to the next `>`
   (or the end of the text) is removed.

A `<` or `>` that does not start a tag (`<` followed by a space, a digit or `=`) is text and stays.
"""

from __future__ import annotations

import re
import warnings

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, MarkupResemblesLocatorWarning, ProcessingInstruction

MAX_ROUNDS = 3
DROPPED = ("script", "style", "template", "noscript", "iframe", "object", "svg", "head", "title")
BLOCKS = ("p", "br", "li", "div", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "section", "article")
# What a browser would take for the start of a tag: `<` then a letter, `/`, `!` or `?`.
TAG_START = re.compile(r"<[A-Za-z/!?]")
_UNCLOSED = re.compile(r"<[A-Za-z/!?][^>]*(?:>|$)")
_SPACES = re.compile(r"[ \t\r\f\v\xa0]+")
_LINES = re.compile(r"\s*\n\s*")


def _parse_once(text: str, lines: bool) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)  # text that looks like a URL or path
        soup = BeautifulSoup(text, "html.parser")
    for node in soup.find_all(string=lambda s: isinstance(s, (Comment, Declaration, Doctype, ProcessingInstruction))):
        node.extract()
    for tag in soup.find_all(DROPPED):
        tag.decompose()
    gap = "\n" if lines else " "
    for tag in soup.find_all(BLOCKS):  # inline tags join their text (`<b>Fea</b>tures`); blocks separate it
        tag.insert_before(gap)
        tag.insert_after(gap)
    return soup.get_text("")


def html_to_text(text: str | None, lines: bool = False) -> str:
    """Plain text with no tag a browser would render (see the module docstring for the order).
    `lines=True` keeps block structure as line breaks; otherwise all whitespace folds to spaces."""
    out = text or ""
    for _ in range(MAX_ROUNDS):
        if not (TAG_START.search(out) or "&" in out):
            break
        out = _parse_once(out, lines)
    out = _UNCLOSED.sub(" ", out)
    if lines:
        return _LINES.sub("\n", _SPACES.sub(" ", out)).strip()
    return " ".join(out.split())
