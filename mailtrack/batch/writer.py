"""Writing results in input order: one output file per input file, each put in place whole.

The :class:`OutputWriter` is told when an input file begins, gets the
results of its items in order, and is told when it ends (or failed as a
whole). It opens the output's :class:`~mailtrack.batch.atomic.AtomicFile` at
the first bytes (or at the end, for an mbox or JSON lines file with no
messages), commits it at the end and discards it when the file failed, when
one of its .eml or HTML items failed (that file has no output), or when the
run stops. Only one output is open at a time.
"""

from __future__ import annotations

from pathlib import Path

from mailtrack.batch.atomic import AtomicFile, remove_stale
from mailtrack.batch.items import ItemResult
from mailtrack.batch.sources import Source

__all__ = ["OutputWriter"]


class OutputWriter:
    """Assembles and commits the outputs of a run, one source after the other."""

    def __init__(self) -> None:
        self._source: Source | None = None
        self._file: AtomicFile | None = None
        self._failed = False
        self._cleaned: set[Path] = set()
        self.written = 0  # outputs committed

    @property
    def current(self) -> Source | None:
        """The source being written, if any."""
        return self._source

    def begin(self, source: Source) -> None:
        """Start the output of ``source`` (nothing is created yet)."""
        self.close()
        self._source, self._failed = source, False

    def write(self, result: ItemResult) -> None:
        """Append one item's output; an item without output (a failed .eml or HTML file) cancels the file."""
        if self._failed:
            return
        if result.output is None:
            self._failed = True
            self.close()
            return
        self._open().write(result.output)

    def end(self) -> None:
        """The source is complete: put its output in place (unless it failed)."""
        try:
            if self._source is not None and not self._failed:
                self._open().commit()
                self.written += 1
        finally:
            self.close()
            self._source = None

    def abandon(self) -> None:
        """The source failed as a whole: drop what was written for it and ignore the rest of it; no output appears."""
        self.close()
        self._failed = True

    def close(self) -> None:
        """Drop the open output, if any (the source failed, or the run stops)."""
        if self._file is not None:
            self._file.discard()
            self._file = None

    def _open(self) -> AtomicFile:
        if self._file is None:
            assert self._source is not None, "write() outside begin() and end()"
            directory = self._source.output.parent
            directory.mkdir(parents=True, exist_ok=True)
            if directory not in self._cleaned:
                remove_stale(directory)  # left by a run that was killed
                self._cleaned.add(directory)
            self._file = AtomicFile(self._source.output)
        return self._file
