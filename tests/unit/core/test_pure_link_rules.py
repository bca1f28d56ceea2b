"""The per-link rules' faster spellings answer as the straightforward ones (issue 13, pure path).

``PlaceholderMatcher.search`` finds any opening delimiter in one search before
the per-pair ``str.find`` calls and, for the default list, searches the
expression patterns one by one; ``destination_problem`` takes the destination
check's fast path without building its ``Destination``. Each is run here beside
the spelling it replaced, on values built from the characters those rules
look at.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrack.core.rewrite.rules import DEFAULT_PLACEHOLDERS, PlaceholderMatcher
from mailtrack.core.urls import check_destination, destination_problem

_DEFAULT = PlaceholderMatcher()
_PIECES = st.sampled_from(["{{", "}}", "{%", "%}", "*|", "|*", "<%", "%>", "${", "}", "%", "%tag%", "%2F", "%41%",
                           "[", "]", "[x]", "a", "_", ".", "-", "https://shop.example/", "?q=", "&", "é", " ", "\n"])
_VALUES = st.lists(_PIECES, max_size=20).map("".join)


def search_as_before(value: str) -> bool:
    """What ``PlaceholderMatcher().search`` did before: every pair by ``str.find``, the rest as one alternation."""
    if re.search(r"[{%|<\[$]", value) is None:
        return False
    for opening, closing in (("{{", "}}"), ("{%", "%}"), ("*|", "|*"), ("<%", "%>"), ("${", "}")):
        first = value.find(opening)
        if first != -1 and value.find(closing, first + len(opening)) != -1:
            return True
    rest = [DEFAULT_PLACEHOLDERS[4], DEFAULT_PLACEHOLDERS[5]]
    return re.search("|".join(f"(?:{s})" for s in rest), value) is not None


@settings(max_examples=2000)
@given(_VALUES)
def test_the_default_placeholder_search_answers_as_before(value: str) -> None:
    assert _DEFAULT.search(value) == search_as_before(value)
    assert _DEFAULT.search(value) == any(re.search(p, value) for p in DEFAULT_PLACEHOLDERS)


@given(_VALUES)
def test_a_custom_list_with_a_default_pair_and_a_back_reference_searches_as_one_expression(value: str) -> None:
    custom = PlaceholderMatcher([DEFAULT_PLACEHOLDERS[0], r"(%)x\1"])
    combined = re.compile(r"(?:(%)x\1)")
    expected = (value.find("{{") != -1 and value.find("}}", value.find("{{") + 2) != -1) or bool(combined.search(value))
    assert custom.search(value) == expected


@settings(max_examples=2000)
@given(st.lists(st.sampled_from(["http://", "https://", "HTTPS://", "a", "b.", "-", "x--y", ":80", ":99999", "/", "?",
                                 "#", "%", "é", "[::1]", "@", "\\", " ", "\x00", "0x7f.1"]), max_size=12).map("".join))
def test_destination_problem_answers_as_check_destination(url: str) -> None:
    checked = check_destination(url)
    assert destination_problem(url) == (checked if isinstance(checked, str) else None)


_OLD_PLAIN_AUTHORITY = re.compile(
    r"[hH][tT][tT][pP][sS]?://((?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z][A-Za-z0-9_-]{0,62}\.?)(:[0-9]{1,5})?(?=[/?#]|\Z)"
    r"[\x21-\x7e]*\Z"
)
_HOST_PIECES = st.sampled_from(["https://", "http://", "a", "Z", "9", "-", "_", ".", "..", "x" * 62, "y" * 63, "z" * 64,
                                ":", ":8080", ":123456", "/", "?", "#", "é", " ", "[", "%"])


@settings(max_examples=3000)
@given(st.tuples(st.sampled_from(["https://", "http://", "HTTP://", ""]), st.lists(_HOST_PIECES, max_size=12))
       .map(lambda parts: parts[0] + "".join(parts[1])))
def test_the_possessive_plain_authority_reads_hosts_as_before(url: str) -> None:
    from mailtrack.core import urls

    old, new = _OLD_PLAIN_AUTHORITY.match(url), urls._PLAIN.match(url)
    assert (old and old.groups()) == (new and new.groups())


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=3_000)),
       st.sampled_from(["a", "é", "\u2603", "\U0001f600", "\ud800"]),
       st.one_of(st.integers(min_value=25_000, max_value=102_400), st.integers(min_value=95_000, max_value=104_448)))
def test_the_pure_gmail_clip_check_counts_utf8_bytes(count: int, wide: str, size: int) -> None:
    """Both sides of the limit, in each storage width (a 4-byte-wide text is encoded whole, the others by slices)."""
    from mailtrack.core import speedups
    from mailtrack.core.results import GMAIL_CLIP_BYTES, exceeds_gmail_clip

    text = ("x" * size)[: size - count] + wide * count
    compiled, speedups.compiled = speedups.compiled, None
    try:
        assert exceeds_gmail_clip(text) == (len(text.encode("utf-8", "surrogatepass")) > GMAIL_CLIP_BYTES)
    finally:
        speedups.compiled = compiled
