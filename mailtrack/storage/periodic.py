"""A store task run every few seconds in a daemon thread: what the roller and the purger share.

Each subclass says what one run does (:meth:`Periodic.run_once`) and keeps
its own counts and logging; this class starts the thread, runs that every
``interval`` seconds until :meth:`Periodic.stop`, and closes the thread's
store connection at the end.
"""

from __future__ import annotations

import threading
from typing import Protocol, TypeVar

from mailtrack.storage.base import StoreError

__all__ = ["Closable", "Periodic"]

_Self = TypeVar("_Self", bound="Periodic")


class Closable(Protocol):
    """A store whose calling thread's connection can be closed."""

    def close(self) -> None:
        """Close the calling thread's connection."""


class Periodic:
    """Runs :meth:`run_once` every ``interval`` seconds in a daemon thread called ``thread_name``."""

    thread_name = "mailtrack-periodic"

    def __init__(self, store: Closable, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> object:
        """One run; never raises (a subclass logs and counts its failures)."""
        raise NotImplementedError

    def start(self: _Self) -> _Self:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the run in progress (each of its transactions is whole: nothing is left half done)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.run_once()
                self._stop.wait(self.interval)
        finally:
            try:
                self.store.close()
            except StoreError:  # pragma: no cover - closing a connection hardly fails
                pass
