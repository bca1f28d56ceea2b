"""The SQLite store's writer process (mailtrack.storage.writer_process): the same writes as in process, done by a
real child process, which is killed, signalled and orphaned here for real; and the event loop's own lane to it
(``Recorder.record_async``), on asyncio and on uvloop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from support.helpers import wait_until

from mailtrack.delivery.recorder import Recorder
from mailtrack.events import TrackingEvent
from mailtrack.storage.base import StoreUnavailable
from mailtrack.storage.sqlite import SQLiteStore
from mailtrack.storage.writer_process import ProcessWriter, ReplyReader, encode_request

pytestmark = pytest.mark.path_independent  # storage only: checked in conftest.py

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def event(i: int, message_id: str = "m1", recipient: str | None = None, event_type: str = "opened",
          **kwargs: Any) -> TrackingEvent:
    kwargs.setdefault("timestamp", T0 + timedelta(seconds=i))
    if event_type == "clicked":
        kwargs.setdefault("url", f"https://x.example/{i % 3}")
    return TrackingEvent(event_type=event_type, message_id=message_id, recipient=recipient or f"r{i % 4}@x.test",
                         user_agent=f"agent-{i}", tags=("news",), metadata={"campaign": "c", "n": i}, **kwargs)


def mixed(count: int, start: int = 0) -> list[TrackingEvent]:
    return [event(i, message_id=f"m{i % 2}", event_type="clicked" if i % 3 == 0 else "opened")
            for i in range(start, start + count)]


def start(writers: list[ProcessWriter], path: Path, **kwargs: Any) -> ProcessWriter:
    writer = ProcessWriter(path, **kwargs)
    writers.append(writer)
    return writer


def rows(path: Path) -> list[tuple[Any, ...]]:
    """Every stored event as the store gives it back, without its row id (the same in either store)."""
    store = SQLiteStore(path)
    try:
        return [(e.event_id, e.event_type, e.timestamp, e.message_id, e.recipient, e.url, e.first, e.user_agent,
                 tuple(e.tags), dict(e.metadata)) for e in store.events()]
    finally:
        store.close()


def child_of(writer: ProcessWriter) -> int:
    assert writer._process is not None
    return writer._process.pid


def test_the_child_stores_exactly_what_the_store_itself_stores(tmp_path: Path, writers: list[ProcessWriter]) -> None:
    events = mixed(40)
    events += [events[3], events[7]]  # retries of stored events: stored once, with their stored first
    in_process = SQLiteStore(tmp_path / "a.sqlite")
    expected = in_process.record_many(events[:25], ["https://hook.example/"])
    expected += in_process.record_many(events[25:], ["https://hook.example/"])
    in_process.close()
    writer = start(writers, tmp_path / "b.sqlite")
    got = writer.record_many(events[:25], ["https://hook.example/"])
    got += writer.record_many(events[25:], ["https://hook.example/"])
    assert got == expected  # the same events, the same first flags (in the batch and across batches)
    assert [e.first for e in got[:40]].count(True) == len({(e.event_type, e.message_id, e.recipient) for e in events})
    assert [e.first for e in got[40:]] == [got[3].first, got[7].first]  # a retry comes back with its stored first
    assert rows(tmp_path / "b.sqlite") == rows(tmp_path / "a.sqlite")
    one = writer.record(event(99, recipient="new@x.test"))
    assert one.first is True and writer.record(event(100, recipient="new@x.test")).first is False
    b = SQLiteStore(tmp_path / "b.sqlite")
    assert len(b.outbox_rows()) == 40 and b.count() == 42
    b.close()
    assert writer.starts == 1  # one child for all of it


def test_bad_arguments_are_refused_before_anything_is_sent(tmp_path: Path, writers: list[ProcessWriter]) -> None:
    writer = start(writers, tmp_path / "e.sqlite")
    with pytest.raises(TypeError):
        writer.record_many(event(1))  # type: ignore[arg-type]  # one event, not a list
    with pytest.raises(TypeError):
        writer.record("not an event")  # type: ignore[arg-type]
    assert writer.record_many([]) == [] and writer.starts == 0  # nothing to do: no child
    with pytest.raises(ValueError):
        ProcessWriter(tmp_path / "e.sqlite", roll_interval=-1)


def test_a_killed_child_fails_the_batch_then_a_new_child_takes_the_next(tmp_path: Path,
                                                                       writers: list[ProcessWriter]) -> None:
    writer = start(writers, tmp_path / "e.sqlite").start()
    events = mixed(10)
    writer.record_many(events[:5])
    os.kill(child_of(writer), signal.SIGKILL)
    wait_until(lambda: writer._process is not None and writer._process.poll() is not None, timeout=10)
    retried = events[5:]
    # the dead child is noticed before sending (a new one takes the batch), or while waiting (StoreUnavailable)
    try:
        writer.record_many(retried)
    except StoreUnavailable as exc:
        assert "writer process" in str(exc)
        writer.record_many(retried)
    assert writer.starts == 2
    assert [r[0] for r in rows(tmp_path / "e.sqlite")] == [e.event_id for e in events]


def test_a_child_killed_while_it_holds_a_batch_raises_store_unavailable(tmp_path: Path,
                                                                       writers: list[ProcessWriter]) -> None:
    """SIGSTOP keeps the child from answering; it is killed while the batch waits: the caller hears of it."""
    writer = start(writers, tmp_path / "e.sqlite").start()
    writer.record_many(mixed(1))
    pid = child_of(writer)
    os.kill(pid, signal.SIGSTOP)
    killer = subprocess.Popen([sys.executable, "-c", f"import os, signal, time; time.sleep(0.5); "
                               f"os.kill({pid}, signal.SIGKILL)"])
    batch = mixed(3, start=1)
    try:
        with pytest.raises(StoreUnavailable, match="writer process stopped"):
            writer.record_many(batch)
    finally:
        killer.wait(10)
    assert [e.event_id for e in writer.record_many(batch)] == [e.event_id for e in batch]  # a new child took it
    assert writer.starts == 2


def test_a_store_that_cannot_be_opened_is_unavailable_and_the_child_stays(tmp_path: Path,
                                                                         writers: list[ProcessWriter]) -> None:
    writer = start(writers, tmp_path / "missing" / "e.sqlite")
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            writer.record_many(mixed(2))
    assert writer.starts == 1  # no restart loop: the child answered each time
    (tmp_path / "missing").mkdir()
    assert len(writer.record_many(mixed(2))) == 2  # opened once it can be


def test_the_child_rolls_the_stats_when_told(tmp_path: Path, writers: list[ProcessWriter]) -> None:
    path = tmp_path / "e.sqlite"
    writer = start(writers, path, roll_interval=0.05).start()
    writer.record_many(mixed(600))  # more than one roll step
    store = SQLiteStore(path)
    try:
        wait_until(lambda: store.unrolled() == 0, timeout=30, what="the child rolled every event")
        still = start(writers, tmp_path / "f.sqlite").start()  # no roll_interval: no rolls
        still.record_many(mixed(3))
        other = SQLiteStore(tmp_path / "f.sqlite")
        try:
            assert other.unrolled() == 3
        finally:
            other.close()
    finally:
        store.close()


def test_ctrl_c_and_sigterm_are_for_the_server_the_child_finishes_and_exits_on_close(
        tmp_path: Path, writers: list[ProcessWriter]) -> None:
    writer = start(writers, tmp_path / "e.sqlite").start()
    writer.record_many(mixed(1))  # the child is past its start-up
    pid = child_of(writer)
    assert os.getpgid(pid) != os.getpgrp()  # its own session: Ctrl-C at the terminal does not reach it
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    assert len(writer.record_many(mixed(3))) == 3 and child_of(writer) == pid
    process = writer._process
    assert process is not None
    writer.close(timeout=10)
    assert process.returncode == 0 and writer._process is None
    assert len(writer.record_many(mixed(2, start=3))) == 2 and writer.starts == 2  # a later write starts a new one


def test_the_child_exits_when_the_server_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from datetime import datetime, timezone
        from mailtrack.events import TrackingEvent
        from mailtrack.storage.writer_process import ProcessWriter
        writer = ProcessWriter({str(tmp_path / "e.sqlite")!r})
        writer.record_many([TrackingEvent(event_type="opened", message_id="m", recipient="r@x",
                                          timestamp=datetime.now(timezone.utc))])
        print(writer._process.pid, flush=True)
        sys.stdin.read()
    """)
    server = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        child = int(server.stdout.readline())
        server.kill()
        server.wait(10)

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            status = Path(f"/proc/{child}/stat")
            return status.exists() and status.read_text().split(") ")[1].startswith("Z")  # exited, not reaped
        wait_until(gone, timeout=20, what="the orphaned writer process exited")
    finally:
        if server.poll() is None:
            server.kill()


