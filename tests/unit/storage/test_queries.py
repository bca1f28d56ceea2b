"""Filtered, paginated event queries and grouped stats of both stores, against brute force over the same events.

The reference implementations here read every event (``store.events()``) and
filter or count in Python; the store answers from its indexes and rollups.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.stores import Backend

from mailtrack.events import EventType, TrackingEvent
from mailtrack.exceptions import ArgumentError
from mailtrack.storage._shared import _V3_COLUMNS, _rollup_spec, _row
from mailtrack.storage.base import GROUP_BYS, EventQuery, StatsRow
from mailtrack.storage.sqlite import MIGRATIONS, SQLiteStore

pytestmark = pytest.mark.path_independent  # storage only: checked in conftest.py

DAY0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
MESSAGES = ["m1", "m2", "m3"]
RECIPIENTS = ["a@x", "b@x", None]
URLS = ["https://e.com/1", "https://e.com/2"]
CAMPAIGNS = [{"campaign": "spring"}, {"campaign": "fall", "n": 5}, {}, {"other": "spring"}]
TAGS = [(), ("news",), ("news", "promo")]


@pytest.fixture
def store(backend: Backend) -> Iterator[Any]:
    """A store on a fresh database of each kind."""
    store = backend.open()
    yield store
    store.close()


event_st = st.builds(
    lambda kind, m, r, u, hours, c, t, a, machine: TrackingEvent(
        event_type=kind, message_id=MESSAGES[m], recipient=RECIPIENTS[r],
        url=URLS[u] if kind == "clicked" else None, link_index=u if kind == "clicked" else None,
        timestamp=DAY0 + timedelta(hours=hours), metadata=CAMPAIGNS[m if c else 3 - m % 2], tags=TAGS[(m + c) % 3],
        account=a, machine=machine if kind == "clicked" or machine != "honeypot" else None,
        machine_reasons=("a reason",) if machine else ()),
    st.sampled_from(["opened", "clicked", "unsubscribed"]), st.integers(0, 2), st.integers(0, 2), st.integers(0, 1),
    st.floats(0, 24 * 4, allow_nan=False), st.booleans(), st.integers(0, 2), st.sampled_from([None, None, "sub1"]),
    st.sampled_from([None, None, None, "apple_mpp", "honeypot"]))

query_st = st.builds(
    EventQuery,
    message_id=st.sampled_from([None, *MESSAGES]),
    recipient=st.sampled_from([None, "a@x", ""]),
    event_type=st.sampled_from([None, *EventType]),
    since=st.sampled_from([None, DAY0.timestamp(), DAY0.timestamp() + 86400, DAY0.timestamp() + 5000]),
    until=st.sampled_from([None, DAY0.timestamp() + 3 * 86400, DAY0.timestamp() + 2 * 86400 + 77]),
    metadata=st.sampled_from([(), (("campaign", "spring"),), (("n", "5"),), (("campaign", "fall"), ("n", "5"))]),
    tag=st.sampled_from([None, "news", "promo"]),
    account=st.sampled_from([None, "", "sub1"]),
)


def matches(event: TrackingEvent, query: EventQuery) -> bool:
    """Brute force: does ``event`` satisfy ``query``?"""
    stamp = event.timestamp.timestamp()
    return ((query.message_id is None or event.message_id == query.message_id)
            and (query.recipient is None or (event.recipient or "") == query.recipient)
            and (query.event_type is None or event.event_type is query.event_type)
            and (query.since is None or stamp >= query.since) and (query.until is None or stamp < query.until)
            and all(key in event.metadata and (event.metadata[key] if isinstance(event.metadata[key], str)
                                               else str(event.metadata[key])) == value for key, value in query.metadata)
            and (query.tag is None or query.tag in event.tags)
            and (query.account is None or (event.account or "") == query.account))


def brute_stats(events: list[TrackingEvent], query: EventQuery, group_by: str, campaign_key: str) -> list[dict[str, Any]]:
    """Brute force of grouped_stats: ``events`` in recording order (``first`` and ``machine`` as stored).

    People (``machine`` None) are counted, machines beside them; ``first`` is stored (the store's to decide), the
    per-link first is the first person's click of each (account, url, message, recipient), checked here."""
    seen_links: set[tuple[str, str, str, str]] = set()
    link_first = []
    for event in events:
        key = (event.account or "", event.url or "", event.message_id, event.recipient or "")  # per account
        person_click = event.event_type is EventType.CLICKED and event.url is not None and event.machine is None
        link_first.append(person_click and key not in seen_links)
        if person_click:
            seen_links.add(key)
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * 10)
    for event, lf in zip(events, link_first, strict=True):
        if not matches(event, query):
            continue
        if group_by == "day":
            groups = [event.timestamp.strftime("%Y-%m-%d")]
        elif group_by == "message":
            groups = [event.message_id]
        elif group_by == "campaign":
            value = event.metadata.get(campaign_key)
            groups = [] if campaign_key not in event.metadata else [value if isinstance(value, str) else str(value)]
        elif group_by == "tag":
            groups = sorted(set(event.tags))
        else:
            groups = [event.url] if event.event_type is EventType.CLICKED and event.url else []
        kind, first, person = event.event_type, bool(event.first), event.machine is None
        assert not (first and not person), event  # a machine event never holds a first-event slot
        add = [kind is EventType.OPENED and person, kind is EventType.OPENED and first,
               kind is EventType.CLICKED and person, kind is EventType.CLICKED and first, lf,
               kind is EventType.UNSUBSCRIBED and person, kind is EventType.UNSUBSCRIBED and first,
               kind is EventType.OPENED and not person, kind is EventType.CLICKED and not person,
               kind is EventType.UNSUBSCRIBED and not person]
        for group in groups:
            counts[group] = [a + int(b) for a, b in zip(counts[group], add, strict=True)]
    rows = []
    for key, (o, uo, c, uc, lc, u, uu, mo, mc, mu) in counts.items():
        row = StatsRow(key, None, None, c, lc, None, None, machine_opens=None, machine_clicks=mc,
                       machine_unsubscribes=None) if group_by == "link" \
            else StatsRow(key, o, uo, c, uc, u, uu, machine_opens=mo, machine_clicks=mc, machine_unsubscribes=mu)
        if row.opens or row.clicks or row.unsubscribes or row.machine_opens or row.machine_clicks \
                or row.machine_unsubscribes:
            rows.append(row.to_dict())
    rows.sort(key=lambda r: (-r["clicks"], r["key"]) if group_by == "link" else r["key"])
    return rows


