"""Independent checks for rewritten MIME messages (test helper, not a test module).

Nothing here uses :mod:`mailtrack.mime`: messages are split into entities by a
small splitter of its own (header block up to the blank line, body parts
between boundary delimiter lines), and bodies are decoded by the stdlib
(``email.message_from_bytes(..., policy=default)`` and ``get_payload(decode=True)``).
:func:`check_rewrite` holds every invariant a rewritten message must keep;
the test modules build messages and call it.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

import mailtrack

__all__ = [
    "HEADERS_WE_ADD",
    "Checked",
    "Entity",
    "assert_untouched_lines_kept",
    "check_rewrite",
    "edit_spans",
    "logical_lines",
    "split_message",
    "stdlib_leaves",
    "stdlib_text",
]

#: Fields rewrite_message may add to the top-level header (Message-ID only when the input had none).
HEADERS_WE_ADD = ("message-id", "list-unsubscribe", "list-unsubscribe-post", "x-mailtrack-settings")
_FIELD_START = re.compile(rb"[\041-\071\073-\176]+:")
_HEADER_PARSER = BytesHeaderParser(policy=compat32)
_BARE_LF = re.compile(rb"(?<!\r)\n")


# -- an independent splitter -----------------------------------------------------------


@dataclass
class HeaderField:
    name: str  # lowercased
    raw: bytes  # every line of the field, line breaks included


@dataclass
class Entity:
    path: str
    start: int
    body_start: int
    end: int
    fields: list[HeaderField]
    headers: Message
    children: list[Entity] = field(default_factory=list)
    frame: list[bytes] = field(default_factory=list)  # a multipart's body bytes outside its children

    def leaves(self) -> list[Entity]:
        if not self.children:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]

    def body(self, raw: bytes) -> bytes:
        return raw[self.body_start : self.end]

    def walk(self) -> Iterable[Entity]:
        yield self
        for child in self.children:
            yield from child.walk()


def split_message(raw: bytes) -> Entity:
    """The entity tree of a well-formed ``raw`` (message/* parts are leaves)."""
    return _split(raw, 0, len(raw), "1", top=True)


def _split(raw: bytes, start: int, end: int, path: str, *, top: bool) -> Entity:
    fields: list[HeaderField] = []
    pos = start
    body_start = end
    while pos < end:
        newline = raw.find(b"\n", pos, end)
        line_end = end if newline < 0 else newline + 1
        line = raw[pos:line_end]
        if line in (b"\n", b"\r\n"):
            body_start = line_end
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].raw += line
        elif _FIELD_START.match(line):
            fields.append(HeaderField(line.split(b":", 1)[0].decode("ascii").lower(), line))
        else:
            body_start = pos
            break
        pos = line_end
    headers = _HEADER_PARSER.parsebytes(raw[start:body_start])
    entity = Entity(path, start, body_start, end, fields, headers)
    boundary = headers.get_boundary() if headers.get_content_maintype() == "multipart" else None
    if boundary:
        delimiter = re.compile(rb"(?m)^--" + re.escape(boundary.encode("ascii")) + rb"(--)?[ \t]*(?:\r\n|\n|\Z)")
        spans: list[tuple[int, int]] = []
        child_start = None
        for match in delimiter.finditer(raw, body_start, end):
            if child_start is not None:
                child_end = match.start()
                if raw[child_end - 2 : child_end] == b"\r\n" and child_end - 2 >= child_start:
                    child_end -= 2
                elif raw[child_end - 1 : child_end] == b"\n" and child_end - 1 >= child_start:
                    child_end -= 1
                spans.append((child_start, child_end))
            if match.group(1):
                child_start = None
                break
            child_start = match.end()
        if child_start is not None:
            spans.append((child_start, end))
        prefix = "" if top else path + "."
        entity.children = [_split(raw, s, e, f"{prefix}{i}", top=False) for i, (s, e) in enumerate(spans, 1)]
        gaps, at = [], body_start
        for s, e in spans:
            gaps.append(raw[at:s])
            at = e
        gaps.append(raw[at:end])
        entity.frame = gaps
    return entity


def stdlib_leaves(message: Message, path: str = "1", *, top: bool = True) -> dict[str, Message]:
    """The stdlib's leaf parts by IMAP path (message/* parts are leaves, as in :func:`split_message`)."""
    payload = message.get_payload()
    if message.get_content_maintype() == "multipart" and isinstance(payload, list):
        prefix = "" if top else path + "."
        found: dict[str, Message] = {}
        for i, child in enumerate(payload, 1):
            found.update(stdlib_leaves(child, f"{prefix}{i}", top=False))
        return found
    return {path: message}


def stdlib_text(part: Message) -> str:
    """A text part decoded by the stdlib: transfer encoding, then its declared charset (strict)."""
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    charset = part.get_content_charset()
    if charset is None and not data.isascii():
        return data.decode("utf-8")  # undeclared: the rewriter reads UTF-8 (and says so)
    return data.decode(charset or "us-ascii")


# -- lines ---------------------------------------------------------------------------


def logical_lines(body: bytes, *, qp: bool) -> list[bytes]:
    """``body`` split after each LF (line breaks kept); for QP, soft-broken lines joined."""
    lines = body.splitlines(keepends=True)
    if not qp:
        return lines
    joined: list[bytes] = []
    current = b""
    for line in lines:
        current += line
        if not line.rstrip(b"\r\n").rstrip(b" \t").endswith(b"="):
            joined.append(current)
            current = b""
    if current:
        joined.append(current)
    return joined


def edit_spans(result: mailtrack.HtmlResult | mailtrack.TextResult) -> list[tuple[int, int]]:
    """Every span of the input text a rewrite changed (insertions as empty spans)."""
    spans = [(link.start, link.end) for link in result.links]
    places = list(result.unsubscribe)
    if isinstance(result, mailtrack.HtmlResult):
        places += result.pixels
    spans += [(p.position, p.position + len(p.replaced)) for p in places]
    return spans


def _touched(line_start: int, line_end: int, spans: list[tuple[int, int]]) -> bool:
    for start, end in spans:
        if start == end:
            if line_start <= start < line_end:
                return True
        elif start < line_end and end > line_start:
            return True
    return False


def assert_untouched_lines_kept(
    body_in: bytes,
    body_out: bytes,
    *,
    encoding: str,
    codec: str,
    text_in: str,
    spans: list[tuple[int, int]],
    where: str,
    end_touches_last: bool = False,
) -> int:
    """Every run of input lines no edit touches is in the output, verbatim and in order; returns lines checked.

    ``end_touches_last`` counts an insertion after the last line break (a text footer) as a change of
    the last line (the rewriter once re-encoded that line; kept to check old expectations if needed).
    """
    if end_touches_last:
        spans = [(min(s, max(len(text_in) - 1, 0)), e) if s == e == len(text_in) else (s, e) for s, e in spans]
    qp = encoding == "quoted-printable"
    lines = logical_lines(body_in, qp=qp)
    pieces, offsets, at = [], [], 0
    for line in lines:
        data = binascii.a2b_qp(line) if qp else line
        piece = data.decode(codec)
        offsets.append(at)
        pieces.append(piece)
        at += len(piece)
    assert "".join(pieces) == text_in, f"{where}: the input does not decode line by line (test set-up)"
    runs: list[tuple[int, int]] = []  # [first, last] line indexes of untouched runs
    for index in range(len(lines)):
        if _touched(offsets[index], offsets[index] + len(pieces[index]), spans):
            continue
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    appended = any(start >= len(text_in) for start, _ in spans)  # something goes after the last line
    cursor = 0
    checked = 0
    for first, last in runs:
        chunk = b"".join(lines[first : last + 1])
        if first == 0:
            assert body_out.startswith(chunk), (
                f"{where}: the untouched first lines changed:\n{chunk!r}\nvs\n{body_out[: len(chunk)]!r}"
            )
            found = 0
        elif last == len(lines) - 1 and not appended:
            assert body_out.endswith(chunk), (
                f"{where}: the untouched last lines changed:\n{chunk!r}\nvs\n{body_out[-len(chunk) :]!r}"
            )
            found = len(body_out) - len(chunk)
        else:
            found = body_out.find(chunk, cursor)
            assert found >= 0, f"{where}: untouched lines {first}..{last} not kept verbatim: {chunk!r}"
        assert found >= cursor, f"{where}: untouched lines {first}..{last} out of order"
        cursor = found + len(chunk)
        checked += last - first + 1
    return checked


# -- the whole check ---------------------------------------------------------------------


def _fields_without(fields: list[HeaderField], names: Iterable[str]) -> list[bytes]:
    drop = set(names)
    return [f.raw for f in fields if f.name not in drop]


def _charset_param_replaced(ct_in: bytes, ct_out: bytes, new_charset: str) -> bool:
    pattern = re.compile(rb'(?i)(;\s*charset\s*=\s*)("[^"]*"|[^\s;()]*)')
    if pattern.search(ct_in) is None:
        return ct_out.rstrip(b"\r\n") == ct_in.rstrip(b"\r\n") + b"; charset=" + new_charset.encode()
    candidates = {
        pattern.sub(lambda m, value=value: m.group(1) + value, ct_in, count=1)
        for value in (new_charset.encode(), b'"' + new_charset.encode() + b'"')
    }
    return ct_out in candidates


def _check_leaf_headers(
    fin: list[HeaderField], fout: list[HeaderField], part: mailtrack.MessagePart, headers_out: Message, where: str
) -> None:
    special = ("content-type", "content-transfer-encoding")
    assert _fields_without(fin, special) == _fields_without(fout, special), f"{where}: header fields changed"
    cte_in = [f.raw for f in fin if f.name == "content-transfer-encoding"]
    cte_out = [f.raw for f in fout if f.name == "content-transfer-encoding"]
    ct_in = [f.raw for f in fin if f.name == "content-type"]
    ct_out = [f.raw for f in fout if f.name == "content-type"]
    new_cte = part.new_transfer_encoding or part.transfer_encoding
    if new_cte != part.transfer_encoding:
        assert len(cte_out) == 1, f"{where}: expected one Content-Transfer-Encoding field, got {cte_out!r}"
        assert str(headers_out["content-transfer-encoding"]).strip().lower() == new_cte, f"{where}: CTE not patched"
        if cte_in:
            name = cte_in[0].split(b":", 1)[0]
            assert cte_out[0].split(b":", 1)[0] == name, f"{where}: the CTE field name was respelled"
    else:
        assert cte_in == cte_out, f"{where}: CTE field changed although the encoding did not"
    if part.new_charset is not None and part.new_charset != (part.charset or "us-ascii"):
        assert headers_out.get_content_charset() == part.new_charset, f"{where}: charset not patched"
        assert len(ct_out) == 1
        if ct_in:
            assert _charset_param_replaced(ct_in[0], ct_out[0], part.new_charset), (
                f"{where}: Content-Type changed beyond its charset: {ct_in[0]!r} -> {ct_out[0]!r}"
            )
    else:
        assert ct_in == ct_out, f"{where}: Content-Type changed although the charset did not"


@dataclass
class Checked:
    """What :func:`check_rewrite` saw, for test-specific assertions."""

    output: bytes
    parsed: Message  # the output, parsed by the stdlib (policy=default)
    parts: dict[str, mailtrack.MessagePart]
    decoded: dict[str, str]  # rewritten/unchanged text parts, decoded from the output by the stdlib
    decoded_in: dict[str, str]  # the same parts decoded from the input
    lines_checked: int = 0


def check_rewrite(
    tracker: mailtrack.Tracker,
    raw_in: bytes,
    result: mailtrack.MessageResult[Any],
    *,
    kwargs: Mapping[str, Any],
    expect_links: Mapping[str, list[str]] | None = None,
    expect_pixel: bool = True,
    strict_defects: bool = True,
    check_idempotent: bool = True,
    charrefs_in_html: bool = False,
    end_touches_last: bool = False,
) -> Checked:
    """Assert every invariant of a rewrite of ``raw_in`` (bytes) into ``result``.

    ``kwargs`` are the arguments the rewrite was called with (for the second
    pass); ``expect_links`` maps a part path to the destinations its links
    must track, in order. ``charrefs_in_html`` compares an HTML part with its
    result after characters its charset lacks became character references
    (what is written; ``result.html`` now holds the references too, so this is a no-op there).
    """
    out = result.message
    assert isinstance(out, bytes)
    parts = {p.path: p for p in result.parts}
    tin, tout = split_message(raw_in), split_message(out)

    # Same shape, and our splitter agrees with the rewriter on the leaves.
    assert [e.path for e in tin.walk()] == [e.path for e in tout.walk()], "the MIME tree changed shape"
    assert [leaf.path for leaf in tin.leaves()] == [p.path for p in result.parts], "result.parts are not the leaves"

    # Top-level header: only our fields added, only X-SMTPAPI removed (X-Mailtrack-Settings takes its place).
    had_id = any(f.name == "message-id" for f in tin.fields)
    added_names = [n for n in HEADERS_WE_ADD if n != "message-id" or not had_id]
    top_in = [f for f in tin.fields if f.name != "x-smtpapi"]
    top_out = [f for f in tout.fields if f.name not in added_names]
    for f in tout.fields:
        if f.name in added_names:
            assert f.raw.isascii() and len(f.raw.rstrip(b"\r\n")) <= 998, f"added field {f.raw!r} is not a valid line"
    if not had_id:
        assert sum(f.name == "message-id" for f in tout.fields) == 1, "a Message-ID was not added"
    assert sum(f.name == "list-unsubscribe" for f in tout.fields) <= 1

    # Every multipart: headers (but the top's additions) and frame (preamble, delimiters, epilogue) identical.
    for ein, eout in zip(tin.walk(), tout.walk(), strict=False):
        if ein.children:
            fin = top_in if ein is tin else ein.fields
            fo = top_out if eout is tout else eout.fields
            assert [f.raw for f in fin] == [f.raw for f in fo], f"part {ein.path}: multipart header changed"
            assert ein.frame == eout.frame, f"part {ein.path}: preamble, delimiter lines or epilogue changed"
            assert (
                raw_in[ein.start : ein.body_start][len(b"".join(f.raw for f in ein.fields)) :]
                == out[eout.start : eout.body_start][len(b"".join(f.raw for f in eout.fields)) :]
            ), f"part {ein.path}: blank line changed"

    parsed = email.message_from_bytes(out, policy=email.policy.default)
    parsed_in = email.message_from_bytes(raw_in, policy=email.policy.default)
    std_out, std_in = stdlib_leaves(parsed), stdlib_leaves(parsed_in)
    assert sorted(std_out) == sorted(parts), f"the stdlib sees other leaves: {sorted(std_out)} vs {sorted(parts)}"

    checked = Checked(out, parsed, parts, {}, {})
    links_by_part: dict[str, list[str]] = {}
    for lin, lout in zip(tin.leaves(), tout.leaves(), strict=False):
        part = parts[lin.path]
        where = f"part {part.path} ({part.content_type}, {part.charset}, {part.transfer_encoding}, {part.status})"
        fin = top_in if lin is tin else lin.fields
        fo = top_out if lout is tout else lout.fields
        out_part, in_part = std_out[part.path], std_in[part.path]
        if strict_defects:
            assert not out_part.defects, f"{where}: output defects {out_part.defects}"
        else:
            assert len(out_part.defects) <= len(in_part.defects), f"{where}: new defects {out_part.defects}"
        if part.status != "rewritten":
            assert [f.raw for f in fin] == [f.raw for f in fo], f"{where}: headers changed"
            assert lin.body(raw_in) == lout.body(out), f"{where}: body changed"
            assert part.new_transfer_encoding is None and part.new_charset is None
            if part.status == "left":
                assert part.result is None, f"{where}: left, yet has a result"
            if part.status in ("undecodable", "unencodable"):
                assert part.reason and part.result is None, f"{where}: {part.status} without a reason, or with a result"
            if part.status == "unchanged" and part.result is not None:
                body = part.result.html if isinstance(part.result, mailtrack.HtmlResult) else part.result.text
                assert body == stdlib_text(in_part), f"{where}: unchanged, yet the result differs from the input"
            continue
        # A rewritten part.
        assert part.result is not None
        _check_leaf_headers(fin, fo, part, out_part, where)
        new_body = part.result.html if isinstance(part.result, mailtrack.HtmlResult) else part.result.text
        text_out, text_in = stdlib_text(out_part), stdlib_text(in_part)
        if charrefs_in_html and isinstance(part.result, mailtrack.HtmlResult):
            charset = part.new_charset or part.charset or "us-ascii"
            new_body = new_body.encode(charset, "xmlcharrefreplace").decode(charset)
        assert text_out == new_body, f"{where}: the output part does not decode to the rewriter's result"
        checked.decoded[part.path], checked.decoded_in[part.path] = text_out, text_in
        for link in part.result.links:
            if link.start != link.end:  # a footer link is not in the input
                assert text_in[link.start : link.end] == link.raw, f"{where}: link span does not hold .raw"
        new_encoding = part.new_transfer_encoding or part.transfer_encoding
        body_in, body_out = lin.body(raw_in), lout.body(out)
        if new_encoding == "base64":
            lines = body_out.splitlines()
            assert all(len(line) <= 76 for line in lines), f"{where}: base64 line over 76"
            base64.b64decode(b"".join(lines), validate=True)
        elif new_encoding in ("7bit", "8bit", "quoted-printable"):
            kept = set(body_in.splitlines()) if new_encoding == part.transfer_encoding else set()
            new_lines = [line for line in body_out.splitlines() if line not in kept]  # what the rewriter wrote
            for line in new_lines:
                assert len(line) <= 998, f"{where}: a new {len(line)}-octet line in {new_encoding}"
                if new_encoding == "quoted-printable":
                    assert len(line) <= 76, f"{where}: a re-encoded QP line is over 76"
                if new_encoding in ("7bit", "quoted-printable"):
                    assert line.isascii(), f"{where}: non-ASCII bytes in {new_encoding}"
        same_encoding = new_encoding == part.transfer_encoding
        same_charset = part.new_charset in (None, part.charset or "us-ascii")
        if same_encoding and same_charset and new_encoding in ("7bit", "8bit", "quoted-printable"):
            codec = part.charset or ("us-ascii" if body_in.isascii() else "utf-8")
            checked.lines_checked += assert_untouched_lines_kept(
                body_in,
                body_out,
                encoding=new_encoding,
                codec=codec,
                text_in=text_in,
                spans=edit_spans(part.result),
                where=where,
                end_touches_last=end_touches_last,
            )
    for part in result.parts:
        if part.result is not None:
            links_by_part[part.path] = [link.url for link in part.result.links]
            text = checked.decoded.get(part.path)
            for link in part.result.links:
                verified = tracker.verify(link.tracking_url)
                assert verified.kind == "click" and verified.url == link.url, f"{link!r} verifies to {verified!r}"
                assert verified.message_id == result.message_id and verified.recipient == result.recipient
                if text is not None:
                    assert link.tracking_url in text, f"part {part.path}: {link.tracking_url} is not in the output"
    if expect_links is not None:
        assert {k: v for k, v in links_by_part.items() if v or k in expect_links} == dict(expect_links), (
            f"tracked destinations: {links_by_part}"
        )

    html = result.html
    if expect_pixel:
        assert html is not None and len(html.pixels) == 1, f"no pixel: {html!r}"
        body_path = next(p.path for p in result.parts if p.body and isinstance(p.result, mailtrack.HtmlResult))
        pixel = html.pixels[0].html
        assert pixel in checked.decoded[body_path], "the pixel is not in the HTML body"
        src = re.search(r'src="([^"]+)"', pixel)
        assert src is not None and tracker.verify(src.group(1)).kind == "open"
    if result.list_unsubscribe is not None:
        assert tracker.verify(result.list_unsubscribe).kind == "unsubscribe"
        assert result.list_unsubscribe.encode() in out

    # Line breaks: a CRLF message stays CRLF, an LF one stays LF.
    if not _BARE_LF.search(raw_in):
        assert not _BARE_LF.search(out), f"a bare LF was introduced at {_BARE_LF.search(out).start()}"  # type: ignore[union-attr]
    if b"\r" not in raw_in:
        assert b"\r" not in out, "a CR was introduced into an LF message"

    if check_idempotent:
        again = tracker.rewrite_message(out, **kwargs)
        assert again.message == out, "a second rewrite changed the message"
        assert all(p.status != "rewritten" for p in again.parts)
    return checked
