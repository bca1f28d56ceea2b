"""``mailtrack serve`` with its store writes skipped: the ceiling the request path allows, whatever the store.

Run as ``python no_store_serve.py SERVE-ARGUMENTS...``: the same command line as ``mailtrack serve``, the same
server, endpoints, token checks, event building and recorder (``--writer thread`` forced, so the skip happens in
this process), but ``SQLiteStore.record_many``/``record`` return the events as stored (first = True) without
touching the database, and the stats rolls roll nothing. Benchmark-only (``bench_serve.py --no-store-contender``):
it answers what the durable server spends beyond its store, i.e. how close to the static GIF any store could get.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from mailtrack.cli import main
from mailtrack.events import TrackingEvent
from mailtrack.storage import sqlite
from mailtrack.storage.sqlite import SQLiteStore


def _record_many(self: SQLiteStore, events: Sequence[TrackingEvent], outbox: Sequence[str] = ()) -> list[TrackingEvent]:
    return [sqlite._flagged(event, True) for event in events]


def _record(self: SQLiteStore, event: TrackingEvent, outbox: Sequence[str] = ()) -> TrackingEvent:
    return sqlite._flagged(event, True)


def _roll(self: SQLiteStore, *args: Any, **kwargs: Any) -> int:
    return 0


if __name__ == "__main__":
    SQLiteStore.record_many = _record_many  # type: ignore[method-assign]
    SQLiteStore.record = _record  # type: ignore[method-assign]
    SQLiteStore.roll = _roll  # type: ignore[method-assign]
    sys.exit(main(["serve", *sys.argv[1:], "--writer", "thread"]))