def all_pages(store: Any, query: EventQuery, limit: int) -> list[TrackingEvent]:
    found: list[TrackingEvent] = []
    before = None
    while True:
        page = store.find(query, before=before, limit=limit)
        found += page.events
        if page.next_before is None:
            return found
        assert len(page.events) == limit
        before = page.next_before


def fresh_backend(kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """A new empty database of ``kind`` (one per Hypothesis example, which a function fixture cannot give)."""
    if kind == "sqlite":
        return Backend("sqlite", path=tmp_path_factory.mktemp("q") / "events.sqlite")
    cluster = request.getfixturevalue("postgres_cluster")
    return Backend("postgres", url=cluster.url, schema=cluster.new_schema())


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@given(events=st.lists(event_st, max_size=40), queries=st.lists(query_st, min_size=1, max_size=4),
       limit=st.integers(1, 7))
def test_find_and_stats_match_brute_force(kind: str, request: pytest.FixtureRequest,
                                          tmp_path_factory: pytest.TempPathFactory, events: list[TrackingEvent],
                                          queries: list[EventQuery], limit: int) -> None:
    backend = fresh_backend(kind, request, tmp_path_factory)
    store = backend.open()
    try:
        for event in events:
            store.record(event)
        stored = store.events()
        for query in queries:
            expected = [event for event in reversed(stored) if matches(event, query)]
            assert all_pages(store, query, limit) == expected
            for group_by in GROUP_BYS:
                for campaign_key in ("campaign", "n"):
                    got = [row.to_dict() for row in store.grouped_stats(query, group_by, campaign_key=campaign_key)]
                    expected_stats = brute_stats(stored, query, group_by, campaign_key)
                    assert got == expected_stats, (query, group_by, campaign_key)
                    # the pages, concatenated, are the whole answer in key order
                    assert [row.to_dict() for row in all_stats_pages(store, query, group_by, campaign_key, limit)] \
                        == sorted(expected_stats, key=lambda row: row["key"]), (query, group_by, campaign_key, limit)
    finally:
        backend.close()


def all_stats_pages(store: Any, query: EventQuery, group_by: Any, campaign_key: str,
                    limit: int) -> list[StatsRow]:
    rows: list[StatsRow] = []
    after = None
    while True:
        page = store.stats_page(query, group_by, campaign_key=campaign_key, after=after, limit=limit)
        rows += page.rows
        if page.next_after is None:
            return rows
        assert len(page.rows) == limit and page.next_after == page.rows[-1].key
        after = page.next_after


def test_first_and_unique_counts_are_per_account(store: Any) -> None:
    """One account's events never make another's "not first" (nor tell it that the other mailed that recipient)."""
    def hit(kind: str, account: str | None) -> TrackingEvent:
        extra = {"url": "https://e.example/"} if kind == "clicked" else {}
        stored: TrackingEvent = store.record(TrackingEvent(event_type=kind, message_id="shared-id",
                                                           recipient="ann@x.example", timestamp=DAY0,
                                                           account=account, **extra))
        return stored

    assert [hit("opened", None).first, hit("opened", None).first] == [True, False]
    assert [hit("opened", "sub1").first, hit("opened", "sub1").first, hit("opened", "sub2").first] == [True, False, True]
    assert [hit("clicked", "sub1").first, hit("clicked", None).first, hit("clicked", "sub1").first] == [True, True, False]
    for account, opens, clicks in ((None, 1, 1), ("sub1", 1, 1), ("sub2", 1, 0)):
        [row] = store.grouped_stats(EventQuery(account=account or "", message_id="shared-id"), "message")
        assert (row.unique_opens, row.unique_clicks) == (opens, clicks), account


def test_each_filter(store: Any) -> None:
    a = store.record(TrackingEvent(event_type="opened", message_id="m1", recipient="a@x", timestamp=DAY0,
                                   metadata={"campaign": "spring"}, tags=("news",)))
    b = store.record(TrackingEvent(event_type="clicked", message_id="m1", recipient=None, url="https://e/",
                                   timestamp=DAY0 + timedelta(days=1), metadata={"campaign": "fall"}))
    c = store.record(TrackingEvent(event_type="unsubscribed", message_id="m2", recipient="b@x",
                                   timestamp=DAY0 + timedelta(days=2), tags=("promo", "news")))

    def ids(**kwargs: Any) -> list[str]:
        return [event.event_id for event in store.find(EventQuery(**kwargs)).events]

    assert ids() == [c.event_id, b.event_id, a.event_id]  # newest first
    assert ids(message_id="m1") == [b.event_id, a.event_id]
    assert ids(recipient="a@x") == [a.event_id]
    assert ids(recipient="") == [b.event_id]  # recipient-less
    assert ids(event_type="clicked") == [b.event_id]
    assert ids(since=(DAY0 + timedelta(days=1)).timestamp()) == [c.event_id, b.event_id]
    assert ids(until=(DAY0 + timedelta(days=1)).timestamp()) == [a.event_id]  # until is exclusive
    assert ids(metadata=(("campaign", "fall"),)) == [b.event_id]
    assert ids(tag="news") == [c.event_id, a.event_id]
    assert ids(tag="news", message_id="m2") == [c.event_id]
    assert ids(tag="nothing") == []


def test_pagination_has_no_gaps_or_duplicates_while_events_arrive(store: Any) -> None:
    def add(n: int, start: int) -> None:
        for i in range(start, start + n):
            store.record(TrackingEvent(event_type="opened", message_id=f"m{i % 7}", recipient=f"r{i}@x",
                                       timestamp=DAY0 + timedelta(minutes=i), tags=("t",) if i % 2 else ()))

    add(300, 0)
    arrived = 300
    for query in (EventQuery(), EventQuery(tag="t"), EventQuery(message_id="m3")):
        snapshot = {event.event_id for event in store.events()}  # what was there when the first page was asked for
        seen: list[str] = []
        before = None
        while True:
            page = store.find(query, before=before, limit=23)
            seen += [event.event_id for event in page.events]
            add(5, arrived)  # new events between pages never show up below the cursor
            arrived += 5
            if page.next_before is None:
                break
            before = page.next_before
        assert len(seen) == len(set(seen))
        expected = {event.event_id for event in store.events() if event.event_id in snapshot and matches(event, query)}
        assert set(seen) == expected


def test_bad_arguments_are_argument_errors(store: Any) -> None:
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": True}, {"before": "3"}):
        with pytest.raises(ArgumentError):
            store.find(EventQuery(), **bad)
    with pytest.raises(ArgumentError):
        store.grouped_stats(EventQuery(), "week")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError):
        store.grouped_stats(EventQuery(), "campaign", campaign_key="")
    for bad_page in ({"limit": 0}, {"limit": 1001}, {"limit": True}, {"after": 3}):
        with pytest.raises(ArgumentError):
            store.stats_page(EventQuery(), "tag", **bad_page)
    with pytest.raises(ArgumentError):
        store.stats_page(EventQuery(), "day", after="not a day")
    for fields in ({"event_type": "bounced"}, {"since": float("nan")}, {"until": "x"}, {"metadata": (("a",),)},
                   {"message_id": 3}):
        with pytest.raises(ArgumentError):
            EventQuery(**fields)


