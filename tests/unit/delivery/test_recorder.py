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
from support.volumes import small_volume

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
        self.connection = sqlite3.connect(db, isolation_level=None, check_same_thread=False)  # released by any thread

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


def test_store_full_spools_then_drains(tmp_path: Path, recorders: list[Recorder],
                                      caplog: pytest.LogCaptureFixture) -> None:
    # A real full disk: the database on a small tmpfs filled to the last byte; the spool on another volume.
    with small_volume(tmp_path / "volume", 1 << 20) as volume:
        db = volume.path / "events.sqlite"
        recorder = Recorder(SQLiteStore(db, busy_timeout=0.05), spool_dir=tmp_path / "spool", **IDLE)
        recorders.append(recorder)
        assert recorder.wait_recovered(30)
        recorder.record(event())
        volume.fill()
        big = [event(metadata={"blob": "x" * 50_000}) for _ in range(3)]
        with caplog.at_level("WARNING", logger="mailtrack"):
            for e in big:
                assert recorder.record(e).first is None  # must not raise; spooled (the store could not tell)
        # One failed write switches the recorder to the spool: the next events do not wait on the store again.
        assert sum("full" in r.getMessage() and "spooling" in r.getMessage() for r in caplog.records) == 1
        assert [line["event_id"] for line in spool_lines(tmp_path / "spool")] == [e.event_id for e in big]
        health = recorder.health()
        assert (health.store_ok, health.spooling, health.spool_events, health.lost) == (False, True, 3, 0)
        assert recorder.drain() is False  # still full
        volume.free()
        assert recorder.drain() is True
        assert sorted(stored_ids(db)[1:]) == sorted(e.event_id for e in big)
        health = recorder.health()
        assert (health.store_ok, health.spooling, health.spool_events, health.lost) == (True, False, 0, 0)
        recorder.close()


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


# -- group commit (issue 12) --------------------------------------------------------------------


