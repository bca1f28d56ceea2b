"""Review of issue 12 (attacker): ``mailtrack serve --workers N`` when things go wrong around its workers.

Real ``mailtrack serve`` subprocesses and their forked workers, watched
through ``/proc``. Every wait is bounded by ``wait_until`` or a subprocess
timeout (hang guards), never a timing assertion.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.helpers import wait_until
from test_serve_connections import _children
from test_serve_http import BASE_URL, KEYS, Server

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists() or not hasattr(os, "fork"),
                                reason="needs fork() and /proc")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, reaped by nobody yet, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def two_workers(pid: int) -> set[int]:
    """The two workers of supervisor ``pid``, once both run."""
    def found() -> set[int] | None:
        children = _children(pid)
        return children if len(children) == 2 else None

    return wait_until(found, timeout=30, what="two workers")


def kill_left(pids: set[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(120)
def test_workers_do_not_outlive_a_supervisor_killed_with_kill_9(tmp_path: Path) -> None:
    """Orphaned workers kept answering on the shared socket, unsupervised and unnoticed, until someone found
    them; they stop as on SIGTERM (answering what is in flight, closing their recorders) once it is gone."""
    server = Server(tmp_path / "events.sqlite", tmp_path / "logs", "--workers", "2")
    workers: set[int] = set()
    try:
        workers = two_workers(server.pid)
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(10)
        wait_until(lambda: not any(alive(pid) for pid in workers), timeout=30,
                   what="the orphaned workers to stop")
        with pytest.raises(OSError):  # nobody answers on the port any more
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        kill_left(workers)
        server.stop()


@pytest.mark.timeout(120)
def test_workers_that_cannot_start_end_serve_with_one_line_and_status_1(tmp_path: Path) -> None:
    """As ``serve`` alone: a database directory that does not exist is one line and exit status 1, not a
    traceback per worker, again and again, for ever."""
    command = [sys.executable, "-m", "mailtrack", "serve", "--db", str(tmp_path / "missing" / "events.sqlite"),
               "--secret-key", KEYS, "--base-url", BASE_URL, "--port", "0", "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"serve --workers kept running with workers that cannot start: {err[-2000:]}")
    assert process.returncode == 1, err
    assert "Traceback" not in err
    assert "does not exist (--db, MAILTRACK_DB)" in err


@pytest.mark.timeout(180)
def test_workers_that_cannot_start_again_back_off_and_serve_once_they_can(tmp_path: Path) -> None:
    """Workers killed while serving, restarted against a database they cannot open: the pause grows while they
    keep failing (1, 2, 4 s; with two workers a failure noticed late counted as a long life and reset it, so
    they were restarted at once), and they serve again once the database is back."""
    db = tmp_path / "events.sqlite"
    server = Server(db, tmp_path / "logs", "--workers", "2")
    workers: set[int] = set()
    try:
        workers = two_workers(server.pid)
        kept = tmp_path / "kept"
        kept.mkdir()
        for path in tmp_path.glob("events.sqlite*"):  # the database (if made yet), its WAL, its spool
            shutil.move(path, kept / path.name)
        db.mkdir()  # a directory where the database was: "unable to open database file"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)

        def pauses() -> list[str] | None:
            lines = [line for line in server.stderr().splitlines() if "starting it again" in line]
            return lines if len(lines) >= 2 + 4 else None  # the two kills, then four failed starts

        lines = wait_until(pauses, timeout=90, what="four failed restarts")
        assert "Traceback" not in server.stderr()
        failed = [re.search(r"starting it again(?: in (\d+) s)?$", line) for line in lines[2:]]
        waited = [int(match.group(1)) if match and match.group(1) else 0 for match in failed]
        assert all(waited), f"a worker failing at start was restarted without a pause: {lines}"
        assert waited == sorted(waited), lines
        db.rmdir()
        for path in kept.iterdir():
            shutil.move(path, tmp_path / path.name)
        wait_until(lambda: len(_children(server.pid)) == 2 and all(
            alive(pid) for pid in _children(server.pid)), timeout=90, what="the workers to serve again")
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 OK")
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
    finally:
        kill_left(workers | _children(server.pid))
        server.stop()


@pytest.mark.timeout(120)
def test_ctrl_c_in_a_terminal_lets_the_workers_answer_what_is_in_flight(tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the terminal's group: each worker got SIGINT from the terminal and once
    more from the supervisor, and two SIGINTs make uvicorn stop at once, dropping the requests in flight."""
    command = [sys.executable, "-m", "mailtrack", "serve", "--db", str(tmp_path / "events.sqlite"), "--secret-key",
               KEYS, "--base-url", BASE_URL, "--port", "0", "--workers", "2"]
    out_path, err_path = tmp_path / "serve.out", tmp_path / "serve.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    workers: set[int] = set()
    try:
        port = int(wait_until(lambda: re.search(r"on http://127\.0\.0\.1:(\d+)", out_path.read_text()), timeout=30,
                              what="the port").group(1))
        workers = two_workers(process.pid)
        request = b"PATCH /v3/tracking_settings/open HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(request + b"{}{}")
            expected = conn.recv(65536).split(b"\r\n", 1)[0]
        assert expected.startswith(b"HTTP/1.1 4")  # no key: refused, in the API's shape
        conns = []
        for _ in range(6):  # on both workers, whichever accepts
            conn = socket.create_connection(("127.0.0.1", port), timeout=20)
            conn.sendall(request + b"{}")  # in flight: its body is still arriving
            conns.append(conn)
        time.sleep(0.5)  # every request read up to its body
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does
        time.sleep(1.0)  # the workers have taken the signal
        answers = []
        for conn in conns:
            try:
                conn.sendall(b"{}")
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            except OSError:
                data = b""
            answers.append(data.split(b"\r\n", 1)[0])
            conn.close()
        assert answers == [expected] * len(conns)
        assert process.wait(30) == 0
    finally:
        kill_left(workers)
        if process.poll() is None:
            process.kill()
            process.wait(10)