def test_migration_backfills_indexes_and_rollups(tmp_path: Path) -> None:
    """A v3 database upgraded by the events migration answers exactly as one recorded since."""
    events = [TrackingEvent(event_type=kind, message_id=f"m{i % 3}", recipient=["a@x", None][i % 2],
                            url=f"https://e/{i % 2}" if kind == "clicked" else None,
                            timestamp=DAY0 + timedelta(hours=7 * i), metadata={"campaign": ["x", "y"][i % 2], "n": i % 2},
                            tags=(("news",), ("a", "b"), ())[i % 3])
              for i, kind in enumerate(["opened", "clicked", "opened", "clicked", "unsubscribed", "clicked"] * 3)]
    fresh = SQLiteStore(tmp_path / "fresh.sqlite")
    for event in events:
        fresh.record(event)
    old = tmp_path / "old.sqlite"
    connection = sqlite3.connect(old, isolation_level=None)
    for script in MIGRATIONS[:3]:
        connection.executescript(script)
    connection.execute("PRAGMA user_version = 3")
    for event in fresh.events():  # as v3 stored them, first flags included
        connection.execute(f"INSERT INTO events ({_V3_COLUMNS}) VALUES ({', '.join('?' * 14)})", _row(event)[:14])
    connection.close()
    upgraded = SQLiteStore(old)
    assert upgraded.version == len(MIGRATIONS)
    for query in (EventQuery(), EventQuery(tag="a"), EventQuery(metadata=(("n", "1"),)), EventQuery(message_id="m1")):
        assert upgraded.find(query).events == fresh.find(query).events
        for group_by in GROUP_BYS:
            assert upgraded.grouped_stats(query, group_by) == fresh.grouped_stats(query, group_by)
    fresh.close()
    upgraded.close()


