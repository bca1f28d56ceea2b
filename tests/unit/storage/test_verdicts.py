"""Machine-event verdicts in the stores (issue 14): ``machine_reasons`` stored, people counted with machines beside
them, and the stateful verdicts decided where events are written (link-scanner bursts, honeypot neighbours), with
the rollups following a relabel. Every test runs against SQLite and PostgreSQL (``backend``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mailtrack.events import TrackingEvent
from mailtrack.storage._shared import REASON_BURST, REASON_HONEYPOT, REASON_NO_OPEN
from mailtrack.storage.base import GROUP_BYS, EventQuery
from tests.unit.storage.test_queries import DAY0, brute_stats

pytestmark = pytest.mark.path_independent  # storage only: checked in conftest.py

T0 = DAY0 + timedelta(hours=5)


def event(kind: str, seconds: float, *, link: int | None = None, machine: str | None = None,
          recipient: str | None = "a@x", message_id: str = "<m1@example.com>", **more: Any) -> TrackingEvent:
    return TrackingEvent(event_type=kind, timestamp=T0 + timedelta(seconds=seconds), message_id=message_id,
                         recipient=recipient, url=None if link is None else f"https://e.com/{link}", link_index=link,
                         machine=machine, machine_reasons=(f"{machine} said so",) if machine else (),
                         metadata={"campaign": "spring"}, tags=("news",), **more)


def by_id(store: Any) -> dict[str, TrackingEvent]:
    return {stored.event_id: stored for stored in store.events()}


def assert_stats_exact(store: Any) -> None:
    """Every grouping's stats (rollups, rolled or not) equal the brute force over the events as stored now."""
    stored = store.events()
    for query in (EventQuery(), EventQuery(metadata=(("campaign", "spring"),)), EventQuery(tag="news"),
                  EventQuery(message_id="<m1@example.com>")):
        for group_by in GROUP_BYS:
            got = [row.to_dict() for row in store.grouped_stats(query, group_by)]
            assert got == brute_stats(stored, query, group_by, "campaign"), (query, group_by)


def test_reasons_are_stored_and_read_back(backend: Any) -> None:
    store = backend.open()
    made = event("opened", 0, machine="apple_mpp")
    assert store.record(made).machine_reasons == ("apple_mpp said so",)
    (read,) = store.events()
    assert read.machine == "apple_mpp" and read.machine_reasons == ("apple_mpp said so",)
    assert read.to_dict()["machine_reasons"] == ["apple_mpp said so"]
    assert store.find(EventQuery()).events == [read]


def test_old_rows_read_as_people_without_reasons(backend: Any) -> None:
    """A row written before the reasons' column (its default) reads as machine None, reasons ()."""
    store = backend.open()
    store.record(event("opened", 0))
    backend.sql("UPDATE events SET machine_reasons = DEFAULT" if backend.kind == "postgres"
                else "UPDATE events SET machine_reasons = '[]'")
    (read,) = store.events()
    assert read.machine is None and read.machine_reasons == ()


def test_a_machine_event_never_takes_the_first_slot(backend: Any) -> None:
    store = backend.open()
    mpp = store.record(event("opened", 0, machine="apple_mpp"))
    person = store.record(event("opened", 3600))
    again = store.record(event("opened", 7200))
    assert (mpp.first, person.first, again.first) == (False, True, False)
    batch = store.record_many([event("opened", 0, machine="image_proxy", recipient="b@x"),
                               event("opened", 10, recipient="b@x")])
    assert [stored.first for stored in batch] == [False, True]
    (row,) = store.grouped_stats(EventQuery(), "message")
    assert (row.opens, row.unique_opens, row.machine_opens) == (3, 2, 2)
    assert row.to_dict()["machine_opens"] == 2
    assert_stats_exact(store)


@pytest.mark.parametrize("batched", [False, True])
def test_several_links_clicked_within_a_second_are_a_scanner(backend: Any, batched: bool) -> None:
    store = backend.open()
    clicks = [event("clicked", 100, link=0), event("clicked", 100.4, link=1), event("clicked", 100.8, link=0)]
    if batched:
        store.record_many(clicks)
    else:
        for click in clicks:
            store.record(click)
    stored = store.events()
    assert [click.machine for click in stored] == ["link_scanner"] * 3
    assert all(click.machine_reasons == (REASON_BURST, REASON_NO_OPEN) for click in stored)
    assert not any(click.first for click in stored)
    # the same link twice within a second is a person's double click; a second later is a person too
    store.record_many([event("clicked", 500, link=0, recipient="b@x"), event("clicked", 500.5, link=0, recipient="b@x"),
                       event("clicked", 502, link=1, recipient="b@x")])
    assert [click.machine for click in store.events()[3:]] == [None, None, None]
    assert_stats_exact(store)


