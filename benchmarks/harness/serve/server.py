"""The server under load: ``python -m mailtrack serve`` in a fresh folder, and what is sampled of it meanwhile."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness.serve.stores import Target
from harness.serve.workload import BASE_URL, HOST, SECRET_KEY

ROOT = Path(__file__).resolve().parents[3]  # the repository: its mailtrack is the one served


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (Linux /proc), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _os_threads(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class Server:
    """``python -m mailtrack serve --db db`` on a free loopback port, in ``folder`` (its working directory).

    ``db`` is a fresh database (:class:`~harness.serve.stores.Target`); ``contender`` runs one instead of serve:
    ``"static"`` the static-GIF server, which has no store; ``"no-store"`` serve with its store writes skipped (the
    request path's ceiling); ``"verify-only"`` the server that verifies tokens and stores nothing (the floor).
    """

    def __init__(self, folder: Path, threads: int | None, *, db: str = "", server: str = "uvicorn", workers: int = 1,
                 writer: str | None = None, contender: str | None = None) -> None:
        self.folder = folder
        self.threads = threads
        self.stderr_path = folder / "server.stderr"
        self.command = [
            sys.executable,
            "-m",
            "mailtrack",
            "serve",
            "--db",
            db,
            "--secret-key",
            SECRET_KEY,
            "--base-url",
            BASE_URL,
            "--host",
            HOST,
            "--port",
            "0",
            *(["--threads", str(threads)] if threads is not None else []),
            "--server",
            server,
            *(["--workers", str(workers)] if workers != 1 else []),
            *(["--writer", writer] if writer else []),
        ]
        if contender == "no-store":  # the request path with its store writes skipped (harness/serve/no_store_serve.py)
            self.command = [sys.executable, str(Path(__file__).with_name("no_store_serve.py")), *self.command[4:]]
        elif contender == "static":  # the static-GIF contender (harness/serve/static_gif.py): the same server, no store
            self.command = [sys.executable, str(Path(__file__).with_name("static_gif.py")), HOST, str(threads or 8),
                            server, str(workers)]
        elif contender == "verify-only":  # the verify-only floor (harness/serve/verify_floor.py): no event, no store
            self.command = [sys.executable, str(Path(__file__).with_name("verify_floor.py")), HOST]
        elif contender is not None:
            raise ValueError(f"unknown contender {contender!r}")
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.banner = ""
        self.exit_code: int | None = None
        self.stop_s = 0.0
        self.stop_how = ""

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=self.folder, env=env)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r" on http://[^ ]+:(\d+) ", line)
        if not match:
            self.stop()
            raise RuntimeError(f"mailtrack serve did not start: {line!r}; stderr: {self.stderr_text()[-2000:]!r}")
        self.banner, self.port = line.strip(), int(match.group(1))

    def cpu_seconds(self) -> float | None:
        """CPU seconds of the server and of its live children (``--workers``: the workers do the work)."""
        if not self.proc:
            return None
        own = _cpu_seconds(self.proc.pid)
        if own is None:
            return None
        return own + sum(filter(None, (_cpu_seconds(child) for child in _children(self.proc.pid))))

    def os_threads(self) -> int | None:
        """OS threads of the server (with ``--workers``: of the server and its workers together)."""
        if not self.proc:
            return None
        counts = [_os_threads(pid) for pid in [self.proc.pid, *_children(self.proc.pid)]]
        return sum(filter(None, counts)) or None

    def stop(self) -> None:
        """SIGINT (what Ctrl-C sends; ``serve`` then closes the recorder, draining any spool), then escalate."""
        if self.proc is None or self.proc.poll() is not None:
            return
        started = time.perf_counter()
        for how, sig, wait in (
            ("SIGINT", signal.SIGINT, 20.0),
            ("SIGTERM", signal.SIGTERM, 5.0),
            ("SIGKILL", signal.SIGKILL, 5.0),
        ):
            self.proc.send_signal(sig)
            try:
                self.exit_code = self.proc.wait(wait)
                self.stop_how = how
                break
            except subprocess.TimeoutExpired:
                continue
        self.stop_s = time.perf_counter() - started
        if self.proc.stdout:
            self.proc.stdout.close()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the load started
    stored: int
    wal_bytes: int | None  # SQLite's WAL file; None for a store without one
    cpu_s: float | None
    db_cpu_s: float | None  # the database server's own processes (PostgreSQL); None when it runs in the server
    spooled: int  # "store write failed" lines so far


class Monitor:
    """Samples the server every ``interval`` seconds during the load: events stored, WAL size, CPU, spooled writes.

    The count is one short read-only query (no write lock); it does not measurably load a server doing hundreds of
    writes a second.
    """

    def __init__(self, server: Server, target: Target, interval: float) -> None:
        self.server, self.target, self.interval = server, target, interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self._start = 0.0

    def __enter__(self) -> Monitor:  # noqa: PYI034 - typing.Self needs Python 3.11
        self._start = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        spooled = self.server.stderr_text().count("store write failed")
        self.samples.append(
            Sample(
                time.perf_counter() - self._start,
                self.target.stored_now(),
                self.target.wal_bytes(),
                self.server.cpu_seconds(),
                self.target.database_cpu_seconds(),
                spooled,
            )
        )
