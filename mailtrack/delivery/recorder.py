"""Recording events without ever failing a response, and without answering before the event is safe.

Group commit: :meth:`Recorder.record` hands the event to one writer thread
and waits. The writer takes everything queued meanwhile (up to
``batch_max`` events: the requests served concurrently), writes it with one
:meth:`~mailtrack.storage.base.EventStore.record_many` (one transaction, one
commit) and wakes the waiting requests. A response is therefore sent only
after its own event is committed, so an answered request survives a
``kill -9`` of the server, at one commit per batch instead of one per event.

When the store cannot be written (locked past its short busy timeout, disk
full, read-only, file gone), the writer appends the batch to an append-only
spool file (:mod:`.spool`, next to the database or in ``spool_dir``) before
the requests are answered, and a background thread moves spooled events
into the store, in batches, once it works again, freeing the spool's disk
space as it goes. After a failed write the recorder stays on the spool until
it has been emptied: no response waits for a store that just failed, and
events reach the store in the order they happened, so ``first`` stays right.
Events carry a unique ``event_id``, so an event moved twice is stored once.

Only when even the spool cannot be written (the disk holding it is full too,
or the spool reached ``spool_max_bytes``) is an event at risk. It is still
answered (a broken image or a failed redirect helps nobody): a spool write
that failed keeps the event in memory (at most ``_MAX_IN_MEMORY``) for the
background thread and for :meth:`Recorder.close` to store or spool later; a
full spool, an overflowing memory queue or a shutdown with nowhere to put
them loses it. Every lost event is counted (:meth:`Recorder.health`) and
logged at ERROR. Failures are logged as one line when they start and then one
summary line per ``log_interval`` with a count, never one line per event.

Other sinks (callbacks) are called from a background thread after the store
has set ``first``: a slow callback never delays a response.

Privacy mode (``privacy``, :class:`~mailtrack.delivery.privacy.Privacy`) is
applied here, where every event enters, before anything else sees it: the
store, the webhook outbox, the writer process, the spool and the sinks all get
the reduced ``ip`` and ``user_agent``. Events moved from a spool are reduced
again (a no-op for reduced ones), so a spool left by a process without privacy
mode never brings full values into the store.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from mailtrack.delivery.privacy import Privacy
from mailtrack.delivery.spool import Spool, SpoolFull
from mailtrack.events import EventSink, TrackingEvent
from mailtrack.exceptions import ConfigurationError
from mailtrack.storage.base import EventStore, EventWriter, StoreError, StoreUnavailable
from mailtrack.storage.writer_process import ProcessWriter, ReplyReader, Stored, encode_request, stored_as

__all__ = ["DEFAULT_SPOOL_MAX_BYTES", "Recorder", "RecorderHealth"]

log = logging.getLogger("mailtrack")
_MAX_IN_MEMORY = 100_000
#: The spool's default cap (``--spool-max-bytes``): past it, events are lost and counted.
DEFAULT_SPOOL_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class RecorderHealth:
    """What :meth:`Recorder.health` reports: is recording safe right now, and what did it cost so far.

    ``store_ok``: the last write to the store succeeded (False from a failure
    until a drain succeeds). ``spooling``: events go to the spool until it is
    drained. ``spool_events`` and ``spool_bytes``: what waits in the spool
    (bytes on disk of every spool file in the directory; events as counted
    at start plus this process's appends minus its drains). ``spool_full``:
    the spool reached ``spool_max_bytes``, so new events the store refuses are
    lost. ``memory_events``: answered events that neither the store nor the
    spool could take, held in memory (not safe from a crash). ``lost``:
    answered events never stored nor spooled since this recorder started.
    ``queued``: events waiting for the writer now. ``last_error``: the last
    store or spool failure, for the operator. ``oldest_wait``: seconds the
    event waiting longest for the writer has waited (0.0 when none waits): a
    writer that makes no progress (stopped, blocked on a lock) shows here
    while the store itself may be fine, before any write failed.
    """

    store_ok: bool
    spooling: bool
    spool_events: int
    spool_bytes: int
    spool_max_bytes: int | None
    spool_full: bool
    memory_events: int
    lost: int
    queued: int
    last_error: str | None
    oldest_wait: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every event is currently safe: stored, or spooled with room left, none lost or in memory only."""
        return not self.spool_full and self.memory_events == 0 and self.lost == 0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, with ``ok``."""
        return {**asdict(self), "ok": self.ok}


class _Waiter:
    """One request's event on its way through the writer; ``done`` is set once it is stored or spooled (or lost).

    An asynchronous request (:meth:`Recorder.record_async`) also has its event loop and a future there, which
    the writer resolves (one wake-up of each loop per batch) instead of a thread waiting on ``done``.
    """

    __slots__ = ("done", "event", "future", "loop", "result", "since")

    def __init__(self, event: TrackingEvent, loop: asyncio.AbstractEventLoop | None = None,
                 future: asyncio.Future[TrackingEvent] | None = None) -> None:
        self.since = time.monotonic()  # when it began to wait for the writer (health's oldest_wait)
        self.event = event
        self.result = event
        self.done = threading.Event() if future is None else None  # a thread waits on it; a coroutine on its future
        self.loop = loop
        self.future = future


def _wake(waiters: Sequence[_Waiter]) -> None:
    """Set ``done`` of each waiter and resolve the futures of asynchronous ones: one callback per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}
    for waiter in waiters:
        if waiter.done is not None:
            waiter.done.set()
        if waiter.loop is not None:
            by_loop.setdefault(waiter.loop, []).append(waiter)
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, group)
        except RuntimeError:  # that loop is closed: nobody waits there any more (its events are stored or spooled)
            pass


