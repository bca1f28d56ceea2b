"""Character references in attribute values, decoded as the HTML tokenizer does.

``html.unescape`` follows the rules for text content. Attribute values differ in
two ways that matter for URLs: a raw NUL becomes U+FFFD (and, as everywhere, CR
LF and CR become LF), and a named reference without ``;`` followed by ``=``
or an ASCII letter or digit stays as written, so ``?a=1&copy=2`` keeps ``&copy``
while ``&amp;`` and ``&#38;`` become ``&``.
"""

from __future__ import annotations

import re
from html.entities import html5

__all__ = ["decode_attribute", "escape_attribute"]

_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def _c1(code: int) -> str:
    try:
        return bytes([code]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D stay as they are
        return chr(code)


# The spec's "numeric character reference end state" replacements for C1 controls.
_C1 = {code: _c1(code) for code in range(0x80, 0xA0)}


def _numeric(ref: str) -> str:
    """A numeric reference as the tokenizer resolves it (``html.unescape`` drops controls instead)."""
    digits = ref[1:].rstrip(";")
    hexadecimal = digits[:1] in ("x", "X")
    digits = digits[1:] if hexadecimal else digits
    if len(digits.lstrip("0")) > 8:
        return "\ufffd"  # far beyond U+10FFFF (and beyond int()'s digit limit)
    code = int(digits, 16 if hexadecimal else 10)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return _C1.get(code) or chr(code)


def _replace(match: re.Match[str]) -> str:
    ref = match.group(1)
    if ref[0] == "#":
        return _numeric(ref)
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
    """The attribute value a browser sees for ``value`` as written in the source.

    First what the input stream preprocessor does to every character of the
    document (CR LF and lone CR become LF), and the attribute value states'
    one replacement (U+0000 becomes U+FFFD), then character references,
    decoded exactly once. A reference to CR or NUL (``&#13;``, ``&#0;``) is
    decoded after that, as the tokenizer does: ``&#13;`` stays CR.
    """
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
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
