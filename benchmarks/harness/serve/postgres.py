"""The benchmark's PostgreSQL: a throwaway cluster on this machine, durable as shipped, one fresh database per run.

It is the test suite's cluster (``tests/support/postgres.py``: initdb in a temporary directory, ``pg_ctl`` on a
free 127.0.0.1 port, trust authentication, run as the ``postgres`` user when we are root) started with
``durable=True``: fsync, full_page_writes and synchronous_commit keep PostgreSQL's defaults (on), and so does
shared_buffers; the only settings given are where it listens and ``max_connections=300``. What the server
reports for those settings is quoted in the report (:meth:`Postgres.describe`), read back from the running
server rather than assumed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[3]

#: The settings the report quotes: the version, durability, memory, connections.
REPORTED = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "shared_buffers",
            "max_connections")


def _support() -> ModuleType:
    """``tests/support/postgres.py`` (the ``tests`` folder goes on ``sys.path`` the way pytest puts it there)."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module("support.postgres")


def unavailable() -> str | None:
    """Why PostgreSQL cannot be benchmarked on this machine, or None when it can."""
    support = _support()
    if support.find_binary("initdb") is None or support.find_binary("pg_ctl") is None:
        return ("PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin; "
                "Debian: apt-get install postgresql)")
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("psycopg_pool") is None:
        return "psycopg is not installed: pip install 'mailtrack[postgres]'"
    return None


def filesystem(path: Path) -> str:
    """The type and mount point of the filesystem holding ``path`` (Linux ``/proc/mounts``), e.g. ``ext4 on /``."""
    try:
        mounts = [line.split()[:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "an unknown filesystem"
    target = str(path.resolve())
    best = max((m for m in mounts if len(m) == 3 and (target == m[1] or target.startswith(m[1].rstrip("/") + "/"))),
               key=lambda m: len(m[1]), default=None)
    return f"{best[2]} on {best[1]}" if best else "an unknown filesystem"


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) of a process and its live children, plus the children it has reaped (Linux /proc).

    PostgreSQL's postmaster forks one backend per connection: this is the database server's whole CPU.
    """
    own = _stat(pid)
    if own is None:
        return None
    ticks = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != pid:
            fields = _stat(int(entry.name))
            if fields is not None and fields[1] == str(pid):
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class Postgres:
    """A throwaway PostgreSQL server for one benchmark run (a context manager: stopped and removed on exit)."""

    def __init__(self) -> None:
        support = _support()
        initdb, pg_ctl = support.find_binary("initdb"), support.find_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError(unavailable())
        self.cluster = support.Cluster(initdb, pg_ctl, durable=True)
        self.binaries = str(Path(initdb).resolve().parent)
        self.settings: dict[str, str] = {}
        self._databases = 0

    def __enter__(self) -> Postgres:  # noqa: PYI034 - typing.Self needs Python 3.11
        self.cluster.start()
        with self._connect("postgres") as db:
            self.settings = {name: str(db.execute(f"SHOW {name}").fetchone()[0]) for name in REPORTED}
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.cluster.stop()
        except Exception as error:  # noqa: BLE001 - never hide the error or Ctrl-C that got us here
            print(f"PostgreSQL: stopping the throwaway cluster failed: {error}", file=sys.stderr)

    def _connect(self, database: str) -> Any:
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=10)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (first line of ``postmaster.pid``)."""
        try:
            return int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def cpu_seconds(self) -> float | None:
        """The whole database server's CPU seconds so far (postmaster, backends, background workers)."""
        pid = self.pid
        return tree_cpu_seconds(pid) if pid is not None else None

    def url(self, database: str) -> str:
        return f"postgresql://{self.cluster.user}@127.0.0.1:{self.cluster.port}/{database}"

    def create_database(self, label: str) -> str:
        """A fresh, empty database for one run; its name (``bench_<n>_<label>``)."""
        self._databases += 1
        name = f"bench_{self._databases}_{re.sub(r'[^a-z0-9]+', '_', label.lower())}"[:63]
        with self._connect("postgres") as db:
            db.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        with self._connect("postgres") as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def describe(self) -> str:
        """The report's line on this server: version, where it runs, its durability and memory settings."""
        s = self.settings
        return (
            f"{s.get('server_version', '?')} (binaries in {self.binaries}), a throwaway cluster started by the benchmark "
            f"on this same machine ({os.cpu_count()} CPU(s), shared with the server and the generator), reached over "
            f"loopback TCP (127.0.0.1, trust authentication), data directory on {filesystem(self.cluster.root)}; "
            f"durability as shipped: fsync={s.get('fsync')}, synchronous_commit={s.get('synchronous_commit')}, "
            f"full_page_writes={s.get('full_page_writes')}, wal_sync_method={s.get('wal_sync_method')}; "
            f"shared_buffers={s.get('shared_buffers')}, max_connections={s.get('max_connections')} (the only setting "
            "given besides where it listens). One fresh database per run, dropped after it"
        )
