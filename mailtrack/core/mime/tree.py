"""The structure of a MIME message read from its bytes: header blocks, boundaries, body parts.

Read by the rules of Python's ``email`` package (``headerRE``, ``boundaryre``,
``get_body``), but kept as byte spans of the input so nothing is re-generated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Generic, TypeVar, overload

from mailtrack.core import speedups

MAX_DEPTH = 64  # deeper nesting is left as it is: no real message needs it, a hostile one would


# The stdlib parser's header-line test (email.feedparser.headerRE).
_HEADER_LINE = re.compile(rb"(From |[\041-\071\073-\176]*:|[\t ])")


_HEADER_PARSER = BytesHeaderParser(policy=compat32)

#: The fields a node's MIME structure is read from (type, parameters, disposition, transfer encoding, the
#: Content-ID multipart/related's start names): all MimeNode.headers holds. The other fields (To, Subject, a
#: message's own headers that differ from one recipient to the next) are only ever patched through their spans.
_STRUCTURE = frozenset({"content-type", "content-disposition", "content-transfer-encoding", "content-id"})

#: Those fields of a node, parsed, by their bytes: a campaign's messages carry the same few (``Content-Type:
#: text/html; charset=utf-8`` ...), and the stdlib's parser was an eighth of a rewrite. The parsed objects are
#: only read (MimeNode.headers is never changed after _parse), so one can serve every message; so can what is
#: read from them (the second item: MimeNode's facts, such as the content type and charset, which the stdlib
#: parses again from the field on every call). Bounded: blocks up to 4 KB, emptied when it holds 256.
_PART_HEADERS: dict[tuple[bytes, bool], tuple[Message, dict[str, Any]]] = {}
_PART_HEADERS_MAX = 256
_PART_HEADER_BYTES = 4096


def _part_headers(block: bytes, digest: bool) -> tuple[Message, dict[str, Any]]:
    """``block`` parsed (as a digest's child when ``digest``) and the facts read from it, from the cache when seen before.

    The stdlib reads each field of a header block on its own (its name,
    then its value with the continuation lines): a node's structure fields
    alone, parsed, answer every question MimeNode asks as its whole block would.
    """
    key = (block, digest)
    cached = _PART_HEADERS.get(key) if len(block) <= _PART_HEADER_BYTES else None
    if cached is None:
        headers = _HEADER_PARSER.parsebytes(block)
        if digest:
            headers.set_default_type("message/rfc822")
        cached = (headers, {})
        if len(block) <= _PART_HEADER_BYTES:
            if len(_PART_HEADERS) >= _PART_HEADERS_MAX:
                _PART_HEADERS.clear()
            _PART_HEADERS[key] = cached
    return cached


_MISSING = object()


_T = TypeVar("_T")


class _once(Generic[_T]):
    """``functools.cached_property`` without its lock: read once, then kept in the node's ``__dict__``.

    Python 3.11's cached_property takes an RLock on every first read (about
    1.5 microseconds, against 0.4 for this), and a campaign message's nodes
    are each read a dozen times for the first time. A node is never shared
    between threads while it is being read (each rewrite parses its own).
    """

    def __init__(self, read: Callable[[Any], _T]) -> None:
        self.read = read
        self.name = read.__name__
        self.__doc__ = read.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, node: None, owner: type | None = None) -> _once[_T]: ...

    @overload
    def __get__(self, node: object, owner: type | None = None) -> _T: ...

    def __get__(self, node: object | None, owner: type | None = None) -> _T | _once[_T]:
        if node is None:
            return self
        value = node.__dict__[self.name] = self.read(node)
        return value


@dataclass(slots=True)
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
    headers: Message  # the structure fields (_STRUCTURE) of the block, parsed by the stdlib; spans are in ``fields``
    fields: list[Field]
    children: list[MimeNode] = field(default_factory=list)
    depth: int = 0
    #: What has been read from ``headers`` (by the properties below), shared by every node with the same cached
    #: part header block: a node's headers are never changed after parsing, so neither are these.
    facts: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def _fact(self, name: str, read: Callable[[], Any]) -> Any:
        value = self.facts.get(name, _MISSING)
        if value is _MISSING:
            value = self.facts[name] = read()
        return value

    # Each read once per node, and once per cached header block (the stdlib re-parses the parameters on every
    # call, and a rewrite asks several times).
    @_once
    def content_type(self) -> str:
        value: str = self._fact("content_type", self.headers.get_content_type)
        return value

    @_once
    def charset(self) -> str | None:
        """The ``charset`` parameter, lowercased (``Message.get_content_charset``); None when there is none."""
        value: str | None = self._fact("charset", self.headers.get_content_charset)
        return value

    @_once
    def transfer_encoding(self) -> str:
        """``Content-Transfer-Encoding``, stripped and lowercased; ``7bit`` when missing or empty."""
        # str(): the stdlib gives a Header object, not a str, for a value with non-ASCII bytes.
        value: str = self._fact("transfer_encoding", lambda: str(self.headers.get("content-transfer-encoding") or "7bit")
                                .strip().lower())
        return value

    @_once
    def boundary(self) -> str | None:
        """The boundary of a multipart entity (None for any other, or a multipart without one)."""
        headers = self.headers
        value: str | None = self._fact(
            "boundary", lambda: headers.get_boundary() if headers.get_content_maintype() == "multipart" else None)
        return value

    @_once
    def is_attachment(self) -> bool:
        """``Content-Disposition: attachment``, or a file name on a part without a disposition.

        Several mail clients send attached text files as ``Content-Type:
        text/plain; name="server.log"`` with no disposition: such a part is a
        file, not the message's text.
        """
        value: bool = self._fact("is_attachment", self._is_attachment)
        return value

    def _is_attachment(self) -> bool:
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
    structure = b"".join([raw[f.start : f.end] for f in fields if f.name in _STRUCTURE])
    headers, facts = _part_headers(structure, digest)
    node = MimeNode(path, start, header_end, body_start, end, headers, fields, depth=depth, facts=facts)
    boundary = node.boundary
    if boundary and depth < MAX_DEPTH:
        prefix = "" if top else path + "."
        spans = _child_spans(raw, body_start, end, boundary)
        child_digest = node.content_type == "multipart/digest"
        node.children = [
            _parse(raw, s, e, f"{prefix}{i}", depth + 1, digest=child_digest) for i, (s, e) in enumerate(spans, 1)
        ]
    return node


_LINE_END = re.compile(rb"\r\n|\r|\n")


def line_break(data: bytes) -> bytes:
    """The line break ``data`` uses: CRLF, LF, or a bare CR (LF when it has none).

    A CR is looked for first: ``b"\\r\\n" in data`` takes 2 ns a byte where
    no CR is (CPython's two-character search), a one-byte search is a memchr
    (8 against 0.5 microseconds on the 4 KB each part is asked about).
    """
    if b"\r" not in data:
        return b"\n"
    if b"\r\n" in data:
        return b"\r\n"
    if b"\n" not in data:
        return b"\r"
    return b"\n"


def _header_block(raw: bytes, start: int, end: int) -> tuple[list[Field], int, int]:
    """Fields, where the last one ends, and where the body starts (after the blank line, if any).

    Lines end at CRLF, CR or LF, as the stdlib's parser reads them. The
    compiled ``header_block`` reads the lines in one call (18 against 4.5
    microseconds a block of 8 fields, three blocks a campaign message);
    :func:`_header_block_pure` is its reference.
    """
    compiled = speedups.compiled
    if compiled is not None:
        spans, header_end, body_start = compiled.header_block(raw, start, end)
        return [Field(name, field_start, field_end) for name, field_start, field_end in spans], header_end, body_start
    return _header_block_pure(raw, start, end)


def _header_block_pure(raw: bytes, start: int, end: int) -> tuple[list[Field], int, int]:
    """:func:`_header_block` in Python: the reference of the compiled ``header_block``."""
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


#: What may follow ``--boundary`` on a delimiter line: ``--`` for the last one, then only blanks to the line's end.
_DELIMITER_TAIL = re.compile(rb"(--)?[ \t]*(?:\r\n|\n|\r|\Z)")


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
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    at = raw.find(needle, start, end)
    while at != -1:
        match = _DELIMITER_TAIL.match(raw, at + len(needle), end)
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
