"""Whole MIME messages: rewrite the inline text bodies and keep every other byte.

A message is handled as bytes. Its structure is read by the rules of Python's
``email`` package (header blocks, boundary delimiter lines, the body parts the
way ``EmailMessage.get_body`` picks them), but it is never re-generated:

* each inline ``text/html`` and ``text/plain`` part is decoded (transfer
  encoding, then its own charset), rewritten, and only the lines that hold a
  change are encoded again, in the same charset and transfer encoding; lines
  without a change keep their original bytes (a base64 body, which has no
  lines to keep, is encoded whole, with its original line length);
* the transfer encoding (or, for text we cannot express in its charset, the
  charset) changes only when the new lines would break it: a 7bit line that is
  no longer ASCII, or any line longer than RFC 5322's 998 octets;
* headers are removed or added as whole fields; nothing else is touched.
  Attachments, ``message/rfc822`` parts, preambles and epilogues are copied.

Parts that cannot be decoded (an unknown charset or transfer encoding, bytes
invalid in the declared charset, broken base64) are left as they are and
reported, never dropped.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from .results import HtmlResult, MessagePart, TextResult
from .rewrite import Edits, RewritePlan, rewrite_html_edits, rewrite_text_edits, splice

__all__ = ["MimeNode", "add_field", "line_break", "parse_message", "rewrite_parts", "splice_bytes", "unfold"]

#: RFC 5322 section 2.1.1: a line is at most 998 octets, line break excluded.
MAX_LINE = 998
_MAX_DEPTH = 64  # deeper nesting is left as it is: no real message needs it, a hostile one would
# The stdlib parser's header-line test (email.feedparser.headerRE).
_HEADER_LINE = re.compile(rb"(From |[\041-\071\073-\176]*:|[\t ])")
_IDENTITY = ("7bit", "8bit", "binary")
_HEADER_PARSER = BytesHeaderParser(policy=compat32)


@dataclass
class Field:
    """One header field: its lowercased name and the span of all its lines (line breaks included)."""

    name: str
    start: int
    end: int


@dataclass
class MimeNode:
    """One entity of the message: where its headers and body lie in the raw bytes."""

    path: str  # IMAP section number: "1" for a single-part message, "2.1" for the first child of the second part
    start: int
    header_end: int  # where the last field ends (new fields go here)
    body_start: int
    end: int
    headers: Message  # the header block, parsed by the stdlib (values only; spans are in ``fields``)
    fields: list[Field]
    children: list[MimeNode] = field(default_factory=list)
    depth: int = 0

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    @property
    def is_attachment(self) -> bool:
        """``Content-Disposition: attachment``, or a file name on a part without a disposition.

        Several mail clients send attached text files as ``Content-Type:
        text/plain; name="server.log"`` with no disposition: such a part is a
        file, not the message's text.
        """
        disposition = self.headers.get_content_disposition()
        if disposition is not None:
            return disposition == "attachment" or (disposition != "inline" and self.headers.get_filename() is not None)
        return self.headers.get_param("name") is not None

    def field(self, name: str) -> Field | None:
        """The first field called ``name`` (case-insensitive)."""
        return next((f for f in self.fields if f.name == name.lower()), None)

    def leaves(self) -> list[MimeNode]:
        """Every entity without children, in order (a multipart without parts counts as one)."""
        if not self.children:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]


def parse_message(raw: bytes) -> MimeNode:
    """The MIME tree of ``raw``; never raises on malformed structure (it becomes preamble or body)."""
    return _parse(raw, 0, len(raw), "1", 0, top=True)


def _parse(raw: bytes, start: int, end: int, path: str, depth: int, *, top: bool = False, digest: bool = False) -> MimeNode:
    fields, header_end, body_start = _header_block(raw, start, end)
    headers = _HEADER_PARSER.parsebytes(raw[start:body_start])
    if digest:
        headers.set_default_type("message/rfc822")
    node = MimeNode(path, start, header_end, body_start, end, headers, fields, depth=depth)
    boundary = headers.get_boundary() if headers.get_content_maintype() == "multipart" else None
    if boundary and depth < _MAX_DEPTH:
        prefix = "" if top else path + "."
        spans = _child_spans(raw, body_start, end, boundary)
        child_digest = headers.get_content_subtype() == "digest"
        node.children = [
            _parse(raw, s, e, f"{prefix}{i}", depth + 1, digest=child_digest) for i, (s, e) in enumerate(spans, 1)
        ]
    return node


_LINE_END = re.compile(rb"\r\n|\r|\n")


def line_break(data: bytes) -> bytes:
    """The line break ``data`` uses: CRLF, LF, or a bare CR (LF when it has none)."""
    if b"\r\n" in data:
        return b"\r\n"
    if b"\n" not in data and b"\r" in data:
        return b"\r"
    return b"\n"


def _header_block(raw: bytes, start: int, end: int) -> tuple[list[Field], int, int]:
    """Fields, where the last one ends, and where the body starts (after the blank line, if any).

    Lines end at CRLF, CR or LF, as the stdlib's parser reads them.
    """
    fields: list[Field] = []
    pos = start
    while pos < end:
        found = _LINE_END.search(raw, pos, end)
        line_end = end if found is None else found.end()
        line = raw[pos:line_end]
        if line in (b"\n", b"\r\n", b"\r"):
            return fields, pos, line_end
        if not _HEADER_LINE.match(line):
            return fields, pos, pos  # not a header line: the body starts here (the stdlib's rule too)
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1].end = line_end
        else:
            # A "From " envelope line is kept in the block under no name, as the stdlib keeps it.
            name = "" if line.startswith(b"From ") else line.split(b":", 1)[0].decode("ascii").strip().lower()
            fields.append(Field(name, pos, line_end))
        pos = line_end
    return fields, end, end


def _child_spans(raw: bytes, start: int, end: int, boundary: str) -> list[tuple[int, int]]:
    """The byte spans of the body parts between delimiter lines (the line break before a delimiter is its own).

    A delimiter line is ``--boundary`` at the start of a line, then ``--`` for
    the last one, then only blanks (the stdlib's ``boundaryre``). The literal is
    searched first: a line-anchored regex would be tried at every byte.
    """
    try:
        needle = b"--" + boundary.encode("ascii")
    except UnicodeEncodeError:
        return []
    tail = re.compile(rb"(--)?[ \t]*(?:\r\n|\n|\r|\Z)")
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    at = raw.find(needle, start, end)
    while at != -1:
        match = tail.match(raw, at + len(needle), end)
        if match is not None and (at == start or raw[at - 1] in b"\r\n"):
            if part_start is not None:
                spans.append((part_start, _before_line_break(raw, at, part_start)))
            if match.group(1):
                return spans
            part_start = match.end()
            at = raw.find(needle, part_start, end)
        else:
            at = raw.find(needle, at + 1, end)
    if part_start is not None:
        spans.append((part_start, end))  # no close delimiter: the last part runs to the end
    return spans


def _before_line_break(raw: bytes, pos: int, floor: int) -> int:
    if pos - 2 >= floor and raw[pos - 2 : pos] == b"\r\n":
        return pos - 2
    if pos - 1 >= floor and raw[pos - 1 : pos] in (b"\n", b"\r"):
        return pos - 1
    return pos


def unfold(value: str) -> str:
    """A header value without its folding line breaks."""
    return re.sub(r"(?:\r\n|\r|\n)(?=[ \t])", "", value).strip()


# -- choosing the body ---------------------------------------------------------------


def body_parts(root: MimeNode) -> set[str]:
    """The paths of the HTML and plain-text body, chosen like ``EmailMessage.get_body``."""
    chosen = set()
    for subtype in ("html", "plain"):
        for node in _find_body(root, subtype):
            chosen.add(node.path)
            break
    return chosen


def _find_body(node: MimeNode, subtype: str) -> list[MimeNode]:
    if node.is_attachment:
        return []
    maintype, _, sub = node.content_type.partition("/")
    if maintype == "text":
        return [node] if sub == subtype else []
    if maintype != "multipart" or not node.children:
        return []
    if sub != "related":
        return [found for child in node.children for found in _find_body(child, subtype)]
    start = node.headers.get_param("start")
    candidate = next((c for c in node.children if start and c.headers.get("content-id") == start), node.children[0])
    return _find_body(candidate, subtype)


# -- rewriting the parts -------------------------------------------------------------

# The plan for a body part, or None to leave that kind of part alone.
PlanFor = Callable[[str, bool], "RewritePlan | None"]  # (subtype, is_body) -> plan


@dataclass
class _Decoded:
    """A text part decoded, with the line map that lets unchanged lines keep their bytes."""

    text: str
    codec: str
    charset: str
    encoding: str  # the transfer encoding, lowercased
    raw_lines: list[bytes] | None  # raw logical lines (a QP line with its soft breaks), None: no line map
    width: int  # base64 line length to write (the body's own)
    offsets: list[int]  # where each raw line starts in ``text``
    eol: bytes
    guessed: bool  # no charset declared and not ASCII: read as UTF-8


def rewrite_parts(raw: bytes, root: MimeNode, plan_for: PlanFor) -> tuple[list[tuple[int, int, bytes]], list[MessagePart], list[str]]:
    """Rewrite every inline text part; return byte edits for ``raw``, a report per leaf part, and warnings.

    HTML parts go first so that links opted out there are left alone in the
    text parts too.
    """
    bodies = body_parts(root)
    leaves = root.leaves()
    edits: list[tuple[int, int, bytes]] = []
    reports: dict[str, MessagePart] = {}
    warnings: list[str] = []
    opted_out: set[str] = set()
    exclude: frozenset[str] = frozenset()
    counted = 0  # links counted so far: indexes continue, and max_links holds for the whole message
    order = sorted(leaves, key=lambda n: n.content_type != "text/html")
    for node in order:
        if len(exclude) != len(opted_out):
            exclude = frozenset(opted_out)
        report = _rewrite_leaf(raw, node, plan_for, node.path in bodies, exclude, edits, counted)
        reports[node.path] = report
        if report.result is not None:
            counted += len(report.result.links) + sum(s.reason == "already-tracked" for s in report.result.skipped)
        if isinstance(report.result, HtmlResult):
            opted_out.update(s.url for s in report.result.skipped if s.reason == "opt-out")
        for warning in report.warnings:
            warnings.append(f"part {node.path}: {warning}")
    return edits, [reports[n.path] for n in leaves], warnings


def _rewrite_leaf(
    raw: bytes,
    node: MimeNode,
    plan_for: PlanFor,
    is_body: bool,
    exclude: frozenset[str],
    edits: list[tuple[int, int, bytes]],
    counted: int,
) -> MessagePart:
    ctype = node.content_type
    encoding = (node.headers.get("content-transfer-encoding") or "7bit").strip().lower()
    charset = node.headers.get_content_charset()
    part = MessagePart(node.path, ctype, charset, encoding, "left", body=is_body)
    if node.depth >= _MAX_DEPTH:
        return replace(part, reason=f"nested more than {_MAX_DEPTH} levels deep")
    if ctype not in ("text/html", "text/plain"):
        if ctype.startswith("multipart/"):
            return replace(part, reason="multipart without parts (no boundary or no delimiter found)")
        return replace(part, reason="not a text body")
    if node.is_attachment:
        return replace(part, reason="attachment")
    if node.body_start == node.header_end and node.body_start == node.end:
        return replace(part, status="unchanged", reason="no body (nothing after the headers)")
    decoded = _decode(raw, node, encoding, charset)
    if isinstance(decoded, str):
        return replace(part, status="undecodable", reason=decoded)
    subtype = ctype[5:]
    plan = plan_for(subtype, is_body)
    if plan is None:
        return replace(part, status="unchanged", reason="tracking off for this part")
    plan = _for_part(replace(plan, first_index=counted), decoded, subtype == "html")
    result: HtmlResult | TextResult
    if subtype == "html":
        result, changes = rewrite_html_edits(decoded.text, plan)
    else:
        result, changes = rewrite_text_edits(decoded.text, plan, exclude)
    notes = list(result.warnings)
    if decoded.guessed:
        notes.insert(0, "no charset declared and the bytes are not ASCII: read and written as UTF-8")
    if not changes:
        return replace(part, status="unchanged", result=result, warnings=notes)
    try:
        body, new_encoding, new_charset = _encode(decoded, changes, html=subtype == "html")
    except UnicodeError as exc:  # a codec that reads but cannot write back: leave the part as it was
        return replace(part, status="undecodable", reason=f"cannot write {decoded.charset} back ({exc})")
    if new_encoding != encoding:
        edits.extend(_set_field(raw, node, "Content-Transfer-Encoding", new_encoding, decoded.eol))
        notes.append(f"Content-Transfer-Encoding changed from {encoding} to {new_encoding}: the new lines did not fit it")
        if decoded.guessed:
            new_charset = "utf-8"  # encoded bytes can no longer be sniffed: say what they are
    if new_charset != decoded.charset:
        edits.extend(_set_charset(raw, node, new_charset, decoded.eol))
        why = "it was read as UTF-8" if decoded.guessed else f"the footer has characters {decoded.charset} lacks"
        notes.append(f"charset set from {decoded.charset} to {new_charset}: {why}")
    edits.append((node.body_start, node.end, body))  # after any field added at the same offset
    return replace(
        part, status="rewritten", result=result, warnings=notes,
        new_transfer_encoding=new_encoding, new_charset=new_charset,
    )


def _for_part(plan: RewritePlan, decoded: _Decoded, html: bool) -> RewritePlan:
    """The plan fitted to one part: footers with its line breaks, HTML footers in its charset.

    A CRLF body never gets a bare LF; characters an HTML part's charset lacks
    become character references here, so the result reports what is written.
    """
    unsubscribe = plan.unsubscribe
    if unsubscribe is None:
        return plan
    newline = "\r\n" if "\r\n" in decoded.text or decoded.eol == b"\r\n" else decoded.eol.decode("ascii")
    fix = re.compile(r"\r\n|\r|\n")
    template = fix.sub(newline, unsubscribe.html)
    if html:
        if not _encodes(template, decoded.codec):
            template = "".join(c if _encodes(c, decoded.codec) else f"&#{ord(c)};" for c in template)
    unsubscribe = replace(unsubscribe, html=template, text=fix.sub(newline, unsubscribe.text), newline=newline)
    return replace(plan, unsubscribe=unsubscribe)


def _encodes(text: str, codec: str) -> bool:
    """True if ``codec`` can write ``text``."""
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


# -- decoding ------------------------------------------------------------------------


def _decode(raw: bytes, node: MimeNode, encoding: str, charset: str | None) -> _Decoded | str:
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
    width = 76
    raw_lines: list[bytes] | None
    if encoding in _IDENTITY or qp:
        raw_lines = _QP_LINE.findall(body) if qp else _LINE.findall(body)
        if raw_lines and not raw_lines[-1]:
            raw_lines.pop()  # the empty match at the end
        data = binascii.a2b_qp(body) if qp else body
    elif encoding == "base64":
        try:
            data = base64.b64decode(body)
        except (binascii.Error, ValueError) as exc:
            return f"invalid base64 ({exc})"
        raw_lines = None
        first = len(body.split(b"\n", 1)[0].rstrip(b"\r"))
        width = first if 4 <= first <= 76 and first % 4 == 0 and len(body) > first + 2 else 76
    else:
        return f"unknown Content-Transfer-Encoding {encoding!r}"
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
    offsets: list[int] = []
    if raw_lines is not None:
        offsets = _line_offsets(text, raw_lines, codec, qp)
        if not offsets and raw_lines:
            raw_lines = None  # no line map: a change re-encodes the whole part
    return _Decoded(text, codec, declared, encoding, raw_lines, width, offsets, eol, guessed)


_PROBE = "<a href=\"https://x.example/?a=1&b=2#c\">Az09 '(;)-_.~%+,!*</a>\r\n"


def _ascii_compatible(codec: str) -> bool:
    """True if ASCII text is the same bytes in ``codec``, both ways (not UTF-16, UTF-7, IDNA, ...)."""
    try:
        return _PROBE.encode(codec) == _PROBE.encode("ascii") and _PROBE.encode("ascii").decode(codec) == _PROBE
    except (UnicodeError, LookupError, ValueError, TypeError):
        return False


# Lines with their line break; for quoted-printable, soft-broken lines (ending in "=") joined into one.
_LINE = re.compile(rb"[^\n]*(?:\n|\Z)")
_QP_LINE = re.compile(rb"(?:[^\n]*=[ \t]*\r?\n)*[^\n]*(?:\n|\Z)")
# Charsets that keep state across bytes, or can hold byte 0x0A inside a character: their lines
# are decoded one by one and checked against the whole.
_UNSPLITTABLE = ("utf-16", "utf-32", "utf_16", "utf_32", "iso2022", "hz", "utf-7")


def _line_offsets(text: str, raw_lines: list[bytes], codec: str, qp: bool) -> list[int]:
    """Where each raw line starts in ``text``; [] when the lines do not map one to one."""
    if not codec.startswith(_UNSPLITTABLE) and not (qp and re.search(rb"=0[aAdD]", b"".join(raw_lines))):
        # Byte 0x0A is the character "\n" and nothing else: line i of the text is raw line i decoded.
        lengths = [len(line) for line in text.split("\n")]
        if len(lengths) == len(raw_lines) + (0 if raw_lines and not raw_lines[-1].endswith(b"\n") else 1):
            offsets, at = [], 0
            for length in lengths[: len(raw_lines)]:
                offsets.append(at)
                at += length + 1
            return offsets
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


# -- encoding ------------------------------------------------------------------------


def _encode(decoded: _Decoded, changes: Edits, *, html: bool) -> tuple[bytes, str, str]:
    """The new raw body: original bytes for every untouched line; the new encoding and charset."""
    encoding, charset, codec = decoded.encoding, decoded.charset, decoded.codec
    if not _encodable(changes, codec, html):
        # Only our footer can bring characters the part's charset lacks (the rest was decoded from it).
        charset = codec = "utf-8"
    elif decoded.raw_lines is not None:
        body = _encode_lines(decoded, changes, html)
        if body is not None:
            return body, encoding, charset
    data = _charset_encode(splice(decoded.text, changes), codec, html)
    if encoding in _IDENTITY and not _fits(data, encoding):
        encoding = "quoted-printable"  # a new line is too long, or not ASCII in a 7bit part
    return _transfer_encode(data, encoding, decoded.eol, decoded.width), encoding, charset


def _encodable(changes: Edits, codec: str, html: bool) -> bool:
    """True if what the changes bring fits the charset (the rest was decoded from it)."""
    # HTML can write any character as a character reference.
    return html or all(_encodes(replacement, codec) for _, _, replacement in changes)


def _charset_encode(text: str, codec: str, html: bool) -> bytes:
    return text.encode(codec, "xmlcharrefreplace" if html else "strict")


def _encode_lines(decoded: _Decoded, changes: Edits, html: bool) -> bytes | None:
    """Re-encode only the lines the changes touch; None if a new line breaks a 7bit/8bit encoding.

    An insertion where a line starts (a footer after the last line break)
    touches no line: it is encoded on its own, between the lines around it.
    """
    assert decoded.raw_lines is not None
    lines, offsets, text = decoded.raw_lines, decoded.offsets, decoded.text
    count = len(lines)
    starts = set(offsets)
    ends_with_break = not lines or lines[-1].endswith((b"\n",))
    groups: list[list[int]] = []  # [first line, last line, first change, last change]; last = first - 1: between lines
    for index, (start, end, replacement) in enumerate(changes):
        at_end = start == len(text) and ends_with_break
        if start == end and (at_end or (start in starts and replacement.endswith("\n"))):
            # Between lines: at the end, or whole lines before line ``first`` (which stays as it is).
            first = count if at_end else bisect.bisect_left(offsets, start)
            last = first - 1
        else:
            first = max(bisect.bisect_right(offsets, start) - 1, 0)
            last = max(bisect.bisect_right(offsets, max(start, end - 1)) - 1, first)
        previous = groups[-1] if groups else None
        if previous is not None and (first <= previous[1] or (previous[1] < previous[0] == first)):
            groups[-1][1] = max(groups[-1][1], last)
            groups[-1][3] = index
        else:
            groups.append([first, last, index, index])
    out: list[bytes] = []
    done = 0
    for first, last, first_change, last_change in groups:
        out.extend(lines[done:first])
        begin = offsets[first] if first < count else len(text)
        stop = offsets[last + 1] if last + 1 < count else len(text)
        local = [(s - begin, e - begin, r) for s, e, r in changes[first_change : last_change + 1]]
        codec = "utf-8" if decoded.codec == "utf-8-sig" and first > 0 else decoded.codec  # one BOM, at the start
        new = _charset_encode(splice(text[begin:stop], local), codec, html)
        if decoded.encoding == "quoted-printable":
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
    return all(len(line.rstrip(b"\r\n")) <= MAX_LINE for line in data.splitlines(keepends=True))


def _qp_lines(data: bytes, eol: bytes) -> bytes:
    """Quoted-printable for whole lines of ``data``, each ending as it did (LF or CRLF).

    Only LF ends a line: a bare CR is content and is written as ``=0D``.
    """
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
    """Base64 in lines of ``width`` (the body's own; at most RFC 2045's 76), each ending with ``eol``."""
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + width] + eol for i in range(0, len(encoded), width))


# -- header fields -------------------------------------------------------------------


def add_field(node: MimeNode, name: str, value: str, eol: bytes) -> tuple[int, int, bytes]:
    """An edit adding ``name: value`` after the node's last field."""
    return (node.header_end, node.header_end, f"{name}: {value}".encode("ascii") + eol)


def _set_field(raw: bytes, node: MimeNode, name: str, value: str, eol: bytes) -> list[tuple[int, int, bytes]]:
    """Edits making the field ``name`` hold ``value`` (replacing its value, or adding the field)."""
    found = node.field(name)
    if found is None:
        return [add_field(node, name, value, eol)]
    line = raw[found.start : found.end]
    colon = line.index(b":")
    ending = line[len(line.rstrip(b"\r\n")):]
    return [(found.start + colon + 1, found.end, b" " + value.encode("ascii") + (ending or eol))]


_CHARSET_PARAM = re.compile(rb'(?i)(;\s*charset\s*=\s*)("[^"]*"|[^\s;()]*)')


def _set_charset(raw: bytes, node: MimeNode, charset: str, eol: bytes) -> list[tuple[int, int, bytes]]:
    """Edits setting the Content-Type charset parameter, keeping the rest of the field as written."""
    found = node.field("content-type")
    if found is None:
        return [add_field(node, "Content-Type", f"{node.content_type}; charset={charset}", eol)]
    line = raw[found.start : found.end]
    match = _CHARSET_PARAM.search(line)
    if match is not None:
        quoted = match.group(2).startswith(b'"')
        value = f'"{charset}"' if quoted else charset
        return [(found.start + match.start(2), found.start + match.end(2), value.encode("ascii"))]
    content_end = found.start + len(line.rstrip(b"\r\n"))
    return [(content_end, content_end, f"; charset={charset}".encode("ascii"))]


def splice_bytes(raw: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """``raw`` with each ``(start, end, replacement)`` applied; insertions at one offset keep their order."""
    if not edits:
        return raw
    edits = sorted(edits, key=lambda edit: (edit[0], edit[1]))
    out, pos = [], 0
    for start, end, replacement in edits:
        out.append(raw[pos:start])
        out.append(replacement)
        pos = max(pos, end)
    out.append(raw[pos:])
    return b"".join(out)
