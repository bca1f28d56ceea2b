"""The Events API on a big store: first pages of filtered queries and the stats group-bys, against the floor.

Run from the repository root::

    .venv/bin/python benchmarks/bench_events_api.py            # 1,000,000 events -> benchmarks/results/events_api.md
    .venv/bin/python benchmarks/bench_events_api.py --quick    # 50,000 events (smoke) -> results/events_api-quick.md

The store is built fast, not through ``record()``: rows go straight into a
schema-v3 database (``first`` decided as ``record()`` decides it) and opening
it with :class:`SQLiteStore` runs the events migration, whose backfill builds
the tag and metadata indexes and the rollups (that build is timed and
reported too). The events are spread, seeded, over 90 days, 20,000 messages of
20 campaigns, 50,000 recipients (one in 50 events without one), 8 tags and 5
links per campaign; 60 % opens, 35 % clicks, 5 % unsubscribes.

Timed, each the median of ``--repeat`` calls (milliseconds): for each filtered
query, the first page of 100 through ``SQLiteStore.find`` and through the whole
sans-IO ``GET /v1/events`` (``EventsApi.handle``: parsing, query, JSON), and the
floor: the same 100 rows read by primary key with a bare ``SELECT`` (what any
answer costs at least); the ratio is API over floor. Then ``GET /v1/stats`` for
every ``group_by`` and every kind of filter (see :func:`stats_combinations`):
the first page, the whole answer, and a primary-key read of as many rollup rows
as the floor. ``--store PATH`` keeps the built store for the next run (a
store of an older schema is migrated on open, and that is timed). No threshold
is asserted here: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.report import header  # noqa: E402

import mailtrack  # noqa: E402
from mailtrack.http.events_api import EventsApi  # noqa: E402
from mailtrack.http.messages import Request  # noqa: E402
from mailtrack.storage.base import EventQuery  # noqa: E402
from mailtrack.storage.sqlite import _COLUMNS, _V3_COLUMNS, MIGRATIONS, SQLiteStore  # noqa: E402

DAY = 86400
START = 1_709_251_200  # 2024-03-01T00:00:00Z
DAYS = 90
MESSAGES, CAMPAIGNS, RECIPIENTS, TAGS, LINKS = 20_000, 20, 50_000, 8, 5


def build(path: Path, n: int, seed: int = 7) -> float:
    """A schema-v3 database of ``n`` events at ``path``; returns the seconds the events migration took on it."""
    rng = random.Random(seed)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for script in MIGRATIONS[:3]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 3")
    seen: set[tuple[str, str, str]] = set()
    rows = []
    step = DAYS * DAY / n
    for i in range(n):
        message = rng.randrange(MESSAGES)
        campaign = message % CAMPAIGNS
        kind = rng.choices(("opened", "clicked", "unsubscribed"), (60, 35, 5))[0]
        recipient = "" if rng.random() < 0.02 else f"r{rng.randrange(RECIPIENTS)}@example.com"
        link = rng.randrange(LINKS)
        url = f"https://shop.example.com/c{campaign}/p{link}" if kind == "clicked" else None
        first = (kind, f"m{message}", recipient) not in seen
        seen.add((kind, f"m{message}", recipient))
        tags = sorted({f"t{campaign % TAGS}", f"t{(campaign * 3 + 1) % TAGS}"})
        stamp = START + i * step + rng.uniform(-60, 60)
        rows.append((f"e{i:08d}", kind, stamp, f"m{message}", recipient, url, link if url else None, "Mozilla/5.0",
                     "192.0.2.1", None, json.dumps({"campaign": f"c{campaign}", "variant": "ab"[message % 2]},
                                                   separators=(",", ":"), sort_keys=True),
                     int(first), None, json.dumps(tags, separators=(",", ":"))))
        if len(rows) == 50_000:
            _insert(db, rows)
    _insert(db, rows)
    db.close()
    start = time.perf_counter()
    SQLiteStore(path).close()  # the events migration: indexes, event_tags, event_meta, link_firsts, rollups
    return time.perf_counter() - start


def _insert(db: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO events ({_V3_COLUMNS}) VALUES ({', '.join('?' * 14)})", rows)
    db.execute("COMMIT")
    rows.clear()


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm the page cache and the statement cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1e6


def queries() -> list[tuple[str, dict[str, str]]]:
    mid = str(START + 45 * DAY)
    return [
        ("no filter", {}),
        ("message_id", {"message_id": "m1234"}),
        ("recipient", {"recipient": "r4242@example.com"}),
        ("no recipient", {"recipient": ""}),
        ("type=clicked", {"type": "clicked"}),
        ("type=unsubscribed", {"type": "unsubscribed"}),
        ("since: last 7 days", {"since": str(START + (DAYS - 7) * DAY)}),
        ("one old day (since+until)", {"since": str(START + 10 * DAY), "until": str(START + 11 * DAY)}),
        ("until: first half", {"until": mid}),
        ("campaign (metadata)", {"metadata.campaign": "c7"}),
        ("tag", {"tag": "t3"}),
        ("tag + type", {"tag": "t3", "type": "unsubscribed"}),
        ("campaign + type + since", {"metadata.campaign": "c7", "type": "clicked", "since": mid}),
        ("campaign + variant", {"metadata.campaign": "c7", "metadata.variant": "b"}),
        ("message + type", {"message_id": "m1234", "type": "opened"}),
    ]


def stats_combinations() -> list[tuple[str, dict[str, str]]]:
    """Every kind of filter ``/v1/stats`` takes, alone and in the combinations the rollups serve or bound."""
    day10, day11, day40 = (str(START + d * DAY) for d in (10, 11, 40))
    return [
        ("none", {}),
        ("campaign c7", {"metadata.campaign": "c7"}),
        ("variant b (another metadata key)", {"metadata.variant": "b"}),
        ("tag t3", {"tag": "t3"}),
        ("message m1234", {"message_id": "m1234"}),
        ("type=clicked", {"type": "clicked"}),
        ("whole days 10..40", {"since": day10, "until": day40}),
        ("sub-day since/until", {"since": str(START + 10 * DAY + 4000), "until": str(START + 40 * DAY + 5000)}),
        ("one partial day", {"since": str(START + 10 * DAY + 4000), "until": str(START + 10 * DAY + 40000)}),
        ("campaign + type + whole days", {"metadata.campaign": "c7", "type": "opened", "since": day10, "until": day11}),
        ("campaign + sub-day since", {"metadata.campaign": "c7", "since": str(START + 80 * DAY + 3600)}),
        ("campaign + tag", {"metadata.campaign": "c7", "tag": "t7"}),
        ("campaign + variant", {"metadata.campaign": "c7", "metadata.variant": "b"}),
        ("message + campaign", {"message_id": "m1234", "metadata.campaign": "c14"}),
        ("recipient (index-bounded)", {"recipient": "r4242@example.com"}),
        ("account '' (the parent)", {"account": ""}),
    ]


def stats_lines(store: SQLiteStore, api: EventsApi, raw: sqlite3.Connection, repeat: int) -> list[str]:
    """``GET /v1/stats`` for every group_by x filter: the first page (limit 100), the whole answer, and the floor."""
    lines = ["", "## `GET /v1/stats` (every group_by x filter)", "",
             "The first page (limit 100) through `GET /v1/stats`; the whole answer through `grouped_stats()` (every "
             "group, what the dashboard calls); the floor: as many rollup rows read by primary key with a bare "
             "`SELECT` as the page has groups.", "",
             "| group_by | filter | groups (page / all) | page ms | all ms | floor ms | page / floor |",
             "|---|---|---:|---:|---:|---:|---:|"]
    worst = 0.0
    for group_by in ("day", "campaign", "message", "link", "tag"):
        for label, params in stats_combinations():
            account = params.get("account")
            request = Request("GET", "/v1/stats", query=urlencode({**{k: v for k, v in params.items() if k != "account"},
                                                                    "group_by": group_by, "limit": "100"}))
            response = api.handle(request)
            assert response.status == 200, response.body
            groups = len(json.loads(response.body)["data"])
            query = _query({k: v for k, v in params.items() if k != "account"})
            if account is not None:
                query = EventQuery(**{**query.__dict__, "account": account})
                page_ms = median_ms(lambda q=query, g=group_by: store.stats_page(q, g, limit=100), repeat)
            else:
                page_ms = median_ms(lambda request=request: api.handle(request), repeat)
            whole = store.grouped_stats(query, group_by)  # type: ignore[arg-type]
            all_ms = median_ms(lambda q=query, g=group_by: store.grouped_stats(q, g), max(3, repeat // 4))

            def floor(count: int = max(groups, 1)) -> object:
                return raw.execute("SELECT * FROM rollup_totals WHERE account = '' AND fdim = 'message' AND gdim = 'all'"
                                   " ORDER BY fkey LIMIT ?", (count,)).fetchall()

            floor_ms = median_ms(floor, repeat)
            worst = max(worst, page_ms, all_ms)
            lines.append(f"| {group_by} | {label} | {groups:,} / {len(whole):,} | {page_ms:.2f} | {all_ms:.2f} | "
                         f"{floor_ms:.2f} | {page_ms / floor_ms:.1f} |")
    lines += ["", f"- slowest stats figure: {worst:.1f} ms"]
    return lines


def run(n: int, repeat: int, keep: Path | None = None) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        path = keep or Path(folder) / "events.sqlite"
        start = time.perf_counter()
        reused = keep is not None and keep.exists()
        if reused:
            SQLiteStore(path).close()  # an older schema is migrated (once); a current one opens at once
            migration_s = time.perf_counter() - start
        else:
            migration_s = build(path, n)
        total_s = time.perf_counter() - start
        store = SQLiteStore(path)
        api = EventsApi(store)
        raw = sqlite3.connect(path)
        size_mb = path.stat().st_size / 1e6
        if reused:
            lines += [f"- store: {store.count():,} events, {size_mb:,.0f} MB, reused from {keep} (opened, migrating "
                      f"it if its schema was older, in {migration_s:.1f} s)", ""]
        else:
            lines += [f"- store: {n:,} events, {size_mb:,.0f} MB; built in {total_s:.1f} s, of which the migrations "
                      f"(indexes and rollups backfilled) {migration_s:.1f} s", ""]
        lines += ["## First page of `GET /v1/events` (limit 100, newest first)", "",
                  "| query | rows | find() ms | GET /v1/events ms | floor ms | API / floor |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, params in queries():
            request = Request("GET", "/v1/events", query=urlencode({**params, "limit": "100"}))
            response = api.handle(request)
            assert response.status == 200, response.body
            ids = [event["event_id"] for event in json.loads(response.body)["data"]]
            query = _query(params)
            marks = ", ".join("?" * len(ids))

            def floor(ids: list[str] = ids, marks: str = marks) -> object:
                return raw.execute(f"SELECT {_COLUMNS} FROM events WHERE event_id IN ({marks}) ORDER BY id DESC",
                                   ids).fetchall() if ids else []

            find_ms = median_ms(lambda query=query: store.find(query, limit=100), repeat)
            api_ms = median_ms(lambda request=request: api.handle(request), repeat)
            floor_ms = median_ms(floor, repeat)
            lines.append(f"| {name} | {len(ids)} | {find_ms:.2f} | {api_ms:.2f} | {floor_ms:.2f} | "
                         f"{api_ms / floor_ms:.1f} |")
        lines += stats_lines(store, api, raw, repeat)
        raw.close()
        store.close()
    return lines


def _query(params: dict[str, str]) -> EventQuery:
    from mailtrack.http.events_api import filters_query, parse_parameters

    parsed, problems = parse_parameters(urlencode(params), ("message_id", "recipient", "type", "since", "until", "tag"))
    query = filters_query(parsed, problems)
    assert query is not None, problems
    return query


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 events, 5 repeats: a smoke run")
    parser.add_argument("--events", type=int, default=None, help="events in the store (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per figure, median taken (default 21)")
    parser.add_argument("--store", type=Path, default=None,
                        help="build the store into this file once and reuse it on later runs (its migration timed)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown report (default benchmarks/results/events_api.md; events_api-quick.md with --quick)")
    args = parser.parse_args(argv)
    n = args.events or (50_000 if args.quick else 1_000_000)
    repeat = args.repeat or (5 if args.quick else 21)
    out = args.out or HERE / "results" / ("events_api-quick.md" if args.quick else "events_api.md")
    command = "python benchmarks/bench_events_api.py" + ("".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:])))
    lines = header("Events API and stats", command, "quick" if args.quick else "full",
                   f"mailtrack {mailtrack.__version__}, SQLite {sqlite3.sqlite_version}")
    lines += [f"- repeat: median of {repeat} calls per figure, after one warm-up call", ""]
    lines += run(n, repeat, args.store)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
