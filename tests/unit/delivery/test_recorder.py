"""The Recorder (mailtrack.recorder): synchronous store writes, the spool on failure, recovery, sinks.

Store failures are real: another connection holds the SQLite write lock
(``BEGIN EXCLUSIVE``) past the store's busy timeout. Other processes are real
processes where their locks are the point.
"""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from support.helpers import wait_until

from mailtrack.delivery.recorder import Recorder
from mailtrack.events import CallbackSink, TrackingEvent
from mailtrack.storage.sqlite import SQLiteStore

FAST = {"retry_interval": 0.05, "max_retry_interval": 0.2}
IDLE = {"retry_interval": 3600.0, "max_retry_interval": 3600.0}  # no background retries: the test drives drain()


def event(message_id: str = "m1", recipient: str = "a@x", event_type: str = "opened", **kwargs: Any) -> TrackingEvent:
    kwargs.setdefault("timestamp", datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc))
    return TrackingEvent(event_type=event_type, message_id=message_id, recipient=recipient, **kwargs)


def logged(caplog: pytest.LogCaptureFixture, text: str, at_least: int = 1) -> Callable[[], bool]:
    """A predicate: ``text`` is in at least ``at_least`` records logged so far (by any thread)."""
    return lambda: sum(text in r.getMessage() for r in caplog.records) >= at_least