#: tests/data/v5_store.sqlite: 120 events recorded by mailtrack's SQLiteStore at schema v5 (before STATS_MIGRATION:
#: the one-dimension ``rollups`` table, no ``account``), made with that code and kept as it wrote it.
V5_STORE = Path(__file__).resolve().parents[2] / "data" / "v5_store.sqlite"
V5_QUERIES = [EventQuery(), EventQuery(metadata=(("campaign", "spring"),)), EventQuery(tag="news"),
              EventQuery(message_id="<m2@example.com>"), EventQuery(event_type=EventType.CLICKED),
              EventQuery(since=DAY0.timestamp() + 86400, until=DAY0.timestamp() + 3 * 86400),
              EventQuery(since=DAY0.timestamp() + 30000, until=DAY0.timestamp() + 3 * 86400 + 4000),
              EventQuery(metadata=(("campaign", "fall"),), tag="promo"), EventQuery(recipient="a@x"),
              EventQuery(account=""), EventQuery(account="sub1")]


def test_a_v5_store_written_by_the_old_code_upgrades_with_its_rollups_backfilled(tmp_path: Path) -> None:
    """STATS_MIGRATION on a v5 file: the same answers as a store that recorded the same events under v6."""
    path = tmp_path / "v5.sqlite"
    path.write_bytes(V5_STORE.read_bytes())
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 5
    upgraded = SQLiteStore(path)
    fresh = SQLiteStore(tmp_path / "fresh.sqlite")
    try:
        assert upgraded.version == len(MIGRATIONS) == 10
        stored = upgraded.events()
        assert len(stored) == 120 and all(event.account is None for event in stored)
        for event in stored:
            assert fresh.record(event.with_first(False)).first == event.first  # the same first flags, recomputed
        for query in V5_QUERIES:
            assert upgraded.find(query, limit=1000).events == fresh.find(query, limit=1000).events
            for group_by in GROUP_BYS:
                for campaign_key in ("campaign", "variant"):
                    old = upgraded.grouped_stats(query, group_by, campaign_key=campaign_key)
                    assert old == fresh.grouped_stats(query, group_by, campaign_key=campaign_key)
                    expected = [] if query.account == "sub1" else brute_stats(stored, query, group_by, campaign_key)
                    assert [row.to_dict() for row in old] == expected, (query, group_by)
        # the upgraded store keeps its rollups current as events arrive
        upgraded.record(TrackingEvent(event_type="opened", message_id="<m9@example.com>", recipient="z@x",
                                      timestamp=DAY0, metadata={"campaign": "spring"}, tags=("news",)))
        [row] = upgraded.grouped_stats(EventQuery(message_id="<m9@example.com>"), "campaign")
        assert (row.key, row.opens, row.unique_opens) == ("spring", 1, 1)
    finally:
        upgraded.close()
        fresh.close()


