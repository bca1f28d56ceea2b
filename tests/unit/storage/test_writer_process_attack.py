"""Attacks on the SQLite store's writer process (mailtrack.storage.writer_process) with real children and real
signals: a child that stops answering (SIGSTOP: a hung disk, a debugger, a bug), a server that embeds Python (its
``sys.executable`` is the server's own binary, as under uWSGI or mod_wsgi), a fork while a write is under way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from support.helpers import wait_until
from test_writer_process import child_of, mixed, rows

import mailtrack
from mailtrack.storage.base import StoreUnavailable
from mailtrack.storage.writer_process import ProcessWriter

pytestmark = [pytest.mark.skipif(os.name != "posix", reason="signals and fork are POSIX"), pytest.mark.path_independent]


def gone(pid: int) -> bool:
    """The process ``pid`` has exited and was reaped (no zombie left behind)."""
    return not Path(f"/proc/{pid}").exists()


@pytest.mark.timeout(60)
def test_a_child_that_stops_answering_is_killed_and_the_write_is_unavailable_then_a_new_child_writes(
        tmp_path: Path, writers: list[ProcessWriter]) -> None:
    """A stopped child held the writer's lock for ever: every later write (the spool's drain, the recorder's close
    at SIGTERM) waited behind it, and `mailtrack serve` could not be stopped. Now the call gives up after
    ``call_timeout``, kills the child and raises StoreUnavailable (the recorder spools); the next write has a new
    child."""
    path = tmp_path / "e.sqlite"
    writer = ProcessWriter(path, call_timeout=1.0)
    writers.append(writer)
    writer.record_many(mixed(3))
    stopped = child_of(writer)
    os.kill(stopped, signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailable, match="did not answer"):
            writer.record_many(mixed(3, start=3))
        wait_until(lambda: gone(stopped), timeout=10, what="the stopped child killed and reaped")
    finally:
        try:
            os.kill(stopped, signal.SIGCONT)
        except ProcessLookupError:
            pass
    stored = writer.record_many(mixed(3, start=3))  # the batch again (the recorder would drain it from the spool)
    assert len(stored) == 3 and child_of(writer) != stopped
    assert len(rows(path)) == 6


@pytest.mark.timeout(60)
def test_a_server_that_embeds_python_still_runs_a_python_child(tmp_path: Path) -> None:
    """Under uWSGI (and mod_wsgi) ``sys.executable`` is the server's own binary: the child was started as
    ``uwsgi -m mailtrack.storage.writer_process ...``, which exits ("unable to load configuration"), so every
    event was spooled and none ever reached the database while the server ran. Here a real Python process whose
    ``sys.executable`` names another program, as an embedding server's does."""
    path = tmp_path / "e.sqlite"
    script = textwrap.dedent(f"""
        import sys
        sys.executable = "/bin/true"  # what an embedding server reports (uWSGI: its own binary)
        from datetime import datetime, timezone
        from mailtrack.events import TrackingEvent
        from mailtrack.storage.writer_process import ProcessWriter
        writer = ProcessWriter({str(path)!r})
        try:
            print(len(writer.record_many([TrackingEvent(event_type="opened", timestamp=datetime.now(timezone.utc), message_id="m",
                                                         recipient=f"r{{i}}@x.test")
                                           for i in range(5)])))
        finally:
            writer.close()
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50, env=env,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() == "5", done.stderr[-2000:]
    assert len(rows(path)) == 5


@pytest.mark.timeout(60)
def test_the_child_runs_the_mailtrack_the_server_runs_even_from_a_path_added_at_run_time(tmp_path: Path) -> None:
    """``gunicorn --pythonpath DIR``, uWSGI's ``--pythonpath``, a WSGI file's ``sys.path.insert``: the server runs
    mailtrack from a directory it added to ``sys.path`` itself. The child (a new interpreter) did not see that
    directory: it failed to import mailtrack (every event spooled, none stored), or, with another mailtrack
    installed, ran that other copy's code. Here a copy of the package in a directory of its own, which notes the
    file of every writer_process module loaded from it."""
    source = tmp_path / "src"
    shutil.copytree(Path(mailtrack.__file__).parent, source / "mailtrack",
                    ignore=shutil.ignore_patterns("__pycache__"))
    marker = tmp_path / "loaded"
    with open(source / "mailtrack" / "storage" / "writer_process.py", "a") as module:
        module.write("\nif os.environ.get('TEST_MARKER'):\n"
                     "    with open(os.environ['TEST_MARKER'], 'a') as _marker:\n"
                     "        _marker.write(f'{os.getpid()} {__file__}\\n')\n")
    path = tmp_path / "e.sqlite"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(source)!r})
        from datetime import datetime, timezone
        from mailtrack.events import TrackingEvent
        from mailtrack.storage.writer_process import ProcessWriter
        os.environ["TEST_MARKER"] = {str(marker)!r}  # for the child only (the module is imported here already)
        writer = ProcessWriter({str(path)!r})
        try:
            print(len(writer.record_many([TrackingEvent(event_type="opened", timestamp=datetime.now(timezone.utc),
                                                        message_id="m", recipient=f"r{{i}}@x.test")
                                           for i in range(5)])))
        finally:
            writer.close()
    """)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "TEST_MARKER")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50, env=env,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "5", done.stderr[-2000:]
    assert len(rows(path)) == 5
    loaded = marker.read_text().split() if marker.exists() else []
    assert loaded[1:] == [str(source / "mailtrack" / "storage" / "writer_process.py")], loaded


@pytest.mark.timeout(90)
def test_a_fork_while_a_thread_writes_leaves_the_forked_copy_a_working_writer(tmp_path: Path,
                                                                            writers: list[ProcessWriter]) -> None:
    """fork() while another thread was inside a write (its lock held): the forked copy's lock stayed held for ever
    (the thread that held it does not exist there), so its first write hung."""
    path = tmp_path / "e.sqlite"
    writer = ProcessWriter(path, call_timeout=20.0)
    writers.append(writer)
    writer.record_many(mixed(2))
    stopped = child_of(writer)
    os.kill(stopped, signal.SIGSTOP)  # the thread's write below stays under way while we fork
    errors: list[BaseException] = []

    def write() -> None:
        try:
            writer.record_many(mixed(2, start=2))
        except StoreUnavailable as exc:
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    wait_until(lambda: writer._lock.locked(), timeout=10, what="the thread inside its write")
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked process reports through the pipe
        code = 1
        try:
            signal.alarm(30)  # a hang here must not outlive the test
            stored = writer.record_many(mixed(3, start=10))
            writer.close(timeout=5)
            code = 0 if len(stored) == 3 else 2
        finally:
            os.write(write_end, bytes([code]))
            os._exit(code)
    os.close(write_end)
    try:
        answer = os.read(read, 1)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(read)
        try:
            os.kill(stopped, signal.SIGCONT)
        except ProcessLookupError:  # killed already: the thread's write gave up on it
            pass
        thread.join(30)
    assert answer == b"\x00" and os.waitstatus_to_exitcode(status) == 0, (answer, status)
    assert not thread.is_alive()
    assert {r[7] for r in rows(path)} >= {f"agent-{i}" for i in range(10, 13)}
