"""Durable events under load and under real faults (issue 12): real ``mailtrack serve`` processes, real signals,
a real full disk (a small tmpfs), a database file really read-only (a read-only bind mount), then writable again.

Mounting needs root or a mount-capable sandbox; those tests skip, saying so, elsewhere. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.helpers import wait_until
from support.volumes import ReadOnly, SmallVolume, small_volume
from test_serve_http import Load, Server, assert_firsts_consistent, assert_no_duplicates, mixed_paths, path_of, stored

import mailtrack
from mailtrack.storage.sqlite import SQLiteStore

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and mounts are POSIX")


@pytest.fixture
def volumes(tmp_path: Path) -> Iterator[Callable[[str, int], SmallVolume]]:
    """``volume(name, size)``: a small tmpfs under tmp_path, unmounted after the test (after the servers stop)."""
    stack: list[contextlib.AbstractContextManager[SmallVolume]] = []

    def mount(name: str, size: int) -> SmallVolume:
        manager = small_volume(tmp_path / name, size)
        volume = manager.__enter__()
        stack.append(manager)
        return volume

    try:
        yield mount
    finally:
        for manager in reversed(stack):
            manager.__exit__(None, None, None)


def spool_ids(spool: Path) -> list[str]:
    ids = []
    for path in sorted(spool.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            line = line.lstrip(b"\0")
            if line.strip():
                ids.append(json.loads(line)["user_agent"])
    return ids


def lost_at_shutdown(stderr: str) -> int:
    """The count the server logged for events it had to give up when it stopped (0 when none)."""
    found = re.findall(r"shutting down with (\d+) answered event\(s\)", stderr)
    return sum(int(n) for n in found)


# -- group commit under load: kill -9 -------------------------------------------------------------


@pytest.mark.timeout(240)
def test_kill_9_under_concurrent_load_every_answered_request_is_stored_once(
        serve: Callable[..., Server], tmp_path: Path, tracker: mailtrack.Tracker) -> None:
    db = tmp_path / "events.sqlite"
    server = serve(db, "--threads", "16")
    load = Load(server.port, mixed_paths(tracker, 3000, "m-group", recipients=40), threads=16)
    workers = load.run()
    wait_until(lambda: len(load.completed) >= 400, timeout=120, interval=0.002, what="400 answered requests")
    os.kill(server.pid, signal.SIGKILL)
    for worker in workers:
        worker.join(120)
    assert server.proc.wait(10) == -signal.SIGKILL
    answered = set(load.completed)
    assert 400 <= len(answered) < 3000 and load.failed  # killed mid-load
    events = stored(db)  # nothing restarted: an answered request is a committed event already
    agents = {e.user_agent for e in events}
    assert answered <= agents, sorted(answered - agents)[:10]
    assert agents <= {f"load-{i}" for i in range(3000)}
    assert_no_duplicates(events)
    assert_firsts_consistent(events)


def writer_children(server_pid: int) -> list[int]:
    """The pids of the server's writer processes (their own session: found by parent pid and command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(") ", 1)[1].split()[1]) == server_pid and b"mailtrack.storage.writer_process" in command:
            found.append(int(entry.name))
    return found


@pytest.mark.timeout(240)
def test_kill_9_of_the_writer_process_under_load_loses_nothing_answered(
        serve: Callable[..., Server], tmp_path: Path, tracker: mailtrack.Tracker) -> None:
    """serve's default writer is a child process: killed mid-load, the batches it held are written by a new one
    (or spooled, then drained); every answered request is stored once. Then the server itself is killed."""
    db = tmp_path / "events.sqlite"
    server = serve(db)
    (child,) = wait_until(lambda: writer_children(server.pid), timeout=30, what="the writer process")
    load = Load(server.port, mixed_paths(tracker, 3000, "m-writer", recipients=40), threads=16)
    workers = load.run()
    wait_until(lambda: len(load.completed) >= 500, timeout=120, interval=0.002, what="500 answered requests")
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: len(load.completed) >= 1500, timeout=120, interval=0.002, what="1500 answered requests")
    replacement = wait_until(lambda: [pid for pid in writer_children(server.pid) if pid != child], timeout=30,
                             what="a new writer process")
    assert replacement
    wait_until(lambda: len(load.completed) >= 2000, timeout=120, interval=0.002, what="2000 answered requests")
    os.kill(server.pid, signal.SIGKILL)
    for worker in workers:
        worker.join(120)
    assert server.proc.wait(10) == -signal.SIGKILL
    answered = set(load.completed)
    assert 2000 <= len(answered) < 3000 and not [f for f in load.failed.values() if "HTTP" in f]  # no 5xx: cut off only
    # what a killed child held may be in the spool: a new server drains it
    restarted = serve(db)
    (writer,) = wait_until(lambda: writer_children(restarted.pid), timeout=30, what="the new server's writer")
    wait_until(lambda: not any((tmp_path / "events.sqlite.spool").glob("*.jsonl"))
               or not [p for p in (tmp_path / "events.sqlite.spool").glob("*.jsonl") if p.stat().st_size],
               timeout=60, what="the spool drained")
    restarted.stop()
    events = stored(db)
    agents = {e.user_agent for e in events}
    assert answered <= agents, sorted(answered - agents)[:10]
    assert agents <= {f"load-{i}" for i in range(3000)}
    assert_no_duplicates(events)
    assert_firsts_consistent(events)
    wait_until(lambda: not Path(f"/proc/{writer}").exists(), timeout=20, what="the writer exited with its server")