def test_frames_are_read_whole_whatever_the_pieces() -> None:
    reader = ReplyReader()
    import pickle
    import struct

    def frame(value: Any) -> bytes:
        payload = pickle.dumps(value)
        return struct.pack("!I", len(payload)) + payload

    data = frame(("ok", [True, False])) + frame(("unavailable", "locked")) + frame(("refused", "bad"))
    replies: list[Any] = []
    for i in range(len(data)):  # one byte at a time
        replies += reader.feed(data[i:i + 1])
    assert replies[0] == [True, False]
    assert isinstance(replies[1], StoreUnavailable) and str(replies[1]) == "locked"
    assert type(replies[2]).__name__ == "StoreError" and str(replies[2]) == "bad"
    assert encode_request([], ())[:4] == struct.pack("!I", len(encode_request([], ())) - 4)


# -- the event loop's lane ---------------------------------------------------------------------------


def run_on(loop_kind: str, main: Any) -> Any:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(main)
    return asyncio.run(main)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_record_async_goes_through_the_loops_own_lane_in_group_commits(tmp_path: Path, loop_kind: str) -> None:
    path = tmp_path / "e.sqlite"
    writer = ProcessWriter(path).start()
    recorder = Recorder(SQLiteStore(path), writer=writer, spool_dir=tmp_path / "spool")
    events = mixed(300)

    async def main() -> list[TrackingEvent]:
        first = await recorder.record_async(events[0])  # connects the lane (this one may take the writer thread)
        await asyncio.sleep(0.05)
        rest = await asyncio.gather(*(recorder.record_async(e) for e in events[1:]))
        lane = recorder._lane
        assert lane is not None and lane.transport is not None and not lane.broken
        return [first, *rest]

    try:
        stored = run_on(loop_kind, main())
    finally:
        recorder.close()
    reference = SQLiteStore(tmp_path / "reference.sqlite")
    assert stored == reference.record_many(events)  # the same first flags as one in-process batch in order
    reference.close()
    assert [r[0] for r in rows(path)] == [e.event_id for e in events]
    assert writer._process is None  # the recorder closed its writer


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_child_killed_under_the_lane_loses_nothing_answered(tmp_path: Path, loop_kind: str) -> None:
    path = tmp_path / "e.sqlite"
    writer = ProcessWriter(path).start()
    recorder = Recorder(SQLiteStore(path), writer=writer, spool_dir=tmp_path / "spool",
                        retry_interval=0.05, max_retry_interval=0.2)
    events = mixed(2000)
    answered: list[TrackingEvent] = []

    async def main() -> None:
        await recorder.record_async(events[0])
        await asyncio.sleep(0.05)

        async def client(offset: int) -> None:
            for i in range(offset, len(events), 20):
                answered.append(await recorder.record_async(events[i]))

        async def killer() -> None:
            while len(answered) < 600:
                await asyncio.sleep(0.001)
            os.kill(child_of(writer), signal.SIGKILL)

        await asyncio.gather(killer(), *(client(k) for k in range(1, 21)))

    try:
        run_on(loop_kind, main())
        assert len(answered) == len(events) - 1
        assert writer.starts >= 2  # the killed child was replaced
        assert recorder.drain()
    finally:
        recorder.close()
    stored = [r[0] for r in rows(path)]
    assert sorted(stored) == sorted(e.event_id for e in events)  # every answered event, once
    store = SQLiteStore(path)
    try:
        firsts = [e for e in store.events() if e.first]
        assert len(firsts) == len({(e.event_type, e.message_id, e.recipient) for e in events})
    finally:
        store.close()


