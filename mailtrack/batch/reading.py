"""Reading one input file into items, streamed: a whole .eml or HTML file is one item, an mbox or JSON lines file many.

Only one message is in memory at a time (plus the read buffer), however many
the file holds. A file that cannot be read, or is not an mbox, raises
:class:`SourceError` (possibly after some items: the caller drops what it
wrote for this file).
"""

from __future__ import annotations

from collections.abc import Iterator

from mailtrack.batch.items import Item
from mailtrack.batch.mbox import NotAnMbox, split_mbox
from mailtrack.batch.sources import Source
from mailtrack.exceptions import MailtrackError

__all__ = ["SourceError", "read_source"]

_BUFFER = 1 << 20


class SourceError(MailtrackError):
    """An input file could not be read as a whole (unreadable, or not in its format)."""


def read_source(source: Source) -> Iterator[Item]:
    """The items of ``source``, in file order."""
    try:
        if source.format in ("eml", "html"):
            yield Item(source.format, source.path.read_bytes(), source.where, name=_stem(source))
        elif source.format == "mbox":
            yield from _mbox(source)
        else:
            yield from _jsonl(source)
    except OSError as exc:
        raise SourceError(exc.strerror or str(exc)) from None


def _stem(source: Source) -> str:
    """An HTML file's default message id: its name without the extension."""
    return source.path.stem if source.format == "html" else ""


def _mbox(source: Source) -> Iterator[Item]:
    with source.path.open("rb", buffering=_BUFFER) as file:
        try:
            for number, message in enumerate(split_mbox(file), 1):
                yield Item("mbox", message.message, f"{source.where} message {number}", envelope=message.envelope,
                           end=message.end)
        except NotAnMbox as exc:
            raise SourceError(f"not an mbox: {exc}") from None


def _jsonl(source: Source) -> Iterator[Item]:
    with source.path.open("rb", buffering=_BUFFER) as file:
        for number, line in enumerate(file, 1):
            body = line.rstrip(b"\r\n")
            yield Item("jsonl", body, f"{source.where} line {number}", end=line[len(body):])
