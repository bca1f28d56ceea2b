"""What a batch did, counted: a :class:`Summary` per partition, merged into one for the whole run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["Failure", "Summary"]


class Failure(NamedTuple):
    """One input that could not be rewritten: ``where`` it is and the ``reason``, in the library's words."""

    where: str  # "mail/a.eml", "inbox.mbox message 3", "campaign.jsonl line 17"
    reason: str


@dataclass
class Summary:
    """Counts over some rewritten messages; summaries of partitions merge (``+``, :meth:`add`, :meth:`total`).

    ``messages`` were rewritten; ``failed`` could not be (each is also in
    ``errors``, which also holds inputs that failed as a whole: a missing or
    unreadable file, a file that is not an mbox). ``parts`` counts the leaf
    parts of the messages (an HTML file, or a JSON lines ``html`` or ``text``
    field, is one part); ``undecodable_parts`` and ``unencodable_parts`` were
    left byte for byte (see :class:`~mailtrack.MessagePart`). ``links_skipped``
    counts the links left alone by reason (:data:`mailtrack.core.results.SKIP_REASONS`).
    ``seconds`` is time spent rewriting, summed over partitions (so over
    workers: busy time, not elapsed time).
    """

    messages: int = 0
    failed: int = 0
    parts: int = 0
    links_tracked: int = 0
    links_skipped: Counter[str] = field(default_factory=Counter)
    undecodable_parts: int = 0
    unencodable_parts: int = 0
    errors: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: Summary) -> Summary:
        """Add ``other``'s counts to this summary (in place) and return it; errors keep their order."""
        self.messages += other.messages
        self.failed += other.failed
        self.parts += other.parts
        self.links_tracked += other.links_tracked
        self.links_skipped.update(other.links_skipped)
        self.undecodable_parts += other.undecodable_parts
        self.unencodable_parts += other.unencodable_parts
        self.errors.extend(other.errors)
        self.seconds += other.seconds
        return self

    def __add__(self, other: Summary) -> Summary:
        """A new summary holding both."""
        return Summary().add(self).add(other)

    @classmethod
    def total(cls, summaries: Iterable[Summary]) -> Summary:
        """One summary for all of ``summaries`` (in their order, for the errors)."""
        result = cls()
        for summary in summaries:
            result.add(summary)
        return result

    def fail(self, where: str, reason: str, *, message: bool = True) -> None:
        """Record a failure; ``message``: it was one message (counted in ``failed``), not a whole input."""
        self.errors.append(Failure(where, reason))
        self.failed += message

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready data (``links_skipped`` sorted by reason, ``errors`` as objects)."""
        return {
            "messages": self.messages,
            "failed": self.failed,
            "parts": self.parts,
            "links_tracked": self.links_tracked,
            "links_skipped": dict(sorted(self.links_skipped.items())),
            "undecodable_parts": self.undecodable_parts,
            "unencodable_parts": self.unencodable_parts,
            "errors": [{"input": failure.where, "reason": failure.reason} for failure in self.errors],
            "seconds": round(self.seconds, 3),
        }