class Lock:
    """Another connection holding the database's write lock."""

    def __init__(self, db: Path) -> None:
        self.connection = sqlite3.connect(db, isolation_level=None)

    def __enter__(self) -> Lock:  # noqa: PYI034
        self.connection.execute("BEGIN EXCLUSIVE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "events.sqlite"
    SQLiteStore(path).close()  # migrated before anyone locks it
    return path


@pytest.fixture
def spool(db: Path) -> Path:
    return Path(str(db) + ".spool")


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    """Recorders to close after the test (so their threads never outlive it)."""
    made: list[Recorder] = []
    yield made
    for recorder in made:
        recorder.close(timeout=2)


def make(recorders: list[Recorder], db: Path, *, busy_timeout: float = 0.05, **kwargs: Any) -> Recorder:
    recorder = Recorder(SQLiteStore(db, busy_timeout=busy_timeout), **{**FAST, **kwargs})
    recorders.append(recorder)
    assert recorder.wait_recovered(30), "the start-up spool recovery never ran"  # no background drain races the test
    return recorder


def spool_lines(spool: Path) -> list[dict[str, Any]]:
    lines = []
    for path in sorted(spool.glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return lines


def write_spool(spool: Path, name: str, events: list[TrackingEvent], tail: bytes = b"") -> Path:
    spool.mkdir(exist_ok=True)
    path = spool / name
    data = b"".join(json.dumps(e.to_dict()).encode() + b"\n" for e in events) + tail
    path.write_bytes(data)
    return path


def stored_ids(db: Path) -> list[str]:
    """Stored event ids, read on a plain connection (opening a SQLiteStore migrates: it waits for writers)."""
    connection = sqlite3.connect(db)
    try:
        return [row[0] for row in connection.execute("SELECT event_id FROM events ORDER BY id")]
    finally:
        connection.close()


# -- the normal path ---------------------------------------------------------------------------


def test_record_writes_synchronously_and_sets_first(db: Path, recorders: list[Recorder], spool: Path) -> None:
    recorder = make(recorders, db, outbox=["https://hook.example/"])
    first = recorder.record(event())
    second = recorder.record(event())
    assert (first.first, second.first) == (True, False)
    assert stored_ids(db) == [first.event_id, second.event_id]  # already there: no background step
    assert recorder.store is not None and len(recorder.store.outbox_rows()) == 2
    assert not spool.exists() or spool_lines(spool) == []


# -- store failure: the spool -------------------------------------------------------------------


@pytest.mark.timeout(120)  # record() waits out the busy timeout, not the lock: a hang here is that bug
def test_store_locked_spools_then_drains_exactly_once(db: Path, spool: Path, recorders: list[Recorder],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    recorder = make(recorders, db, outbox=["https://hook.example/"])
    e = event()
    with Lock(db) as lock:
        returned = recorder.record(e)  # must not raise
        assert returned.first is None  # the store could not tell
        assert [line["event_id"] for line in spool_lines(spool)] == [e.event_id]
        assert stored_ids(db) == []
        assert any("store write failed" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        wait_until(logged(caplog, "retry from spool failed", at_least=2), what="two failed background retries")
        assert stored_ids(db) == []  # they failed: still locked
        lock.release()
        wait_until(lambda: stored_ids(db) == [e.event_id])
    wait_until(lambda: spool_lines(spool) == [])  # the spool is emptied once stored
    assert recorder.drain() is True
    assert stored_ids(db) == [e.event_id]  # exactly once
    assert recorder.store is not None
    [row] = recorder.store.outbox_rows()
    assert row["event_id"] == e.event_id
    [stored] = recorder.store.events()
    assert stored.first is True and stored == e.with_first(True)


def test_many_events_spooled_in_order_all_drained(db: Path, spool: Path, recorders: list[Recorder]) -> None:
    recorder = make(recorders, db)
    events = [event(recipient=f"r{i % 3}") for i in range(20)]
    with Lock(db):
        for e in events:
            recorder.record(e)
        assert [line["event_id"] for line in spool_lines(spool)] == [e.event_id for e in events]
    wait_until(lambda: len(stored_ids(db)) == 20)
    assert stored_ids(db) == [e.event_id for e in events]
    assert recorder.store is not None
    assert [e.first for e in recorder.store.events()] == [True] * 3 + [False] * 17


def test_spool_file_is_private_and_per_process(db: Path, spool: Path, recorders: list[Recorder]) -> None:
    recorder = make(recorders, db, **IDLE)
    with Lock(db):
        recorder.record(event())
        [path] = spool.glob("*.jsonl")
        assert path.name.startswith(f"{os.getpid()}-")
        assert path.stat().st_mode & 0o777 == 0o600


def test_torn_last_spool_line_is_skipped_and_the_rest_recovered(db: Path, spool: Path, recorders: list[Recorder],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    good = [event(recipient="a@x"), event(recipient="ü@x")]
    torn = json.dumps(event(recipient="über@x").to_dict(), ensure_ascii=False).encode()
    torn = torn[: torn.index("ü".encode()) + 1]  # cut inside a UTF-8 sequence, no newline
    path = write_spool(spool, "424242-1.jsonl", good, tail=torn)
    recorder = make(recorders, db, **IDLE)
    assert recorder.drain() is True
    assert sorted(stored_ids(db)) == sorted(e.event_id for e in good)
    assert not path.exists()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "unreadable spool line" in r.getMessage()]
    assert len(errors) == 1
    assert str(path) in errors[0].getMessage()


@pytest.mark.parametrize(
    "junk",
    [b'{"event_id": "x", "event_ty', b"[1, 2]", b"null", b'"text"', b"{}", b'{"event_type": "opened"}',
     b'{"event_type": "exploded", "timestamp": "2024-01-01T00:00:00Z", "message_id": "m", "recipient": "r"}',
     b'{"event_type": "opened", "timestamp": "2024-01-01T00:00:00", "message_id": "m", "recipient": "r"}',
     b'{"event_type": "opened", "timestamp": "yesterday", "message_id": "m", "recipient": "r"}',
     b'{"event_type": "opened", "timestamp": "2024-01-01T00:00:00Z", "message_id": "m", "recipient": "r", "x": 1}',
     b"\xff\xfe\x00"],
)
def test_unreadable_spool_lines_never_block_the_others(db: Path, spool: Path, recorders: list[Recorder],
                                                       junk: bytes) -> None:
    before, after = event(message_id="before"), event(message_id="after")
    spool.mkdir()
    (spool / "1-1.jsonl").write_bytes(
        json.dumps(before.to_dict()).encode() + b"\n" + junk + b"\n" + json.dumps(after.to_dict()).encode() + b"\n")
    recorder = make(recorders, db, **IDLE)
    assert recorder.drain() is True
    assert sorted(stored_ids(db)) == sorted([before.event_id, after.event_id])


def test_spool_of_a_dead_process_is_drained_by_a_new_recorder(db: Path, spool: Path, recorders: list[Recorder]) -> None:
    events = [event(recipient="a@x"), event(recipient="a@x"), event(event_type="clicked", url="https://x/", link_index=2)]
    path = write_spool(spool, "31337-1700000000000000000.jsonl", events)
    got: list[TrackingEvent] = []
    make(recorders, db, sinks=[CallbackSink(got.append)])  # recovers at start, by itself
    wait_until(lambda: len(stored_ids(db)) == 3)
    assert stored_ids(db) == [e.event_id for e in events]
    wait_until(lambda: not path.exists())
    wait_until(lambda: len(got) == 3)
    assert [(e.event_id, e.first) for e in got] == [(events[0].event_id, True), (events[1].event_id, False),
                                                    (events[2].event_id, True)]


def test_spool_already_partly_stored_is_not_stored_twice(db: Path, spool: Path, recorders: list[Recorder]) -> None:
    # A crash after storing some lines but before removing the file: the rerun skips what is stored.
    events = [event(), event(), event()]
    store = SQLiteStore(db)
    store.record(events[0])
    store.close()
    write_spool(spool, "7-7.jsonl", events)
    recorder = make(recorders, db, **IDLE)
    assert recorder.drain() is True
    assert stored_ids(db) == [e.event_id for e in events]


def test_spool_locked_by_a_live_process_is_left_alone(db: Path, spool: Path, recorders: list[Recorder]) -> None:
    e = event()
    path = write_spool(spool, "555-1.jsonl", [e])
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as its live owner does
        recorder = make(recorders, db, **IDLE)
        assert recorder.drain() is True  # nothing of ours is waiting
        assert recorder.drain() is True
        assert path.exists() and stored_ids(db) == []
    finally:
        os.close(fd)  # the owner dies: its lock goes with it
    assert recorder.drain() is True
    assert stored_ids(db) == [e.event_id]
    assert not path.exists()


def _spool_and_wait(db: str, spool_dir: str, opened: Any, locked: Any, ready: Any) -> None:
    """Child process: spool three events (its database stays locked by the parent), then idle until killed.

    No background retries (IDLE): a retry rotates the spool file, and a rotated file is any process's to
    drain by design, so the parent could legitimately take it while the child lives; this test pins that a
    file its live writer holds is never taken.
    """
    recorder = Recorder(SQLiteStore(db, busy_timeout=0.05), spool_dir=spool_dir, **IDLE)
    opened.set()
    locked.wait(60)
    for i in range(3):
        recorder.record(TrackingEvent(event_type="opened", timestamp=datetime.now(timezone.utc),
                                      message_id=f"child-{i}", recipient="c@x"))
    ready.set()
    threading.Event().wait(120)  # idle until the parent kills it (not a synchronisation: the bound only ends an orphan)


def test_spool_of_a_killed_process_recovered_only_after_it_died(db: Path, tmp_path: Path, recorders: list[Recorder]) -> None:
    # The child writes to a database the test keeps locked, so it keeps retrying and never empties its spool;
    # the spool directory is shared with the test's Recorder, whose own database works.
    spool = tmp_path / "shared.spool"
    child_db = tmp_path / "child.sqlite"
    SQLiteStore(child_db).close()
    ctx = multiprocessing.get_context("spawn")
    opened, locked, ready = ctx.Event(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=_spool_and_wait, args=(str(child_db), str(spool), opened, locked, ready), daemon=True)
    child.start()
    assert opened.wait(60), "child did not start"  # its store is open (migrating waits for writers)
    with Lock(child_db):
        locked.set()
        try:
            assert ready.wait(60), "child did not spool"
            # One file, or several when the child's own retry rotated it between two of its writes.
            paths = sorted(spool.glob("*.jsonl"))
            assert paths and all(path.name.startswith(f"{child.pid}-") for path in paths), paths
            assert len(spool_lines(spool)) == 3
            recorder = make(recorders, db, spool_dir=spool, **IDLE)
            assert recorder.drain() is True  # our store works, but the child is alive and owns its spool
            assert recorder.drain() is True
            assert stored_ids(db) == [] and all(path.exists() for path in paths)
        finally:
            os.kill(child.pid, signal.SIGKILL)  # kill -9: no cleanup of any kind
            child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert recorder.drain() is True
    assert recorder.store is not None
    assert sorted(e.message_id for e in recorder.store.events()) == ["child-0", "child-1", "child-2"]
    assert not any(path.exists() for path in paths)
    assert stored_ids(child_db) == []


def test_unwritable_spool_keeps_events_in_memory(db: Path, tmp_path: Path, recorders: list[Recorder],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the spool's parent should be")  # mkdir fails even for root
    recorder = make(recorders, db, spool_dir=blocker / "spool")
    events = [event(), event()]
    with Lock(db):
        returned = [recorder.record(e) for e in events]
        assert [r.first for r in returned] == [None, None]
        messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("spool write failed" in m and "kept in memory" in m for m in messages)
        wait_until(logged(caplog, "waiting in memory"), what="a failed background retry of the events in memory")
        assert stored_ids(db) == []
    wait_until(lambda: len(stored_ids(db)) == 2)
    assert stored_ids(db) == [e.event_id for e in events]
    assert recorder.drain() is True


def test_store_gone_then_back(tmp_path: Path, recorders: list[Recorder]) -> None:
    # The database file's directory disappears (unmounted volume): writes fail, the spool elsewhere keeps events.
    data = tmp_path / "volume"
    data.mkdir()
    db = data / "events.sqlite"
    store = SQLiteStore(db, busy_timeout=0.05)
    recorder = Recorder(store, spool_dir=tmp_path / "spool", **IDLE)
    recorders.append(recorder)
    store.close()
    for name in os.listdir(data):
        os.remove(data / name)
    os.rmdir(data)
    e = event()
    recorder.record(e)  # must not raise
    assert [line["event_id"] for line in spool_lines(tmp_path / "spool")] == [e.event_id]
    assert recorder.drain() is False  # still gone
    data.mkdir()
    SQLiteStore(db).close()  # the volume is back (empty)
    assert recorder.drain() is True
    assert stored_ids(db) == [e.event_id]


def test_store_full_spools_then_drains(db: Path, recorders: list[Recorder], caplog: pytest.LogCaptureFixture) -> None:
    # A full disk, made real with SQLite's own page limit on the request thread's connection: SQLITE_FULL.
    # (The background drain uses its own connection, without the limit: it may store them soon after.)
    recorder = make(recorders, db, **IDLE)
    assert recorder.store is not None
    recorder.record(event())
    connection = recorder.store._connection()
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")
    big = [event(metadata={"blob": "x" * 50_000}) for _ in range(3)]
    with caplog.at_level("WARNING", logger="mailtrack"):
        for e in big:
            recorder.record(e)  # must not raise
    # One failed write switches the recorder to the spool: the next events do not wait on the store again.
    assert sum("full" in r.getMessage() and "spooling" in r.getMessage() for r in caplog.records) == 1
    connection.execute("PRAGMA max_page_count = 1073741823")  # space again
    assert recorder.drain() is True
    assert sorted(stored_ids(db)[1:]) == sorted(e.event_id for e in big)


# -- sinks ---------------------------------------------------------------------------------


def test_callback_sink_gets_events_with_first(db: Path, recorders: list[Recorder]) -> None:
    got: list[TrackingEvent] = []
    recorder = make(recorders, db, sinks=[CallbackSink(got.append)])
    events = [event(), event(), event(recipient="b@x")]
    for e in events:
        recorder.record(e)
    wait_until(lambda: len(got) == 3)
    assert [(g.event_id, g.first) for g in got] == [(events[0].event_id, True), (events[1].event_id, False),
                                                    (events[2].event_id, True)]


def test_callback_runs_off_the_request_thread(db: Path, recorders: list[Recorder]) -> None:
    release = threading.Event()
    threads: list[str] = []

    def slow(e: TrackingEvent) -> None:
        threads.append(threading.current_thread().name)
        release.wait(20)

    recorder = make(recorders, db, sinks=[CallbackSink(slow)])
    recorder.record(event())
    recorder.record(event())  # returns although the sink is still busy with the first
    assert len(stored_ids(db)) == 2
    release.set()
    wait_until(lambda: len(threads) == 2)
    assert threading.current_thread().name not in threads


def test_raising_callback_does_not_break_recording(db: Path, recorders: list[Recorder],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    got: list[TrackingEvent] = []

    def boom(e: TrackingEvent) -> None:
        raise RuntimeError("callback exploded")

    recorder = make(recorders, db, sinks=[CallbackSink(boom), CallbackSink(got.append)])
    first = recorder.record(event())
    second = recorder.record(event())
    assert (first.first, second.first) == (True, False)
    wait_until(lambda: len(got) == 2)
    assert stored_ids(db) == [first.event_id, second.event_id]
    failures = [r for r in caplog.records if "event sink" in r.getMessage() and "failed" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].levelno == logging.ERROR
    assert failures[0].exc_info is not None and "callback exploded" in str(failures[0].exc_info[1])


def test_spooled_event_reaches_sinks_after_it_is_stored(db: Path, recorders: list[Recorder],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    got: list[TrackingEvent] = []
    recorder = make(recorders, db, sinks=[CallbackSink(got.append)])
    e = event()
    with Lock(db):
        recorder.record(e)
        wait_until(logged(caplog, "retry from spool failed"), what="a failed background retry")
        assert got == []  # not before the store has decided first
    wait_until(lambda: len(got) == 1)
    assert got[0].event_id == e.event_id and got[0].first is True


def test_recorder_without_store_only_fans_out(recorders: list[Recorder]) -> None:
    got: list[TrackingEvent] = []
    recorder = Recorder(None, sinks=[CallbackSink(got.append)])
    recorders.append(recorder)
    returned = recorder.record(event())
    assert returned.first is None
    wait_until(lambda: len(got) == 1)
    assert recorder.drain() is True


# -- close -------------------------------------------------------------------------------------


def test_close_drains(db: Path, spool: Path, recorders: list[Recorder]) -> None:
    got: list[TrackingEvent] = []
    settled = write_spool(spool, "1-1.jsonl", [event(message_id="at-start")])
    recorder = make(recorders, db, sinks=[CallbackSink(got.append)], **IDLE)
    wait_until(lambda: not settled.exists())  # the start-up drain has run; the next background one is an hour away
    wait_until(lambda: len(got) == 1)
    events = [event(message_id="late"), event(message_id="late")]
    with recorder._drain_lock:  # the start-up drain has finished (it removed `settled` while holding this lock)
        late = write_spool(spool, "2-2.jsonl", events)  # a spool left by a process that died meanwhile
    assert len(stored_ids(db)) == 1 and late.exists()  # nobody drains it before close(): the next retry is an hour away
    recorder.close()
    assert stored_ids(db)[1:] == [e.event_id for e in events]
    assert [g.event_id for g in got[1:]] == [e.event_id for e in events]  # sinks flushed before close returns
    assert [g.first for g in got] == [True, True, False]
    assert not late.exists()
    recorder.close()  # idempotent
    assert all(not t.is_alive() for t in recorder._threads)


def test_close_stores_own_spool_and_flushes_sinks(db: Path, spool: Path, recorders: list[Recorder]) -> None:
    got: list[TrackingEvent] = []
    recorder = make(recorders, db, sinks=[CallbackSink(got.append)], **IDLE)
    events = [event(), event()]
    with Lock(db):
        for e in events:
            recorder.record(e)
    recorder.close()  # whether or not a background retry got there first, everything is in once close returns
    assert stored_ids(db) == [e.event_id for e in events]
    assert [g.event_id for g in got] == [e.event_id for e in events]
    assert spool_lines(spool) == []


def test_close_while_still_failing_leaves_spool_for_next_start(db: Path, spool: Path, recorders: list[Recorder]) -> None:
    recorder = make(recorders, db, **IDLE)
    e = event()
    with Lock(db):
        recorder.record(e)
        recorder.close(timeout=2)
        assert [line["event_id"] for line in spool_lines(spool)] == [e.event_id]
    make(recorders, db)  # the next start recovers it
    wait_until(lambda: stored_ids(db) == [e.event_id])
    wait_until(lambda: list(spool.glob("*.jsonl")) == [])


# -- found by these tests (each a fixed bug) ---------------------------------------------------


def test_record_never_raises_for_an_event_that_is_not_json_serializable(db: Path, recorders: list[Recorder]) -> None:
    # Recorder.record promises never to raise. An event whose metadata is not JSON (a datetime, say, in an event
    # built by library code) fails the store write with TypeError, and then _spool's json.dumps raises the same
    # TypeError out of record(), because _spool only catches OSError.
    recorder = make(recorders, db, **IDLE)
    recorder.record(event(metadata={"sent_at": datetime(2024, 1, 1, tzinfo=timezone.utc)}))


def test_a_new_spool_file_is_never_taken_by_another_recorder_before_its_owner_locks_it(
    db: Path, spool: Path, recorders: list[Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spool._open creates "<pid>-<ns>.jsonl" and only then flocks it. Every live Recorder globs the
    # spool directory on each retry tick (every retry_interval), so another worker can take the lock on the
    # new, still-empty file, find nothing in it, and unlink it. The owner then appends its events to an
    # unlinked inode that no drain ever finds: events that the store did not take are lost. The interleaving
    # is forced here by running the other worker's drain between the owner's os.open and flock.
    owner = make(recorders, db, **IDLE)
    other = make(recorders, db, busy_timeout=1.0, **IDLE)
    lock = Lock(db)
    real = fcntl.flock
    armed = {"now": False}

    class Fcntl:
        LOCK_EX, LOCK_NB, LOCK_UN, LOCK_SH = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN, fcntl.LOCK_SH

        @staticmethod
        def flock(fd: int, operation: int) -> None:
            if armed["now"]:
                armed["now"] = False
                lock.release()  # the store recovers meanwhile...
                other.drain()  # ...and another worker's periodic drain runs in the window
            real(fd, operation)

    monkeypatch.setattr("mailtrack.delivery.spool.fcntl", Fcntl)
    e = event()
    lock.connection.execute("BEGIN EXCLUSIVE")
    armed["now"] = True
    owner.record(e)  # store locked -> spooled
    lock.release()
    owner.drain()
    other.drain()
    owner.close()
    assert stored_ids(db) == [e.event_id] or [line["event_id"] for line in spool_lines(spool)] == [e.event_id]


def test_after_a_failure_events_queue_in_order_and_first_stays_right(db: Path, recorders: list[Recorder]) -> None:
    # Open A fails (store locked) and is spooled; the lock goes; open B for the same recipient comes next.
    # B must not overtake A: A is the first open, stored first.
    recorder = make(recorders, db, **IDLE)
    with Lock(db):
        a = recorder.record(event(recipient="same@x"))
    b = recorder.record(event(recipient="same@x"))  # the store works again, but A still waits in the spool
    assert spool_lines(Path(str(db) + ".spool"))[-1]["event_id"] == b.event_id
    assert recorder.drain() is True
    assert recorder.store is not None
    stored = recorder.store.events()
    assert [(e.event_id, e.first) for e in stored] == [(a.event_id, True), (b.event_id, False)]
    c = recorder.record(event(recipient="same@x"))  # drained: straight to the store again
    assert c.first is False and recorder.store.count() == 3