def _atoms(query: EventQuery) -> list[object]:
    return [x for x in (query.message_id, query.tag, *query.metadata) if x]


def test_stats_served_from_rollups_never_read_the_events(backend: Backend) -> None:
    """Every combination the rollups serve answers the same with the events table emptied behind the store's back.

    (Whole-day windows only: partial edge days are counted from the events, see ``stats_page``.) Both stores.
    """
    store = backend.open()
    for i in range(200):
        kind = ["opened", "clicked", "opened", "unsubscribed", "clicked"][i % 5]
        store.record(TrackingEvent(
            event_type=kind, message_id=f"m{i % 7}", recipient=f"r{i % 11}@x", url=f"https://e/{i % 3}" if kind == "clicked"
            else None, timestamp=DAY0 + timedelta(hours=5 * i), metadata={"campaign": f"c{i % 3}", "variant": "ab"[i % 2]},
            tags=(("news",), ("news", "promo"), ())[i % 3], account=None if i % 4 else "sub1"))
    day = 86400.0
    filters = [EventQuery(), EventQuery(metadata=(("campaign", "c1"),)), EventQuery(metadata=(("variant", "b"),)),
               EventQuery(tag="promo"), EventQuery(message_id="m3"), EventQuery(event_type=EventType.OPENED),
               EventQuery(since=DAY0.timestamp() + 2 * day), EventQuery(until=DAY0.timestamp() + 20 * day),
               EventQuery(metadata=(("campaign", "c1"),), tag="news", since=DAY0.timestamp() + day),
               EventQuery(metadata=(("campaign", "c2"),), message_id="m2"), EventQuery(account="sub1"),
               EventQuery(account="", tag="news", event_type=EventType.CLICKED)]
    served = [(query, group_by) for query in filters for group_by in GROUP_BYS
              if _rollup_spec(query, group_by, "campaign") is not None]
    # what stats_page's docstring promises: one atom with every group_by (message_id + campaign/tag aside), two with
    # day/link or a pinned group, type, whole-day windows and accounts
    promised = {(query, group_by) for query in filters for group_by in GROUP_BYS
                if len(_atoms(query)) <= 1 and not (query.message_id and group_by in ("campaign", "tag"))
                or len(_atoms(query)) == 2 and (group_by in ("day", "link") or group_by == "message" and query.message_id
                                                or group_by == "campaign" and dict(query.metadata).get("campaign"))}
    assert promised <= set(served)
    assert len(served) > 45
    before = {(query, group_by): store.grouped_stats(query, group_by) for query, group_by in served}
    assert sum(len(rows) for rows in before.values()) > 300
    backend.sql("DELETE FROM events")
    assert store.count() == 0
    for query, group_by in served:
        assert store.grouped_stats(query, group_by) == before[(query, group_by)], (query, group_by)
        assert store.stats_page(query, group_by, limit=3).rows == sorted(before[(query, group_by)],
                                                                         key=lambda row: row.key)[:3]
    store.close()


