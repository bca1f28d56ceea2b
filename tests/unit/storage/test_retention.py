"""``purge`` (retention) and ``forget`` (erasure) on both stores: what goes, what stays, what the stats still say.

Every test runs against SQLite and the session's real PostgreSQL (the
``backend`` fixture). What must hold on both: the events and their outbox,
tag and metadata rows go; first-event keys go when no event uses them any
more; the stats rollups (aggregates, no recipient) keep their counts; bad
input is an :class:`~mailtrack.exceptions.ArgumentError`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from support.stores import Backend

from mailtrack.events import TrackingEvent
from mailtrack.exceptions import ArgumentError, MailtrackError
from mailtrack.storage.base import Erased, EventQuery, EventStore

pytestmark = pytest.mark.path_independent  # storage only: checked in conftest.py

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
OLD = NOW - timedelta(days=100)
HOOK = "https://hook.example/"


def event(kind: str, when: datetime, message_id: str, recipient: str | None, **kwargs: Any) -> TrackingEvent:
    if kind == "clicked":
        kwargs.setdefault("url", "https://x.example/a")
        kwargs.setdefault("link_index", 0)
    return TrackingEvent(kind, when, message_id, recipient, metadata={"campaign": "spring"}, tags=("news",), **kwargs)


def roll(store: Any) -> None:
    if hasattr(store, "roll"):
        store.roll()


def stats(store: EventStore) -> dict[str, list[dict[str, Any]]]:
    """What the rollups answer: per message, per campaign, per tag, per day (each over every event)."""
    return {by: [row.to_dict() for row in store.grouped_stats(EventQuery(), by)]  # type: ignore[arg-type]
            for by in ("message", "campaign", "tag", "day", "link")}


def test_purge_deletes_old_events_with_their_rows_and_the_stats_keep_counting_them(backend: Backend) -> None:
    store = backend.open()
    old = [event("opened", OLD, "m1", "ann@x.test"), event("clicked", OLD, "m1", "ann@x.test"),
           event("opened", OLD, "m1", "bob@x.test"), event("opened", OLD, "m2", None)]
    new = [event("opened", NOW, "m1", "bob@x.test"), event("clicked", NOW, "m1", "cat@x.test")]
    store.record_many(old + new, [HOOK])
    roll(store)
    before = stats(store)

    erased = store.purge((NOW - timedelta(days=90)).timestamp())

    # ann's open and click keys and link key, m2's open key; bob's m1 open key stays (his newer open uses it)
    assert erased == Erased(events=4, outbox=4, firsts=4)
    assert sorted(e.event_id for e in store.events()) == sorted(e.event_id for e in new)
    assert sorted(row["event_id"] for row in store.outbox_rows()) == sorted(e.event_id for e in new)
    assert stats(store) == before  # the rollups still count every purged event
    assert backend.sql("SELECT count(*) FROM event_tags")[0][0] == 2
    assert backend.sql("SELECT count(*) FROM event_meta")[0][0] == 2
    assert sorted(backend.sql("SELECT event_type, message_id, recipient FROM firsts")) == [
        ("clicked", "m1", "cat@x.test"), ("opened", "m1", "bob@x.test")]
    assert backend.sql("SELECT recipient FROM link_firsts") == [("cat@x.test",)]
    # bob opened m1 before: still not a first. ann's keys went with her events: her next open is a first again.
    later = store.record_many([event("opened", NOW, "m1", "bob@x.test"), event("opened", NOW, "m1", "ann@x.test")])
    assert [e.first for e in later] == [False, True]
    assert store.purge((NOW - timedelta(days=90)).timestamp()) == Erased()  # nothing older left


def test_purge_works_in_batches_and_rolls_first(backend: Backend) -> None:
    store = backend.open()
    store.record_many([event("opened", OLD + timedelta(seconds=i), f"m{i % 7}", f"r{i}@x.test") for i in range(45)])
    before = stats(store)  # SQLite: nothing rolled yet (stats reads count the tail themselves)
    assert store.purge(NOW.timestamp(), batch=10) == Erased(events=45, outbox=0, firsts=45)
    assert store.count() == 0
    assert stats(store) == before


def test_forget_deletes_every_spelling_of_the_address_and_its_first_event_keys(backend: Backend) -> None:
    store = backend.open()
    theirs = [event("opened", OLD, "m1", "Ann@Example.COM"), event("clicked", NOW, "m1", "ann@example.com"),
              event("opened", NOW, "m2", "ANN@EXAMPLE.COM")]
    others = [event("opened", NOW, "m1", "bob@example.com"), event("opened", NOW, "m1", "anne@example.com"),
              event("opened", NOW, "m3", None)]
    store.record_many(theirs + others, [HOOK, HOOK + "2"])
    roll(store)
    before = stats(store)

    erased = store.forget("ann@example.com")

    assert erased == Erased(events=3, outbox=6, firsts=4)  # 3 firsts keys and 1 link key
    assert sorted(e.event_id for e in store.events()) == sorted(e.event_id for e in others)
    assert sorted({row["event_id"] for row in store.outbox_rows()}) == sorted(e.event_id for e in others)
    left = {row[0] for row in backend.sql("SELECT recipient FROM firsts UNION SELECT recipient FROM link_firsts")}
    assert left == {"bob@example.com", "anne@example.com", ""}
    assert "ann@example.com" not in backend.dump().lower()  # in no table, in no spelling
    assert stats(store) == before
    assert store.find(EventQuery(recipient="ann@example.com")).events == []
    assert store.record(event("opened", NOW, "m1", "ann@example.com")).first is True  # nothing remembers her
    assert store.forget("nobody@example.com") == Erased()


@pytest.mark.parametrize("before", [float("nan"), float("inf"), "90d", None, True])
def test_purge_refuses_what_is_no_time(backend: Backend, before: Any) -> None:
    store = backend.open()
    with pytest.raises(ArgumentError) as caught:
        store.purge(before)
    assert isinstance(caught.value, MailtrackError)


@pytest.mark.parametrize("recipient", ["", "   ", None, 5, b"ann@x"])
def test_forget_refuses_what_is_no_address(backend: Backend, recipient: Any) -> None:
    store = backend.open()
    store.record(event("opened", NOW, "m1", None))
    with pytest.raises(ArgumentError):
        store.forget(recipient)
    assert store.count() == 1  # "" is how "no recipient" is stored: never erased by accident
