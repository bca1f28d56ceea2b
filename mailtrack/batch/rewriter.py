"""Rewriting items: the work a batch worker does, and the function engines call on each partition.

A :class:`Rewriter` holds one job and the tracker built from it; a worker
makes one when it starts (keys and settings arrive once per worker, not with
every partition) and calls :meth:`Rewriter.partition` on each list of items.
:func:`rewrite_partition` does both in one call. Nothing here reads or
writes files: items come in as bytes and results go out as bytes.

One bad item never stops the others: its error goes into the partition's
summary and its result says what to write in its place (see
:class:`~mailtrack.batch.ItemResult`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from mailtrack.batch.items import Item, ItemResult, Partition
from mailtrack.batch.job import Job
from mailtrack.batch.jsonl import error_line, rewrite_record
from mailtrack.batch.summary import Summary
from mailtrack.batch.tally import count_html, count_message
from mailtrack.exceptions import ArgumentError, MailtrackError

__all__ = ["Rewriter", "rewrite_partition"]


class Rewriter:
    """Rewrites the items of one :class:`~mailtrack.batch.Job`; make one per worker and reuse it."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.tracker = job.tracker()

    def partition(self, items: Iterable[Item]) -> Partition:
        """One result per item, in order, and the summary of them all (``seconds``: the time this took)."""
        started = time.perf_counter()
        summary = Summary()
        results = [self.rewrite(item, summary) for item in items]
        summary.seconds = time.perf_counter() - started
        return Partition(results, summary)

    def rewrite(self, item: Item, summary: Summary) -> ItemResult:
        """Rewrite one item, counting it (or its failure) into ``summary``."""
        if item.format == "jsonl" and not item.data.strip():
            return ItemResult(item.data + item.end)  # a blank line is no record: kept, so line numbers stay
        counts = Summary()
        try:
            output = self._rewrite(item, counts)
        except MailtrackError as exc:
            reason = str(exc) or type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - one input must never stop the batch, whatever went wrong with it
            reason = f"unexpected {type(exc).__name__}: {exc} (a bug in mailtrack: please report it)"
        else:
            counts.messages += 1
            summary.add(counts)
            return ItemResult(item.envelope + output + item.end)
        summary.fail(item.where, reason)
        if item.format == "mbox":
            return ItemResult(item.envelope + item.data + item.end, reason)  # the mbox keeps its count and order
        if item.format == "jsonl":
            return ItemResult(error_line(item.data, reason) + item.end, reason)
        return ItemResult(None, reason)

    def _rewrite(self, item: Item, counts: Summary) -> bytes:
        job = self.job
        if item.format == "jsonl":
            return rewrite_record(self.tracker, job, item.data, counts)
        if item.format == "html":
            return self._html(item, counts)
        result = self.tracker.rewrite_message(item.data, metadata=job.metadata, issued_at=job.issued_at, force=job.force)
        count_message(result, counts)
        return _line_ended(result.message, item) if item.format == "mbox" else result.message

    def _html(self, item: Item, counts: Summary) -> bytes:
        job = self.job
        if job.recipient is None:
            raise ArgumentError("an HTML input has no To header: give the job a recipient (mailtrack rewrite --recipient)")
        try:
            html = item.data.decode(job.encoding)
        except UnicodeDecodeError as exc:
            raise MailtrackError(f"not {job.encoding} (the job's encoding, --encoding): {exc.reason} at byte {exc.start}") from None
        result = self.tracker.rewrite_html(html, message_id=job.message_id or item.name, recipient=job.recipient,
                                           metadata=job.metadata, issued_at=job.issued_at)
        try:
            output = result.html.encode(job.encoding)
        except UnicodeEncodeError as exc:
            raise MailtrackError(f"the rewritten document cannot be written as {job.encoding}: {exc.reason}") from None
        count_html(result, counts)
        return output


def _line_ended(message: bytes, item: Item) -> bytes:
    """An mbox message that ends with a line break, so the blank line and ``From `` line after it stay lines of their own."""
    if item.end and message and not message.endswith((b"\n", b"\r")):
        return message + (b"\r\n" if item.end.startswith(b"\r") else b"\n")
    return message


def rewrite_partition(job: Job, items: Iterable[Item]) -> Partition:
    """Rewrite ``items`` with ``job``: one result per item, in order, and their :class:`~mailtrack.batch.Summary`.

    Builds a tracker for this call; a worker that rewrites many partitions
    keeps a :class:`Rewriter` instead.
    """
    return Rewriter(job).partition(items)