def test_a_version_1_postgresql_store_upgrades_with_its_rollups_backfilled(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """PostgreSQL's STATS_MIGRATION (schema 1 to 2) on a store holding events: the answers of a fresh version 2 store.

    The version 1 schema is made by its own migration script and filled with what version 1 wrote for the same
    events (each table's rows copied from a store that recorded them, without the account column it did not have;
    its one-dimension ``rollups`` left with a stale row, which the migration drops).
    """
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'mailtrack[postgres]'")
    from mailtrack.storage.postgres import MIGRATIONS as PG_MIGRATIONS

    fresh_db, old_db = (fresh_backend("postgres", request, tmp_path_factory) for _ in range(2))
    try:
        fresh = fresh_db.open()
        events = [TrackingEvent(
            event_type=kind, message_id=f"<m{i % 4}@example.com>", recipient=["a@x", "b@x", None][i % 3],
            url=f"https://e.com/{i % 2}" if kind == "clicked" else None, link_index=i % 2 if kind == "clicked" else None,
            timestamp=DAY0 + timedelta(hours=7 * i), metadata={"campaign": ["spring", "fall"][i % 2], "variant": i % 3},
            tags=(("news",), ("news", "promo"), ())[i % 3])
            for i, kind in enumerate(["opened", "clicked", "opened", "unsubscribed", "clicked", "opened"] * 10)]
        for event in events:
            fresh.record(event)
        with old_db.raw() as db:
            db.execute(f"CREATE SCHEMA {old_db.schema}")
            db.execute(f"SET search_path = {old_db.schema}")
            db.execute(PG_MIGRATIONS[0].encode())
            db.execute("CREATE TABLE mailtrack_schema (version INTEGER NOT NULL)")
            db.execute("INSERT INTO mailtrack_schema (version) VALUES (1)")
            v1 = f"{_V3_COLUMNS}, link_first"
            db.execute(f"INSERT INTO events (id, {v1}) SELECT id, {v1} FROM {fresh_db.schema}.events ORDER BY id".encode())
            db.execute("SELECT setval('events_id_seq', (SELECT max(id) FROM events))")
            for table, columns in (("firsts", "event_type, message_id, recipient"),
                                   ("link_firsts", "url, message_id, recipient"),
                                   ("event_tags", "*"), ("event_meta", "*")):  # version 1's firsts had no account
                db.execute(f"INSERT INTO {table} SELECT DISTINCT {columns} FROM {fresh_db.schema}.{table}".encode())
            db.execute("INSERT INTO rollups VALUES ('all', '', '', -1, '', 999, 0, 0, 0, 0, 0, 0)")
        upgraded = old_db.open()
        assert upgraded.version == len(PG_MIGRATIONS) == 4
        stored = upgraded.events()
        assert stored == fresh.events() and len(stored) == 60 and all(event.account is None for event in stored)
        assert old_db.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'rollups' AND schemaname = ?",
                          (old_db.schema,)) == [(0,)]
        for query in V5_QUERIES + [EventQuery(metadata=(("variant", "1"),), tag="news"),
                                   EventQuery(message_id="<m1@example.com>", metadata=(("campaign", "fall"),))]:
            assert upgraded.find(query, limit=1000).events == fresh.find(query, limit=1000).events
            for group_by in GROUP_BYS:
                for campaign_key in ("campaign", "variant"):
                    old = upgraded.grouped_stats(query, group_by, campaign_key=campaign_key)
                    assert old == fresh.grouped_stats(query, group_by, campaign_key=campaign_key), (query, group_by)
                    expected = [] if query.account == "sub1" else brute_stats(stored, query, group_by, campaign_key)
                    assert [row.to_dict() for row in old] == expected, (query, group_by)
                    assert all_stats_pages(upgraded, query, group_by, campaign_key, 2) == \
                        sorted(old, key=lambda row: row.key)
        # the rollup tables themselves are those a version 2 store keeps, row for row
        for table in ("rollup_days", "rollup_totals"):
            assert sorted(old_db.sql(f"SELECT * FROM {table}")) == sorted(fresh_db.sql(f"SELECT * FROM {table}")), table
        # and the upgraded store keeps them current as events arrive, with accounts
        upgraded.record(TrackingEvent(event_type="opened", message_id="<m9@example.com>", recipient="z@x",
                                      timestamp=DAY0, metadata={"campaign": "spring"}, tags=("news",), account="sub1"))
        [row] = upgraded.grouped_stats(EventQuery(message_id="<m9@example.com>"), "campaign")
        assert (row.key, row.opens, row.unique_opens) == ("spring", 1, 1)
        assert [r.key for r in upgraded.grouped_stats(EventQuery(account="sub1"), "message")] == ["<m9@example.com>"]
    finally:
        fresh_db.close()
        old_db.close()