def test_a_burst_after_an_open_says_no_more_than_the_burst(backend: Any) -> None:
    store = backend.open()
    store.record(event("opened", 10))
    store.record_many([event("clicked", 100, link=0), event("clicked", 100.2, link=1)])
    assert [click.machine_reasons for click in store.events()[1:]] == [(REASON_BURST,), (REASON_BURST,)]


def test_a_honeypot_click_marks_the_clicks_around_it_stored_and_later(backend: Any) -> None:
    store = backend.open()
    store.record(event("opened", 0))
    early = store.record(event("clicked", 10, link=0))  # a person's, as far as we know yet: the first click
    far = store.record(event("clicked", -100, link=1))  # more than a minute before the honeypot: stays a person's
    assert early.first is True and far.first is False
    store.record(event("clicked", 65, link=9, machine="honeypot"))  # the honeypot link, 55 s after
    late = store.record(event("clicked", 120, link=1))  # 55 s after it, arriving later
    much_later = store.record(event("clicked", 200, link=2))
    other = store.record(event("clicked", 70, link=0, recipient="b@x"))  # another recipient: not theirs
    now = by_id(store)
    assert now[early.event_id].machine == "honeypot"
    assert now[early.event_id].machine_reasons == (REASON_HONEYPOT,)
    assert (now[early.event_id].first, now[far.event_id].first) == (False, True)  # the slot passed on
    assert late.machine == "honeypot" and now[late.event_id].machine_reasons == (REASON_HONEYPOT,)
    assert much_later.machine is None and other.machine is None and now[far.event_id].machine is None
    (row,) = store.grouped_stats(EventQuery(), "message")
    assert (row.clicks, row.unique_clicks, row.machine_clicks) == (3, 2, 3)
    assert_stats_exact(store)


def test_a_relabel_in_the_batch_itself_hands_the_slot_to_the_batch(backend: Any) -> None:
    store = backend.open()
    first = store.record(event("clicked", 10, link=0))
    person, _ = store.record_many([event("clicked", 500, link=0), event("clicked", 20, link=9, machine="honeypot")])
    assert first.first is True and person.first is True  # the honeypot took the first's slot away; the next has it
    assert by_id(store)[first.event_id].first is False
    assert_stats_exact(store)


def test_rollups_follow_a_relabel_after_rolling(backend: Any) -> None:
    store = backend.open()
    store.record_many([event("opened", 0), event("clicked", 10, link=0), event("clicked", 30, link=1),
                       event("clicked", 30, link=1, recipient="b@x")])
    if backend.kind == "sqlite":
        assert store.roll() >= 0 and store.unrolled() == 0
    assert_stats_exact(store)
    store.record(event("clicked", 40, link=5, machine="honeypot"))
    if backend.kind == "sqlite":
        assert store.unrolled() == 1  # only the honeypot click: the relabels went into the rollups directly
    assert_stats_exact(store)
    (row,) = store.grouped_stats(EventQuery(), "message")
    assert (row.clicks, row.unique_clicks, row.machine_clicks) == (1, 1, 3)


def test_a_relabel_of_unrolled_events_moves_the_roller_mark(tmp_path: Any) -> None:
    from mailtrack.storage.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "s.sqlite")
    store.record(event("clicked", 10, link=0))
    marks = store._connection().execute("SELECT rolled, relabels FROM rollup_state").fetchone()
    store.record(event("clicked", 20, link=9, machine="honeypot"))
    after = store._connection().execute("SELECT rolled, relabels FROM rollup_state").fetchone()
    assert after == (marks[0], marks[1] + 1)  # a roller that summed the old row starts its batch again
    store.roll()
    assert_stats_exact(store)
    store.close()


def test_forget_and_purge_erase_verdicts_with_their_events_and_the_counts_stay(backend: Any) -> None:
    store = backend.open()
    store.record_many([event("opened", 0), event("clicked", 10, link=0), event("clicked", 20, link=9,
                                                                              machine="honeypot"),
                       event("opened", 0, recipient="b@x", machine="apple_mpp")])
    before = [row.to_dict() for row in store.grouped_stats(EventQuery(), "message")]
    assert (before[0]["opens"], before[0]["machine_opens"], before[0]["machine_clicks"]) == (1, 1, 2)
    erased = store.forget("A@X")
    assert (erased.events, erased.firsts) == (3, 1)  # the honeypot's relabel left no click key behind
    assert [e.recipient for e in store.events()] == ["b@x"]
    assert [row.to_dict() for row in store.grouped_stats(EventQuery(), "message")] == before
    erased = store.purge((T0 + timedelta(seconds=1)).timestamp())
    assert erased.events == 1 and store.events() == []
    assert [row.to_dict() for row in store.grouped_stats(EventQuery(), "message")] == before


