"""The Recorder over each store (SQLite, PostgreSQL): a store it cannot write makes it spool, and it drains once.

SQLite runs each test twice: the recorder writing through the store itself, and through a
:class:`~mailtrack.storage.writer_process.ProcessWriter` (a child process runs the writes: ``serve``'s default).

test_recorder.py covers the spool itself (files, locks, torn lines, dead
processes) on SQLite; here the same store-facing paths run against both
stores, made unavailable the same way: another connection holding the write
lock past the store's ``busy_timeout``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from support.helpers import wait_until
from support.stores import Backend

from mailtrack.delivery.recorder import Recorder
from mailtrack.events import TrackingEvent
from mailtrack.storage.writer_process import ProcessWriter

FAST = {"retry_interval": 0.05, "max_retry_interval": 0.2}
IDLE = {"retry_interval": 3600.0, "max_retry_interval": 3600.0}


def event(message_id: str = "m1", recipient: str = "a@x", **kwargs: Any) -> TrackingEvent:
    kwargs.setdefault("timestamp", datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc))
    return TrackingEvent(event_type="opened", message_id=message_id, recipient=recipient, **kwargs)


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    made: list[Recorder] = []
    yield made
    for recorder in made:
        recorder.close(timeout=2)


@pytest.fixture(params=["store", "process"])
def writer(request: pytest.FixtureRequest, backend: Backend) -> str:
    """Who writes: the store itself, or a SQLite store's writer process."""
    if request.param == "process" and backend.kind != "sqlite":
        pytest.skip("the writer process is SQLite's (PostgreSQL writes from the server)")
    return str(request.param)


def make(recorders: list[Recorder], backend: Backend, spool: Path, writer: str, **kwargs: Any) -> Recorder:
    process = ProcessWriter(str(backend.path), busy_timeout=0.05) if writer == "process" else None
    recorder = Recorder(backend.open(busy_timeout=0.05), spool_dir=spool, writer=process, **{**FAST, **kwargs})
    recorders.append(recorder)
    assert recorder.wait_recovered(30)
    return recorder


def stored_ids(backend: Backend) -> list[str]:
    return [row[0] for row in backend.sql("SELECT event_id FROM events ORDER BY id")]


def test_record_is_stored_before_it_returns_with_first_and_outbox(backend: Backend, tmp_path: Path,
                                                                  recorders: list[Recorder], writer: str) -> None:
    recorder = make(recorders, backend, tmp_path / "spool", writer, outbox=["https://hook.example/"])
    first, second = recorder.record(event()), recorder.record(event())
    assert (first.first, second.first) == (True, False)
    assert stored_ids(backend) == [first.event_id, second.event_id]
    assert [row[0] for row in backend.sql("SELECT event_id FROM outbox ORDER BY id")] == [first.event_id, second.event_id]


def test_a_locked_store_spools_then_drains_exactly_once_in_order(backend: Backend, tmp_path: Path,
                                                                 recorders: list[Recorder], writer: str) -> None:
    spool = tmp_path / "spool"
    recorder = make(recorders, backend, spool, writer, outbox=["https://hook.example/"])
    events = [event(recipient=f"r{i % 3}") for i in range(9)]
    with backend.lock():
        answered = [recorder.record(e) for e in events]  # never raises: spooled
        assert stored_ids(backend) == []
        assert any(spool.glob("*.jsonl"))
    wait_until(lambda: len(stored_ids(backend)) == 9, timeout=30)
    assert stored_ids(backend) == [e.event_id for e in events]  # in order, once each
    assert len(answered) == 9
    recorder.drain()
    assert stored_ids(backend) == [e.event_id for e in events]
    firsts = backend.sql("SELECT recipient FROM events WHERE first ORDER BY id" if backend.kind == "postgres"
                         else "SELECT recipient FROM events WHERE first = 1 ORDER BY id")
    assert [row[0] for row in firsts] == ["r0", "r1", "r2"]  # decided when stored, in the order answered
    assert len(backend.sql("SELECT id FROM outbox")) == 9


def test_close_stores_what_is_spooled_once_the_store_is_back(backend: Backend, tmp_path: Path,
                                                            recorders: list[Recorder], writer: str) -> None:
    spool = tmp_path / "spool"
    recorder = make(recorders, backend, spool, writer, **IDLE)
    with backend.lock():
        events = [recorder.record(event(message_id=f"m{i}")) for i in range(3)]
        assert stored_ids(backend) == [] and any(spool.glob("*.jsonl"))
    # (the one wake-up retry on the first failure may have drained some already, if it outlived the lock)
    recorder.close()
    assert stored_ids(backend) == [e.event_id for e in events]  # all, once, in order
