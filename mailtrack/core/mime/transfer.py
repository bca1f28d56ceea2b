"""Decode a text part (transfer encoding, then charset) and encode changed lines back.

Only lines holding a change are encoded again, in the part's own charset and
transfer encoding; a line map keeps every other line's original bytes.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import codecs
import functools
import re
import sys
from dataclasses import dataclass, field
from itertools import accumulate

from mailtrack.core import speedups
from mailtrack.core.mime.tree import MimeNode, line_break
from mailtrack.core.rewrite import Edits, splice

#: RFC 5322 section 2.1.1: a line is at most 998 octets, line break excluded.
MAX_LINE = 998


_IDENTITY = ("7bit", "8bit", "binary")


@dataclass
class DecodedPart:
    """A text part decoded, with the line map that lets unchanged lines keep their bytes.

    The line map (``raw_lines``, ``offsets``) is made on first use: a part
    encoded whole (7bit/8bit in UTF-8, ASCII or a one-to-one single-byte
    charset, when every line fits) or in base64 never needs it.
    """

    text: str
    codec: str
    charset: str
    encoding: str  # the transfer encoding, lowercased
    width: int  # base64 line length to write (the body's own)
    eol: bytes
    guessed: bool  # no charset declared and not ASCII: read as UTF-8
    body: bytes = field(repr=False)  # the raw body the text was decoded from
    data: bytes | None = field(default=None, repr=False)  # the body transfer-decoded: ``text`` is it in ``codec``
    _line_map: tuple[list[bytes] | None, list[int]] | None = field(default=None, repr=False, compare=False)

    @property
    def raw_lines(self) -> list[bytes] | None:
        """Raw logical lines (a QP line with its soft breaks); None: no line map (base64, or lines that do not map)."""
        return self._lines()[0]

    @property
    def offsets(self) -> list[int]:
        """Where each raw line starts in ``text`` ([] without a line map)."""
        return self._lines()[1]

    def _lines(self) -> tuple[list[bytes] | None, list[int]]:
        if self._line_map is None:
            self._line_map = _line_map(self.body, self.text, self.codec, self.encoding)
        return self._line_map


def can_encode(text: str, codec: str) -> bool:
    """True if ``codec`` can write ``text``."""
    try:
        text.encode(codec)
    except UnicodeError:  # UnicodeEncodeError, or a bare UnicodeError from codecs such as idna
        return False
    return True


def decode_part(raw: bytes, node: MimeNode, encoding: str, charset: str | None) -> DecodedPart | str:
    """The decoded part, or why it cannot be decoded."""
    body = raw[node.body_start : node.end]
    eol = line_break(raw[node.start : node.body_start] + body[:4096])
    declared = charset or "us-ascii"
    try:
        info = codecs.lookup(declared)
    except (LookupError, UnicodeError, ValueError):
        return f"unknown charset {declared!r}"
    if not getattr(info, "_is_text_encoding", True):  # "base64", "rot13", ...: codecs, not charsets
        return f"unknown charset {declared!r}"
    codec = info.name
    if not _ascii_compatible(codec):
        return f"charset {declared!r} is not ASCII-compatible (markup and URLs could not be found in place)"
    qp = encoding == "quoted-printable"
    data = transfer_decode(body, encoding)
    if isinstance(data, str):
        return data
    width = 76
    if encoding not in _IDENTITY and not qp:  # base64
        first = len(body.split(b"\n", 1)[0].rstrip(b"\r"))
        width = first if 4 <= first <= 76 and first % 4 == 0 and len(body) > first + 2 else 76
    guessed = False
    try:
        text = data.decode(codec)
    except UnicodeError as exc:
        if charset is not None:
            where = f" at byte {exc.start}" if isinstance(exc, UnicodeDecodeError) else ""
            return f"bytes not valid in the declared charset {declared} ({getattr(exc, 'reason', exc)}{where})"
        try:
            text, codec, guessed = data.decode("utf-8"), "utf-8", True
        except UnicodeDecodeError:
            return "no charset declared, and the bytes are neither ASCII nor UTF-8"
    return DecodedPart(text, codec, declared, encoding, width, eol, guessed, body, data)


def _line_map(body: bytes, text: str, codec: str, encoding: str) -> tuple[list[bytes] | None, list[int]]:
    """The raw lines of a 7bit/8bit/QP ``body`` and where each starts in ``text``; (None, []) when there is no map."""
    qp = encoding == "quoted-printable"
    if encoding not in _IDENTITY and not qp:
        return None, []  # base64: re-encoded whole
    compiled = speedups.compiled
    raw_lines = compiled.split_lines(body, qp) if compiled is not None else _split_lines_pure(body, qp)
    offsets = _line_offsets(text, raw_lines, codec, qp, body)
    if not offsets and raw_lines:
        return None, []  # no line map: a change re-encodes the whole part
    return raw_lines, offsets


def _split_lines_pure(body: bytes, qp: bool) -> list[bytes]:
    """The lines of ``body`` with their LF; with ``qp``, soft-broken lines joined to the next (``split_lines``'s twin)."""
    lines: list[bytes] = _QP_LINE.findall(body) if qp else _LINE.findall(body)
    if lines and not lines[-1]:
        lines.pop()  # the empty match at the end
    return lines


def transfer_decode(body: bytes, encoding: str) -> bytes | str:
    """The bytes ``body`` stands for in the (lowercased) transfer ``encoding``, or why it cannot be read."""
    if encoding in _IDENTITY:
        return body
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    if encoding == "base64":
        compiled = speedups.compiled
        if compiled is not None:  # the usual shape, read in C (None: binascii reads, or refuses, the rest)
            decoded: bytes | None = compiled.b64_decode(body)
            if decoded is not None:
                return decoded
        try:
            return base64.b64decode(body)
        except (binascii.Error, ValueError) as exc:
            return f"invalid base64 ({exc})"
    return f"unknown Content-Transfer-Encoding {encoding!r}"


# Markup, a URL, punctuation, an empty "label" and a run longer than 63 characters (IDNA refuses both).
_PROBE = "<a href=\"https://x.example/?a=1&b=2#c\">Az09 '(;)-_.~%+,!*</a> a..b " + "x" * 70 + "\r\n"


@functools.lru_cache(maxsize=256)
def _ascii_compatible(codec: str) -> bool:
    """True if ASCII text is the same bytes in ``codec``, both ways (not UTF-16, UTF-7, IDNA, ...)."""
    try:
        return _PROBE.encode(codec) == _PROBE.encode("ascii") and _PROBE.encode("ascii").decode(codec) == _PROBE
    except (UnicodeError, LookupError, ValueError, TypeError):
        return False


# Lines with their line break; for quoted-printable, soft-broken lines (ending in "=") joined into one.
_LINE = re.compile(rb"[^\n]*(?:\n|\Z)")


# Possessive where the engine has them (3.11+): the soft-broken lines matched are never given back (what follows
# them matches any line), so nothing changes but the backtracking points the engine no longer saves.
_P = "+" if sys.version_info >= (3, 11) else ""
_QP_LINE = re.compile(rb"(?:[^\n]*=[ \t]*" + _P.encode() + rb"\r?\n)*" + _P.encode() + rb"[^\n]*" + _P.encode() + rb"(?:\n|\Z)")


# Charsets that keep state across bytes, or can hold byte 0x0A inside a character: their lines
# are decoded one by one and checked against the whole.
_UNSPLITTABLE = ("utf-16", "utf-32", "utf_16", "utf_32", "iso2022", "hz", "utf-7")


_ENCODED_BREAK = re.compile(rb"=0[aAdD]")


def _line_offsets(text: str, raw_lines: list[bytes], codec: str, qp: bool, body: bytes) -> list[int]:
    """Where each raw line starts in ``text``; [] when the lines do not map one to one (``body``: the lines joined)."""
    compiled = speedups.compiled
    if not codec.startswith(_UNSPLITTABLE) and not (qp and (
            compiled.qp_encoded_break(body) if compiled is not None else _ENCODED_BREAK.search(body))):
        # Byte 0x0A is the character "\n" and nothing else: line i of the text is raw line i decoded.
        starts = compiled.line_starts(text) if compiled is not None else _line_starts_pure(text)
        if len(starts) == len(raw_lines) + (0 if raw_lines and not raw_lines[-1].endswith(b"\n") else 1):
            del starts[len(raw_lines):]
            return starts
    offsets, pieces, at = [], [], 0
    try:
        for line in raw_lines:
            offsets.append(at)
            piece = (binascii.a2b_qp(line) if qp else line).decode(codec)
            pieces.append(piece)
            at += len(piece)
    except UnicodeError:
        return []
    return offsets if "".join(pieces) == text else []


def _line_starts_pure(text: str) -> list[int]:
    """0, then one past each "\\n" of ``text`` (``line_starts``' twin): where each line of ``text`` starts."""
    # Each line starts one past the previous line's end (its "\n"): running sums of length + 1, in C.
    return list(accumulate(map((1).__add__, map(len, text.split("\n")[:-1])), initial=0))


@dataclass(frozen=True)
class EncodedPart:
    """A rewritten part's new raw body, its transfer encoding and charset, and the codec that wrote it."""

    body: bytes
    encoding: str
    charset: str
    codec: str
    exact: bool = False  # reads back as the rewritten text by construction (no read-back check needed)


def encode_part(decoded: DecodedPart, changes: Edits, *, html: bool, intended: str | None = None) -> EncodedPart | str:
    """The new raw body (original bytes for every untouched line), or why the part cannot be written back.

    What is written is decoded again (transfer encoding, then charset) and
    must give exactly the rewritten text: a stateful codec (ISO-2022-*) reads
    stray escape or shift bytes in a state its encoder does not reproduce, so
    bytes that decoded can be rewritten into bytes that do not, or that read
    as other text. Such a part is reported and left as it was. The check is
    skipped only for what reads back by construction: the whole text encoded
    strictly in a charset whose bytes come back from its text
    (:func:`_encodes_back`), then written as is or in base64; or touched
    quoted-printable lines the compiled writer certifies (:func:`_encode_lines`).
    ``intended``: the text with ``changes`` spliced in, when the caller has
    it already (the rewriters return it as their result's text).
    """
    if intended is None:
        intended = splice(decoded.text, changes)
    try:
        encoded = _encode(decoded, changes, html, intended)
    except UnicodeError as exc:  # a codec that reads but cannot write back
        return f"cannot write {decoded.charset} back ({exc})"
    problem = None if encoded.exact else _decode_problem(encoded, intended)
    if problem is not None:
        return (
            f"the rewritten text does not come back from {encoded.charset} in {encoded.encoding} ({problem}); "
            "left as it was (a stateful codec, such as ISO-2022 with stray escape or shift bytes, reads its own output otherwise)"
        )
    return encoded


def _encode(decoded: DecodedPart, changes: Edits, html: bool, intended: str) -> EncodedPart:
    encoding, charset, codec = decoded.encoding, decoded.charset, decoded.codec
    if not _encodable(changes, codec, html):
        # Only our footer can bring characters the part's charset lacks (the rest was decoded from it).
        charset = codec = "utf-8"
    else:
        if encoding in _IDENTITY and _encodes_back(codec):
            # Every untouched line's bytes are its text encoded again: the body is the rewritten text encoded, in
            # one call, when every line of it fits (else the groups decide line by line, as they always did: a
            # line that was already too long, or held a NUL, does not stop a change elsewhere). Asked before the
            # line map is made (it is not needed here): without one, the fallback below would write these same
            # bytes, which read back as ``intended`` (that is what _encodes_back means).
            whole = _strict_encode(intended, codec)
            if whole is not None and _fits(whole, encoding):
                return EncodedPart(whole, encoding, charset, codec, exact=True)
        if decoded.raw_lines is not None:
            lines = _encode_lines(decoded, changes, html, intended)
            if lines is not None:
                return EncodedPart(lines[0], encoding, charset, codec, exact=lines[1])
    data = _strict_encode(intended, codec) if encoding == "base64" and _encodes_back(codec) else None
    if data is not None:
        return EncodedPart(_base64(data, decoded.eol, decoded.width), encoding, charset, codec, exact=True)
    data = _charset_encode(intended, codec, html)
    if encoding in _IDENTITY and not _fits(data, encoding):
        encoding = "quoted-printable"  # a new line is too long, or not ASCII in a 7bit part
    return EncodedPart(_transfer_encode(data, encoding, decoded.eol, decoded.width), encoding, charset, codec)


def _strict_encode(text: str, codec: str) -> bytes | None:
    """``text`` in ``codec`` with no character replaced, or None when one would have to be.

    UTF-8 goes through the compiled ``utf8_encode`` when there is one: the
    same bytes, and None exactly where ``str.encode`` raises (a surrogate), in
    a fifth of the instructions on a 4-byte-wide body (a part written back
    whole is encoded here, every message of a batch).
    """
    compiled = speedups.compiled
    if compiled is not None and codec == "utf-8":
        encoded: bytes | None = compiled.utf8_encode(text)
        return encoded
    try:
        return text.encode(codec)
    except UnicodeEncodeError:
        return None


def _decode_problem(encoded: EncodedPart, intended: str) -> str | None:
    """Why ``encoded`` does not read back as ``intended``; None when it does, exactly."""
    data = transfer_decode(encoded.body, encoded.encoding)
    if isinstance(data, str):
        return data
    try:
        text = data.decode(encoded.codec)
    except UnicodeDecodeError as exc:
        return f"{exc.reason} at byte {exc.start}"
    if text == intended:
        return None
    at = next((i for i, (a, b) in enumerate(zip(text, intended, strict=False)) if a != b), min(len(text), len(intended)))
    return f"it reads differently from character {at}"


#: Codecs whose strict encoder refuses a str exactly when it refuses one of its characters (whatever is next to
#: it): the replacements can be tried joined, in one call.
_PER_CHARACTER = ("utf-8", "ascii", "iso8859-1")


def _encodable(changes: Edits, codec: str, html: bool) -> bool:
    """True if what the changes bring fits the charset (the rest was decoded from it)."""
    if html:
        return True  # HTML can write any character as a character reference
    if codec in _PER_CHARACTER:
        return can_encode("".join([replacement for _, _, replacement in changes]), codec)
    return all(can_encode(replacement, codec) for _, _, replacement in changes)


def _charset_encode(text: str, codec: str, html: bool) -> bytes:
    return text.encode(codec, "xmlcharrefreplace" if html else "strict")


# Single-byte charsets whose table is checked (``_encodes_back``) to map each byte to its own character and back.
_SINGLE_BYTE = ("iso8859-", "cp125", "koi8-")


@functools.lru_cache(maxsize=32)
def _encodes_back(codec: str) -> bool:
    """True if any text decoded from ``codec`` encodes back to exactly the bytes it came from.

    UTF-8 and ASCII do (a strict decoder admits one spelling per character);
    a single-byte charset does when its table is one to one, which is
    checked here rather than assumed. Others (multibyte, stateful) are not
    trusted: their parts keep the line map.
    """
    if codec in ("utf-8", "ascii"):
        return True
    if not codec.startswith(_SINGLE_BYTE):
        return False
    seen: set[str] = set()
    for byte in range(256):
        raw = bytes((byte,))
        try:
            char = raw.decode(codec)
        except UnicodeDecodeError:
            continue  # not a character in this charset: text decoded from it never holds this byte
        if len(char) != 1 or char in seen or char.encode(codec) != raw:
            return False
        seen.add(char)
    return True


#: Codecs whose text and bytes the compiled ``qp_encode_lines`` can line up to certify its body (1: UTF-8,
#: counted by the bytes that start a character; 2: one byte per character).
_CERTIFIABLE = {"utf-8": 1, "ascii": 2, "iso8859-1": 2}


def _encode_lines(decoded: DecodedPart, changes: Edits, html: bool, intended: str) -> tuple[bytes, bool] | None:
    """Re-encode only the lines the changes touch, and whether that reads back as ``intended`` by construction.

    None if a new line breaks a 7bit/8bit encoding. A quoted-printable part
    goes through the compiled ``qp_encode_lines`` (``_speedups_lines.h``)
    when it is built: the same groups and bytes in one call, and in UTF-8,
    ASCII or Latin-1 a certificate that they read back (which spares the
    caller decoding the whole body again); :func:`_encode_lines_pure` is the
    reference it is tested against, and never certifies.
    """
    compiled = speedups.compiled
    if compiled is not None and decoded.encoding == "quoted-printable":
        assert decoded.raw_lines is not None
        codec = decoded.codec
        written: tuple[bytes, bool] | None = compiled.qp_encode_lines(
            decoded.raw_lines, decoded.offsets, len(decoded.text), changes, intended, codec,
            "utf-8" if codec == "utf-8-sig" else codec, "xmlcharrefreplace" if html else "strict", decoded.eol,
            decoded.body, decoded.data, _CERTIFIABLE.get(codec, 0), decoded.text,
        )
        if written is not None:
            return written
    body = _encode_lines_pure(decoded, changes, html, intended)
    return None if body is None else (body, False)


def _encode_lines_pure(decoded: DecodedPart, changes: Edits, html: bool, intended: str) -> bytes | None:
    """:func:`_encode_lines` in Python.

    An insertion where a line starts (a footer after the last line break)
    touches no line: it is encoded on its own, between the lines around it.
    A group of touched lines is not spliced again: its new text is its span
    in ``intended`` (the whole text, spliced once by the caller), shifted by
    what the changes before it added. That span is exact because the changes
    are sorted and apart, and each group holds every change within its lines;
    the caller's read-back check would refuse the part were it ever not.
    """
    assert decoded.raw_lines is not None
    lines, offsets, text = decoded.raw_lines, decoded.offsets, decoded.text
    count, size = len(lines), len(text)
    ends_with_break = not lines or lines[-1].endswith((b"\n",))
    # [first line, last line, growth of the changes before the group, growth of the group's];
    # last = first - 1: between lines
    groups: list[list[int]] = []
    shift = 0
    left, right = bisect.bisect_left, bisect.bisect_right
    for start, end, replacement in changes:
        growth = len(replacement) - (end - start)
        first = right(offsets, start) - 1
        if start == end and ((start == size and ends_with_break)
                             or (first >= 0 and offsets[first] == start and replacement.endswith("\n"))):
            # Between lines: at the end, or whole lines before line ``first`` (which stays as it is).
            first = count if start == size and ends_with_break else left(offsets, start)
            last = first - 1
        else:
            first = max(first, 0)
            # the change ends on its first line (the usual case), or the line holding its last character
            last = first if first + 1 >= count or end <= offsets[first + 1] else right(offsets, end - 1) - 1
        if groups and (first <= groups[-1][1] or (groups[-1][1] < groups[-1][0] == first)):
            previous = groups[-1]
            if last > previous[1]:
                previous[1] = last
            previous[3] += growth
        else:
            groups.append([first, last, shift, growth])
        shift += growth
    out: list[bytes] = []
    done = 0
    qp = decoded.encoding == "quoted-printable"
    for first, last, before, growth in groups:
        out.extend(lines[done:first])
        begin = offsets[first] if first < count else size
        stop = offsets[last + 1] if last + 1 < count else size
        codec = "utf-8" if decoded.codec == "utf-8-sig" and first > 0 else decoded.codec  # one BOM, at the start
        new = _charset_encode(intended[begin + before : stop + before + growth], codec, html)
        if qp:
            out.append(_qp_lines(new, decoded.eol))
        elif _fits(new, decoded.encoding):
            out.append(new)
        else:
            return None
        done = max(done, last + 1)
    out.extend(lines[done:])
    return b"".join(out)


def _fits(data: bytes, encoding: str) -> bool:
    """True if ``data`` is valid in a 7bit/8bit/binary body."""
    if encoding == "binary":
        return True
    if encoding == "7bit" and not data.isascii():
        return False
    if b"\0" in data:
        return False
    if len(data) <= MAX_LINE:  # the common case, a line or two touched: no line can be too long
        return True
    compiled = speedups.compiled
    return (compiled.max_line_length(data) if compiled is not None else _max_line_length_pure(data)) <= MAX_LINE


def _max_line_length_pure(data: bytes) -> int:
    """The longest line of ``data``, CR, LF and CRLF all ending one (bytes.splitlines); ``max_line_length``'s twin."""
    return max(map(len, data.replace(b"\r", b"\n").split(b"\n")))


def _qp_lines(data: bytes, eol: bytes) -> bytes:
    """Quoted-printable for whole lines of ``data``, each ending as it did (LF or CRLF).

    Only LF ends a line: a bare CR is content and is written as ``=0D``.
    The compiled ``qp_lines`` (``_speedups_qp.h``) writes the same bytes in
    one call; :func:`_qp_lines_pure` is the reference it is tested against.
    """
    compiled = speedups.compiled
    if compiled is not None:
        encoded: bytes = compiled.qp_lines(data, eol)
        return encoded
    return _qp_lines_pure(data, eol)


def _qp_lines_pure(data: bytes, eol: bytes) -> bytes:
    """:func:`_qp_lines` in Python: ``binascii.b2a_qp`` per line, soft breaks ending in ``eol``."""
    if data.find(b"\n") in (-1, len(data) - 1):  # one line (a group of touched lines is mostly one): no split
        ending = b"\r\n" if data.endswith(b"\r\n") else b"\n" if data.endswith(b"\n") else b""
        if not data:
            return b""
        encoded = binascii.b2a_qp(data[: len(data) - len(ending)], quotetabs=False, istext=False, header=False)
        return (encoded if eol == b"\n" else encoded.replace(b"=\n", b"=" + eol)) + ending
    out = []
    for line in _LINE.findall(data):
        if not line:
            continue
        ending = b"\r\n" if line.endswith(b"\r\n") else b"\n" if line.endswith(b"\n") else b""
        content = line[: len(line) - len(ending)]
        encoded = binascii.b2a_qp(content, quotetabs=False, istext=False, header=False)
        if eol != b"\n":
            encoded = encoded.replace(b"=\n", b"=" + eol)
        out.append(encoded + ending)
    return b"".join(out)


def _transfer_encode(data: bytes, encoding: str, eol: bytes, width: int) -> bytes:
    if encoding == "quoted-printable":
        return _qp_lines(data, eol)
    if encoding == "base64":
        return _base64(data, eol, width)
    return data


def _base64(data: bytes, eol: bytes, width: int) -> bytes:
    """Base64 in lines of ``width`` (the body's own; at most RFC 2045's 76), each ending with ``eol``.

    The compiled ``b64_lines`` (``_speedups_base64.h``) writes the same bytes
    in one call; :func:`_base64_pure` is the reference it is tested against.
    """
    compiled = speedups.compiled
    if compiled is not None:
        written: bytes | None = compiled.b64_lines(data, eol, width)
        if written is not None:
            return written
    return _base64_pure(data, eol, width)


def _base64_pure(data: bytes, eol: bytes, width: int) -> bytes:
    """:func:`_base64` in Python."""
    encoded = base64.b64encode(data)
    if not encoded:
        return b""
    return eol.join([encoded[i : i + width] for i in range(0, len(encoded), width)]) + eol
