"""The store under test: one fresh database for one run of ``mailtrack serve``, and how the harness reads it.

A :class:`Target` gives the server its ``--db``, and gives the harness the events stored while the server runs
(a short read that takes no write lock), the count once it stops moving (:meth:`Target.settle`), the counts the
checks compare once the server has stopped (:meth:`Target.counts`), the spool files the server left, and what only
one store has: SQLite's WAL file, PostgreSQL's own processes' CPU. The checks are the same for every store.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.serve.postgres import Postgres

STORES = ("sqlite", "postgres")


@dataclass(frozen=True)
class Counts:
    """What the store holds after a run: events in all, per type, with ``first`` set per type, ``firsts`` rows per type."""

    stored: int
    by_type: dict[str, int]
    first_by_type: dict[str, int]
    firsts_rows: dict[str, int]


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class Target:
    """One fresh database for one run, in the run's ``folder`` (the server's working directory)."""

    kind = ""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def db(self) -> str:
        """What ``mailtrack serve --db`` is given."""
        raise NotImplementedError

    def stored_now(self) -> int:
        """Events stored so far, read beside the running server without taking a write lock; -1 when unreadable."""
        raise NotImplementedError

    def counts(self) -> Counts:
        """What the store holds, read once the server has stopped."""
        raise NotImplementedError

    def spool_files(self) -> list[Path]:
        """The spool files the server left (events it could not store; there must be none with events in them)."""
        raise NotImplementedError

    def wal_bytes(self) -> int | None:
        """SQLite's WAL file size (None: the store has no such file)."""
        return None

    def database_cpu_seconds(self) -> float | None:
        """CPU seconds of the database's own processes so far (None: the store runs inside the server)."""
        return None

    def shown(self, text: str) -> str:
        """``text`` (a command, a banner) as the report shows it: the run's temporary folder as ``$TMP``."""
        return text.replace(str(self.folder), "$TMP")

    def close(self) -> None:
        """Give back what the run's database holds (a SQLite file goes with the run's folder)."""

    def settle(self, quiet_s: float = 0.5, limit_s: float = 15.0) -> float:
        """Wait until the event count stops moving (requests the server still had queued); seconds waited."""
        started = time.perf_counter()
        last = self.stored_now()
        while time.perf_counter() - started < limit_s:
            time.sleep(quiet_s)
            now = self.stored_now()
            if now == last:
                break
            last = now
        return time.perf_counter() - started


class SQLiteTarget(Target):
    """``events.sqlite`` in the run's folder; the server spools beside it, in ``events.sqlite.spool``."""

    kind = "sqlite"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.path = folder / "events.sqlite"

    @property
    def db(self) -> str:
        return str(self.path)

    def stored_now(self) -> int:
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5) as connection:
                return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.Error:
            return -1

    def counts(self) -> Counts:
        from mailtrack.storage.sqlite import SQLiteStore

        store = SQLiteStore(self.path)
        try:
            stored = store.count()
            connection = store._connection()
            by_type = dict(connection.execute("SELECT event_type, count(*) FROM events GROUP BY event_type").fetchall())
            first = {t: int(c or 0) for t, c in connection.execute(
                "SELECT event_type, sum(first) FROM events GROUP BY event_type")}
            firsts = dict(connection.execute("SELECT event_type, count(*) FROM firsts GROUP BY event_type").fetchall())
        finally:
            store.close()
        return Counts(stored, by_type, first, firsts)

    def spool_files(self) -> list[Path]:
        return sorted(Path(f"{self.path}.spool").glob("*.jsonl"))

    def wal_bytes(self) -> int | None:
        return file_size(Path(f"{self.path}-wal"))  # its high-water mark: the WAL is reused, never truncated


class PostgresTarget(Target):
    """A fresh database in the run's PostgreSQL cluster. A server given a URL spools in its working directory, in
    ``mailtrack-<hash of the URL>.spool`` (``mailtrack.service``): here, the run's folder."""

    kind = "postgres"

    def __init__(self, folder: Path, postgres: Postgres, label: str) -> None:
        super().__init__(folder)
        self.postgres = postgres
        self.database = postgres.create_database(label)
        self.url = postgres.url(self.database)

    @property
    def db(self) -> str:
        return self.url

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def stored_now(self) -> int:
        import psycopg

        try:
            with self._connect() as connection:
                return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])
        except psycopg.Error:
            return -1

    def counts(self) -> Counts:
        from mailtrack.storage.postgres import PostgresStore

        store = PostgresStore(self.url)
        try:
            stored = store.count()
        finally:
            store.close()
        with self._connect() as connection:
            by_type = dict(connection.execute("SELECT event_type, count(*) FROM events GROUP BY event_type").fetchall())
            first = dict(connection.execute(
                "SELECT event_type, count(*) FILTER (WHERE first) FROM events GROUP BY event_type").fetchall())
            firsts = dict(connection.execute("SELECT event_type, count(*) FROM firsts GROUP BY event_type").fetchall())
        return Counts(stored, by_type, first, firsts)

    def spool_files(self) -> list[Path]:
        return sorted(self.folder.glob("mailtrack-*.spool/*.jsonl"))

    def database_cpu_seconds(self) -> float | None:
        return self.postgres.cpu_seconds()

    def shown(self, text: str) -> str:
        port = f"127.0.0.1:{self.postgres.cluster.port}/"
        return super().shown(text).replace(port, "127.0.0.1:$PGPORT/")

    def close(self) -> None:
        import psycopg

        try:
            self.postgres.drop_database(self.database)
        except psycopg.Error as error:  # reported, not raised: it must not hide what stopped the run
            print(f"postgres: dropping {self.database} failed: {error}", file=sys.stderr)


def target(kind: str, folder: Path, postgres: Postgres | None, label: str) -> Target:
    """A fresh database of ``kind`` (``sqlite`` or ``postgres``) for one run in ``folder``."""
    if kind == "sqlite":
        return SQLiteTarget(folder)
    if kind == "postgres" and postgres is not None:
        return PostgresTarget(folder, postgres, label)
    raise ValueError(f"no {kind} store to run against")