class GatedStore(SQLiteStore):
    """A real SQLiteStore whose first record_many waits for ``gate``; every batch's size is kept."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def record_many(self, events: Any, outbox: Any = ()) -> list[TrackingEvent]:
        if not self.batches:
            self.entered.set()
            self.gate.wait(30)
        self.batches.append(len(events))
        return super().record_many(events, outbox)


def test_concurrent_events_share_one_commit_and_each_answer_waits_for_its_own(db: Path,
                                                                              recorders: list[Recorder]) -> None:
    store = GatedStore(db)
    recorder = Recorder(store, outbox=["https://hook.example/"], **IDLE)
    recorders.append(recorder)
    returned: dict[str, TrackingEvent] = {}
    seen_stored: dict[str, bool] = {}

    def request(e: TrackingEvent) -> None:
        got = recorder.record(e)
        returned[e.event_id] = got
        seen_stored[e.event_id] = e.event_id in stored_ids(db)  # what the response could rely on when it went out

    head = event(recipient="a@x")
    first = threading.Thread(target=request, args=(head,))
    first.start()
    assert store.entered.wait(30)  # the writer is inside the first commit; the next requests queue behind it
    rest = [event(recipient=f"r{i % 3}@x") for i in range(10)]
    threads = [threading.Thread(target=request, args=(e,)) for e in rest]
    for n, thread in enumerate(threads, 1):
        thread.start()
        wait_until(lambda n=n: recorder._queue.qsize() == n, what="the requests queued for the writer, in order")
    assert returned == {}  # nobody answered before the commit
    store.gate.set()
    for thread in [first, *threads]:
        thread.join(30)
    assert store.batches == [1, 10]  # the ten queued requests went in as one transaction
    assert all(seen_stored.values()) and len(seen_stored) == 11
    assert [returned[e.event_id].first for e in rest] == [True, True, True] + [False] * 7  # decided in queue order
    assert len(store.outbox_rows()) == 11


def test_one_refused_event_does_not_take_its_batch_down(db: Path, recorders: list[Recorder]) -> None:
    store = GatedStore(db)
    recorder = Recorder(store, **IDLE)
    recorders.append(recorder)
    blocker = threading.Thread(target=recorder.record, args=(event(message_id="head"),))
    blocker.start()
    assert store.entered.wait(30)
    with sqlite3.connect(db) as connection:  # the store refuses this one event (a constraint), not the others
        connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.message_id = 'bad' "
                           "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    connection.close()
    bad = event(message_id="bad")
    good = [event(message_id="good"), event(message_id="good")]
    threads = [threading.Thread(target=recorder.record, args=(e,)) for e in (good[0], bad, good[1])]
    for thread in threads:
        thread.start()
        wait_until(lambda t=thread: recorder._queue.qsize() == threads.index(t) + 1, what="queued in order")
    store.gate.set()
    for thread in [blocker, *threads]:
        thread.join(30)
    assert store.batches[:2] == [1, 3]  # tried together, then one by one
    # The refused event is spooled (the recorder stays on the spool from then on, to keep the order); the drain
    # stores the rest and sets the refused one aside.
    assert recorder.drain() is True
    assert [e.first for e in store.events(message_id="good")] == [True, False]
    assert store.events(message_id="bad") == []
    assert bad.event_id in recorder.spool.rejected.read_text()
    assert recorder.health().lost == 0


# -- faults found by testing (issue 12): shutdown, the cap, summaries, reconnect ---------------


def test_events_in_memory_at_shutdown_are_spooled_when_the_spool_works_again(
        db: Path, tmp_path: Path, recorders: list[Recorder], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    blocker = tmp_path / "spool-volume"
    blocker.write_text("a file where the spool's directory should be: every spool write fails")
    recorder = make(recorders, db, spool_dir=blocker / "spool", **IDLE)
    events = [event(recipient=f"r{i}") for i in range(5)]
    with Lock(db):
        for e in events:
            recorder.record(e)  # answered: neither store nor spool took it
        health = recorder.health()
        assert (health.memory_events, health.lost, health.ok) == (5, 0, False)
        blocker.unlink()  # the spool's disk has room again (the store is still locked)
        recorder.close(timeout=2)
    assert [line["event_id"] for line in spool_lines(blocker / "spool")] == [e.event_id for e in events]
    assert recorder.health().lost == 0
    assert not any("LOST" in r.getMessage() for r in caplog.records)


def test_events_in_memory_at_shutdown_with_nowhere_to_go_are_counted_and_logged(
        db: Path, tmp_path: Path, recorders: list[Recorder], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    recorder = make(recorders, db, spool_dir=blocker / "spool", **IDLE)
    with Lock(db):
        for i in range(7):
            assert recorder.record(event(recipient=f"r{i}")).first is None  # still answered
        recorder.close(timeout=2)
    assert recorder.health().lost == 7 and recorder.health().memory_events == 0
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR and "shutting down with" in r.getMessage()]
    assert "7 answered event(s)" in line.getMessage() and "LOST" in line.getMessage()
    assert stored_ids(db) == []


def test_a_full_spool_loses_and_counts_with_one_summary_line_per_interval(
        db: Path, spool: Path, recorders: list[Recorder], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    recorder = make(recorders, db, spool_max_bytes=4096, **IDLE)
    with Lock(db):
        results = [recorder.record(event(recipient=f"r{i}")) for i in range(100)]
        health = recorder.health()
    assert all(r.first is None for r in results)
    spooled = len(spool_lines(spool))
    assert 0 < spooled < 100
    assert health.spool_full and health.lost == 100 - spooled and health.spool_events == spooled
    assert health.spool_bytes <= 4096 + 4096  # one page of slack: allocation is per block
    full = [r for r in caplog.records if "holds its maximum of 4,096 bytes (--spool-max-bytes" in r.getMessage()]
    assert len(full) == 1 and full[0].levelno == logging.ERROR and "--spool-max-bytes" in full[0].getMessage()
    lost_lines = [r.getMessage() for r in caplog.records if "answered events LOST" in r.getMessage()]
    assert len(lost_lines) == 1  # one line at once; the rest are held for the interval's summary
    recorder.close(timeout=2)
    lost_lines = [r.getMessage() for r in caplog.records if "answered events LOST" in r.getMessage()]
    assert len(lost_lines) == 2
    counts = [int(line.rsplit("[", 1)[1].split()[0]) for line in lost_lines]
    assert sum(counts) == 100 - spooled  # every lost event is in a count, none is logged on its own


def test_a_failing_store_is_logged_once_per_interval_not_per_event(
        db: Path, recorders: list[Recorder], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    recorder = make(recorders, db, **IDLE)
    for _ in range(3):  # three outages, each ended by a drain
        with Lock(db):
            for i in range(20):
                recorder.record(event(recipient=f"r{i}"))
        assert recorder.drain() is True
    failures = [r for r in caplog.records if "store write failed" in r.getMessage()]
    assert len(failures) == 1  # within one 10 s interval: the later outages are held for the summary
    recorder.close(timeout=2)
    failures = [r.getMessage() for r in caplog.records if "store write failed" in r.getMessage()]
    assert len(failures) == 2 and failures[1].endswith("[2 event(s) in the last 10 s]")
    assert len(stored_ids(db)) == 60


def test_a_database_read_only_at_start_is_written_once_writable(tmp_path: Path, recorders: list[Recorder]) -> None:
    from support.volumes import ReadOnly

    data = tmp_path / "data"
    data.mkdir()
    db = data / "events.sqlite"
    SQLiteStore(db).close()
    with ReadOnly(db) as readonly:
        recorder = Recorder(SQLiteStore(db, busy_timeout=0.05), **FAST)
        recorders.append(recorder)
        before = [recorder.record(event(recipient=f"r{i}")) for i in range(3)]
        assert [e.first for e in before] == [None] * 3  # spooled
        wait_until(lambda: not recorder.health().store_ok and recorder.health().spool_events == 3)
        readonly.writable()
        wait_until(lambda: len(stored_ids(db)) == 3, what="the spool drained into the now writable database")
        wait_until(lambda: recorder.health().store_ok, what="the drain finished (off the spool again)")
        after = recorder.record(event(recipient="r0"))
        assert after.first is False  # straight into the store again: the read-only connection is gone
        assert recorder.health().store_ok
        recorder.close()


def test_a_drain_frees_the_space_of_each_stored_batch_and_resumes_where_it_stopped(spool: Path) -> None:
    from mailtrack.delivery.spool import Spool
    from mailtrack.storage.base import StoreUnavailable

    events = [event(recipient=f"r{i}", metadata={"pad": "p" * 200}) for i in range(2000)]
    path = write_spool(spool, "1-1.jsonl", events)
    size = path.stat().st_size
    taken: list[TrackingEvent] = []

    def store_until_the_fourth_batch(batch: list[TrackingEvent]) -> None:
        if len(taken) >= 3 * 256:
            raise StoreUnavailable("full")  # the store fills up again after three batches
        taken.extend(batch)

    drained: list[int] = []
    assert Spool(spool).drain_file(path, store_until_the_fourth_batch, done=drained.append) is False
    assert [e.event_id for e in taken] == [e.event_id for e in events[:768]] and drained == [256] * 3
    assert path.exists() and path.stat().st_blocks * 512 < size * 0.75  # the stored lines' blocks went back to the disk
    assert Spool(spool).count_events() == 2000 - 768

    rest: list[TrackingEvent] = []
    assert Spool(spool).drain_file(path, rest.extend) is True
    assert [e.event_id for e in rest] == [e.event_id for e in events[768:]]  # not the stored ones again
    assert not path.exists()


def test_spool_files_are_cut_into_segments_and_a_failed_write_leaves_no_torn_line(tmp_path: Path) -> None:
    from mailtrack.delivery.spool import Spool

    spool = Spool(tmp_path / "spool", segment_bytes=4096)
    for i in range(100):
        spool.append(event(recipient=f"r{i}"))
    files = spool.files()
    assert len(files) > 5 and all(p.stat().st_size < 4096 + 1024 for p in files)  # closed files: any drain takes them
    assert spool.count_events() == 100
    with small_volume(tmp_path / "volume", 64 * 1024) as volume:
        small = Spool(volume.path / "spool")
        small.append(event(recipient="before"))
        volume.fill()
        with pytest.raises(OSError):
            small.append_many([event(metadata={"x": "y" * 20_000})])  # no room: cut back, not half-written
        volume.free()
        small.append(event(recipient="after"))
        small.rotate()
        assert [line["recipient"] for line in spool_lines(volume.path / "spool")] == ["before", "after"]


# -- record_async: the event loop's way (mailtrack serve on uvicorn) -----------------------------------------------

def test_record_async_answers_after_the_commit_with_first(db: Path, recorders: list[Recorder]) -> None:
    import asyncio

    recorder = make(recorders, db)

    async def main() -> list[TrackingEvent]:
        return list(await asyncio.gather(*(recorder.record_async(event()) for _ in range(50))))

    stored = asyncio.run(main())
    assert [e.first for e in stored] == [True] + [False] * 49  # decided in order by the group commit
    assert len(stored_ids(db)) == 50  # committed before the coroutines returned, not "eventually"


def test_record_async_with_a_stuck_writer_spools_the_event_itself_once(db: Path, spool: Path,
                                                                       recorders: list[Recorder]) -> None:
    import asyncio

    release = threading.Event()
    recorder = make(recorders, db, write_timeout=0.3)
    store = recorder.store
    assert store is not None
    original = store.record_many

    def stuck(events: Any, outbox: Any = ()) -> Any:
        release.wait(30)  # the writer hangs inside the store (a wedged file system, say)
        return original(events, outbox)

    store.record_many = stuck  # type: ignore[method-assign]
    the_event = event()
    answered = asyncio.run(asyncio.wait_for(recorder.record_async(the_event), 10))  # a hang guard
    assert answered.event_id == the_event.event_id
    assert [line["event_id"] for line in spool_lines(spool)] == [the_event.event_id]  # safe before the answer
    release.set()
    wait_until(lambda: stored_ids(db) == [the_event.event_id], timeout=20, what="the event stored once")