class _Stuck(Exception):
    """The writer did not answer an asynchronous request within ``write_timeout``."""


def _give_up(future: asyncio.Future[TrackingEvent]) -> None:
    if not future.done():
        future.set_exception(_Stuck())


def _resolve(waiters: list[_Waiter]) -> None:
    for waiter in waiters:
        if waiter.future is not None and not waiter.future.done():
            waiter.future.set_result(waiter.result)


#: Batches a lane keeps with the child at once: a second one waits in the child's socket while the first
#: commits (measured 3-4% more requests/s and a lower p99 than one at a time; three did worse).
_LANE_DEPTH = 2
#: Events that must be waiting before a lane sends a second batch (a first one goes at once).
_LANE_NEXT = 8


class _Lane(asyncio.Protocol):
    """An event loop's own channel to a :class:`~mailtrack.storage.writer_process.ProcessWriter`'s child.

    The group commit without the writer thread: requests of this loop
    append their waiters; a batch goes to the child at once when none is
    there, a second one (``_LANE_DEPTH``) once ``_LANE_NEXT`` events wait,
    and whatever queued meanwhile (up to ``batch_max``) goes when an
    answer comes. The child commits them in order. The loop resolves the futures itself: no thread
    has to take the GIL back from the busy loop between a commit and its
    answers. Anything that is not a clean commit (the store refused or
    cannot write, the channel broke, the recorder is spooling or closing)
    is handed to the writer thread, whose :meth:`Recorder._write` spools,
    retries one by one and keeps the order, as for any other request.
    """

    def __init__(self, recorder: Recorder, loop: asyncio.AbstractEventLoop, generation: int) -> None:
        self.recorder = recorder
        self.loop = loop
        self.generation = generation
        self.transport: asyncio.WriteTransport | None = None
        self.broken = False
        self.pending: list[_Waiter] = []
        self.inflight: deque[list[_Waiter]] = deque()  # sent, not answered yet: oldest first
        self._reader = ReplyReader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's UnixTransport is no asyncio.Transport

    def submit(self, waiter: _Waiter) -> bool:
        """Take ``waiter`` (True), or leave it to the writer thread (False: not connected, or broken)."""
        if self.transport is None or self.broken:
            return False
        self.pending.append(waiter)
        if not self.inflight or (len(self.inflight) < _LANE_DEPTH and len(self.pending) >= _LANE_NEXT):
            self._send()
        return True

    def _send(self) -> None:
        if not self.pending or self.transport is None:
            return
        if self.recorder._degraded or self.recorder._closing:  # spooling (keep the order) or stopping: the thread's
            waiting, self.pending = self.pending, []
            self.recorder._hand_to_writer(waiting)
            return
        batch = self.pending[:self.recorder.batch_max]
        del self.pending[:len(batch)]
        self.inflight.append(batch)
        self.transport.write(encode_request([waiter.event for waiter in batch], self.recorder.outbox))

    def data_received(self, data: bytes) -> None:
        try:
            replies = self._reader.feed(data)
        except Exception:  # not the child's framing: nothing more on this channel can be trusted
            log.exception("mailtrack: unreadable answer from the store's writer process")
            assert self.transport is not None
            self.transport.abort()
            return
        for reply in replies:
            if not self.inflight:  # pragma: no cover - the child answers only what was sent
                continue
            batch = self.inflight.popleft()
            try:
                if isinstance(reply, StoreError):
                    self.recorder._hand_to_writer(batch)
                else:
                    self.recorder._lane_stored(batch, reply)
            except Exception:  # an answer that does not fit its batch: the writer thread stores (or spools) it again
                log.exception("mailtrack: unusable answer from the store's writer process")
                self.recorder._hand_to_writer([waiter for waiter in batch if waiter.future is None
                                               or not waiter.future.done()])
        if len(self.inflight) < _LANE_DEPTH:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        waiting = [waiter for batch in self.inflight for waiter in batch] + self.pending  # sent ones: maybe stored
        self.inflight, self.pending = deque(), []
        if waiting:
            self.recorder._hand_to_writer(waiting)

    def waiting(self) -> int:
        """Events of this lane not yet answered (sent or not): part of the recorder's ``queued``."""
        return len(self.pending) + sum(map(len, list(self.inflight)))  # list(): one step, safe from another thread

    def oldest(self) -> float | None:
        """When this lane's longest-waiting event began to wait (None: none waits); from any thread."""
        for batch in (*list(self.inflight), self.pending):  # the oldest first (sent in order)
            if batch:
                try:
                    return batch[0].since
                except IndexError:  # taken meanwhile by the loop
                    continue
        return None

    def leftovers(self) -> list[_Waiter]:
        """What this lane holds unanswered, taken from it (for :meth:`Recorder.close`)."""
        waiting = [waiter for batch in self.inflight for waiter in batch] + self.pending
        self.inflight, self.pending = deque(), []
        return waiting


