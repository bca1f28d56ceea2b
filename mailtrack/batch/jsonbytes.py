"""A JSON lines record whose message stays bytes: read, rewrite and write a ``raw`` value without a str in between.

The stdlib way to rewrite a record, ``json.loads`` the line, encode the
message, rewrite it, decode it, ``json.dumps`` the record, builds three strs
the size of the message (four bytes a character once it holds an emoji): on a
35 KB newsletter that is a third of a millisecond of a batch's CPU per
message. :func:`read_record` instead finds the long string values of the
line's top-level object without decoding them (the compiled
``json_long_values``), parses the rest with :func:`json.loads` (``NaN``
standing in for each long value, so nesting, duplicate keys and key order are
the stdlib's), and unescapes ``raw`` straight into UTF-8 bytes
(``json_unescape``); :func:`write_record` writes the rewritten bytes back as a
JSON string (``json_escape``) into the ``json.dumps`` of the rest.

Every step gives up where the stdlib's answer could differ (a surrogate,
invalid UTF-8, a ``NaN`` literal, invalid JSON, ...) and the caller then takes
the stdlib way, so the bytes written are the stdlib way's in every case. The
``*_pure`` functions are the references of the compiled ones, byte for byte
(tests compare them); without the compiled module :func:`read_record` says
None and the batch takes the stdlib way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from mailtrack.core import speedups

__all__ = ["LONG", "escape_pure", "long_values_pure", "read_record", "unescape_pure", "write_record"]

#: String values at least this long (escaped bytes) are kept out of json.loads: a message, an HTML body.
LONG = 1024
#: Where the rewritten message goes in the record while the rest is dumped: a value no record is likely to hold
#: (one that does is written the stdlib way: :func:`write_record` checks).
_MARK = "\x00mailtrack:raw\x00"
_MARK_JSON = json.dumps(_MARK).encode("ascii")
_WHITESPACE = b" \t\n\r"


class _Long:
    """A long string value not decoded yet: its escaped content is ``data[start:end]``."""

    __slots__ = ("end", "start")

    def __init__(self, span: tuple[int, int]) -> None:
        self.start, self.end = span


def read_record(data: bytes) -> tuple[dict[str, Any], bytes | None] | None:
    """The record on the JSON line ``data``, and its ``raw`` value as UTF-8 bytes when that is a long string.

    When the bytes are given, the record's ``raw`` is None (in its place in
    the key order); otherwise the record is ``json.loads(data)``'s. None when this way does not apply (no
    compiled module, no long string value) or could give another answer than
    ``json.loads(data)`` (invalid JSON, a surrogate, ...): the caller parses
    ``data`` the stdlib way.
    """
    compiled = speedups.compiled
    if compiled is None or len(data) < LONG or data[:1] != b"{" or data[1:2] == b"\x00":
        return None  # (a NUL second byte would make json.loads read UTF-16)
    spans = compiled.json_long_values(data, LONG)
    if not spans:
        return None
    pieces: list[bytes] = []
    last = 0
    for start, end in spans:
        pieces += (data[last:start - 1], b"NaN")  # the quotes go with the content
        last = end + 1
    pieces.append(data[last:])
    placeholders = iter(spans)

    def constant(name: str) -> _Long:
        return _Long(next(placeholders))  # every NaN is one of ours: json_long_values refused lines with their own

    try:
        record = json.loads(b"".join(pieces), parse_constant=constant)
    except ValueError:  # invalid JSON (and UnicodeDecodeError): json.loads(data) says how
        return None
    if not isinstance(record, dict):
        return None
    longs = [(key, value) for key, value in record.items() if isinstance(value, _Long)]
    if len(longs) != len(spans):
        return None  # a duplicate key's earlier value, which json.loads(data) would still have had to decode
    raw: bytes | None = None
    for key, value in longs:
        if key == "raw":
            raw = compiled.json_unescape(data, value.start, value.end)
            if raw is None:
                return None
            record[key] = None  # keeps its place in the key order (write_record sets it)
        else:
            try:
                record[key] = json.loads('"' + data[value.start:value.end].decode("utf-8", "surrogatepass") + '"')
            except ValueError:
                return None
    return record, raw


def write_record(record: Mapping[str, Any], raw: bytes, dumps: Callable[[Mapping[str, Any]], bytes]) -> bytes:
    """``dumps(record)`` with ``raw`` (a rewritten message, bytes) as the value of ``record["raw"]``.

    Written as ``dumps`` would write the str ``raw.decode("utf-8",
    "surrogateescape")`` (what :meth:`~mailtrack.Tracker.rewrite_message` gives
    for a str message), byte for byte.
    """
    compiled = speedups.compiled
    if compiled is not None:
        out = dumps({**record, "raw": _MARK})
        if out.count(_MARK_JSON) == 1:
            head, _, tail = out.partition(_MARK_JSON)
            written: bytes | None = compiled.json_escape(raw, head, tail)
            if written is not None:
                return written
    return dumps({**record, "raw": raw.decode("utf-8", "surrogateescape")})


# -- the references of the compiled functions -----------------------------------------------------


def long_values_pure(data: bytes, min_length: int) -> list[tuple[int, int]] | None:
    """The (start, end) spans inside the quotes of the top-level object's string values of ``min_length`` bytes or more.

    None when ``data`` holds an unterminated string, or an ``N`` or ``I``
    outside strings (a ``NaN`` or ``Infinity`` literal). Reads only quotes,
    backslashes and brackets: for valid JSON these are the spans json.loads reads.
    """
    spans: list[tuple[int, int]] = []
    depth, last, i, n = 0, 0, 0, len(data)
    while i < n:
        c = data[i]
        if c == 0x22:  # "
            start = j = i + 1
            while True:
                j = data.find(b'"', j)
                if j < 0:
                    return None
                back = j
                while back > start and data[back - 1] == 0x5C:  # \
                    back -= 1
                if (j - back) % 2 == 0:
                    break
                j += 1
            if depth == 1 and last == 0x3A and j - start >= min_length:  # :
                spans.append((start, j))
            last, i = c, j + 1
            continue
        if c in b"{[":
            depth += 1
        elif c in b"}]":
            depth -= 1
        elif c in b"NI":
            return None
        if c not in _WHITESPACE:
            last = c
        i += 1
    return spans


def unescape_pure(data: bytes, start: int, end: int) -> bytes | None:
    """The UTF-8 bytes of the JSON string whose escaped content is ``data[start:end]``, decoded as json.loads would.

    None where json.loads fails (invalid UTF-8, a raw control character or
    quote, a bad escape) or gives a str holding a surrogate (which has no UTF-8).
    """
    if not 0 <= start <= end <= len(data):
        raise ValueError("json_unescape(): start and end must be 0 <= start <= end <= len(data)")
    try:
        value = json.loads('"' + data[start:end].decode("utf-8", "surrogatepass") + '"')
        return value.encode("utf-8") if isinstance(value, str) else None
    except (ValueError, UnicodeEncodeError):
        return None


def escape_pure(data: bytes, head: bytes = b"", tail: bytes = b"") -> bytes | None:
    """``head``, ``data`` (UTF-8) as a JSON string as ``json.dumps(ensure_ascii=False)`` writes it, ``tail``; None if not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return head + json.dumps(text, ensure_ascii=False).encode("utf-8") + tail
