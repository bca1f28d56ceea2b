"""Character references and attribute escaping at their edges, as the HTML tokenizer reads them.

Written against mutation testing (``python3 tasks.py mutate``): numeric limits
one either side, the legacy (no ``;``) named references in attribute values,
and the exact escaping for each kind of quote.
"""

from __future__ import annotations

import pytest

from mailtrack.core import charrefs
from mailtrack.core.charrefs import decode_attribute, escape_attribute

# The HTML spec's table for numeric references to C1 controls ("numeric character reference end state").
C1_TABLE = dict(zip(
    [0x80, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8E,
     0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9E, 0x9F],
    [0x20AC, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x017D,
     0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x017E, 0x0178],
    strict=True,
))


@pytest.mark.parametrize("code", range(0x80, 0xA0))
def test_c1_references_follow_the_spec_table(code: int) -> None:
    expected = chr(C1_TABLE.get(code, code))  # 0x81, 0x8D, 0x8F, 0x90, 0x9D stay as they are
    assert charrefs._c1(code) == expected  # the table is built from this at import
    assert decode_attribute(f"&#{code};") == expected


@pytest.mark.parametrize(
    "raw, decoded",
    [
        ("&#X41;", "A"),  # capital X is hexadecimal too
        ("&#x10FFFF;", "\U0010ffff"),  # the last code point
        ("&#x110000;", "\ufffd"),  # one past it
        ("&#xD7FF;", "\ud7ff"),
        ("&#xD800;", "\ufffd"),
        ("&#xDFFF;", "\ufffd"),  # the last surrogate
        ("&#xE000;", "\ue000"),  # one past the surrogates
        ("&#0065;", "A"),
    ],
)
def test_numeric_references_at_the_code_point_limits(raw: str, decoded: str) -> None:
    assert decode_attribute("https://x.example/?q=" + raw) == "https://x.example/?q=" + decoded


@pytest.mark.parametrize(
    "raw, decoded",
    [
        ('?a&amp/b', "?a&/b"),  # legacy name (no ";") followed by "/": decoded
        ("?a&amp/", "?a&/"),  # the name is all but the last character
        ("?a&lt/x", "?a</x"),  # two-letter legacy name
        ("?a&ampé", "?a&é"),  # a non-ASCII letter does not stop it
        ("?a&amp=1", "?a&amp=1"),  # followed by "=": left as written
        ("?a&ampx", "?a&ampx"),  # followed by an ASCII letter: left as written
        ("?a&amp1", "?a&amp1"),  # ... or digit
        ("?a&zzzz/", "?a&zzzz/"),  # no such name
        ("?a=1&AMP;b=2", "?a=1&b=2"),  # "&AMP;" is a name of its own, not "&amp;" in capitals
    ],
)
def test_legacy_named_references_in_attribute_values(raw: str, decoded: str) -> None:
    assert decode_attribute(raw) == decoded


@pytest.mark.parametrize(
    "value, quote, escaped",
    [
        ('a&b', '"', "a&amp;b"),
        ('a"b', '"', "a&quot;b"),
        ("a'b", '"', "a'b"),  # the other quote needs nothing
        ('a"&b', '"', "a&quot;&amp;b"),
        ("plain", '"', "plain"),
        ("a&b", "'", "a&amp;b"),
        ("a'b", "'", "a&#39;b"),
        ('a"b', "'", 'a"b'),
        ("a'&b", "'", "a&#39;&amp;b"),
        ("plain", "'", "plain"),
        ("a b=c'd\"e<f>`g&h\ti", "", "a&#32;b&#61;c&#39;d&quot;e&lt;f&gt;&#96;g&amp;h&#9;i"),
        ("plain", "", "plain"),
    ],
)
def test_escaping_is_exactly_what_each_quote_needs(value: str, quote: str, escaped: str) -> None:
    assert escape_attribute(value, quote) == escaped
    assert decode_attribute(escaped) == value