class _Summary:
    """Failure logging at most once per ``interval`` per kind: the first line at once, then one line with a count."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, tuple[int, int, str, tuple[Any, ...]]] = {}  # kind -> (count, level, message, args)

    def log(self, kind: str, level: int, message: str, *args: Any, count: int = 1) -> None:
        """Log ``message % args`` now if no ``kind`` line went out in the last interval; else add ``count`` to the next."""
        now = time.monotonic()
        with self._lock:
            held = self._held.get(kind)
            total = count + (held[0] if held else 0)
            if now - self._last.get(kind, -self.interval) < self.interval:
                self._held[kind] = (total, level, message, args)
                return
            self._held.pop(kind, None)
            self._last[kind] = now
        log.log(level, f"{message} [{total} event(s) since the last such line]", *args)

    def flush(self, force: bool = False) -> None:
        """Write the held summary lines whose interval has passed (all of them with ``force``)."""
        now = time.monotonic()
        due = []
        with self._lock:
            for kind, held in list(self._held.items()):
                if force or now - self._last.get(kind, 0.0) >= self.interval:
                    due.append(held)
                    del self._held[kind]
                    self._last[kind] = now
        for count, level, message, args in due:
            log.log(level, f"{message} [{count} event(s) in the last {self.interval:g} s]", *args)


class Recorder:
    """Sends events to the store (and webhook outbox) by group commit, spooling on failure, then to the other sinks.

    ``spool_dir`` defaults to ``<database>.spool``; ``spool_max_bytes`` caps
    it (None: no cap). ``batch_max`` bounds one group commit. A request
    waits at most ``write_timeout`` seconds for the writer before it spools
    its event itself. Failure lines are summarized per ``log_interval`` seconds.
    ``privacy`` reduces every event's address and user agent before it goes
    anywhere (default: kept in full).
    """

    def __init__(
        self,
        store: EventStore | None,
        sinks: Iterable[EventSink] = (),
        *,
        outbox: Sequence[str] = (),
        spool_dir: str | Path | None = None,
        spool_max_bytes: int | None = DEFAULT_SPOOL_MAX_BYTES,
        retry_interval: float = 0.5,
        max_retry_interval: float = 30.0,
        batch_max: int = 256,
        write_timeout: float = 10.0,
        log_interval: float = 10.0,
        writer: EventWriter | None = None,
        privacy: Privacy | None = None,
    ) -> None:
        if isinstance(outbox, str) or not all(isinstance(target, str) for target in outbox):
            raise ConfigurationError(f"outbox must be a list of webhook URLs, not {outbox!r}")  # one str would be its letters
        if spool_max_bytes is not None and (isinstance(spool_max_bytes, bool) or not isinstance(spool_max_bytes, int)
                                            or spool_max_bytes < 1):
            raise ConfigurationError(f"spool_max_bytes must be a positive whole number of bytes, not {spool_max_bytes!r}")
        if isinstance(batch_max, bool) or not isinstance(batch_max, int) or batch_max < 1:
            raise ConfigurationError(f"batch_max must be a positive whole number, not {batch_max!r}")
        if privacy is not None and not isinstance(privacy, Privacy):
            raise ConfigurationError(f"privacy must be a Privacy, not {type(privacy).__name__}")
        self.privacy = privacy if privacy is not None else Privacy()
        self.store = store
        # who runs the writes: the store itself, or (SQLite under `serve`) a ProcessWriter's child process
        self._writes: EventWriter | None = writer if writer is not None else store
        self._own_writer = writer
        # an event loop's own channel to a ProcessWriter's child (record_async's fast path), made on first use
        self._loop_writer = writer if isinstance(writer, ProcessWriter) else None
        self._lane: _Lane | None = None
        self.sinks = list(sinks)
        self.outbox = tuple(outbox)
        self.retry_interval = retry_interval
        self.max_retry_interval = max_retry_interval
        self.batch_max = batch_max
        self.write_timeout = write_timeout
        default_spool = Path(str(getattr(store, "path", "mailtrack")) + ".spool") if store is not None else None
        self.spool_dir = Path(spool_dir) if spool_dir is not None else default_spool
        self.spool = Spool(self.spool_dir, max_bytes=spool_max_bytes)
        self._spool_lock = threading.Lock()
        self._pending: deque[TrackingEvent] = deque()  # answered events neither the store nor the spool took
        self._degraded = False  # True from a failed store write until the spool is empty again
        self._drain_lock = threading.Lock()  # one drain at a time in this process (flock only tells processes apart)
        self._summary = _Summary(log_interval)
        self._store_ok = True
        self._lost = 0
        self._spool_events = 0
        self._spool_full_logged = False
        self._spool_full = False  # the last spool write was refused for the cap
        self._last_error: str | None = None
        self._counts_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._closing = False
        self._accepting = threading.Lock()  # record() enqueues and close() stops the writer under it: nothing is left behind
        self._recovered = threading.Event()  # set once the start-up recovery of earlier spools has run
        self._queue: queue.SimpleQueue[_Waiter | None] = queue.SimpleQueue()
        self._writing: list[_Waiter] | None = None  # the batch the writer thread is writing now (health)
        self._fanout: queue.SimpleQueue[TrackingEvent | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._writer_loop, name="mailtrack-writer", daemon=True)
        self._threads = [
            threading.Thread(target=self._retry_loop, name="mailtrack-spool", daemon=True),
            threading.Thread(target=self._fanout_loop, name="mailtrack-sinks", daemon=True),
        ]
        if store is not None:
            self._threads.append(self._writer)
            try:
                self._spool_events = self.spool.count_events()  # what earlier processes left (health's estimate)
            except OSError:
                pass
        for thread in self._threads:
            thread.start()
        if store is not None:
            self._wake.set()  # recover spools left by earlier processes
        else:
            self._recovered.set()

    # -- the request path -------------------------------------------------------
    def record(self, event: TrackingEvent) -> TrackingEvent:
        """Record ``event`` and return once it is committed or spooled; never raises.

        Returns it with ``first`` when the store could tell (None when it was
        spooled). Called after :meth:`close` began, it writes the event itself.
        """
        try:
            event = self.privacy.apply(event)
            if self.store is None:
                if self.sinks:
                    self._fanout.put(event)
                return event
            waiter = _Waiter(event)
            with self._accepting:
                late = self._closing
                if not late:
                    self._queue.put(waiter)
            if late:  # the writer has stopped: this thread writes it
                self._write([waiter], keep_in_memory=False)
                return waiter.result
            assert waiter.done is not None
            if not waiter.done.wait(self.write_timeout):
                # Never seen in practice: the writer is stuck. The response must not wait for ever, nor go out
                # before the event is safe: spool it from here (should the writer store it too, it is stored once).
                self._summary.log("stuck", logging.ERROR, "mailtrack: the event writer did not answer in %g s; "
                                  "requests spool their events themselves", self.write_timeout)
                self._spool([event], keep_in_memory=True)
            return waiter.result
        except Exception:  # a last guard: recording must never break a response
            log.exception("mailtrack: could not record event %s", event.event_id)
        return event

    async def record_async(self, event: TrackingEvent) -> TrackingEvent:
        """:meth:`record` for an event loop: the request awaits its event's commit (or spooling) without a thread.

        The writer's group commit takes it with the other events queued meanwhile and resolves the awaiting
        coroutines with one wake-up of the loop per batch, so an event-loop server holds any number of
        requests waiting for one commit. Never raises; the same guarantees as :meth:`record` (answered means
        committed or spooled; a writer stuck past ``write_timeout`` makes the request spool its event itself).
        """
        try:
            event = self.privacy.apply(event)
            if self.store is None:
                return self.record(event)
            loop = asyncio.get_running_loop()
            future: asyncio.Future[TrackingEvent] = loop.create_future()
            waiter = _Waiter(event, loop, future)
            lane = self._lane_of(loop) if self._loop_writer is not None else None
            with self._accepting:
                late = self._closing
                if not late and (lane is None or self._degraded or not lane.submit(waiter)):
                    self._queue.put(waiter)
            if late:  # the writer has stopped: a thread of the loop's executor writes it
                return await loop.run_in_executor(None, self.record, event)
            # One timer, not asyncio.wait_for (a task and a shield per request: a tenth of a request's cost here).
            timer = loop.call_later(self.write_timeout, _give_up, future)
            try:
                return await future
            except _Stuck:
                self._summary.log("stuck", logging.ERROR, "mailtrack: the event writer did not answer in %g s; "
                                  "requests spool their events themselves", self.write_timeout)
                await loop.run_in_executor(None, functools.partial(self._spool, [event], keep_in_memory=True))
                return waiter.result
            finally:
                timer.cancel()
        except asyncio.CancelledError:  # the server is stopping this request: the event stays queued for the writer
            raise
        except Exception:  # a last guard: recording must never break a response
            log.exception("mailtrack: could not record event %s", event.event_id)
        return event

    def _lane_of(self, loop: asyncio.AbstractEventLoop) -> _Lane | None:
        """This loop's lane (connecting it on first use), or None: the writer thread takes the event then.

        One loop has a lane (a server runs one); another loop, or a lane whose child went away before a
        thread's write started a new one, uses the writer thread.
        """
        assert self._loop_writer is not None
        lane = self._lane
        if lane is not None and lane.loop is loop and not lane.broken:
            return lane
        if lane is not None and lane.loop is not loop and not lane.loop.is_closed():
            return None
        channel = self._loop_writer.loop_channel()
        if channel is None:
            return None
        generation, sock = channel
        if lane is not None and lane.loop is loop and lane.generation == generation:
            sock.close()  # this child's channel broke: wait for the thread's next write to start a new child
            return None
        lane = self._lane = _Lane(self, loop, generation)
        loop.create_task(self._connect(loop, lane, sock))
        return lane

    @staticmethod
    async def _connect(loop: asyncio.AbstractEventLoop, lane: _Lane, sock: Any) -> None:
        try:
            await loop.create_unix_connection(lambda: lane, sock=sock)
        except Exception as exc:  # the writer thread goes on taking this loop's events
            lane.broken = True
            sock.close()
            log.warning("mailtrack: cannot reach the store's writer process from the event loop (%s)", exc)

    def _lane_stored(self, batch: list[_Waiter], firsts: list[Stored]) -> None:
        """A lane's batch is committed: the events as stored go to the sinks, the requests are answered."""
        self._store_ok = True
        for waiter, first in zip(batch, firsts, strict=True):
            waiter.result = stored_as(waiter.event, first)
            self._stored(waiter.result)
        _resolve(batch)

    def _hand_to_writer(self, waiters: list[_Waiter]) -> None:
        """Give a lane's waiters to the writer thread (after :meth:`close` began: write them from here)."""
        with self._accepting:
            late = self._closing
            if not late:
                for waiter in waiters:
                    self._queue.put(waiter)
        if late:
            self._write(waiters, keep_in_memory=True)
            _wake(waiters)

    def _writer_loop(self) -> None:
        """The group commit: everything queued, up to ``batch_max``, in one transaction; then wake the requests."""
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._writing = batch
            try:
                self._write(batch, keep_in_memory=True)
            except Exception:  # never let this thread die; _write has its own guards, this is the last one
                log.exception("mailtrack: the event writer failed on %d event(s)", len(batch))
                self._lose([waiter.event for waiter in batch], "the event writer failed (see the traceback)")
            finally:
                self._writing = None
                _wake(batch)
            if stop:
                return

    def _write(self, batch: list[_Waiter], *, keep_in_memory: bool) -> None:
        """Store ``batch`` in one transaction, else spool it; sets each waiter's result."""
        assert self._writes is not None
        if not self._degraded:
            try:
                stored = self._writes.record_many([waiter.event for waiter in batch], self.outbox)
            except StoreUnavailable as exc:
                self._store_failed(exc, len(batch))
            except Exception:  # one event is refused (not the store being down): find it, one at a time
                for waiter in batch:
                    self._write_one(waiter, keep_in_memory=keep_in_memory)
                return
            else:
                self._store_ok = True
                for waiter, event in zip(batch, stored, strict=True):
                    waiter.result = event
                    self._stored(event)
                return
        self._spool([waiter.event for waiter in batch], keep_in_memory=keep_in_memory)

    def _write_one(self, waiter: _Waiter, *, keep_in_memory: bool) -> None:
        assert self._writes is not None
        if not self._degraded:
            try:
                waiter.result = self._writes.record(waiter.event, self.outbox)
                self._stored(waiter.result)
                return
            except StoreUnavailable as exc:
                self._store_failed(exc, 1)
            except Exception as exc:  # a bug, or an event the store refuses: spooled, then set aside by the drain
                log.error("mailtrack: event %s refused by the store (%s); spooling it", waiter.event.event_id, exc)
        self._spool([waiter.event], keep_in_memory=keep_in_memory)

    def _store_failed(self, exc: BaseException, count: int) -> None:
        self._store_ok = False
        self._last_error = str(exc)
        self._summary.log("store", logging.WARNING, "mailtrack: store write failed (%s); spooling events until it "
                          "works again", exc, count=count)

    def _spool(self, events: list[TrackingEvent], *, keep_in_memory: bool) -> None:
        """Append ``events`` to the spool (and stay on it until drained); else memory, else lost and counted."""
        with self._spool_lock:
            if not self._degraded:
                self._degraded = True
                self._wake.set()
            self._spool_locked(events, keep_in_memory=keep_in_memory)

    def _spool_locked(self, events: list[TrackingEvent], *, keep_in_memory: bool) -> None:
        try:
            self.spool.append_many(events)
        except SpoolFull as exc:
            self._spool_full = True
            if not self._spool_full_logged:
                self._spool_full_logged = True
                log.error("mailtrack: %s (--spool-max-bytes, MAILTRACK_SPOOL_MAX_BYTES): events the store cannot "
                          "take now are LOST until it drains", exc)
            self._lose(events, str(exc))
            return
        except OSError as exc:
            self._last_error = f"spool write failed: {exc}"
            if keep_in_memory:
                self._summary.log("memory", logging.ERROR, "mailtrack: spool write failed (%s); events kept in "
                                  "memory, lost if the server stops before the store or the spool takes them", exc,
                                  count=len(events))
                self._keep(events)
            else:
                self._lose(events, f"spool write failed: {exc}")
            return
        except (TypeError, ValueError) as exc:  # an event that is not JSON: the others still go in
            if len(events) == 1:
                self._lose(events, f"cannot be written as JSON: {exc}")
                return
            for event in events:
                self._spool_locked([event], keep_in_memory=keep_in_memory)
            return
        self._spool_full_logged = self._spool_full = False
        with self._counts_lock:
            self._spool_events += len(events)

    def _keep(self, events: list[TrackingEvent]) -> None:
        room = _MAX_IN_MEMORY - len(self._pending)
        self._pending.extend(events[:max(room, 0)])
        if room < len(events):
            self._lose(events[max(room, 0):], f"more than {_MAX_IN_MEMORY} events waiting in memory")

    def _lose(self, events: list[TrackingEvent], reason: str) -> None:
        """Count and log (summarized, ERROR) answered events that will never be stored."""
        with self._counts_lock:
            self._lost += len(events)
            lost = self._lost
        self._last_error = reason
        self._summary.log("lost", logging.ERROR, "mailtrack: answered events LOST, neither stored nor spooled (%s); "
                          "%d lost since start", reason, lost, count=len(events))

    # -- health -----------------------------------------------------------------------
    def health(self) -> RecorderHealth:
        """Where recording stands: store reachable, spool size and cap, events in memory, events lost (cheap to call)."""
        try:
            used = self.spool.measure()
        except OSError:
            used = self.spool.used()
        with self._counts_lock:
            spool_events, lost = max(self._spool_events, 0), self._lost
        return RecorderHealth(
            store_ok=self.store is not None and self._store_ok and not self._degraded,
            spooling=self._degraded,
            spool_events=spool_events,
            spool_bytes=used,
            spool_max_bytes=self.spool.max_bytes,
            spool_full=self._spool_full or (self.spool.max_bytes is not None and used >= self.spool.max_bytes),
            memory_events=len(self._pending),
            lost=lost,
            queued=self._queue.qsize() + len(self._writing or ()) + (self._lane.waiting() if self._lane else 0),
            last_error=self._last_error,
            oldest_wait=self._oldest_wait(),
        )

    def _oldest_wait(self) -> float:
        """Seconds the event waiting longest for the writer (thread or event-loop lane) has waited; 0.0: none."""
        starts = []
        writing, lane = self._writing, self._lane
        if writing:
            starts.append(writing[0].since)
        oldest = lane.oldest() if lane is not None else None
        if oldest is not None:
            starts.append(oldest)
        return max(0.0, time.monotonic() - min(starts)) if starts else 0.0

    # -- background work --------------------------------------------------------------
    def _retry_loop(self) -> None:
        delay = self.retry_interval
        while not self._closed.is_set():
            self._wake.wait(min(delay, self._summary.interval))
            self._wake.clear()
            self._summary.flush()
            if self._closed.is_set() or self.store is None:
                continue
            try:
                drained = self.drain()
            except Exception:  # never let this thread die: the next tick tries again
                log.exception("mailtrack: draining the spool failed")
                drained = False
            delay = self.retry_interval if drained else min(delay * 2, self.max_retry_interval)
            self._recovered.set()

    def wait_recovered(self, timeout: float | None = None) -> bool:
        """Wait until the start-up pass over earlier processes' spools has run; True if it has.

        A new recorder drains what dead processes left behind from its
        background thread; callers that need a quiet recorder (tests, a
        migration script) wait for that pass here instead of guessing a delay.
        """
        return self._recovered.wait(timeout)

    def drain(self) -> bool:
        """Move spooled and in-memory events into the store, oldest first; True when nothing is left.

        Other processes' spools left behind (their owner died) are taken too.
        Only the last step, for the events spooled while this ran, holds the
        lock the writer spools under. Events in memory that the store still
        refuses are moved to the spool when it can take them.
        """
        if self.store is None:
            return not self._pending
        with self._drain_lock:
            return self._drain()

    def _drain(self) -> bool:
        assert self.store is not None and self._writes is not None
        store = self.store
        writes = self._writes

        release = getattr(store, "release_space", None)  # SQLite: checkpoint the WAL so freed spool space is reused

        def put(events: list[TrackingEvent]) -> None:
            events = [self.privacy.apply(event) for event in events]  # spooled by a process without privacy mode?
            for event in writes.record_many(events, self.outbox):
                self._stored(event)
            self._store_ok = True
            if release is not None:
                try:
                    release()
                except StoreUnavailable:
                    pass  # a reader holds the log, or no room to copy it yet: the next batch tries again

        def done(count: int) -> None:
            with self._counts_lock:
                self._spool_events -= count

        with self._spool_lock:
            self.spool.rotate()
        for path in self.spool.files():
            if not self.spool.drain_file(path, put, done=done):
                self._memory_to_spool()
                return False
        with self._spool_lock:
            self.spool.rotate()
            for path in self.spool.files():  # just what arrived during the pass above
                if not self.spool.drain_file(path, put, done=done):
                    self._memory_to_spool(locked=True)
                    return False
            while self._pending:
                try:
                    self._stored(writes.record(self._pending[0], self.outbox))
                except StoreUnavailable as exc:
                    log.warning("mailtrack: retry failed (%s); %d event(s) waiting in memory", exc, len(self._pending))
                    self._memory_to_spool(locked=True)
                    return False
                except Exception as exc:
                    self._lose([self._pending[0]], f"refused by the store: {exc}")
                self._pending.popleft()
            self._degraded = False
            self._store_ok = True
            self._spool_full = False
            self.spool.measure()
        return True

    def _memory_to_spool(self, *, locked: bool = False) -> None:
        """Move the events held in memory to the spool, if it takes them now (they are safe from a crash there)."""
        if not self._pending:
            return
        if not locked:
            with self._spool_lock:
                self._memory_to_spool(locked=True)
            return
        events = list(self._pending)
        try:
            self.spool.append_many(events)
        except (OSError, TypeError, ValueError):
            return  # still nowhere to put them: they stay in memory
        self._pending.clear()
        with self._counts_lock:
            self._spool_events += len(events)
        log.warning("mailtrack: %d event(s) held in memory are now in the spool", len(events))

    def _stored(self, event: TrackingEvent) -> None:
        if self.sinks:
            self._fanout.put(event)

    def _fanout_loop(self) -> None:
        while True:
            event = self._fanout.get()
            if event is None:
                return
            for sink in self.sinks:
                try:
                    sink.record(event)
                except Exception:
                    log.exception("mailtrack: event sink %r failed for event %s", sink, event.event_id)

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking events through the writer, write what it holds, try a last drain, stop the threads.

        Every event already answered is stored or spooled before this
        returns; events held in memory (the spool could not be written) are
        tried against the store and the spool once more, and whatever still
        fits nowhere is counted as lost and logged at ERROR. Spooled events
        stay on disk for the next start. Events recorded after this began are
        written by their own request thread.
        """
        with self._accepting:
            if self._closing:
                return
            self._closing = True
            self._queue.put(None)
        try:
            if self._writer.is_alive():
                self._writer.join(timeout)
            leftovers = self._lane.leftovers() if self._lane is not None else []  # requests cut short by a stop
            while True:  # only if the writer is stuck or was never started
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    leftovers.append(item)
            for waiter in leftovers:
                self._write([waiter], keep_in_memory=True)
                _wake([waiter])
            self.drain()
        finally:
            with self._spool_lock:
                self._memory_to_spool(locked=True)
                if self._pending:
                    stranded = list(self._pending)
                    self._pending.clear()
                    with self._counts_lock:
                        self._lost += len(stranded)
                        lost = self._lost
                    log.error("mailtrack: shutting down with %d answered event(s) that neither the store nor the spool "
                              "could take: LOST (%d lost since start; last error: %s)", len(stranded), lost,
                              self._last_error)
            self._closed.set()
            self._wake.set()
            self._fanout.put(None)
            for thread in self._threads:
                thread.join(timeout)
            with self._spool_lock:
                self.spool.rotate()
            close = getattr(self._own_writer, "close", None)  # a ProcessWriter's child exits
            if close is not None:
                close(timeout)
            self._summary.flush(force=True)
