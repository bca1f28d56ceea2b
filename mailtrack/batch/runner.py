"""Running a whole batch: plan the inputs, stream their items through an engine, write the results in order.

:func:`run_batch` reads the inputs lazily, cuts the stream of items into
chunks (bounded by count and bytes), hands the chunks to the engine and
writes each partition's results as it comes back, in input order, so the
output does not depend on the engine or the number of workers. Which file an
item belongs to travels beside the chunk, in this process: workers only ever
see items.

One bad input never stops the run (it is in ``report.summary.errors``); a
Ctrl-C does, cleanly: the output being written is dropped, the engine is shut
down, and :class:`Interrupted` carries the report of what was finished.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from mailtrack.batch.engines import Engine, EngineError, in_process
from mailtrack.batch.items import Format, Item, Partition
from mailtrack.batch.job import Job
from mailtrack.batch.reading import SourceError, read_source
from mailtrack.batch.sources import Complete, Ignored, Planned, Problem, Source, plan
from mailtrack.batch.summary import Summary
from mailtrack.batch.writer import OutputWriter
from mailtrack.exceptions import ArgumentError

__all__ = ["Interrupted", "Report", "run_batch"]

#: Default chunk bounds: enough work per chunk to hide the cost of sending it, little enough to keep memory low.
#: An engine whose chunks cost more to send (Dask's, tens of milliseconds of CPU per task) says its own
#: bounds in ``chunk_items`` and ``chunk_bytes`` attributes, which :func:`run_batch` uses when not told otherwise.
CHUNK_ITEMS = 64
CHUNK_BYTES = 4 << 20


@dataclass
class Report:
    """What a run did: the merged :class:`~mailtrack.batch.Summary`, the files, and the wall-clock time.

    ``files_written``: outputs put in place; ``files_complete``: inputs
    skipped because their output existed (``resume``); ``files_ignored``:
    files in input directories of no format the batch reads.
    """

    summary: Summary = field(default_factory=Summary)
    files_written: int = 0
    files_complete: int = 0
    files_ignored: int = 0
    elapsed: float = 0.0
    interrupted: bool = False

    @property
    def messages_per_second(self) -> float:
        """Messages rewritten per second of wall-clock time."""
        return self.summary.messages / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary's counts, the files, ``elapsed_seconds``, ``messages_per_second``, ``interrupted``."""
        return {
            **self.summary.to_dict(),
            "files": {"written": self.files_written, "complete": self.files_complete, "ignored": self.files_ignored},
            "elapsed_seconds": round(self.elapsed, 3),
            "messages_per_second": round(self.messages_per_second, 1),
            "interrupted": self.interrupted,
        }


class Interrupted(KeyboardInterrupt):
    """The run was stopped by Ctrl-C (KeyboardInterrupt); ``report`` says what was finished before."""

    def __init__(self, report: Report) -> None:
        super().__init__("interrupted")
        self.report = report


class _Begin(NamedTuple):
    source: Source


class _End(NamedTuple):
    source: Source


class _Fail(NamedTuple):
    where: str
    reason: str


#: A step of a chunk's script: a marker, or an int standing for the next result (the item's input size).
_Step = _Begin | _End | _Fail | int


def _entries(planned: Iterator[Planned], report: Report) -> Iterator[Item | _Begin | _End | _Fail]:
    """The stream: each source's items between its begin and its end (or its failure); counts what is skipped."""
    for entry in planned:
        if isinstance(entry, Source):
            yield _Begin(entry)
            try:
                yield from read_source(entry)
            except SourceError as exc:
                yield _Fail(entry.where, str(exc))
            else:
                yield _End(entry)
        elif isinstance(entry, Problem):
            yield _Fail(entry.where, entry.reason)
        elif isinstance(entry, Complete):
            report.files_complete += 1
        elif isinstance(entry, Ignored):
            report.files_ignored += 1


def _chunks(entries: Iterator[Item | _Begin | _End | _Fail], scripts: deque[list[_Step]],
            max_items: int, max_bytes: int) -> Iterator[list[Item]]:
    """Item lists for the engine; each list's script (markers and item slots, in order) goes to ``scripts`` first."""
    script: list[_Step] = []
    items: list[Item] = []
    size = 0
    for entry in entries:
        if isinstance(entry, Item):
            items.append(entry)
            script.append(entry.size)
            size += entry.size
            if len(items) >= max_items or size >= max_bytes:
                scripts.append(script)
                yield items
                script, items, size = [], [], 0
        else:
            script.append(entry)
    if script:
        scripts.append(script)
        yield items


