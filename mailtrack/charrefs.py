"""Character references in attribute values, decoded as the HTML tokenizer does.

``html.unescape`` follows the rules for text content. Attribute values differ in
one way that matters for URLs: a named reference without ``;`` followed by ``=``
or an ASCII letter or digit stays as written, so ``?a=1&copy=2`` keeps ``&copy``
while ``&amp;`` and ``&#38;`` become ``&``.
"""

from __future__ import annotations

import html
import re
from html.entities import html5

__all__ = ["decode_attribute", "escape_attribute"]

_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def _replace(match: re.Match[str]) -> str:
    ref = match.group(1)
    if ref[0] == "#":
        return html.unescape(match.group(0))  # numeric: stdlib applies the spec's replacement table
    if ref in html5:
        return html5[ref]
    # Longest legacy name (no ";") that prefixes the reference.
    for length in range(min(len(ref) - 1, 6), 1, -1):
        name = ref[:length]
        if name in html5:
            following = ref[length]
            if following == "=" or (following.isascii() and following.isalnum()):
                return match.group(0)  # "historical reasons": left as written in attributes
            return html5[name] + ref[length:]
    return match.group(0)


def decode_attribute(value: str) -> str:
    """Decode character references in an attribute value exactly once."""
    ampersands = value.count("&")
    if not ampersands:
        return value
    if ampersands == value.count("&amp;"):  # the common case in URLs: only &amp;
        return value.replace("&amp;", "&")
    return _CHARREF.sub(_replace, value)


_UNQUOTED_SPECIAL = re.compile(r"[&\"'<>=`\t\n\f\r ]")
_UNQUOTED = {"&": "&amp;", '"': "&quot;", "'": "&#39;", "<": "&lt;", ">": "&gt;", "=": "&#61;", "`": "&#96;",
             " ": "&#32;", "\t": "&#9;", "\n": "&#10;", "\f": "&#12;", "\r": "&#13;"}


def escape_attribute(value: str, quote: str) -> str:
    """Escape ``value`` so that it reads back unchanged inside ``quote`` ('"', "'" or "")."""
    if quote == '"':
        return value.replace("&", "&amp;").replace('"', "&quot;") if ("&" in value or '"' in value) else value
    if quote == "'":
        return value.replace("&", "&amp;").replace("'", "&#39;") if ("&" in value or "'" in value) else value
    if _UNQUOTED_SPECIAL.search(value) is None:
        return value
    return _UNQUOTED_SPECIAL.sub(lambda m: _UNQUOTED[m.group(0)], value)