def test_a_forked_copy_starts_its_own_child_and_leaves_the_parents_alone(tmp_path: Path,
                                                                         writers: list[ProcessWriter]) -> None:
    """gunicorn --preload and the like: an object made before fork() must not interleave frames with its parent."""
    writer = start(writers, tmp_path / "e.sqlite").start()
    parent_child = child_of(writer)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked process reports through the pipe
        code = 1
        try:
            stored = writer.record_many(mixed(3))
            ok = len(stored) == 3 and child_of(writer) != parent_child and writer.starts == 2
            writer.close(timeout=5)
            code = 0 if ok else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"\x00"
    finally:
        os.waitpid(pid, 0)
        os.close(read)
    assert child_of(writer) == parent_child and len(writer.record_many(mixed(2))) == 2  # the parent's still works
    assert SQLiteStore(tmp_path / "e.sqlite").count() == 5


def test_the_child_answers_a_verdict_the_batch_write_gave(tmp_path: Path, writers: list[ProcessWriter]) -> None:
    """Issue 14: two links of one message clicked within a second are a scanner's; the server learns the verdict
    the child's store gave (machine, reasons, first) with the answer, on both channels, as a store in-process says."""
    writer = start(writers, tmp_path / "e.sqlite")
    at = datetime(2024, 3, 1, tzinfo=timezone.utc)
    clicks = [TrackingEvent(event_type="clicked", timestamp=at + timedelta(seconds=offset), message_id="m1",
                            recipient="a@x", url=f"https://e.com/{link}", link_index=link)
              for offset, link in ((0, 0), (0.5, 1))]
    stored = writer.record_many(clicks)
    assert [(e.machine, e.first) for e in stored] == [("link_scanner", False)] * 2
    assert stored[0].machine_reasons == ("several links of the message clicked within a second",
                                         "clicked before any open")
    person = writer.record(TrackingEvent(event_type="clicked", timestamp=at + timedelta(seconds=30),
                                         message_id="m1", recipient="a@x", url="https://e.com/0", link_index=0))
    assert (person.machine, person.machine_reasons, person.first) == (None, (), True)
    reader = ReplyReader()
    later = [TrackingEvent(event_type="clicked", timestamp=at + timedelta(seconds=offset), message_id="m2",
                           recipient="a@x", url=f"https://e.com/{link}", link_index=link)
             for offset, link in ((0, 0), (0.2, 1))]
    found = writer.loop_channel()
    assert found is not None
    _, channel = found
    channel.setblocking(True)
    channel.sendall(encode_request(later, ()))
    replies: list[Any] = []
    while not replies:
        replies = reader.feed(channel.recv(65536))
    channel.close()
    (answer,) = replies
    assert [value[1] for value in answer] == ["link_scanner", "link_scanner"]
