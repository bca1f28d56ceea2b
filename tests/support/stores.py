"""One fresh database of either kind for a test: the store suite runs against SQLite and PostgreSQL alike.

A :class:`Backend` opens store objects on its database (several of them stand
for several workers or servers), runs raw SQL beside the store, holds the
write lock from another connection (what makes a store unavailable), and
refuses event inserts with a trigger (a failure inside the event's transaction).
PostgreSQL tests get a fresh schema each in the session's throwaway cluster.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mailtrack.storage.sqlite import SQLiteStore

__all__ = ["Backend"]


class Backend:
    """A database for one test: ``kind`` is ``"sqlite"`` (a file in tmp_path) or ``"postgres"`` (a schema)."""

    def __init__(self, kind: str, *, path: Path | None = None, url: str | None = None, schema: str | None = None) -> None:
        self.kind, self.path, self.url, self.schema = kind, path, url, schema
        self._opened: list[Any] = []

    @property
    def spec(self) -> tuple[str, str, str | None]:
        """What a child process needs to open the same database: ``(kind, path or URL, schema)``."""
        return (self.kind, str(self.path) if self.kind == "sqlite" else str(self.url), self.schema)

    @property
    def serve_db(self) -> str:
        """What ``mailtrack serve --db`` takes for this database: the file, or the URL with the schema on its search path.

        For PostgreSQL, open a store first (:meth:`open`): it creates the schema that the URL names.
        """
        if self.kind == "sqlite":
            return str(self.path)
        return f"{self.url}?options=-csearch_path%3D{self.schema}"

    @staticmethod
    def open_spec(spec: tuple[str, str, str | None], **kwargs: Any) -> Any:
        kind, where, schema = spec
        if kind == "sqlite":
            return SQLiteStore(where, **kwargs)
        from mailtrack.storage.postgres import PostgresStore

        return PostgresStore(where, schema=schema, **kwargs)

    def open(self, **kwargs: Any) -> Any:
        """A new store object on this database (closed at the end of the test)."""
        store = self.open_spec(self.spec, **kwargs)
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            with contextlib.suppress(Exception):
                store.close()
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(str(self.url), autocommit=True) as db:
                db.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    @contextlib.contextmanager
    def raw(self) -> Iterator[Any]:
        """A plain autocommit connection to the database (sqlite3 or psycopg), beside any store."""
        if self.kind == "sqlite":
            connection = sqlite3.connect(str(self.path), isolation_level=None)
            try:
                yield connection
            finally:
                connection.close()
        else:
            import psycopg

            with psycopg.connect(str(self.url), autocommit=True) as connection:
                connection.execute(f"SET search_path = {self.schema}")
                yield connection

    def sql(self, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on a plain connection; its rows (``?`` placeholders: converted for PostgreSQL)."""
        with self.raw() as connection:
            if self.kind == "postgres":
                statement = statement.replace("?", "%s")
            cursor = connection.execute(statement, args)
            return list(cursor.fetchall()) if cursor.description else []

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Another connection holds the write lock (SQLite: ``BEGIN EXCLUSIVE``; PostgreSQL: the events tables locked)."""
        with self.raw() as connection:
            if self.kind == "sqlite":
                connection.execute("BEGIN EXCLUSIVE")
                try:
                    yield
                finally:
                    connection.execute("ROLLBACK")
            else:
                with connection.transaction():
                    # EXCLUSIVE: every write waits (then times out), reads go on, as beside SQLite's writer
                    connection.execute("LOCK TABLE firsts, events, event_order, rollup_days, rollup_totals IN EXCLUSIVE MODE")
                    yield

    def refuse_event_inserts(self, message: str) -> None:
        """A trigger that fails every insert into ``events`` with ``message`` (undone by :meth:`allow_event_inserts`)."""
        if self.kind == "sqlite":
            self.sql(f"CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, '{message}'); END")
        else:
            self.sql(f"CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                     f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$")
            self.sql("CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()")

    def allow_event_inserts(self) -> None:
        self.sql("DROP TRIGGER refuse" if self.kind == "sqlite" else "DROP TRIGGER refuse ON events")

    def dump(self) -> str:
        """Every row of every table, as text (to check what the database holds, whatever it is)."""
        with self.raw() as connection:
            if self.kind == "sqlite":
                return "\n".join(connection.iterdump())
            tables = [row[0] for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.schema,)).fetchall()]
            lines = []
            for table in tables:
                lines += [f"{table}: {row!r}" for row in connection.execute(f"SELECT * FROM {table}").fetchall()]
            return "\n".join(lines)
