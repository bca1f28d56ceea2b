"""Recording events without ever failing or holding up the response a recipient sees.

:class:`Recorder` writes each event to the store synchronously (a WAL commit:
well under a millisecond), so an event whose response was sent survives a
``kill -9`` of the server. When the store cannot be written (locked past its
short busy timeout, disk full, file gone), the event goes to an append-only
spool file next to the database instead, and a background thread moves spooled
events into the store once it works again; if even the spool cannot be
written, the event waits in memory. Every failure is logged to the
``mailtrack`` logger. Events carry a unique ``event_id``, so an event moved
twice is stored once.

After a failed write the recorder stays on the spool until the background
thread has emptied it: no response waits for a store that just failed, and
events reach the store in the order they happened, so ``first`` stays right.

Other sinks (callbacks) are called from a background thread after the store
has set ``first``: a slow callback never delays a response.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from mailtrack.delivery.spool import Spool
from mailtrack.events import EventSink, TrackingEvent
from mailtrack.exceptions import ConfigurationError
from mailtrack.storage.base import EventStore, StoreUnavailable

__all__ = ["Recorder"]

log = logging.getLogger("mailtrack")
_MAX_IN_MEMORY = 100_000


class Recorder:
    """Sends events to the store (and webhook outbox), spooling on failure, then to the other sinks."""

    def __init__(
        self,
        store: EventStore | None,
        sinks: Iterable[EventSink] = (),
        *,
        outbox: Sequence[str] = (),
        spool_dir: str | Path | None = None,
        retry_interval: float = 0.5,
        max_retry_interval: float = 30.0,
    ) -> None:
        if isinstance(outbox, str) or not all(isinstance(target, str) for target in outbox):
            raise ConfigurationError(f"outbox must be a list of webhook URLs, not {outbox!r}")  # one str would be its letters
        self.store = store
        self.sinks = list(sinks)
        self.outbox = tuple(outbox)
        self.retry_interval = retry_interval
        self.max_retry_interval = max_retry_interval
        default_spool = Path(str(getattr(store, "path", "mailtrack")) + ".spool") if store is not None else None
        self.spool_dir = Path(spool_dir) if spool_dir is not None else default_spool
        self.spool = Spool(self.spool_dir)
        self._spool_lock = threading.Lock()
        self._pending: deque[TrackingEvent] = deque(maxlen=_MAX_IN_MEMORY)
        self._degraded = False  # True from a failed store write until the spool is empty again
        self._drain_lock = threading.Lock()  # one drain at a time in this process (flock only tells processes apart)
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._recovered = threading.Event()  # set once the start-up recovery of earlier spools has run
        self._fanout: queue.SimpleQueue[TrackingEvent | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._retry_loop, name="mailtrack-spool", daemon=True),
            threading.Thread(target=self._fanout_loop, name="mailtrack-sinks", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if store is not None:
            self._wake.set()  # recover spools left by earlier processes
        else:
            self._recovered.set()

    # -- the request path -------------------------------------------------------
    def record(self, event: TrackingEvent) -> TrackingEvent:
        """Record ``event``; never raises. Returns it with ``first`` when the store could tell."""
        try:
            if self.store is not None:
                if self._degraded:  # the store failed a moment ago, or older events still wait: queue behind them
                    self._spool(event)
                    return event
                try:
                    event = self.store.record(event, self.outbox)
                except Exception as exc:  # StoreUnavailable, or any bug: the recipient must not notice
                    log.warning("mailtrack: store write failed (%s); spooling events until it works again", exc)
                    self._spool(event)
                    return event
            if self.sinks:
                self._fanout.put(event)
        except Exception:  # a last guard: recording must never break a response
            log.exception("mailtrack: could not record event %s", event.event_id)
        return event

    def _spool(self, event: TrackingEvent) -> None:
        with self._spool_lock:
            try:
                self.spool.append(event)
            except OSError as exc:
                log.error("mailtrack: spool write failed (%s); event %s kept in memory", exc, event.event_id)
                self._pending.append(event)
            if not self._degraded:
                self._degraded = True
                self._wake.set()

    # -- background work --------------------------------------------------------------
    def _retry_loop(self) -> None:
        delay = self.retry_interval
        while not self._closed.is_set():
            self._wake.wait(delay)
            self._wake.clear()
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
        lock request threads spool under.
        """
        if self.store is None:
            return not self._pending
        with self._drain_lock:
            return self._drain()

    def _drain(self) -> bool:
        assert self.store is not None
        store = self.store

        def put(event: TrackingEvent) -> None:
            self._stored(store.record(event, self.outbox))

        with self._spool_lock:
            self.spool.rotate()
        for path in self.spool.files():
            if not self.spool.drain_file(path, put):
                return False
        with self._spool_lock:
            self.spool.rotate()
            for path in self.spool.files():  # just what arrived during the pass above
                if not self.spool.drain_file(path, put):
                    return False
            while self._pending:
                try:
                    self._stored(self.store.record(self._pending[0], self.outbox))
                except StoreUnavailable as exc:
                    log.warning("mailtrack: retry failed (%s); %d event(s) waiting in memory", exc, len(self._pending))
                    return False
                except Exception as exc:
                    log.error("mailtrack: event %s refused by the store (%s); dropped", self._pending[0].event_id, exc)
                self._pending.popleft()
            self._degraded = False
        return True

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
        """Try a last drain, stop the threads (spooled events stay on disk for the next start)."""
        if self._closed.is_set():
            return
        try:
            self.drain()
        finally:
            self._closed.set()
            self._wake.set()
            self._fanout.put(None)
            for thread in self._threads:
                thread.join(timeout)
            with self._spool_lock:
                self.spool.rotate()
