"""The stats rollups kept by ``SQLiteStore.roll`` (batched, above a watermark) instead of inside ``record()``.

The oracles: tests/data/v6_store.sqlite, whose rollups were written by the v6
code one event at a time inside ``record()`` (made by tests/data/make_v6_store.py),
and the brute-force stats of test_queries.py.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrack.events import EventType, TrackingEvent
from mailtrack.exceptions import ArgumentError
from mailtrack.storage.base import GROUP_BYS, EventQuery, StoreUnavailable
from mailtrack.storage.roller import Roller
from mailtrack.storage.sqlite import MIGRATIONS, SQLiteStore
from tests.unit.storage.test_queries import DAY0, all_stats_pages, brute_stats, event_st, query_st

pytestmark = pytest.mark.path_independent  # storage only: checked in conftest.py

V6_STORE = Path(__file__).resolve().parents[2] / "data" / "v6_store.sqlite"
QUERIES = [EventQuery(), EventQuery(metadata=(("campaign", "spring"),)), EventQuery(tag="news"),
           EventQuery(message_id="<m2@example.com>"), EventQuery(event_type=EventType.CLICKED),
           EventQuery(since=DAY0.timestamp() + 86400, until=DAY0.timestamp() + 3 * 86400),
           EventQuery(since=DAY0.timestamp() + 30000, until=DAY0.timestamp() + 3 * 86400 + 4000),
           EventQuery(metadata=(("campaign", "fall"),), tag="promo"), EventQuery(metadata=(("n", "1"), ("variant", "b"))),
           EventQuery(recipient="r1@x"), EventQuery(account=""), EventQuery(account="sub1", tag="news")]


def rollup_tables(path: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of both rollup tables, sorted (rows whose counts are all zero left out: they count nothing)."""
    with sqlite3.connect(path) as raw:
        return {table: sorted(row for row in raw.execute(f"SELECT * FROM {table}") if any(row[-7:]))
                for table in ("rollup_days", "rollup_totals")}


def watermark(path: str | Path) -> int:
    with sqlite3.connect(path) as raw:
        return int(raw.execute("SELECT rolled FROM rollup_state").fetchone()[0])


def assert_stats_exact(store: SQLiteStore, stored: list[TrackingEvent], queries: list[EventQuery],
                       limit: int = 3) -> None:
    """grouped_stats and its pages, for every group_by and two campaign keys, equal brute force over ``stored``."""
    for query in queries:
        for group_by in GROUP_BYS:
            for campaign_key in ("campaign", "n"):
                expected = brute_stats(stored, query, group_by, campaign_key)
                got = [row.to_dict() for row in store.grouped_stats(query, group_by, campaign_key=campaign_key)]
                assert got == expected, (query, group_by, campaign_key)
                pages = [row.to_dict() for row in all_stats_pages(store, query, group_by, campaign_key, limit)]
                assert pages == sorted(expected, key=lambda row: row["key"]), (query, group_by, campaign_key)


@pytest.fixture
def v6_copy(tmp_path: Path) -> Path:
    path = tmp_path / "v6.sqlite"
    path.write_bytes(V6_STORE.read_bytes())
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 6
    return path


@pytest.fixture
def old_events(v6_copy: Path) -> list[TrackingEvent]:
    store = SQLiteStore(v6_copy)
    try:
        return store.events()
    finally:
        store.close()


