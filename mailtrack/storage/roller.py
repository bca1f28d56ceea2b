"""The background roller: keeps a store's stats rollups caught up with its events, off the request path.

``record()`` writes an event and its indexes only (one short transaction per
event, or per group commit); adding events to the stats rollups is the store's
``roll()``, batched. ``mailtrack serve`` runs a :class:`Roller` so that stats
reads (which roll first, and count whatever they cannot roll themselves) seldom
find more than half a second of events waiting. Started and stopped like
:class:`~mailtrack.delivery.webhooks.WebhookDelivery`.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol, runtime_checkable

from mailtrack.storage.base import StoreUnavailable
from mailtrack.storage.periodic import Periodic

__all__ = ["Rollable", "Roller"]

log = logging.getLogger("mailtrack")


@runtime_checkable
class Rollable(Protocol):
    """A store with rollups to catch up (:meth:`mailtrack.storage.sqlite.SQLiteStore.roll`).

    Runtime-checkable so that ``mailtrack serve`` starts a :class:`Roller` only for such a store: a
    :class:`~mailtrack.storage.postgres.PostgresStore` writes its rollups in each event's transaction and has
    no ``roll``.
    """

    def roll(self, max_events: int | None = None) -> int:
        """Add stored events not yet in the rollups (at most ``max_events``); how many were added."""

    def close(self) -> None:
        """Close the calling thread's connection."""


class Roller(Periodic):
    """Rolls ``store`` every ``interval`` seconds in a daemon thread, ``chunk`` events per call until caught up.

    A store that cannot be written now (:class:`StoreUnavailable`: locked,
    read-only, disk full) is tried again at the next interval; the failure is
    logged once when it starts, then summarized (with a count) at most every
    ``log_every`` seconds, and its end is logged. Any other error is logged
    with its traceback and retried the same way: the thread only ends at
    :meth:`stop`.
    """

    thread_name = "mailtrack-roller"

    def __init__(self, store: Rollable, *, interval: float = 0.5, chunk: int = 10_000, log_every: float = 60.0) -> None:
        super().__init__(store, interval)
        self.store: Rollable = store
        self.chunk = chunk
        self.log_every = log_every
        #: Events rolled by this roller, and failed attempts (for /healthz-style reports and tests).
        self.rolled = 0
        self.failures = 0
        self._failing_since: float | None = None
        self._unlogged = 0
        self._outage_failures = 0
        self._logged_at = 0.0

    def run_once(self) -> int:
        return self.roll_once()

    def roll_once(self, *, steps: int | None = None) -> int:
        """Roll until caught up (or stopped, or after ``steps`` calls of ``roll(chunk)``); how many events.

        Never raises: failures are logged and counted. With ``steps``, a
        result of ``steps * chunk`` means more may be waiting (the store's
        writer process rolls one step between two batches of events, so that
        no batch waits for a whole catch-up).
        """
        done = 0
        calls = 0
        try:
            while not self._stop.is_set() and (steps is None or calls < steps):
                rolled = self.store.roll(self.chunk)
                calls += 1
                done += rolled
                self.rolled += rolled
                if rolled < self.chunk:
                    break
        except StoreUnavailable as exc:
            self._failed(str(exc) or type(exc).__name__)
            return done
        except Exception:
            self.failures += 1
            log.exception("mailtrack: rolling the stats rollups failed; retrying in %.1f s", self.interval)
            return done
        if self._failing_since is not None:
            log.warning("mailtrack: stats rollups caught up again after %.1f s (%d failed attempts)",
                        time.monotonic() - self._failing_since, self._outage_failures)
            self._failing_since = None
            self._unlogged = self._outage_failures = 0
        return done

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self._outage_failures += 1
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            self._logged_at = now
            self._unlogged = 0
            log.warning("mailtrack: stats rollups cannot be rolled now (%s); retrying every %.1f s (stats stay exact, "
                        "reads count the unrolled events)", reason, self.interval)
        else:
            self._unlogged += 1
        if now - self._logged_at >= self.log_every and self._unlogged:
            log.warning("mailtrack: stats rollups still cannot be rolled (%d failed attempts in the last %.0f s): %s",
                        self._unlogged, now - self._logged_at, reason)
            self._logged_at = now
            self._unlogged = 0