# -- fault 1: SIGTERM while the disk is full --------------------------------------------------------


def fire(server: Server, tracker: mailtrack.Tracker, count: int, message_id: str) -> set[str]:
    """``count`` requests from 4 threads; all must be answered (pixel or redirect); returns their user agents."""
    load = Load(server.port, mixed_paths(tracker, count, message_id, recipients=5), threads=4)
    for worker in load.run():
        worker.join(60)
    assert len(load.completed) == count, load.failed  # a full disk never costs a recipient the pixel or the redirect
    return {f"load-{i}" for i in range(count)}


@pytest.mark.timeout(240)
def test_sigterm_with_the_database_and_the_spool_disks_full_spools_what_memory_held(
        serve: Callable[..., Server], volumes: Callable[[str, int], SmallVolume], tracker: mailtrack.Tracker) -> None:
    data, spool_volume = volumes("data", 1 << 20), volumes("spool", 1 << 20)
    db, spool = data.path / "events.sqlite", spool_volume.path / "spool"
    server = serve(db, "--spool-dir", str(spool))
    assert server.get("/o/warm-up").status == 200
    data.fill()
    spool_volume.fill()
    answered = fire(server, tracker, 120, "m-full")
    wait_until(lambda: "kept in memory" in server.stderr(), timeout=30, what="the failed spool write logged")
    spool_volume.free()  # the spool's disk has room again; the database's is still full
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    stderr = server.stderr()
    assert lost_at_shutdown(stderr) == 0 and "LOST" not in stderr, stderr[-3000:]
    in_spool = set(spool_ids(spool))
    data.free()  # (reading the database needs a little room too: its -shm file)
    in_store = {e.user_agent for e in stored(db)}
    assert answered <= in_spool | in_store  # every answered event is somewhere durable
    restarted = serve(db, "--spool-dir", str(spool))
    wait_until(lambda: answered <= {e.user_agent for e in stored(db)}, timeout=60, what="the spool drained")
    restarted.stop()
    events = stored(db)
    assert_no_duplicates(events)
    assert_firsts_consistent(events)


@pytest.mark.timeout(240)
def test_sigterm_with_nowhere_to_write_counts_and_logs_every_lost_event(
        serve: Callable[..., Server], volumes: Callable[[str, int], SmallVolume], tracker: mailtrack.Tracker) -> None:
    data = volumes("data", 1 << 20)
    db = data.path / "events.sqlite"
    server = serve(db)  # the spool next to the database: the same full disk
    assert server.get("/o/warm-up").status == 200
    data.fill()
    answered = fire(server, tracker, 120, "m-nowhere")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    stderr = server.stderr()
    lost = lost_at_shutdown(stderr)
    data.free()
    serve(db).stop()  # recovers whatever did reach the spool
    saved = {e.user_agent for e in stored(db)} & answered
    assert lost > 0, stderr[-3000:]  # the disk really was full
    assert len(saved) + lost == len(answered)  # every answered event is stored, or counted as lost: none vanishes
    [line] = [line for line in stderr.splitlines() if "shutting down with" in line]
    assert " ERROR " in line and "LOST" in line


# -- fault 2: a database read-only at start; the spool cap ----------------------------------------------


