"""A SQLite store's writes done by a child process, so that they run beside the server instead of taking turns with it.

Why a process: the server answers pixels and clicks on one event loop, and
the group-commit writer (a thread of that process) spends most of a batch in
SQLite. SQLite releases the GIL while it works, but each of a batch's
statements must take the GIL back, and a busy event loop hands it over only
every switch interval: measured under ``wrk`` at 50 connections, the loop and
the writer took turns (0.9 of one core in all, the second core idle) and a
request spent most of its time waiting for its commit. In a child process the
commit runs on the other core; the writer thread only sends the batch
(pickled) over a socket pair and waits for the ``first`` flags, about three
GIL hand-overs per batch instead of one per statement.

What stays the same: a batch is committed before :meth:`ProcessWriter.record_many`
returns, so an answered request is a stored event (kill -9 of the server or of
the child loses nothing answered). The child runs
:meth:`~mailtrack.storage.sqlite.SQLiteStore.record_many` itself, so ``first``,
retries and outbox rows are decided exactly as in process. When the child
cannot write, or dies, or cannot be started, the call raises
:class:`~mailtrack.storage.base.StoreUnavailable` and the recorder spools as it
does for any store outage; the next call starts a new child. A child that does
not answer a call within ``call_timeout`` (stopped, a hung disk, a bug) is
killed and the call raises ``StoreUnavailable`` too: a stuck child never holds
the writes, the spool's drain or the server's shutdown for ever. A batch the child
committed but could not answer for (it was killed in between) is spooled too,
and stored once when the spool drains: events carry their ``event_id``.

Only writes go through the child; reads (the APIs, ``/healthz``) stay on the
server's own connections (SQLite's WAL lets readers and one writer work side
by side). Given a ``roll_interval``, the child also rolls the stats rollups
(what :class:`~mailtrack.storage.roller.Roller` does in a thread otherwise)
between batches: measured, the roller thread took a sixth of the server's
GIL under load.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailtrack.events import TrackingEvent
from mailtrack.exceptions import ArgumentError, ConfigurationError
from mailtrack.storage.base import StoreError, StoreUnavailable
from mailtrack.storage.heap import freeze_heap
from mailtrack.storage.sqlite import _flagged  # one copy of the trusted with_first (per event on the lane: no import)

__all__ = ["ProcessWriter", "ReplyReader", "Stored", "encode_request", "stored_as"]

log = logging.getLogger("mailtrack")
_HEADER = struct.Struct("!I")
#: A frame larger than this is refused by the reader: a batch of the recorder's 256 events is well under 1 MiB.
_MAX_FRAME = 256 << 20
#: Events rolled per step between two batches: about 3 ms of SQLite (measured), so a batch waits at most that.
_ROLL_STEP = 256
#: Where the child finds the mailtrack this process runs (a directory a server may have put on ``sys.path`` itself).
_ROOT = str(Path(__file__).resolve().parents[2])
#: The child's first lines: the directory above goes first on its path unless its interpreter has it already (a
#: site-packages directory first would shadow the standard library with whatever it holds).
_BOOTSTRAP = ("import sys; root = sys.argv[1]; root in sys.path or sys.path.insert(0, root); "
              "from mailtrack.storage.writer_process import main; sys.exit(main(sys.argv[2:]))")


class ProcessWriter:
    """``record`` and ``record_many`` of the SQLite store at ``path``, run by a child process.

    Thread-safe (one call at a time goes to the child) and fork-safe (a forked copy starts its own child). The
    child is run by this Python's interpreter (not ``sys.executable`` when that names a server embedding Python,
    as under uWSGI), with the mailtrack this process imported. The child is started
    by the first write, or by :meth:`start` (which a server calls so that the
    rolls begin before any event comes); :meth:`close` ends it, and a later
    write starts a new one. ``roll_interval``: the child rolls the stats
    rollups that often (None: never). ``call_timeout``: seconds a call waits
    for the child's answer before the child is killed (StoreUnavailable).
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 0.25, roll_interval: float | None = None,
                 call_timeout: float = 10.0) -> None:
        if not isinstance(path, (str, Path)) or not str(path):
            raise ConfigurationError(f"the event database path must be a non-empty str or Path, not {path!r}")
        if roll_interval is not None and not (isinstance(roll_interval, (int, float)) and 0 < roll_interval < 3600):
            raise ConfigurationError(f"roll_interval must be None or seconds between 0 and 3600, not {roll_interval!r}")
        if isinstance(call_timeout, bool) or not isinstance(call_timeout, (int, float)) or not call_timeout > 0:
            raise ConfigurationError(f"call_timeout must be a positive number of seconds, not {call_timeout!r}")
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self.roll_interval = roll_interval
        # A child that has not answered a call in this long is stuck (stopped, a hung disk, a bug): it is killed
        # and the call raises StoreUnavailable (the recorder spools). Without it the stuck call held the lock for
        # ever, and every later write (the spool's drain, the recorder's close at SIGTERM) waited behind it.
        self.call_timeout = float(call_timeout)
        self._lock = threading.Lock()
        self._state = threading.Lock()  # swapping the child (a short hold: the event loop takes it too)
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._loop_socket: socket.socket | None = None
        self._owner = os.getpid()  # a forked copy of this object must not talk to its parent's child
        self.starts = 0  # how many children were started: the child of generation ``starts`` is the current one
        _LIVE.add(self)  # new locks in a forked copy (see _after_fork)

    # -- the storage calls ----------------------------------------------------------
    def record(self, event: TrackingEvent, outbox: Sequence[str] = ()) -> TrackingEvent:
        """:meth:`SQLiteStore.record <mailtrack.storage.sqlite.SQLiteStore.record>`, in the child."""
        if not isinstance(event, TrackingEvent):
            raise ArgumentError(f"record takes a TrackingEvent, not {type(event).__name__}")
        (first,) = self._call("record", [event], tuple(outbox))
        return stored_as(event, first)

    def record_many(self, events: Sequence[TrackingEvent], outbox: Sequence[str] = ()) -> list[TrackingEvent]:
        """:meth:`SQLiteStore.record_many <mailtrack.storage.sqlite.SQLiteStore.record_many>`, in the child.

        Returns once the child committed the batch (or raises and nothing
        was written, as far as the caller can tell: see the module's note on
        a child killed between its commit and its answer).
        """
        if isinstance(events, TrackingEvent) or not all(isinstance(event, TrackingEvent) for event in events):
            raise ArgumentError("record_many takes a sequence of TrackingEvent")
        if not events:
            return []
        firsts = self._call("record_many", list(events), tuple(outbox))
        return [stored_as(event, first) for event, first in zip(events, firsts, strict=True)]

    def start(self) -> ProcessWriter:
        """Start the child now (it would start on the first write); a failure is left for that write to report."""
        with self._lock:
            try:
                self._started()
            except StoreUnavailable as exc:
                log.warning("mailtrack: %s", exc)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """End the child: it finishes the batch it holds, sees the socket close and exits (killed after ``timeout``)."""
        self._forget_if_forked()  # a forked copy only lets go of its parent's child
        with self._lock:
            self._stop(timeout)

    # -- the child, from the server's side ------------------------------------------
    def _call(self, op: str, events: list[TrackingEvent], outbox: tuple[str, ...]) -> list[Stored]:
        request = pickle.dumps((op, events, outbox), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            sock = self._started()
            try:
                sock.settimeout(self.call_timeout)
                _send(sock, request)
                reply = _receive(sock)
            except TimeoutError:
                reply, error = None, f"it did not answer in {self.call_timeout:g} s: killed"
            except OSError as exc:
                reply, error = None, f"{type(exc).__name__}: {exc}"
            else:
                error = "it exited"
            if reply is None:  # the child died (or was killed) with the batch: spooled by the recorder, stored later
                code = self._stop(0.5)
                raise StoreUnavailable(f"the store's writer process stopped ({error}; exit status {code}); "
                                       "a new one is started for the next write")
        answer = _reply(*pickle.loads(reply))
        if isinstance(answer, StoreError):
            raise answer
        return answer

    def _forget_if_forked(self) -> None:
        """In a process forked from the one that started the child: drop (close, no shutdown) the inherited sockets,
        which still reach the parent's child; this process starts its own."""
        if self._owner == os.getpid():
            return
        with self._state:
            for sock in (self._socket, self._loop_socket):
                if sock is not None:
                    sock.close()
            self._process = self._socket = self._loop_socket = None
            self._owner = os.getpid()

    def loop_channel(self) -> tuple[int, socket.socket] | None:
        """The running child's second channel, for an event loop to send batches itself (its own copy of the
        socket, and the child's generation), or None when no child runs now (a thread's write starts one).

        Why: a writer thread that waits for the child must take the GIL back from a busy event loop for each
        batch (up to a switch interval); the loop sending and reading the frames itself never waits for a
        thread. The thread channel stays for everything else (the spool's drain, one-by-one retries).
        """
        self._forget_if_forked()
        with self._state:
            if self._loop_socket is None or self._process is None or self._process.poll() is not None:
                return None
            return self.starts, self._loop_socket.dup()

    def _started(self) -> socket.socket:
        self._forget_if_forked()
        with self._state:
            if self._socket is not None and self._process is not None and self._process.poll() is None:
                return self._socket
        self._stop(0.5)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        loop_ours, loop_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [_interpreter(), "-c", _BOOTSTRAP, _ROOT, str(theirs.fileno()), str(loop_theirs.fileno()),
                 self.path, repr(self.busy_timeout), repr(self.roll_interval or 0.0)],
                # its own session: a Ctrl-C or a supervisor's signal to the server's process group never cuts a
                # commit short; the child ends when the server closes the socket, or dies (the kernel closes it)
                pass_fds=(theirs.fileno(), loop_theirs.fileno()), stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            ours.close()
            loop_ours.close()
            raise StoreUnavailable(f"cannot start the store's writer process: {exc}") from exc
        finally:
            theirs.close()
            loop_theirs.close()
        with self._state:
            self._process, self._socket, self._loop_socket = process, ours, loop_ours
            self.starts += 1
        return ours

    def _stop(self, timeout: float) -> int | None:
        with self._state:
            process, sockets = self._process, (self._socket, self._loop_socket)
            self._process = self._socket = self._loop_socket = None
        for sock in sockets:  # shutdown reaches every copy: an event loop's channel sees the end too
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if process is None:
            return None
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


_LIVE: weakref.WeakSet[ProcessWriter] = weakref.WeakSet()


def _after_fork() -> None:
    """In a forked process: new locks for every writer. A lock another thread held at the fork (a write under
    way) stays held for ever in the copy, where that thread does not exist: its first write hung."""
    for writer in list(_LIVE):
        writer._lock = threading.Lock()
        writer._state = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _interpreter() -> str:
    """The Python to run the child with: ``sys.executable``, unless this process is a server that embeds Python
    (uWSGI, mod_wsgi), where it names the server's own binary (the child was ``uwsgi -c ...``, which exits: every
    event was spooled and none stored); then this Python's own interpreter in ``sys.exec_prefix`` (a virtualenv's
    when the server runs in one)."""
    if _is_python(sys.executable):
        return sys.executable
    version = sys.version_info
    folder = Path(sys.exec_prefix) / ("Scripts" if os.name == "nt" else "bin")
    for name in (f"python{version.major}.{version.minor}", f"python{version.major}", "python"):
        candidate = folder / (name + (".exe" if os.name == "nt" else ""))
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    base = getattr(sys, "_base_executable", "")
    return base if _is_python(base) else sys.executable  # none found: the start fails and says so (spooled)


def _is_python(executable: str | None) -> bool:
    """Whether ``executable`` has a Python interpreter's name (python, python3.12, python3.13t, pypy3...)."""
    return re.fullmatch(r"(python|pypy)(\d+(\.\d+)*)?[dmtw]*(\.exe)?", os.path.basename(executable or "").lower()) is not None


#: What the child answers per event: its stored ``first``, or ``(first, machine, machine_reasons)`` when the store
#: gave it another machine verdict than it was sent with (a verdict of the batch write: issue 14).
Stored = bool | tuple[bool, str | None, tuple[str, ...]]


def _stored(sent: TrackingEvent, stored: TrackingEvent) -> Stored:
    """The child's answer for one event: ``first`` alone unless the verdict changed."""
    if (stored.machine, stored.machine_reasons) == (sent.machine, sent.machine_reasons):
        return bool(stored.first)
    return (bool(stored.first), stored.machine, tuple(stored.machine_reasons))


def stored_as(event: TrackingEvent, first: Stored) -> TrackingEvent:
    """``event`` as the child stored it: with its ``first`` and, when the store changed it, its machine verdict (the
    events were checked when made, and the child stored them, so this copies without validating every field again)."""
    if isinstance(first, tuple):
        flag, machine, reasons = first
        copy = object.__new__(TrackingEvent)
        copy.__dict__.update(event.__dict__)
        object.__setattr__(copy, "first", bool(flag))
        object.__setattr__(copy, "machine", machine)
        object.__setattr__(copy, "machine_reasons", tuple(reasons))
        return copy
    return _flagged(event, bool(first))


def encode_request(events: Sequence[TrackingEvent], outbox: Sequence[str]) -> bytes:
    """A ``record_many`` request as one frame, for an event loop's channel (:meth:`ProcessWriter.loop_channel`)."""
    payload = pickle.dumps(("record_many", list(events), tuple(outbox)), protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


class ReplyReader:
    """Cuts the child's answers out of the bytes a channel delivers: :meth:`feed` returns the whole ones, each
    ``list[bool]`` (the stored ``first`` of each event, in order) or a :class:`StoreError` (``StoreUnavailable``
    when the store cannot be written now: nothing was written)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[Stored] | StoreError]:
        self._buffer += data
        replies: list[list[Stored] | StoreError] = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > _MAX_FRAME:
                raise StoreError(f"the store's writer process sent a frame of {size} bytes")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            status, value = pickle.loads(bytes(self._buffer[_HEADER.size:end]))
            del self._buffer[:end]
            replies.append(_reply(status, value))
        return replies


def _reply(status: str, value: Any) -> list[Stored] | StoreError:
    if status == "ok":
        return [(bool(first[0]), first[1], tuple(first[2])) if isinstance(first, tuple) else bool(first)
                for first in value]
    return StoreUnavailable(value) if status == "unavailable" else StoreError(value)


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _receive(sock: socket.socket) -> bytes | None:
    """One frame, or None when the other side closed (before or inside a frame)."""
    header = _exactly(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > _MAX_FRAME:
        raise OSError(f"a frame of {size} bytes is larger than {_MAX_FRAME}")
    return _exactly(sock, size)


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# -- the child -----------------------------------------------------------------------
class _Child:
    """The child's store, opened on first use (and again after it could not be), and its roller."""

    def __init__(self, path: str, busy_timeout: float, roll_interval: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.roll_interval = roll_interval
        self._store: Any = None
        self._roller: Any = None

    def store(self) -> Any:
        if self._store is None:
            from mailtrack.storage.roller import Roller
            from mailtrack.storage.sqlite import SQLiteStore

            self._store = SQLiteStore(self.path, busy_timeout=self.busy_timeout)
            self._roller = Roller(self._store, interval=self.roll_interval or 0.5, chunk=_ROLL_STEP)
            freeze_heap()  # the child is started: its full collections walk only what it makes from here
        return self._store

    def roll(self) -> bool:
        """Roll one step of at most ``_ROLL_STEP`` events; whether more may be waiting (the Roller's own logging
        and counting: a failure is retried at the next interval)."""
        try:
            self.store()
        except StoreError as exc:  # not openable yet: the writes report it; rolled once it opens
            log.debug("the store cannot be opened to roll: %s", exc)
            return False
        return bool(self._roller.roll_once(steps=1) == _ROLL_STEP)


def _serve(primary: socket.socket, loop_channel: socket.socket, child: _Child) -> None:
    """Answer write requests on both channels until the server closes ``primary``: ``("ok", firsts)``,
    ``("unavailable", why)`` or ``("refused", why)``; roll every ``child.roll_interval`` seconds, one step at a
    time, only while no request waits (a waiting batch goes first)."""
    channels = [primary, loop_channel]
    next_roll = time.monotonic() if child.roll_interval else None
    while True:
        wait = None if next_roll is None else max(0.0, next_roll - time.monotonic())
        ready = select.select(channels, [], [], wait)[0]
        if not ready:
            more = child.roll()
            next_roll = time.monotonic() + (0.0 if more else child.roll_interval)
            continue
        for sock in ready:
            try:
                frame = _receive(sock)
                if frame is not None:
                    _send(sock, pickle.dumps(_answer(child, *pickle.loads(frame)), protocol=pickle.HIGHEST_PROTOCOL))
                    continue
            except OSError:
                if sock is primary:
                    raise
            if sock is primary:  # the server closed (or died): done
                return
            channels.remove(sock)  # an event loop's channel closed: the primary one goes on


def _answer(child: _Child, op: str, events: list[TrackingEvent], outbox: tuple[str, ...]) -> tuple[str, Any]:
    try:
        store = child.store()
        if op == "record":
            return ("ok", [_stored(events[0], store.record(events[0], outbox))])
        return ("ok", [_stored(sent, stored) for sent, stored in zip(events, store.record_many(events, outbox),
                                                                     strict=True)])
    except StoreUnavailable as exc:
        return ("unavailable", str(exc) or type(exc).__name__)
    except (StoreError, TypeError, ValueError) as exc:  # an event the store refuses: the recorder finds it
        return ("refused", str(exc) or type(exc).__name__)
    except Exception as exc:  # a bug: refused (the recorder retries one by one, then spools), and logged
        log.exception("mailtrack: the store's writer process failed")
        return ("refused", f"{type(exc).__name__}: {exc}")


def main(argv: list[str]) -> int:
    """The child's entry point: ``main([FD, LOOP_FD, PATH, BUSY_TIMEOUT, ROLL_INTERVAL])`` (``ROLL_INTERVAL`` 0: no
    rolls), called by :data:`_BOOTSTRAP` (or ``python -m mailtrack.storage.writer_process`` with those arguments)."""
    # Ctrl-C and the supervisor's SIGTERM are for the server (the child has its own session; this is for a signal
    # sent to it by name): it finishes its batch and exits when the server closes the socket, or dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="mailtrack writer %(process)d: %(levelname)s %(message)s")
    fd, loop_fd, path = int(argv[0]), int(argv[1]), argv[2]
    busy_timeout, roll_interval = float(argv[3]), float(argv[4])
    with socket.socket(fileno=fd) as primary, socket.socket(fileno=loop_fd) as loop_channel:
        try:
            _serve(primary, loop_channel, _Child(path, busy_timeout, roll_interval))
        except (OSError, EOFError, pickle.UnpicklingError):  # the server went away mid-frame
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
