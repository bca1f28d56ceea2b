"""What the stats rollups cost the write path, what rolling them costs, and the stats reads when caught up.

Run from the repository root (one code version per run; point ``PYTHONPATH`` at the checkout to measure)::

    .venv/bin/python benchmarks/bench_rollups.py --record 3000              # record() one by one (+ roll())
    .venv/bin/python benchmarks/bench_rollups.py --stats-store COPY.sqlite  # + stats first pages on a big store

Three figures:

- ``record()`` one event at a time into a fresh store: events of 500
  messages, 2 metadata pairs (campaign, variant) and 2 tags each, half opens,
  half clicks (each event belongs to about 22 rollup cells). Before the roller,
  ``record()`` upserted every cell in the event's own transaction; now it writes
  the event and its indexes only.
- ``roll()`` over what was recorded (code that has it): events rolled per
  second, in its default batches, and the same over a backlog of events of
  10,000 distinct messages (little aggregation: most cells are one event's).
- ``--stats-store``: the first page (limit 100) of ``stats_page`` for every
  ``group_by`` x filter of ``bench_events_api.stats_combinations`` on a big
  store (give a *copy*: it is migrated in place when its schema is older),
  median of ``--repeat`` calls after one warm-up, when the rollups are caught up.

No threshold is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_events_api import _query, median_ms, stats_combinations  # noqa: E402

from mailtrack.events import TrackingEvent  # noqa: E402
from mailtrack.storage.base import EventQuery  # noqa: E402
from mailtrack.storage.sqlite import SQLiteStore  # noqa: E402

DAY0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


def events(n: int, messages: int, offset: int = 0) -> list[TrackingEvent]:
    """``n`` events over ``messages`` messages: 2 metadata pairs and 2 tags each, opens and clicks alternating."""
    return [TrackingEvent(event_type=["opened", "clicked"][i % 2], message_id=f"m{(i + offset) % messages}",
                          recipient=f"r{i + offset}@x", url="https://e/x" if i % 2 else None,
                          timestamp=DAY0 + timedelta(minutes=i + offset),
                          metadata={"campaign": f"c{i % 20}", "variant": "ab"[i % 2]}, tags=("t1", "t2"))
            for i in range(n)]


def record_figures(n: int) -> list[str]:
    """``record()`` one by one, then ``roll()`` (when the code has it) of those events and of a wide backlog."""
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "events.sqlite")
        batch = events(n, 500)
        start = time.perf_counter()
        for event in batch:
            store.record(event)
        took = time.perf_counter() - start
        lines.append(f"- record(): {n:,} events one by one in {took:.2f} s: {took / n * 1e3:.3f} ms per event, "
                     f"{n / took:,.0f} events/s")
        roll = getattr(store, "roll", None)
        if roll is None:
            lines.append("- roll(): not in this code (rollups kept inside record())")
        else:
            start = time.perf_counter()
            rolled = roll()
            took = time.perf_counter() - start
            lines.append(f"- roll(): {rolled:,} events (500 messages) in {took:.3f} s: {rolled / took:,.0f} events/s")
            wide = events(n, 10_000, offset=n)
            for event in wide:
                store.record(event)
            start = time.perf_counter()
            rolled = roll()
            took = time.perf_counter() - start
            lines.append(f"- roll(): {rolled:,} events (10,000 messages: most cells one event's) in {took:.3f} s: "
                         f"{rolled / took:,.0f} events/s")
        store.close()
    return lines


def stats_figures(path: Path, repeat: int) -> list[str]:
    """The first stats page of every group_by x filter on the store at ``path`` (caught up)."""
    start = time.perf_counter()
    store = SQLiteStore(path)
    opened = time.perf_counter() - start
    lines = [f"- stats store: {path} ({store.count():,} events, schema v{store.version}, opened in {opened:.1f} s)", "",
             "| group_by | filter | groups | page ms |", "|---|---|---:|---:|"]
    pages = []
    for group_by in ("day", "campaign", "message", "link", "tag"):
        for label, params in stats_combinations():
            account = params.get("account")
            query = _query({k: v for k, v in params.items() if k != "account"})
            if account is not None:
                query = EventQuery(**{**query.__dict__, "account": account})
            groups = len(store.stats_page(query, group_by, limit=100).rows)  # type: ignore[arg-type]
            ms = median_ms(lambda q=query, g=group_by: store.stats_page(q, g, limit=100), repeat)  # type: ignore[misc]
            pages.append(ms)
            lines.append(f"| {group_by} | {label} | {groups:,} | {ms:.2f} |")
    lines += ["", f"- first pages: median {statistics.median(pages):.2f} ms, sum {sum(pages):.1f} ms, "
                  f"slowest {max(pages):.1f} ms"]
    store.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--record", type=int, default=3000, help="events recorded one by one (default 3,000)")
    parser.add_argument("--stats-store", type=Path, default=None, help="a COPY of a big store: time stats pages on it")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per stats figure, median taken")
    args = parser.parse_args(argv)
    lines = record_figures(args.record)
    if args.stats_store is not None:
        lines += stats_figures(args.stats_store, args.repeat)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
