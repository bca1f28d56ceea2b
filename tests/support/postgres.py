"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary directory, pg_ctl on a free loopback port.

``tasks.py test`` installs Debian's ``postgresql`` package when its binaries
are missing; Debian keeps them in ``/usr/lib/postgresql/<version>/bin``, off
PATH, so both places are searched. initdb refuses to run as root: as root the
cluster belongs to the ``postgres`` user (``runuser``). Authentication is
``trust`` and the server listens on 127.0.0.1 only, with its unix socket in
the temporary directory, so nothing outside the test run can reach it.

Its data is thrown away, so by default it trades durability for speed
(:data:`FAST_SETTINGS`: no fsync, no full-page writes, small shared buffers);
``durable=True`` keeps PostgreSQL's own defaults there (``benchmarks/bench_serve.py``
measures with it).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["FAST_SETTINGS", "Cluster", "find_binary", "free_port"]

#: What a test cluster changes from PostgreSQL's defaults for speed (none of it with ``Cluster(durable=True)``).
FAST_SETTINGS = {"fsync": "off", "full_page_writes": "off", "shared_buffers": "32MB"}


def find_binary(name: str) -> str | None:
    """``name`` (initdb, pg_ctl) on PATH or in the newest ``/usr/lib/postgresql/*/bin``; None when not installed."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """A running PostgreSQL server for one test session; :meth:`stop` removes every trace of it."""

    def __init__(self, initdb: str, pg_ctl: str, *, durable: bool = False) -> None:
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="mailtrack-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "mailtrack"
        self.database = "mailtrack_test"
        self._as_postgres = os.geteuid() == 0 if hasattr(os, "geteuid") else False

    @property
    def url(self) -> str:
        """The test database's URL (trust authentication: no password)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        # a session of its own: a Ctrl-C at the terminal reaches the caller (which stops the cluster), not the postmaster
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root,
                              start_new_session=True)
        if done.returncode:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}{log}")

    def start(self) -> Cluster:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o755)
        self._run(self.initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--locale=C",
                  "--no-instructions" if self._initdb_knows_no_instructions() else "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300"
        if not self.durable:
            options += "".join(f" -c {name}={value}" for name, value in FAST_SETTINGS.items())
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")
        import psycopg

        with psycopg.connect(f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres", autocommit=True) as db:
            db.execute(f"CREATE DATABASE {self.database}")
        return self

    def _initdb_knows_no_instructions(self) -> bool:
        done = subprocess.run([self.initdb, "--help"], capture_output=True, text=True, timeout=30)
        return "--no-instructions" in done.stdout

    def restart(self) -> None:
        """Stop the server (fast: connections are cut) and start it again on the same port."""
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.root / "server.log"), "-m", "fast", "-w", "-t", "60",
                  "restart")

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def new_schema(self) -> str:
        """A fresh schema name for one test (the store creates it)."""
        return f"t_{uuid.uuid4().hex[:16]}"