def test_rolling_while_relabels_happen_keeps_the_rollups_exact(tmp_path: Any) -> None:
    """A roller (its own store object, thread) rolls small batches while writes relabel clicks both rolled and not
    yet rolled: every read and the end state match the brute force (a roller that summed a row a relabel then
    changed starts its batch again, ``rollup_state.relabels``)."""
    import threading

    from mailtrack.storage.sqlite import SQLiteStore

    path = tmp_path / "s.sqlite"
    writer, roller = SQLiteStore(path, busy_timeout=5), SQLiteStore(path, busy_timeout=5)
    done = threading.Event()

    def roll() -> None:
        while not done.is_set():
            roller.roll(batch=3)

    thread = threading.Thread(target=roll)
    thread.start()
    try:
        for i in range(60):
            recipient = f"r{i % 4}@x"
            writer.record_many([event("clicked", 100 * i, link=0, recipient=recipient),
                                event("opened", 100 * i + 1, recipient=recipient)])
            writer.record(event("clicked", 100 * i + 30, link=1, recipient=recipient))
            if i % 3 == 0:  # relabels the two clicks above (30 s and 0 s before), rolled or not
                writer.record(event("clicked", 100 * i + 40, link=9, recipient=recipient, machine="honeypot"))
    finally:
        done.set()
        thread.join()
    roller.roll()
    assert writer.unrolled() == 0
    assert_stats_exact(writer)
    (row,) = writer.grouped_stats(EventQuery(), "message")
    assert (row.machine_clicks, row.clicks) == (20 * 3, 40 * 2)
    writer.close()
    roller.close()


def test_two_writers_at_once_see_each_others_clicks(backend: Any) -> None:
    """Two store objects (two servers, or a server's writer and another's) write one message's honeypot click and
    the clicks around it at the same moment: every click near a honeypot ends relabelled, whichever commits first
    (PostgreSQL: an advisory lock per clicked message; SQLite: one writer at a time)."""
    import threading

    first, second = backend.open(), backend.open()
    messages = [f"<h{i}@example.com>" for i in range(40)]
    start = threading.Barrier(2)

    def write(store: Any, honeypot: bool) -> None:
        start.wait()
        for message_id in messages:
            if honeypot:
                store.record(event("clicked", 5, link=9, machine="honeypot", message_id=message_id))
            else:
                store.record(event("clicked", 0, link=0, message_id=message_id))

    threads = [threading.Thread(target=write, args=(store, honeypot))
               for store, honeypot in ((first, False), (second, True))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = first.events()
    assert len(stored) == 80 and all(click.machine == "honeypot" for click in stored)
    assert not any(click.first for click in stored)
    assert_stats_exact(first)


def _relabel_steps(tmp_path: Any, others: int) -> int:
    """SQLite VM steps (in thousands) to record a burst that relabels one stored click, with ``others`` clicks of
    other recipients stored before it: a deterministic measure of the work, not a timing."""
    from mailtrack.storage.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / f"steps-{others}.sqlite")
    store.record_many([event("clicked", 10 + i / 100, link=i % 4, recipient=f"other{i}@x") for i in range(others)])
    store.record(event("clicked", 100, link=0))  # a person's click so far: it holds the link's first slot
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    store._connection().set_progress_handler(count, 1000)
    burst = store.record_many([event("clicked", 100.4, link=1), event("clicked", 100.8, link=2)])
    store._connection().set_progress_handler(None, 0)
    assert all(click.machine == "link_scanner" for click in store.events()[-3:])  # the stored click was relabelled
    assert not any(stored.first for stored in burst)
    store.close()
    return steps[0]


def test_relabelling_a_stored_click_does_not_read_other_recipients_clicks(tmp_path: Any) -> None:
    """Relabelling a click looks for the next person's event of its key (its recipient's own clicks), never through
    every click stored: its successor's query went through ``events_type`` in id order, so a relabel with no
    successor read every click in the table (a quarter of the writer process's time in the serve benchmark, and
    growing with the store)."""
    small, large = _relabel_steps(tmp_path, 200), _relabel_steps(tmp_path, 4000)
    assert large <= small + 2, (small, large)  # 20x the clicks stored: the same work, give or take a page or two
