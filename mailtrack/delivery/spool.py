"""The spool: append-only files of events the store could not take, next to the database (or in ``--spool-dir``).

Each writer process writes its own files (``<pid>-<ns>.jsonl``), locked with
``flock`` while it writes them, so a drain in any process takes only the
files of writers that are gone or finished (rotated). Each line is one event
as JSON, written with ``os.write``: once in the page cache it survives a
``kill -9`` of the process. A write that fails part-way (a full disk) is cut
back to the last whole line, so one failure never garbles the next event; a
torn last line left by a crash is skipped; an event the store refuses for
itself (not because the store is down) is set aside in ``rejected.log`` so
the rest can go on.

Space is what a full disk is short of, so the spool gives it back as it goes:
a file is closed and a new one begun every ``segment_bytes``, a drain stores
a file in batches of a few hundred events, one transaction each, and after
each batch frees the disk blocks of the lines it stored (``fallocate``'s
``PUNCH_HOLE`` where the filesystem has it; the file is removed once all of
it is stored). The database grows into the space the spool frees, batch by
batch: a drain never needs room for the whole spool at once. The spool is
capped at ``max_bytes`` (all files in the directory, as allocated on disk):
past it :meth:`Spool.append_many` raises :class:`SpoolFull`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mailtrack.events import InvalidEvent, TrackingEvent
from mailtrack.storage.base import StoreUnavailable

try:  # advisory locks mark a live process's spool; without them (Windows) only our own spool is recovered
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["DEFAULT_SEGMENT_BYTES", "Spool", "SpoolFull"]

log = logging.getLogger("mailtrack")

#: A new spool file is begun once the current one holds this many bytes.
DEFAULT_SEGMENT_BYTES = 1 << 20
#: Events stored per transaction when a spool file is drained.
DRAIN_BATCH = 256


class SpoolFull(OSError):
    """The spool holds ``max_bytes`` already: the event was not written."""


def _load_fallocate() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``fallocate(2)`` (for ``FALLOC_FL_PUNCH_HOLE``), or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.fallocate
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    function.restype = ctypes.c_int
    return function


_FALLOCATE = _load_fallocate()
_PUNCH_HOLE_KEEP_SIZE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


def _punch(fd: int, length: int) -> bool:
    """Free the disk blocks of the first ``length`` bytes of ``fd`` (they then read as zeros); False if not possible."""
    if _FALLOCATE is None or length <= 0:
        return False
    return _FALLOCATE(fd, _PUNCH_HOLE_KEEP_SIZE, 0, length) == 0


def _allocated(path: Path) -> int:
    """Bytes ``path`` takes on disk (holes punched in it do not count); 0 when it is gone."""
    try:
        stat = path.stat()
    except OSError:
        return 0
    blocks = getattr(stat, "st_blocks", None)
    return stat.st_size if blocks is None else min(stat.st_size, blocks * 512)


class Spool:
    """This process's spool file in ``directory`` and the drain of every spool file there.

    Not thread-safe by itself: :class:`~mailtrack.delivery.recorder.Recorder`
    calls :meth:`append_many` and :meth:`rotate` under its own lock.
    ``max_bytes`` (None: no cap) bounds the whole directory's spool files.
    """

    def __init__(self, directory: Path | None, *, max_bytes: int | None = None,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._fd: int | None = None
        self._size = 0  # bytes in this process's open file: where a failed write is cut back to
        self._used: int | None = None  # allocated bytes of every spool file, as last measured plus our appends since

    # -- writing ------------------------------------------------------------------------------
    def append(self, event: TrackingEvent) -> None:
        """Write ``event`` as one line; see :meth:`append_many`."""
        self.append_many([event])

    def append_many(self, events: Sequence[TrackingEvent]) -> None:
        """Write ``events`` in order, one line each, with one ``write``: all of them, or (raising) none.

        Raises :class:`SpoolFull` past ``max_bytes``, ``OSError`` when the
        file cannot be written (no directory, disk full), ``TypeError`` or
        ``ValueError`` when an event cannot be written as JSON.
        """
        data = b"".join((json.dumps(event.to_dict(), separators=(",", ":"), default=str) + "\n").encode("utf-8")
                        for event in events)
        if not data:
            return
        if self.max_bytes is not None and self.used() + len(data) > self.max_bytes:
            raise SpoolFull(f"the spool in {self.directory} holds its maximum of {self.max_bytes:,} bytes")
        if self._fd is not None and self._size >= self.segment_bytes:
            self.rotate()  # a finished segment: any drain may take it (and free its space) now
        fd = self._open()
        written = 0
        try:
            while written < len(data):  # in the page cache once written: survives a kill of this process
                written += os.write(fd, data[written:])
        except OSError:
            self._cut_back(fd)
            raise
        self._size += written
        if self._used is not None:
            self._used += written

    def _cut_back(self, fd: int) -> None:
        """After a failed write: drop its partial line, so the next event is not glued to it; else start a new file."""
        try:
            os.ftruncate(fd, self._size)
        except OSError:
            self.rotate()  # the torn line stays last in a closed file: the drain skips it

    def _open(self) -> int:
        if self._fd is None:
            if self.directory is None:
                raise OSError("no spool directory (no store)")
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{os.getpid()}-{time.time_ns()}"
            # Created under a name no drain looks at, locked, then renamed: another process can never
            # take (and delete) the file between its creation and its lock.
            making = self.directory / f"{name}.new"
            fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.replace(making, self.directory / f"{name}.jsonl")
            except OSError:
                os.close(fd)
                making.unlink(missing_ok=True)
                raise
            self._fd = fd
            self._size = 0
        return self._fd

    def rotate(self) -> None:
        """Close this process's file: it is drained like any other; the next event starts a new one."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._size = 0

    # -- measuring ------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        """Every spool file in the directory, oldest first (names start with the pid and a timestamp)."""
        if self.directory is None or not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.jsonl"))

    def measure(self) -> int:
        """Measure the bytes every spool file takes on disk now (other processes' too); returns it."""
        self._used = sum(_allocated(path) for path in self.files())
        return self._used

    def used(self) -> int:
        """Bytes the spool takes: the last :meth:`measure` plus what this process wrote since."""
        return self.measure() if self._used is None else self._used

    def is_full(self) -> bool:
        """Whether the spool has reached ``max_bytes`` (by the last measure)."""
        return self.max_bytes is not None and self.used() >= self.max_bytes

    def count_events(self) -> int:
        """How many lines (events) every spool file holds, punched-out lines not counted; reads them all."""
        total = 0
        for path in self.files():
            try:
                with open(path, "rb") as lines:
                    total += sum(1 for line in lines if line.strip(b"\0 \r\n"))
            except OSError:
                continue
        return total

    @property
    def rejected(self) -> Path:
        """Where events the store refused for themselves are set aside."""
        assert self.directory is not None
        return self.directory / "rejected.log"

    # -- draining ------------------------------------------------------------------------------
    def drain_file(self, path: Path, store: Callable[[list[TrackingEvent]], object],
                   *, batch: int = DRAIN_BATCH, done: Callable[[int], object] | None = None) -> bool:
        """Pass the events of ``path`` (unless a live writer holds it) to ``store`` in batches, then remove the file.

        ``store(events)`` stores a batch in one transaction (all or none).
        After each stored batch the disk space of its lines is freed (see the
        module's docstring) and ``done(n)`` is told how many lines left the
        spool. Returns False, keeping the rest of the file, when ``store``
        raises :class:`StoreUnavailable` or the file cannot be read: a later
        drain goes on where this one stopped (events already stored are
        stored once, by ``event_id``). A batch ``store`` refuses otherwise is
        stored one event at a time, and the events refused are set aside in
        ``rejected.log``.
        """
        if fcntl is None and not path.name.startswith(f"{os.getpid()}-"):
            return True  # without locks, other processes' spools are left to them
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True  # another process drained it
        except OSError as exc:
            log.warning("mailtrack: cannot open spool %s (%s)", path, exc)
            return False
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return True  # a live process is still writing it
            pending: list[tuple[TrackingEvent, bytes]] = []
            offset = 0
            lines = 0
            with os.fdopen(os.dup(fd), "rb") as reader:
                for raw in reader:
                    offset += len(raw)
                    line = raw.lstrip(b"\0").rstrip(b"\r\n")  # a punched-out prefix reads as zeros
                    if not line.strip():
                        continue
                    lines += 1
                    try:
                        pending.append((TrackingEvent.from_dict(json.loads(line)), line))
                    except (ValueError, TypeError, KeyError, InvalidEvent) as exc:  # a torn last line after a crash
                        log.error("mailtrack: unreadable spool line in %s skipped (%s)", path, exc)
                    if len(pending) >= batch or lines >= batch:
                        if not self._store_batch(path, pending, store):
                            return False
                        _punch(fd, offset)
                        if done is not None:
                            done(lines)
                        pending, lines = [], 0
            if (pending or lines) and not self._store_batch(path, pending, store):
                return False
            # Everything in it is stored (a rerun would store nothing twice): remove it.
            path.unlink(missing_ok=True)
            if done is not None and lines:
                done(lines)
            return True
        except OSError as exc:
            log.warning("mailtrack: cannot drain spool %s (%s); will try again", path, exc)
            return False
        finally:
            os.close(fd)

    def _store_batch(self, path: Path, pending: list[tuple[TrackingEvent, bytes]],
                     store: Callable[[list[TrackingEvent]], object]) -> bool:
        """Store one batch; False when the store is unavailable. A refused batch is retried event by event."""
        if not pending:
            return True
        try:
            store([event for event, _ in pending])
            return True
        except StoreUnavailable as exc:  # locked, full, unreachable: later
            log.warning("mailtrack: retry from spool failed (%s); will try again", exc)
            return False
        except Exception:  # noqa: BLE001 - one event of the batch is refused: find it below
            pass
        for event, line in pending:
            try:
                store([event])
            except StoreUnavailable as exc:
                log.warning("mailtrack: retry from spool failed (%s); will try again", exc)
                return False
            except Exception as exc:  # this event itself is refused: set it aside, go on with the rest
                log.error("mailtrack: spooled event %s refused by the store (%s); kept in %s",
                          event.event_id, exc, self.rejected)
                with open(self.rejected, "ab") as rejected:
                    rejected.write(line + b"\n")
        return True
