"""Attacks on ``mailtrack serve``'s writer process (``--writer process``, the default) with real servers, real
signals and, where it is installed, a real uWSGI: a writer child that stops answering (SIGSTOP), the WSGI entry
point under a server that embeds Python.

Every wait is bounded; no timing is asserted beyond "it ended".
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.helpers import wait_until
from test_serve_durable import writer_children
from test_serve_http import (
    KEYS,
    Load,
    Server,
    assert_firsts_consistent,
    assert_no_duplicates,
    http_request,
    mixed_paths,
    path_of,
    stored,
)

import mailtrack
from mailtrack.http.endpoints import GIF

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals are POSIX")


def exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("server_kind", ["uvicorn", "waitress"])
def test_sigterm_with_a_stopped_writer_child_still_stops_the_server_and_loses_nothing_answered(
        serve: Callable[..., Server], tmp_path: Path, tracker: mailtrack.Tracker, server_kind: str) -> None:
    """The writer child stopped (SIGSTOP: a hung disk, a debugger) while requests come: the writer thread's call
    to it never returned and held the writer's lock, so SIGTERM's close waited for ever (the server hung until
    the child was resumed). Now the stuck child is killed after the call timeout: the requests are answered
    (their events spooled), SIGTERM stops the server, no child is left, and a restart stores every answered
    event once."""
    db = tmp_path / "events.sqlite"
    server = serve(db, "--server", server_kind, "--threads", "8")
    (child,) = wait_until(lambda: writer_children(server.pid), timeout=30, what="the writer process")
    warm = path_of(tracker.tracking_url("open", message_id="m-warm", recipient="w@example.com"))
    assert server.get(warm, headers={"User-Agent": "warm"}).status == 200  # the loop's lane is connected
    os.kill(child, signal.SIGSTOP)
    try:
        load = Load(server.port, mixed_paths(tracker, 60, "m-stopped", recipients=7), threads=6)
        workers = load.run()
        wait_until(lambda: len(load.completed) + len(load.failed) >= 20, timeout=120, interval=0.01,
                   what="20 requests answered with the writer child stopped")
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(90)
        except subprocess.TimeoutExpired:
            pytest.fail("mailtrack serve did not stop on SIGTERM with its writer child stopped")
        for worker in workers:
            worker.join(60)
        assert code == 0, server.stderr()[-3000:]
        wait_until(lambda: not exists(child), timeout=10, what="the stopped writer child gone")
    finally:
        if exists(child):
            os.kill(child, signal.SIGCONT)
    answered = load.completed | {"warm"}
    restarted = serve(db, "--server", server_kind)
    wait_until(lambda: answered <= {e.user_agent for e in stored(db)}, timeout=60, what="every answered event stored")
    restarted.stop()
    events = stored(db)
    assert_no_duplicates(events)
    assert_firsts_consistent(events)


def uwsgi_binary() -> str | None:
    """A real uWSGI (``pip install uwsgi`` builds one): beside this Python, or on PATH."""
    beside = Path(sys.executable).parent / "uwsgi"
    return str(beside) if beside.is_file() else shutil.which("uwsgi")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.timeout(120)
@pytest.mark.skipif(uwsgi_binary() is None, reason="needs a uWSGI binary (pip install uwsgi; `python3 tasks.py test` builds one when it can)")
def test_the_wsgi_entry_point_under_uwsgi_stores_events(tmp_path: Path, tracker: mailtrack.Tracker) -> None:
    """Under uWSGI ``sys.executable`` is the uwsgi binary: the writer child was ``uwsgi -m ...`` ("unable to load
    configuration"), exited at once, and every event was spooled, none stored while the server ran."""
    binary = uwsgi_binary()
    assert binary is not None
    db = tmp_path / "events.sqlite"
    port = free_port()
    env = {**os.environ, "MAILTRACK_SECRET_KEY": KEYS, "MAILTRACK_BASE_URL": "https://t.example.com",
           "MAILTRACK_DB": str(db),
           "PYTHONPATH": os.pathsep.join([str(Path(mailtrack.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "uwsgi.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "--http-socket", f"127.0.0.1:{port}", "--module", "mailtrack.wsgi:application",
                                 "--master", "--processes", "1", "--enable-threads", "--die-on-term",
                                 "--home", sys.prefix], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env)
    try:
        pixel = path_of(tracker.tracking_url("open", message_id="m-uwsgi", recipient="u@example.com"))

        def answered() -> bool:
            try:
                reply = http_request(port, "GET", pixel, headers={"User-Agent": "uwsgi-1"}, timeout=10)
            except OSError:
                assert proc.poll() is None, log.read_text(errors="replace")
                return False
            return reply.status == 200 and reply.body == GIF

        wait_until(answered, timeout=60, interval=0.2, what="uWSGI answering the pixel")
        wait_until(lambda: [e.user_agent for e in stored(db)] == ["uwsgi-1"], timeout=10, interval=0.1,
                   what=f"the event in the database (uWSGI log: {log})")
        assert "unable to load configuration" not in log.read_text(errors="replace")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
