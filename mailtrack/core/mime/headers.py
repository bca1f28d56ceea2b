"""Byte edits to header fields: add a field, set one, change a charset parameter; apply byte edits.
"""

from __future__ import annotations

import re

from mailtrack.core.mime.tree import MimeNode


def add_field(node: MimeNode, name: str, value: str, eol: bytes) -> tuple[int, int, bytes]:
    """An edit adding ``name: value`` after the node's last field."""
    return (node.header_end, node.header_end, f"{name}: {value}".encode("ascii") + eol)


def set_field(raw: bytes, node: MimeNode, name: str, value: str, eol: bytes) -> list[tuple[int, int, bytes]]:
    """Edits making the field ``name`` hold ``value`` (replacing its value, or adding the field)."""
    found = node.field(name)
    if found is None:
        return [add_field(node, name, value, eol)]
    line = raw[found.start : found.end]
    colon = line.index(b":")
    ending = line[len(line.rstrip(b"\r\n")):]
    return [(found.start + colon + 1, found.end, b" " + value.encode("ascii") + (ending or eol))]


_CHARSET_PARAM = re.compile(rb'(?i)(;\s*charset\s*=\s*)("[^"]*"|[^\s;()]*)')


def set_charset(raw: bytes, node: MimeNode, charset: str, eol: bytes) -> list[tuple[int, int, bytes]]:
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
