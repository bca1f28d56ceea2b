"""Plain-text bodies: find URLs as a reader sees them and patch them in place.

A URL starts at ``http://`` or ``https://`` (any case, not glued to a preceding
letter or digit) and runs to whitespace, ``<``, ``>`` or ``"``. Then, as a reader
would, trailing sentence punctuation ``.,;:!?`` and closing quotes are left
out, and a closing ``)``, ``]`` or ``}`` is left out when it has no opening
partner inside the URL: ``(see https://x.example/a)`` ends before ``)`` while
``https://en.wikipedia.org/wiki/Foo_(bar)`` keeps it; ``<https://...>`` stops
at ``>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from mailtrack.core import speedups

__all__ = ["find_urls", "find_urls_pure"]

# The "h" comes first and the "not glued to a letter or digit" check looks back from it: the regex engine then
# skips ahead to the next h or H at C speed, where the look-behind first cost a test at every character
# (the same matches, twice as fast over a text body).
_START = re.compile(r"[hH](?<![A-Za-z0-9].)[tT][tT][pP][sS]?://[^\s<>\"]+")
_TRAILING = ".,;:!?'\u2019\u201d\u00bb*"  # sentence punctuation, closing quotes, an emphasis mark
_PAIRS = {")": "(", "]": "[", "}": "{"}


def find_urls(text: str) -> Iterable[tuple[int, int]]:
    """``(start, end)`` of every http(s) URL in ``text``, in order.

    The compiled twin (``_speedups.find_urls``, the same loop over the str's
    characters in one call) where the speedups run; :func:`find_urls_pure`,
    the reference, elsewhere. The differential tests compare both.
    """
    compiled = speedups.compiled
    if compiled is not None:
        spans: list[tuple[int, int]] = compiled.find_urls(text)
        return spans
    return find_urls_pure(text)


def find_urls_pure(text: str) -> Iterator[tuple[int, int]]:
    """:func:`find_urls` in Python: the regular expression's matches, each trimmed as a reader would."""
    for match in _START.finditer(text):
        start, end = match.span()
        end = _trim(text, start, end)
        if end > start:
            yield start, end


def _trim(text: str, start: int, end: int) -> int:
    """Where a reader would say the URL ``text[start:end]`` really ends.

    Linear: each closing bracket's surplus over its opening partner is counted
    once, when first needed, and kept up to date as closers are cut off (a
    recount per cut made ``https://x/))))...`` quadratic).
    """
    surplus: dict[str, int] | None = None  # closer -> its count minus its partner's in text[start:end]
    while end > start:
        last = text[end - 1]
        if last in _TRAILING:
            if last == "*" and text[end - 2 : end] == "|*":
                break  # the end of a Mailchimp merge tag *|X|*, not emphasis
            end -= 1
            continue
        if last in _PAIRS:
            if surplus is None:
                surplus = {}
            excess = surplus.get(last)
            if excess is None:
                excess = text.count(last, start, end) - text.count(_PAIRS[last], start, end)
            if excess > 0:
                surplus[last] = excess - 1
                end -= 1
                continue
        break
    return end
