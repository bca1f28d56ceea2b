"""mbox files, streamed: split into messages with their ``From `` lines, so that joining gives the bytes back.

One rule decides where a message starts, the one ``mailtrack rewrite-message``
uses to count them: at the start of the file, and at a ``From `` line that
follows a blank line and is followed by a header field. A body line "From the
team" is text, and ``>From`` quoting is left as it is. Each message is cut
into its ``From `` line (the envelope), the message, and the blank line that
separates it from the next one (its end, empty at the end of a file without
one), so ``envelope + message + end`` over all messages is the file, byte
for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

__all__ = ["ENVELOPE", "FIELD", "MboxMessage", "NotAnMbox", "split_mbox", "starts_like_mbox"]

#: A header field line: a name of printable ASCII but ":" and a colon (RFC 5322 ftext; the stdlib's rule).
FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
#: mbox's envelope line, "From sender date".
ENVELOPE = re.compile(rb"From [^\r\n]*(?:\r\n|\n|\r)")
_BLANK = (b"\n", b"\r\n", b"\r")


class NotAnMbox(ValueError):
    """The input does not start with a ``From `` line followed by a header field."""


class MboxMessage(NamedTuple):
    """One message of an mbox: ``envelope + message + end`` are its bytes in the file."""

    envelope: bytes  # the "From " line, with its line break
    message: bytes  # the message itself (headers and body), as an .eml holds it
    end: bytes  # the blank line before the next "From " line (or at the end of the file), or b""


def starts_like_mbox(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) starts with a ``From `` line and then a header field."""
    envelope = ENVELOPE.match(head)
    return envelope is not None and FIELD.match(head, envelope.end()) is not None


def split_mbox(lines: Iterable[bytes]) -> Iterator[MboxMessage]:
    """The messages of an mbox given as its lines (a binary file iterates that way), one at a time.

    Memory holds one message. An empty input is an empty mbox (no message).
    Raises :class:`NotAnMbox` before yielding anything when the first line is
    not a ``From `` line followed by a header field.
    """
    source = iter(lines)
    first, second = next(source, b""), next(source, b"")
    if not first:
        return
    if not starts_like_mbox(first + second):
        raise NotAnMbox("it does not start with a 'From ' line followed by a header field")
    envelope, current = first, [second]
    pending: bytes | None = None  # a "From " line after a blank line, waiting to see what follows it
    for line in source:
        if pending is not None:
            if FIELD.match(line):
                yield _cut(envelope, current)
                envelope, current = pending, [line]
                pending = None
                continue
            current.append(pending)
            pending = None
        if line.startswith(b"From ") and current[-1] in _BLANK and ENVELOPE.fullmatch(line):
            pending = line
        else:
            current.append(line)
    if pending is not None:
        current.append(pending)
    yield _cut(envelope, current)


def _cut(envelope: bytes, lines: list[bytes]) -> MboxMessage:
    """The message made of ``lines``, its last line taken as the separator when it is blank."""
    end = lines.pop() if len(lines) > 1 and lines[-1] in _BLANK else b""
    return MboxMessage(envelope, b"".join(lines), end)
