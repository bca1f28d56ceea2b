"""The spool: an append-only file of events the store could not take, next to the database.

One file per writer process (``<pid>-<ns>.jsonl``), locked with ``flock``
while it is written, so a drain in any process takes only the files of
writers that are gone or finished (rotated). Each line is one event as JSON,
written with one ``os.write`` loop: once in the page cache it survives a
``kill -9`` of the process. A torn last line (a crash mid-write) is skipped;
an event the store refuses for itself (not because the store is down) is set
aside in ``rejected.log`` so the rest can go on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from mailtrack.events import InvalidEvent, TrackingEvent
from mailtrack.storage.base import StoreUnavailable

try:  # advisory locks mark a live process's spool; without them (Windows) only our own spool is recovered
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["Spool"]

log = logging.getLogger("mailtrack")


class Spool:
    """This process's spool file in ``directory`` and the drain of every spool file there.

    Not thread-safe by itself: :class:`~mailtrack.delivery.recorder.Recorder`
    calls :meth:`append` and :meth:`rotate` under its own lock.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._fd: int | None = None

    def append(self, event: TrackingEvent) -> None:
        """Write ``event`` as one line; raises ``OSError`` when it cannot (no directory, disk full)."""
        line = (json.dumps(event.to_dict(), separators=(",", ":"), default=str) + "\n").encode("utf-8")
        fd = self._open()
        written = 0
        while written < len(line):  # in the page cache once written: survives a kill of this process
            written += os.write(fd, line[written:])

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
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(making, self.directory / f"{name}.jsonl")
            self._fd = fd
        return self._fd

    def rotate(self) -> None:
        """Close this process's file: it is drained like any other; the next event starts a new one."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def files(self) -> list[Path]:
        """Every spool file in the directory, oldest first (names start with the pid and a timestamp)."""
        if self.directory is None or not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.jsonl"))

    @property
    def rejected(self) -> Path:
        """Where events the store refused for themselves are set aside."""
        assert self.directory is not None
        return self.directory / "rejected.log"

    def drain_file(self, path: Path, store: Callable[[TrackingEvent], object]) -> bool:
        """Pass each event of ``path`` (unless a live writer holds it) to ``store``, then remove the file.

        Returns False, keeping the file, when ``store`` raises
        :class:`StoreUnavailable` or the file cannot be read: a later drain
        goes on where this one stopped (events already stored are stored once,
        by ``event_id``).
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
            for line in path.read_bytes().splitlines():
                if not line.strip():
                    continue
                try:
                    event = TrackingEvent.from_dict(json.loads(line))
                except (ValueError, TypeError, KeyError, InvalidEvent) as exc:  # a torn last line after a crash
                    log.error("mailtrack: unreadable spool line in %s skipped (%s)", path, exc)
                    continue
                try:
                    store(event)
                except StoreUnavailable as exc:  # locked, full, unreachable: later
                    log.warning("mailtrack: retry from spool failed (%s); will try again", exc)
                    return False
                except Exception as exc:  # this event itself is refused: set it aside, go on with the rest
                    log.error("mailtrack: spooled event %s refused by the store (%s); kept in %s",
                              event.event_id, exc, self.rejected)
                    with open(self.rejected, "ab") as rejected:
                        rejected.write(line + b"\n")
            # Everything in it is stored (a rerun would store nothing twice): remove it.
            path.unlink(missing_ok=True)
            return True
        except OSError as exc:
            log.warning("mailtrack: cannot drain spool %s (%s); will try again", path, exc)
            return False
        finally:
            os.close(fd)