def test_record_leaves_the_rollups_to_roll(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.sqlite")
    for i in range(5):
        store.record(TrackingEvent(event_type="opened", message_id=f"m{i}", recipient="a@x", timestamp=DAY0,
                                   metadata={"campaign": "c"}, tags=("t",)))
    assert rollup_tables(store.path) == {"rollup_days": [], "rollup_totals": []}
    assert (watermark(store.path), store.unrolled()) == (0, 5)
    # the indexes stay in the event's write: find() by tag and metadata needs no roll
    assert len(store.find(EventQuery(tag="t", metadata=(("campaign", "c"),))).events) == 5
    assert store.roll(max_events=2) == 2
    assert (watermark(store.path), store.unrolled()) == (2, 3)
    assert store.roll() == 3
    assert store.roll() == 0
    assert (watermark(store.path), store.unrolled()) == (5, 0)
    [row] = store.grouped_stats(EventQuery(), "campaign")
    assert (row.key, row.opens, row.unique_opens) == ("c", 5, 5)
    store.close()


def test_rolled_in_batches_equals_one_roll_equals_the_v6_per_event_rollups(tmp_path: Path,
                                                                           old_events: list[TrackingEvent],
                                                                           v6_copy: Path) -> None:
    """The same 150 events: the v6 code's rollups (one upsert per cell per event, in record()) are the oracle."""
    assert len(old_events) == 150
    expected = rollup_tables(v6_copy)
    assert len(expected["rollup_days"]) > 500
    ways = {"one roll": {}, "batch=1": {"batch": 1}, "batch=7": {"batch": 7}, "interleaved": {}}
    for name, kwargs in ways.items():
        store = SQLiteStore(tmp_path / f"{name}.sqlite")
        early = 0
        for i, event in enumerate(old_events):
            stored = store.record(event.with_first(False))
            assert stored.first == event.first  # first recomputed as v6 decided it
            if name == "interleaved" and i % 23 == 22:
                early += store.roll(max_events=11, batch=4)  # rolls lag behind the writes, in odd steps
        assert early == (66 if name == "interleaved" else 0)
        assert store.roll(**kwargs) == 150 - early
        assert store.unrolled() == 0 and watermark(store.path) == 150
        assert rollup_tables(store.path) == expected, name
        store.close()


def test_a_cell_cap_cuts_a_batch_short_and_the_rest_follows(tmp_path: Path, old_events: list[TrackingEvent],
                                                            v6_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mailtrack.storage.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "ROLL_CELLS", 40)  # a few events' cells per transaction
    monkeypatch.setattr(sqlite_module, "_ROLL_CHUNK", 3)
    store = SQLiteStore(tmp_path / "capped.sqlite")
    for event in old_events:
        store.record(event.with_first(False))
    marks = []
    while store.unrolled():
        store.roll(max_events=1000)  # one call rolls everything, in many small transactions
        marks.append(watermark(store.path))
    assert marks == [150]
    assert rollup_tables(store.path) == rollup_tables(v6_copy)
    store.close()


def test_a_v6_store_written_by_the_old_code_upgrades_to_v7(v6_copy: Path, old_events: list[TrackingEvent]) -> None:
    """Migration 7 on the v6 file: the watermark at the highest id (v6 rolled every event), rollups untouched."""
    before = rollup_tables(v6_copy)
    store = SQLiteStore(v6_copy)
    try:
        assert store.version == len(MIGRATIONS) == 10
        assert watermark(v6_copy) == 150 and store.unrolled() == 0
        assert store.roll() == 0  # nothing rolled twice
        assert rollup_tables(v6_copy) == before
        assert_stats_exact(store, old_events, QUERIES)
        # events recorded after the upgrade join the same rollups
        for i in range(30):
            store.record(TrackingEvent(event_type=["opened", "clicked"][i % 2], message_id=f"<m{i % 4}@example.com>",
                                       recipient=f"r{i % 3}@x", url="https://e.com/9" if i % 2 else None,
                                       timestamp=DAY0.replace(day=2), metadata={"campaign": "spring", "n": 1},
                                       tags=("news",), account=None if i % 3 else "sub1"))
        assert store.unrolled() == 30
        assert_stats_exact(store, store.events(), QUERIES)
        assert store.unrolled() == 0 and watermark(v6_copy) == 180
    finally:
        store.close()


def hold_write_lock(path: str | Path) -> sqlite3.Connection:
    """Another connection holding the database's write lock (what a long writer in another process does)."""
    raw = sqlite3.connect(path, isolation_level=None, timeout=5)
    raw.execute("BEGIN IMMEDIATE")
    return raw


@settings(max_examples=40, deadline=None)
@given(events=st.lists(event_st, min_size=1, max_size=40), rolled=st.integers(0, 40),
       queries=st.lists(query_st, min_size=1, max_size=3), limit=st.integers(1, 5))
def test_stats_stay_exact_when_the_reader_cannot_roll(tmp_path_factory: pytest.TempPathFactory,
                                                      events: list[TrackingEvent], rolled: int,
                                                      queries: list[EventQuery], limit: int) -> None:
    """Part of the events rolled, the rest not, and the database locked: reads add the unrolled tail themselves."""
    path = tmp_path_factory.mktemp("tail") / "events.sqlite"
    store = SQLiteStore(path, busy_timeout=0.02)
    try:
        for event in events:
            store.record(event)
        if rolled:
            store.roll(max_events=rolled, batch=3)
        stored = store.events()
        unrolled = store.unrolled()
        assert unrolled == max(0, len(events) - rolled)
        locker = hold_write_lock(path)
        try:
            if unrolled:
                with pytest.raises(StoreUnavailable):
                    store.roll()  # roll() waits for the busy timeout, then gives up
            assert_stats_exact(store, stored, queries, limit)  # reads do not wait: they count the tail
            assert store.unrolled() == unrolled  # answered without writing
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert_stats_exact(store, stored, queries[:1], limit)  # now it rolls first
        assert store.unrolled() == 0
    finally:
        store.close()


def test_paged_candidate_messages_include_messages_only_the_tail_has(tmp_path: Path) -> None:
    """group_by message under two conditions pages the candidates from the rollups' pair rows: unrolled ones too."""
    store = SQLiteStore(tmp_path / "events.sqlite", busy_timeout=0.02)
    for i, message in enumerate(["m1", "m3", "m2", "m4", "m0"]):
        store.record(TrackingEvent(event_type="opened", message_id=message, recipient=f"r{i}@x", timestamp=DAY0,
                                   metadata={"campaign": "spring", "variant": "b"}, tags=("news",)))
        if i == 1:
            store.roll()  # m1 and m3 rolled; m2, m4 and m0 only in the tail
    stored = store.events()
    locker = hold_write_lock(store.path)
    try:
        for query in (EventQuery(metadata=(("campaign", "spring"),), tag="news"),
                      EventQuery(metadata=(("campaign", "spring"), ("variant", "b")))):
            pages = all_stats_pages(store, query, "message", "campaign", 2)
            assert [row.key for row in pages] == ["m0", "m1", "m2", "m3", "m4"]
            assert [row.to_dict() for row in pages] == brute_stats(stored, query, "message", "campaign")
        assert store.unrolled() == 3
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    store.close()


def test_roll_arguments(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.sqlite")
    for bad in ({"max_events": 0}, {"max_events": True}, {"max_events": "5"}, {"batch": 0}, {"batch": 1.5}):
        with pytest.raises(ArgumentError):
            store.roll(**bad)  # type: ignore[arg-type]
    assert store.roll() == 0
    store.close()


# -- several processes ---------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    from datetime import datetime, timedelta, timezone
    from mailtrack.events import TrackingEvent
    from mailtrack.storage.base import StoreUnavailable
    from mailtrack.storage.sqlite import SQLiteStore
    path, number, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = SQLiteStore(path)
    day0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
    for i in range(count):
        kind = ["opened", "clicked", "unsubscribed", "opened"][i % 4]
        event = TrackingEvent(event_type=kind, message_id=f"m{(i + number) % 9}", recipient=f"r{i % 6}@x",
                              url=f"https://e/{i % 3}" if kind == "clicked" else None,
                              timestamp=day0 + timedelta(hours=3 * i + number),
                              metadata={"campaign": f"c{number % 2}", "proc": number}, tags=("t", f"p{number}"),
                              account=None if i % 5 else "sub1")
        deadline = time.monotonic() + 60
        while True:
            try:
                store.record(event)  # as the recorder would: busy now, written later (the spool's job)
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    store.close()
""")

ROLLER = textwrap.dedent("""
    import os, sys, time
    from mailtrack.storage.base import StoreUnavailable
    from mailtrack.storage.sqlite import SQLiteStore
    path, stop = sys.argv[1], sys.argv[2]
    store = SQLiteStore(path)
    rolled = rounds = 0
    while True:
        done = os.path.exists(stop)
        try:
            rolled += store.roll(batch=17)
            rounds += 1
        except StoreUnavailable:
            time.sleep(0.01)
            continue
        if done:
            break
        time.sleep(0.005)
    print(rolled, rounds)
""")


def test_processes_recording_while_another_rolls_stay_exact(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    SQLiteStore(path).close()
    stop = tmp_path / "stop"
    env_path = str(Path(__file__).resolve().parents[3])
    env = {"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}
    roller = subprocess.Popen([sys.executable, "-c", ROLLER, str(path), str(stop)], stdout=subprocess.PIPE, text=True,
                              env=env)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), "120"], env=env) for n in range(3)]
    try:
        for writer in writers:
            assert writer.wait(timeout=120) == 0
        stop.touch()
        out, _ = roller.communicate(timeout=60)
    finally:
        for process in (*writers, roller):
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert roller.returncode == 0
    rolled, rounds = map(int, out.split())
    store = SQLiteStore(path)
    try:
        assert store.count() == 360 and rolled == 360 and store.unrolled() == 0
        assert rounds > 1
        stored = store.events()
        # one roll of the same events, in the order they were stored, is the reference
        reference = SQLiteStore(tmp_path / "reference.sqlite")
        for event in stored:
            assert reference.record(event.with_first(False)).first == event.first
        reference.roll()
        assert rollup_tables(path) == rollup_tables(reference.path)
        reference.close()
        assert_stats_exact(store, stored, [EventQuery(), EventQuery(tag="p1"), EventQuery(metadata=(("campaign", "c0"),)),
                                           EventQuery(account="sub1", event_type=EventType.CLICKED)], limit=4)
    finally:
        store.close()


# -- the background roller -------------------------------------------------------------------------

def test_the_background_roller_keeps_up_and_stops(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.sqlite")
    roller = Roller(store, interval=0.05, chunk=7).start()
    try:
        for i in range(60):
            store.record(TrackingEvent(event_type="opened", message_id=f"m{i % 4}", recipient=f"r{i}@x", timestamp=DAY0,
                                       metadata={"campaign": "c"}))
        deadline = time.monotonic() + 30
        while store.unrolled() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.unrolled() == 0 and roller.rolled == 60 and roller.failures == 0
    finally:
        roller.stop()
    assert roller._thread is not None and not roller._thread.is_alive()
    store.close()


class _Failing:
    """A store whose roll fails as told (the roller's error handling, without a database to break)."""

    def __init__(self, errors: list[BaseException | int]) -> None:
        self.errors = errors
        self.closed = 0

    def roll(self, max_events: int | None = None) -> int:
        outcome = self.errors.pop(0) if self.errors else 0
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def close(self) -> None:
        self.closed += 1


def test_the_roller_logs_an_outage_once_then_its_end(caplog: pytest.LogCaptureFixture) -> None:
    store = _Failing([StoreUnavailable("locked"), StoreUnavailable("locked"), StoreUnavailable("locked"), 5, 0])
    roller = Roller(store, chunk=10)
    with caplog.at_level(logging.WARNING, logger="mailtrack"):
        assert [roller.roll_once() for _ in range(4)] == [0, 0, 0, 5]
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert "cannot be rolled now (locked)" in messages[0]
    assert "caught up again" in messages[1] and "3 failed attempts" in messages[1]
    assert roller.failures == 3 and roller.rolled == 5
    # a long outage: summarized (with a count) every log_every seconds, not once per attempt
    caplog.clear()
    roller = Roller(_Failing([StoreUnavailable("read-only")] * 4), log_every=0.0)
    with caplog.at_level(logging.WARNING, logger="mailtrack"):
        for _ in range(4):
            roller.roll_once()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 4 and all("still cannot be rolled (1 failed attempts" in m for m in messages[1:]), messages


def test_the_roller_survives_an_unexpected_error(caplog: pytest.LogCaptureFixture) -> None:
    store = _Failing([RuntimeError("boom"), 10, 3])
    roller = Roller(store, chunk=10)
    with caplog.at_level(logging.ERROR, logger="mailtrack"):
        assert roller.roll_once() == 0
        assert roller.roll_once() == 13  # a full chunk: it rolls on until a short one
    assert "rolling the stats rollups failed" in caplog.records[0].getMessage()
    roller.start()
    roller.stop()
    assert store.closed == 1  # the thread closes its connection when it ends

