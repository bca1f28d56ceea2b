"""The background purger: ``mailtrack serve --purge-after 90d`` deletes events older than that, once an hour.

It calls the store's :meth:`~mailtrack.storage.base.EventStore.purge`, which
deletes in short transactions (the server's event writes wait milliseconds,
not the whole purge), keeps the stats rollups, and drops the outbox rows and
first-event keys of the deleted events. Run by the first worker only, like
the webhook deliveries and the roller. Started and stopped like
:class:`~mailtrack.storage.roller.Roller`; it never raises: a store that
cannot be written now is tried again at the next interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mailtrack.exceptions import ConfigurationError
from mailtrack.storage.base import Erased, EventStore, StoreError
from mailtrack.storage.periodic import Periodic

__all__ = ["PURGE_INTERVAL", "Purger"]

log = logging.getLogger("mailtrack")
#: Seconds between two purges by ``mailtrack serve`` (the first runs at start).
PURGE_INTERVAL = 3600.0


class Purger(Periodic):
    """Deletes ``store``'s events older than ``older_than`` seconds every ``interval`` seconds, in a daemon thread.

    ``clock`` gives the current Unix time (tests move it). ``purged`` adds up
    what every run deleted; ``runs`` counts the runs that finished.
    """

    thread_name = "mailtrack-purger"

    def __init__(self, store: EventStore, older_than: float, *, interval: float = PURGE_INTERVAL,
                 clock: Callable[[], float] = time.time) -> None:
        if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or not 0 < older_than < float("inf"):
            raise ConfigurationError(f"older_than must be a positive number of seconds, not {older_than!r}")
        super().__init__(store, interval)
        self.store: EventStore = store
        self.older_than = float(older_than)
        self.clock = clock
        self.purged = Erased()
        self.runs = 0

    def run_once(self) -> Erased:
        return self.purge_once()

    def purge_once(self) -> Erased:
        """One purge now; what it deleted (nothing when the store could not be written: logged, tried next time)."""
        try:
            erased = self.store.purge(self.clock() - self.older_than)
        except StoreError as exc:
            log.warning("mailtrack: purging events older than %g s failed (%s); trying again in %g s",
                        self.older_than, exc, self.interval)
            return Erased()
        except Exception:
            log.exception("mailtrack: purging events failed; trying again in %g s", self.interval)
            return Erased()
        self.runs += 1
        self.purged += erased
        if erased.events:
            log.info("mailtrack: purged %d event(s) older than %g s (%d webhook deliveries, %d first-event keys)",
                     erased.events, self.older_than, erased.outbox, erased.firsts)
        return erased
