"""The units a batch moves between reader, workers and writer: an :class:`Item` in, an :class:`ItemResult` out.

An item is one message as bytes, with just enough around it to write the
result back in place: an mbox message keeps its ``From `` line and the blank
line after it, a JSON lines record its line break. Items are plain data, so
they pickle to any worker; a :class:`Partition` is what a worker gives back
for a list of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from mailtrack.batch.summary import Summary

__all__ = ["FORMATS", "Format", "Item", "ItemResult", "Partition"]

#: How an input is read and its output written.
Format = Literal["eml", "html", "mbox", "jsonl"]
FORMATS: tuple[Format, ...] = get_args(Format)


@dataclass(frozen=True)
class Item:
    """One message to rewrite.

    ``data`` is the message: an .eml file's bytes, one mbox message without its
    ``From `` line, an HTML file's bytes, or one JSON lines record without its
    line break. ``where`` names it in errors. ``name`` is an HTML file's name
    without the extension (its default message id). ``envelope`` (an mbox
    message's ``From `` line) is written back before the output and ``end``
    (the blank line after an mbox message, a record's line break) after it,
    unchanged.
    """

    format: Format
    data: bytes
    where: str
    name: str = ""
    envelope: bytes = b""
    end: bytes = b""

    @property
    def size(self) -> int:
        """How many input bytes the item stands for (for progress)."""
        return len(self.envelope) + len(self.data) + len(self.end)


@dataclass(frozen=True)
class ItemResult:
    """What goes into the output in place of one item: ``output`` bytes, or None (nothing: see below).

    ``error`` is the reason the item could not be rewritten, or None. A failed
    .eml or HTML input has no output (its file is not written); a failed mbox
    message is written back as it was, so the mbox keeps its count and order;
    a failed JSON lines record becomes a line naming the error (and no body).
    Either way the failure is in the partition's summary.
    """

    output: bytes | None
    error: str | None = None


@dataclass(frozen=True)
class Partition:
    """A worker's answer for a list of items: one result per item, in order, and their summary."""

    results: list[ItemResult] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