@pytest.mark.timeout(240)
def test_a_database_read_only_at_start_is_written_once_writable(
        serve: Callable[..., Server], tmp_path: Path, tracker: mailtrack.Tracker) -> None:
    db = tmp_path / "events.sqlite"
    SQLiteStore(db).close()
    with ReadOnly(db) as readonly:
        server = serve(db)
        answered = fire(server, tracker, 30, "m-ro")
        wait_until(lambda: "readonly" in server.stderr(), timeout=30, what="the read-only failure logged")
        assert stored(db) == []
        readonly.writable()
        wait_until(lambda: {e.user_agent for e in stored(db)} == answered, timeout=60,
                   what="the spooled events in the database once it is writable")
        pixel = path_of(tracker.tracking_url("open", message_id="m-ro-after", recipient="x@example.com"))
        assert server.get(pixel, headers={"User-Agent": "after"}).status == 200
        # Stored once, as the first open: straight in, or through the spool when it came while the drain was
        # finishing its last file (the recorder leaves the spool only after that pass, a moment after the
        # spooled events reached the database).
        wait_until(lambda: [e.first for e in stored(db) if e.user_agent == "after"] == [True], timeout=60,
                   what="the event answered after the outage in the database")
        server.stop()
    assert server.stderr().count("store write failed") == 1  # one line for the whole outage, not one per event


@pytest.mark.timeout(240)
def test_the_spool_is_capped_and_events_past_the_cap_are_counted(
        serve: Callable[..., Server], tmp_path: Path, tracker: mailtrack.Tracker) -> None:
    db = tmp_path / "events.sqlite"
    SQLiteStore(db).close()
    with ReadOnly(db):
        server = serve(db, "--spool-max-bytes", "16K")
        answered = fire(server, tracker, 120, "m-cap")
        wait_until(lambda: "holds its maximum of 16,384 bytes" in server.stderr(), timeout=30, what="the cap logged")
        spool = Path(str(db) + ".spool")
        assert sum(p.stat().st_size for p in spool.glob("*.jsonl")) <= 16384
        spooled = set(spool_ids(spool))
        assert 0 < len(spooled) < len(answered)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
    stderr = server.stderr()
    counts = [int(n) for n in re.findall(r"answered events LOST.*\[(\d+) event\(s\)", stderr)]
    assert sum(counts) == len(answered) - len(spooled), stderr[-3000:]  # every event past the cap is counted
    # Summarized, not one line per lost event: the first failure at once, then a line per interval (a line may name
    # the cap twice: the store's failure and the spool's refusal), however many events were lost.
    assert stderr.count("holds its maximum") <= 2 * (1 + len(counts)) < sum(counts)


# -- fault 3: the spool drains back after a disk-full episode ---------------------------------------------


@pytest.mark.timeout(300)
def test_a_spool_bigger_than_the_free_space_drains_into_the_database_on_the_same_small_volume(
        serve: Callable[..., Server], tmp_path: Path, volumes: Callable[[str, int], SmallVolume]) -> None:
    from datetime import datetime, timezone

    events = [mailtrack.TrackingEvent(event_type="opened", message_id=f"m{i % 4}", recipient=f"r{i % 300}@x",
                                      timestamp=datetime(2024, 5, 1, tzinfo=timezone.utc), user_agent=f"ua-{i}-" + "u" * 300)
              for i in range(6000)]
    lines = b"".join(json.dumps(e.to_dict()).encode() + b"\n" for e in events)
    # How much room the database needs for them (a dry run on an ordinary disk, WAL included).
    scratch = tmp_path / "scratch.sqlite"
    store = SQLiteStore(scratch)
    for at in range(0, len(events), 256):
        store.record_many(events[at:at + 256])
    store.close()
    need = sum(p.stat().st_size for p in tmp_path.glob("scratch.sqlite*"))

    volume = volumes("small", need + len(lines) + (4 << 20))
    db = volume.path / "events.sqlite"
    SQLiteStore(db).close()
    spool = Path(str(db) + ".spool")
    spool.mkdir()
    (spool / "4242-1.jsonl").write_bytes(lines)  # left by a server that died during a disk-full episode
    # Leave less free space than the database needs: the spool must give its space back while it drains.
    filler = volume.path / "filler"
    with open(filler, "wb") as out:
        out.write(b"\0" * max(0, volume.available() - (need - len(lines) // 2)))
    assert volume.available() < need < volume.available() + len(lines)
    server = serve(db)
    try:
        wait_until(lambda: not list(spool.glob("*.jsonl")), timeout=float(os.environ.get("DRAIN_WAIT", 200)),
                   interval=0.5, what="the spool drained")
    except AssertionError:
        raise AssertionError(f"not drained; free {volume.available()}; server said: {server.stderr()[-3000:]}") from None
    server.stop()
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM events").fetchone()[0] == len(events)
    connection.close()
    assert_firsts_consistent(stored(db))
    assert "Traceback" not in server.stderr()