def run_batch(
    job: Job,
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    engine: Engine = in_process,
    format: Format | Literal["auto"] = "auto",
    resume: bool = False,
    chunk_items: int | None = None,
    chunk_bytes: int | None = None,
    progress: Callable[[Report, int], None] | None = None,
) -> Report:
    """Rewrite every message under ``inputs`` into ``out`` (mirroring the layout: see :mod:`mailtrack.batch.sources`).

    ``engine`` runs the partitions (:func:`~mailtrack.batch.in_process`,
    :func:`~mailtrack.batch.process_pool`, ...); ``resume`` skips inputs whose
    output exists. A chunk (what the engine runs as one task) holds at most
    ``chunk_items`` items and ``chunk_bytes`` bytes beyond its first item;
    by default the engine's own ``chunk_items``/``chunk_bytes`` attributes if
    it has them, else :data:`CHUNK_ITEMS` and :data:`CHUNK_BYTES`.
    ``progress(report, bytes_read)`` is called after each partition is written. Returns the :class:`Report`; raises
    :class:`Interrupted` on Ctrl-C and :class:`~mailtrack.batch.sources.LayoutError`
    (before anything is read) when two inputs would share an output name.
    """
    if chunk_items is None:
        chunk_items = getattr(engine, "chunk_items", CHUNK_ITEMS)
    if chunk_bytes is None:
        chunk_bytes = getattr(engine, "chunk_bytes", CHUNK_BYTES)
    for name, value in (("chunk_items", chunk_items), ("chunk_bytes", chunk_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgumentError(f"{name} must be a whole number of at least 1, not {value!r}")
    started = time.perf_counter()
    report = Report()
    planned = plan(inputs, out, format=format, resume=resume)
    scripts: deque[list[_Step]] = deque()
    partitions = engine(job, _chunks(_entries(planned, report), scripts, chunk_items, chunk_bytes))
    writer = OutputWriter()
    read = 0
    try:
        for partition in partitions:
            script = _script_for(partition, scripts)
            results = iter(partition.results)
            failures = deque(partition.summary.errors)  # one per failed item, in item order
            for step in script:
                if isinstance(step, int):
                    read += step
                    result = next(results)
                    if result.error is not None and failures:
                        report.summary.errors.append(failures.popleft())  # errors stay in input order
                    _safely(writer, report, writer.write, result)
                elif isinstance(step, _Begin):
                    writer.begin(step.source)
                elif isinstance(step, _End):
                    _safely(writer, report, writer.end)
                else:
                    writer.abandon()
                    report.summary.fail(step.where, step.reason, message=False)
            report.summary.add(replace(partition.summary, errors=list(failures)))
            report.files_written = writer.written
            report.elapsed = time.perf_counter() - started
            if progress is not None:
                progress(report, read)
    except KeyboardInterrupt:
        writer.close()
        report.interrupted = True
        raise Interrupted(report) from None
    finally:
        writer.close()  # first: no output is left half-written, whatever stops the run
        close = getattr(partitions, "close", None)
        if close is not None:
            close()
        report.files_written = writer.written
        report.elapsed = time.perf_counter() - started
    return report


def _script_for(partition: Partition, scripts: deque[list[_Step]]) -> list[_Step]:
    """The script of the chunk this partition answers; an :class:`EngineError` if the engine broke the contract."""
    if not scripts:
        raise EngineError("the engine gave back more partitions than it was given chunks")
    script = scripts.popleft()
    expected = sum(isinstance(step, int) for step in script)
    if len(partition.results) != expected:
        raise EngineError(f"the engine gave back {len(partition.results)} results for a chunk of {expected} items")
    return script


def _safely(writer: OutputWriter, report: Report, step: Callable[..., None], *args: Any) -> None:
    """Run a writer step; an OSError (disk full, a directory in the way) fails that output only."""
    source = writer.current
    try:
        step(*args)
    except OSError as exc:
        writer.abandon()
        where = source.where if source is not None else "?"
        target = f"{exc.filename}: " if exc.filename else ""
        report.summary.fail(where, f"cannot write its output: {target}{exc.strerror or exc}", message=False)
