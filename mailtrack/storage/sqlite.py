"""The embedded event store: one SQLite file, safe for several threads and processes.

WAL journaling lets readers run beside the one writer, and a short busy
timeout bounds how long a write waits for another process; a write that still
fails raises, and :class:`~mailtrack.delivery.recorder.Recorder` spools the event
instead of failing the request. The schema is versioned (``PRAGMA
user_version``) and upgraded by the migrations below, in order, on open.

An event and its webhook outbox rows are written in one transaction, so a
webhook is never told about an event the store lost, nor the reverse.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from mailtrack.core.settings import TrackingSettings
from mailtrack.events import EventType, TrackingEvent
from mailtrack.exceptions import ArgumentError, ConfigurationError
from mailtrack.storage.accounts import (
    Account,
    ApiKey,
    check_account_name,
    check_scopes,
    digest_matches,
    new_key,
    split_key,
)
from mailtrack.storage.base import (
    GROUP_BYS,
    MAX_PAGE,
    EventPage,
    EventQuery,
    GroupBy,
    OutboxItem,
    StatsRow,
    StoreError,
    StoreUnavailable,
    UnknownAccount,
)

__all__ = ["EVENTS_API_MIGRATION", "MIGRATIONS", "OutboxItem", "SQLiteStore"]

P = ParamSpec("P")
R = TypeVar("R")

#: Each entry upgrades the schema by one version (user_version = index + 1).
MIGRATIONS: tuple[str, ...] = (
    # 1: events, and which (type, message, recipient) has been seen
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        timestamp REAL NOT NULL,
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        url TEXT,
        link_index INTEGER,
        user_agent TEXT,
        ip TEXT,
        referer TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        first INTEGER NOT NULL,
        machine TEXT
    );
    CREATE INDEX events_message ON events (message_id, event_type, recipient);
    CREATE INDEX events_time ON events (timestamp);
    CREATE TABLE firsts (
        event_type TEXT NOT NULL,
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        PRIMARY KEY (event_type, message_id, recipient)
    ) WITHOUT ROWID;
    """,
    # 2: the webhook outbox
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES events (event_id),
        target TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT,
        delivered REAL,
        dead INTEGER NOT NULL DEFAULT 0,
        UNIQUE (event_id, target)
    );
    CREATE INDEX outbox_due ON outbox (next_attempt) WHERE delivered IS NULL AND dead = 0;
    """,
    # 3: each event's tags (django-anymail's msg.tags, signed into the tokens)
    """
    ALTER TABLE events ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    """,
    # 4: accounts (one parent, its subusers) with their stored tracking settings, and hashed API keys
    """
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        parent TEXT REFERENCES accounts (name) ON DELETE CASCADE,
        created REAL NOT NULL,
        settings TEXT NOT NULL DEFAULT '{}'
    );
    CREATE UNIQUE INDEX accounts_one_parent ON accounts ((parent IS NULL)) WHERE parent IS NULL;
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        scopes TEXT NOT NULL,
        name TEXT,
        created REAL NOT NULL,
        revoked REAL
    );
    CREATE INDEX api_keys_account ON api_keys (account);
    """,
)

#: The event types as SQL literals (their names are spelled in mailtrack.events only).
_OPENED, _CLICKED, _UNSUBSCRIBED = (f"'{kind.value}'" for kind in (EventType.OPENED, EventType.CLICKED,
                                                                     EventType.UNSUBSCRIBED))
#: The Events API and stats (issue 11): tag and metadata indexes, per-link firsts, rollups. Self-contained (it
#: backfills from the events already stored), so it can take whichever number follows the accounts migration.
EVENTS_API_MIGRATION = f"""
    ALTER TABLE events ADD COLUMN link_first INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_message_id ON events (message_id, id);
    CREATE INDEX events_recipient ON events (recipient, id);
    CREATE INDEX events_type ON events (event_type, id);
    CREATE TABLE event_tags (
        tag TEXT NOT NULL,
        event INTEGER NOT NULL,
        PRIMARY KEY (tag, event)
    ) WITHOUT ROWID;
    CREATE TABLE event_meta (
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        event INTEGER NOT NULL,
        PRIMARY KEY (key, value, event)
    ) WITHOUT ROWID;
    CREATE TABLE link_firsts (
        url TEXT NOT NULL,
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        PRIMARY KEY (url, message_id, recipient)
    ) WITHOUT ROWID;
    CREATE TABLE rollups (
        dim TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        day INTEGER NOT NULL,
        url TEXT NOT NULL,
        opens INTEGER NOT NULL,
        unique_opens INTEGER NOT NULL,
        clicks INTEGER NOT NULL,
        unique_clicks INTEGER NOT NULL,
        link_unique_clicks INTEGER NOT NULL,
        unsubscribes INTEGER NOT NULL,
        unique_unsubscribes INTEGER NOT NULL,
        PRIMARY KEY (dim, key, value, day, url)
    ) WITHOUT ROWID;
    UPDATE events SET link_first = 1 WHERE event_type = {_CLICKED} AND url IS NOT NULL AND id = (
        SELECT min(e2.id) FROM events e2 WHERE e2.event_type = {_CLICKED} AND e2.message_id = events.message_id
        AND e2.recipient = events.recipient AND e2.url = events.url);
    INSERT INTO link_firsts SELECT DISTINCT url, message_id, recipient FROM events
        WHERE event_type = {_CLICKED} AND url IS NOT NULL;
    INSERT INTO event_tags SELECT DISTINCT j.value, e.id FROM events e, json_each(e.tags) j WHERE j.type = 'text';
    INSERT INTO event_meta SELECT e.id_key, e.id_value, e.id FROM (
        SELECT DISTINCT events.id AS id, j.key AS id_key, CASE j.type WHEN 'text' THEN j.value WHEN 'true' THEN 'true'
            WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' ELSE CAST(j.value AS TEXT) END AS id_value
        FROM events, json_each(events.metadata) j) e;
    CREATE TEMP VIEW rollup_source AS SELECT id, CAST(timestamp / 86400 AS INTEGER) AS day, coalesce(url, '') AS url,
        event_type = {_OPENED} AS o, event_type = {_OPENED} AND first AS uo, event_type = {_CLICKED} AS c,
        event_type = {_CLICKED} AND first AS uc, event_type = {_CLICKED} AND link_first AS lc,
        event_type = {_UNSUBSCRIBED} AS u, event_type = {_UNSUBSCRIBED} AND first AS uu, message_id FROM events;
    INSERT INTO rollups SELECT 'all', '', '', day, url, sum(o), sum(uo), sum(c), sum(uc), sum(lc), sum(u), sum(uu)
        FROM rollup_source GROUP BY day, url;
    INSERT INTO rollups SELECT 'message', message_id, '', day, url, sum(o), sum(uo), sum(c), sum(uc), sum(lc), sum(u),
        sum(uu) FROM rollup_source GROUP BY message_id, day, url;
    INSERT INTO rollups SELECT 'meta', m.key, m.value, day, url, sum(o), sum(uo), sum(c), sum(uc), sum(lc), sum(u),
        sum(uu) FROM rollup_source s JOIN event_meta m ON m.event = s.id GROUP BY m.key, m.value, day, url;
    INSERT INTO rollups SELECT 'tag', t.tag, '', day, url, sum(o), sum(uo), sum(c), sum(uc), sum(lc), sum(u), sum(uu)
        FROM rollup_source s JOIN event_tags t ON t.event = s.id GROUP BY t.tag, day, url;
    DROP VIEW rollup_source;
    INSERT INTO rollups SELECT dim, key, value, -1, '', sum(opens), sum(unique_opens), sum(clicks), sum(unique_clicks),
        sum(link_unique_clicks), sum(unsubscribes), sum(unique_unsubscribes) FROM rollups GROUP BY dim, key, value;
    CREATE INDEX event_tags_event ON event_tags (event);
    CREATE INDEX event_meta_event ON event_meta (event, key);
"""
MIGRATIONS += (EVENTS_API_MIGRATION,)

_COLUMNS = (
    "event_id, event_type, timestamp, message_id, recipient, url, link_index, user_agent, ip, referer, metadata, first, machine,"
    " tags"
)
#: How a message tracked without a recipient is stored: ``recipient`` stays NOT NULL, so that
#: ``firsts`` (its primary key) and ``count(DISTINCT recipient)`` treat "no recipient" as one reader.
_NO_RECIPIENT = ""


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """Raise SQLite's failures as the storage protocol's: the callers never see ``sqlite3``.

    ``OperationalError`` (locked, full, I/O error, read-only, cannot open) is
    :class:`StoreUnavailable`: try again later. Any other ``sqlite3.Error``
    (a constraint, a corrupt file) is :class:`StoreError`.
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"the SQLite store{_at(args)} is unavailable: {exc}", cause=exc) from exc
        except sqlite3.Error as exc:
            raise StoreError(f"the SQLite store{_at(args)} refused the operation: {exc}") from exc

    return wrapper


def _at(args: tuple[object, ...]) -> str:
    """`` at 'path'`` for the store a method was called on (what an operator needs to find it), else ""."""
    path = getattr(args[0], "path", None) if args else None
    return f" at {path!r}" if isinstance(path, str) else ""


class SQLiteStore:
    """Events in a SQLite file. ``busy_timeout`` (seconds) bounds the wait for another writer.

    Implements :class:`~mailtrack.storage.base.EventStore` and
    :class:`~mailtrack.storage.base.AccountStore`; every public
    method raises :class:`StoreUnavailable` (or :class:`StoreError`), never a
    ``sqlite3`` exception; a ``path`` that names no file is a
    :class:`~mailtrack.exceptions.ConfigurationError` (``str(None)`` would
    quietly make a file called ``None``).
    """

    @_translated
    def __init__(self, path: str | Path, *, busy_timeout: float = 0.25) -> None:
        if not isinstance(path, (str, Path)) or not str(path):
            raise ConfigurationError(f"the event database path must be a non-empty str or Path, not {path!r}")
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        # One writer at a time within a process: SQLite serializes writers anyway, but threads that contend
        # for its lock while trading the GIL hold it far longer (and starve WAL checkpoints).
        self._write_lock = threading.Lock()
        self._migrate()

    # -- connections ---------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill; fsync at checkpoints
            connection.execute("PRAGMA journal_size_limit=67108864")  # give a grown WAL back after a checkpoint
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.connection = connection
        return connection

    @_translated
    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _migrate(self) -> None:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
                return  # up to date: no write lock taken (readers such as `mailtrack events` stay out of the way)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see the new version
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                db.execute("ROLLBACK")
                raise StoreError(f"{self.path} has schema version {version}; this mailtrack knows up to {len(MIGRATIONS)} "
                                 "(it was written by a newer mailtrack)")
            for number, script in enumerate(MIGRATIONS[version:], version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        finally:
            db.close()

    @property
    @_translated
    def version(self) -> int:
        return int(self._connection().execute("PRAGMA user_version").fetchone()[0])

    # -- writing -------------------------------------------------------------------
    @_translated
    def record(self, event: TrackingEvent, outbox: Sequence[str] = ()) -> TrackingEvent:
        """Store ``event`` (once per ``event_id``), decide ``first``, queue it for each ``outbox`` target.

        Returns the event as stored (with ``first`` set). Raises
        :class:`StoreUnavailable` when the database cannot be written now.
        """
        if not isinstance(event, TrackingEvent):
            raise ArgumentError(f"record takes a TrackingEvent, not {type(event).__name__}")
        db = self._connection()
        with self._writing():
            return self._record(db, event, outbox)

    def _record(self, db: sqlite3.Connection, event: TrackingEvent, outbox: Sequence[str]) -> TrackingEvent:
        db.execute("BEGIN IMMEDIATE")
        try:
            stored = db.execute("SELECT first FROM events WHERE event_id = ?", (event.event_id,)).fetchone()
            if stored is not None:  # a retried write: recorded already
                db.execute("COMMIT")
                return event.with_first(bool(stored[0]))
            first = db.execute(
                "INSERT OR IGNORE INTO firsts (event_type, message_id, recipient) VALUES (?, ?, ?)",
                (event.event_type, event.message_id, _NO_RECIPIENT if event.recipient is None else event.recipient),
            ).rowcount == 1
            event = event.with_first(first)
            row = _row(event)
            link_first = event.event_type is EventType.CLICKED and event.url is not None and db.execute(
                "INSERT OR IGNORE INTO link_firsts (url, message_id, recipient) VALUES (?, ?, ?)",
                (event.url, row[3], row[4]),
            ).rowcount == 1
            rowid = db.execute(f"INSERT INTO events ({_COLUMNS}, link_first) VALUES ({', '.join('?' * 15)})",
                               (*row, int(link_first))).lastrowid
            self._index(db, rowid, event, row, link_first)
            now = event.timestamp.timestamp()
            db.executemany(
                "INSERT OR IGNORE INTO outbox (event_id, target, next_attempt) VALUES (?, ?, ?)",
                [(event.event_id, target, now) for target in outbox],
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return event

    @staticmethod
    def _index(db: sqlite3.Connection, rowid: int | None, event: TrackingEvent, row: tuple[Any, ...],
               link_first: bool) -> None:
        """Index the new event's tags and metadata, and add it to every rollup it belongs to (same transaction)."""
        tags = sorted(set(event.tags))
        meta = [(key, _meta_value(value)) for key, value in json.loads(row[10]).items()]
        db.executemany("INSERT OR IGNORE INTO event_tags (tag, event) VALUES (?, ?)", [(tag, rowid) for tag in tags])
        db.executemany("INSERT OR IGNORE INTO event_meta (key, value, event) VALUES (?, ?, ?)",
                       [(key, value, rowid) for key, value in meta])
        kind, first = event.event_type, bool(event.first)
        counts = (
            int(kind is EventType.OPENED), int(kind is EventType.OPENED and first),
            int(kind is EventType.CLICKED), int(kind is EventType.CLICKED and first), int(link_first),
            int(kind is EventType.UNSUBSCRIBED), int(kind is EventType.UNSUBSCRIBED and first),
        )
        day, url = int(row[2] // 86400), event.url or ""
        dims = [("all", "", ""), ("message", event.message_id, ""), *(("meta", key, value) for key, value in meta),
                *(("tag", tag, "") for tag in tags)]
        # per (day, URL), and all-time totals (day -1) so that a group_by without since/until reads one row per group
        db.executemany(_ROLLUP_UPSERT, [(*dim, when, where, *counts) for dim in dims
                                        for when, where in ((day, url), (_TOTAL, ""))])

    # -- reading -------------------------------------------------------------------
    @_translated
    def find(self, query: EventQuery, *, before: int | None = None, limit: int = 100) -> EventPage:
        """Events matching ``query``, newest (highest id) first, below id ``before``; at most ``limit``.

        Ordered by id, not timestamp, so a cursor (``next_before``) never skips
        or repeats an event however many arrive meanwhile: new events get
        higher ids and land before the first page. Every condition is served
        by an index: the query is driven by ``message_id`` or ``recipient``
        (``(column, id)`` indexes) when given, else by ``tag`` or the first
        metadata pair (``event_tags``/``event_meta``, kept in id order), else
        by ``type``/time over the primary key; the other conditions are checked
        per row found.
        """
        if not isinstance(query, EventQuery):
            raise ArgumentError(f"find takes an EventQuery, not {type(query).__name__}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ArgumentError(f"limit must be an int from 1 to {MAX_PAGE}, not {limit!r}")
        if before is not None and (isinstance(before, bool) or not isinstance(before, int)):
            raise ArgumentError(f"before must be an event id (int) or None, not {before!r}")
        db = self._connection()
        source, order, where, args = _plan(query, _window_is_narrow(db, query))
        if before is not None:
            where.append(f"{order} < ?")
            args.append(before)
        sql = (f"SELECT e.id, {_E_COLUMNS} FROM {source} WHERE {' AND '.join(where) or '1'} "
               f"ORDER BY {order} DESC LIMIT ?")
        rows = db.execute(sql, (*args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return EventPage([_event(row[1:]) for row in rows], rows[-1][0] if more else None)

    @_translated
    def grouped_stats(self, query: EventQuery, group_by: GroupBy, *, campaign_key: str = "campaign") -> list[StatsRow]:
        """Counts of the events matching ``query`` per ``group_by`` group (see :class:`StatsRow`).

        Answered from the ``rollups`` table (kept by :meth:`record`) whenever
        it holds the answer: no ``recipient`` condition, ``since``/``until`` on
        UTC day boundaries, and at most one of message/metadata/tag named by
        the conditions and the grouping together. Otherwise the events the
        conditions select are found through the same indexes as :meth:`find`
        and counted; at least one condition then narrows them, so no request
        reads every event. Groups: ``day`` (``YYYY-MM-DD`` UTC), ``campaign``
        (the value of metadata ``campaign_key``; events without it are left
        out), ``message``, ``link`` (clicked URL; clicks only) and ``tag`` (an
        event counts in each of its tags).
        """
        if not isinstance(query, EventQuery):
            raise ArgumentError(f"grouped_stats takes an EventQuery, not {type(query).__name__}")
        if group_by not in GROUP_BYS:
            raise ArgumentError(f"group_by must be one of {', '.join(GROUP_BYS)}, not {group_by!r}")
        if not isinstance(campaign_key, str) or not campaign_key:
            raise ArgumentError(f"campaign_key must be a non-empty str, not {campaign_key!r}")
        db = self._connection()
        rows = _from_rollups(db, query, group_by, campaign_key)
        if rows is None:
            rows = _from_events(db, query, group_by, campaign_key)
        return _stats_rows(rows, group_by, query.event_type)

    @_translated
    def events(
        self,
        *,
        message_id: str | None = None,
        event_type: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[TrackingEvent]:
        """Stored events in the order they were recorded, optionally filtered; ``limit`` caps how many."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ArgumentError(f"limit must be a non-negative int or None, not {limit!r}")
        where, args = ["id > ?"], [after_id]
        if message_id is not None:
            where.append("message_id = ?")
            args.append(message_id)  # type: ignore[arg-type]
        if event_type is not None:
            where.append("event_type = ?")
            args.append(event_type)  # type: ignore[arg-type]
        sql = f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {limit}"
        return [_event(row) for row in self._connection().execute(sql, args)]

    @_translated
    def count(self) -> int:
        return int(self._connection().execute("SELECT count(*) FROM events").fetchone()[0])

    @_translated
    def stats(self) -> dict[str, Any]:
        """Opens and clicks per message and per link, total and unique (distinct recipients).

        ``recipients`` is how many recipients did anything at all: the store
        does not know how many were sent, so click-through is unique clickers
        over those (``ctr``) and over unique openers (``click_to_open``).
        """
        db = self._connection()
        messages: dict[str, dict[str, Any]] = {}
        for message_id, event_type, total, unique in db.execute(
            "SELECT message_id, event_type, count(*), count(DISTINCT recipient) FROM events GROUP BY message_id, event_type"
        ):
            entry = messages.setdefault(message_id, {"message_id": message_id, "links": []})
            entry[f"{event_type}_total"] = total
            entry[f"{event_type}_unique"] = unique
        for message_id, recipients in db.execute("SELECT message_id, count(DISTINCT recipient) FROM events GROUP BY message_id"):
            entry = messages[message_id]
            entry["recipients"] = recipients
            for event_type in EventType:
                entry.setdefault(f"{event_type.value}_total", 0)
                entry.setdefault(f"{event_type.value}_unique", 0)
            clickers, openers = entry[f"{EventType.CLICKED}_unique"], entry[f"{EventType.OPENED}_unique"]
            entry["ctr"] = clickers / recipients if recipients else 0.0
            entry["click_to_open"] = clickers / openers if openers else None
        for message_id, index, url, total, unique in db.execute(
            "SELECT message_id, link_index, url, count(*), count(DISTINCT recipient) FROM events "
            "WHERE event_type = ? GROUP BY message_id, link_index, url ORDER BY message_id, link_index, url",
            (EventType.CLICKED.value,),
        ):
            messages[message_id]["links"].append({"link_index": index, "url": url, "clicks": total, "unique": unique})
        return {"messages": sorted(messages.values(), key=lambda m: m["message_id"])}

    # -- accounts, keys and settings (AccountStore) ----------------------------------------
    @_translated
    def create_account(self, name: str, *, parent: str | None = None) -> Account:
        """Add the parent (``parent`` None) or a subuser of ``parent`` (the parent is created first when missing).

        A store has one parent: naming another raises :class:`StoreError`, as does a name already taken.
        """
        check_account_name(name)
        if parent is not None:
            check_account_name(parent)
            if parent == name:
                raise ArgumentError(f"a subuser cannot be called like its parent ({name!r})")
        now = time.time()
        with self._transaction() as db:
            existing = db.execute("SELECT name FROM accounts WHERE parent IS NULL").fetchone()
            wanted_parent = name if parent is None else parent
            if existing is not None and existing[0] != wanted_parent:
                raise StoreError(f"this store's parent account is {existing[0]!r}, not {wanted_parent!r} "
                                 "(--account-name, MAILTRACK_ACCOUNT_NAME)")
            if existing is None:
                db.execute("INSERT INTO accounts (name, parent, created) VALUES (?, NULL, ?)", (wanted_parent, now))
            elif parent is None:
                raise StoreError(f"the account {name!r} exists already")
            if parent is not None:
                if db.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone() is not None:
                    raise StoreError(f"the account {name!r} exists already")
                db.execute("INSERT INTO accounts (name, parent, created) VALUES (?, ?, ?)", (name, parent, now))
        return Account(name, parent, now)

    @_translated
    def account(self, name: str) -> Account | None:
        """The account called ``name``, or None."""
        row = self._connection().execute("SELECT name, parent, created FROM accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else Account(*row)

    @_translated
    def accounts(self) -> list[Account]:
        """Every account: the parent first, then its subusers by name."""
        rows = self._connection().execute(
            "SELECT name, parent, created FROM accounts ORDER BY parent IS NOT NULL, name"
        ).fetchall()
        return [Account(*row) for row in rows]

    @_translated
    def delete_account(self, name: str) -> None:
        """Remove the subuser ``name`` with its keys and settings; the parent is refused."""
        with self._transaction() as db:
            row = db.execute("SELECT parent FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownAccount(f"no account called {name!r}")
            if row[0] is None:
                raise StoreError(f"{name!r} is the parent account; only subusers can be deleted")
            db.execute("DELETE FROM accounts WHERE name = ?", (name,))

    @_translated
    def create_key(self, account: str, scopes: Iterable[str] | None = None, *, name: str | None = None) -> tuple[ApiKey, str]:
        """A new key for ``account`` with ``scopes`` (None: all); returns it and the full key, shown once."""
        chosen = check_scopes(scopes)
        if name is not None and not isinstance(name, str):
            raise ArgumentError(f"a key's name must be a string, not {name!r}")
        made, now = new_key(), time.time()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM accounts WHERE name = ?", (account,)).fetchone() is None:
                raise UnknownAccount(f"no account called {account!r}")
            db.execute(
                "INSERT INTO api_keys (key_id, account, digest, scopes, name, created) VALUES (?, ?, ?, ?, ?, ?)",
                (made.key_id, account, made.digest, json.dumps(sorted(chosen)), name, now),
            )
        return ApiKey(made.key_id, account, chosen, now, None, name), made.key

    @_translated
    def api_keys(self, account: str | None = None) -> list[ApiKey]:
        """Stored keys (of ``account``, or every one), oldest first, revoked ones included."""
        rows = self._connection().execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE ? IS NULL OR account = ? ORDER BY created, key_id",
            (account, account),
        ).fetchall()
        return [_api_key(row) for row in rows]

    @_translated
    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke the key ``key_id`` (a :class:`StoreError` if there is none); a second revoke keeps the first time."""
        with self._transaction() as db:
            db.execute("UPDATE api_keys SET revoked = ? WHERE key_id = ? AND revoked IS NULL", (time.time(), key_id))
            row = db.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        if row is None:
            raise StoreError(f"no API key with id {key_id!r}")
        return _api_key(row)

    @_translated
    def authenticate(self, key: str) -> ApiKey | None:
        """The live key that ``key`` is, or None: malformed, unknown, a wrong secret or revoked.

        Found by its public id, then its SHA-256 compared in constant time; a
        digest is compared even when the id is unknown, so both refusals take
        the same work.
        """
        key_id = split_key(key)
        if key_id is None:
            return None
        row = self._connection().execute(f"SELECT {_KEY_COLUMNS}, digest FROM api_keys WHERE key_id = ?",
                                         (key_id,)).fetchone()
        digest = row[-1] if row is not None else "0" * 64
        if not digest_matches(key, digest) or row is None:
            return None
        found = _api_key(row[:-1])
        return None if found.revoked is not None else found

    @_translated
    def account_settings(self, name: str) -> dict[str, Any]:
        """The fields stored for account ``name``, in the v3 account shape (``{}``: none set)."""
        return self._stored_settings(self._connection(), name)

    def tracking_settings(self, name: str) -> TrackingSettings:
        """The defaults with account ``name``'s stored fields laid over them."""
        return TrackingSettings.from_account(self.account_settings(name))

    @_translated
    def patch_tracking_settings(
        self, name: str, section: str, body: Mapping[str, Any], *, every_field: bool = False
    ) -> tuple[TrackingSettings, dict[str, Any]]:
        """Apply ``PATCH /v3/tracking_settings/{section}`` to account ``name`` in one transaction.

        ``every_field`` as in :meth:`TrackingSettings.patch` (v2's ``setup``).
        The body is validated by :meth:`TrackingSettings.patch` (a
        :class:`~mailtrack.exceptions.SettingsError` leaves the store as it
        was); only the fields it names change. Returns the new settings and
        the section's new state.
        """
        with self._transaction() as db:
            stored = self._stored_settings(db, name)
            updated, answer = TrackingSettings.from_account(stored).patch(section, body, every_field=every_field)
            stored.setdefault(section, {}).update(body)
            db.execute("UPDATE accounts SET settings = ? WHERE name = ?",
                       (json.dumps(stored, sort_keys=True, separators=(",", ":")), name))
        return updated, answer

    @staticmethod
    def _stored_settings(db: sqlite3.Connection, name: str) -> dict[str, Any]:
        row = db.execute("SELECT settings FROM accounts WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownAccount(f"no account called {name!r}")
        stored: dict[str, Any] = json.loads(row[0])
        return stored

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``) under this process's write lock; rolled back on any error."""
        db = self._connection()
        with self._writing():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    # -- the webhook outbox -------------------------------------------------------------
    @_translated
    def outbox_due(self, now: float, limit: int = 50, target: str | None = None) -> list[OutboxItem]:
        """Deliveries whose next attempt is due, oldest first (read only; see :meth:`outbox_claim`)."""
        return self._due(self._connection(), now, limit, target)

    @_translated
    def outbox_claim(self, target: str, now: float, lease: float, limit: int = 50) -> list[OutboxItem]:
        """Take the due deliveries for ``target``: nobody else gets them for ``lease`` seconds.

        Several server processes share one outbox; claiming (moving the next
        attempt past the lease, in the transaction that reads the rows) makes
        each delivery attempt happen once. A worker that dies mid-delivery
        leaves its rows to be taken again when the lease ends.
        """
        db = self._connection()
        with self._writing():
            return self._claim(db, target, now, lease, limit)

    def _claim(self, db: sqlite3.Connection, target: str, now: float, lease: float, limit: int) -> list[OutboxItem]:
        db.execute("BEGIN IMMEDIATE")
        try:
            items = self._due(db, now, limit, target)
            db.executemany("UPDATE outbox SET next_attempt = ? WHERE id = ?", [(now + lease, item.id) for item in items])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return items

    @staticmethod
    def _due(db: sqlite3.Connection, now: float, limit: int, target: str | None) -> list[OutboxItem]:
        rows = db.execute(
            f"SELECT o.id, o.target, o.attempts, {', '.join('e.' + c.strip() for c in _COLUMNS.split(','))} "
            "FROM outbox o JOIN events e ON e.event_id = o.event_id "
            "WHERE o.delivered IS NULL AND o.dead = 0 AND o.next_attempt <= ? AND (? IS NULL OR o.target = ?) "
            "ORDER BY o.next_attempt, o.id LIMIT ?",
            (now, target, target, limit),
        ).fetchall()
        return [OutboxItem(row[0], row[1], row[2], _event(row[3:])) for row in rows]

    @_translated
    def outbox_requeue(self, now: float) -> int:
        """Give every dead delivery a fresh start (after a long outage of the receiver); returns how many."""
        with self._writing():
            cursor = self._connection().execute(
                "UPDATE outbox SET dead = 0, attempts = 0, next_attempt = ? WHERE dead = 1 AND delivered IS NULL", (now,)
            )
            return int(cursor.rowcount)

    @_translated
    def outbox_delivered(self, item_id: int, now: float) -> None:
        self._write("UPDATE outbox SET delivered = ?, attempts = attempts + 1 WHERE id = ?", (now, item_id))

    @_translated
    def outbox_backlog(self) -> int:
        """Deliveries waiting, counted on the partial index ``outbox_due`` (only the waiting rows are in it)."""
        row = self._connection().execute(
            "SELECT count(*) FROM outbox INDEXED BY outbox_due WHERE delivered IS NULL AND dead = 0").fetchone()
        return int(row[0])

    @_translated
    def outbox_delivered_many(self, item_ids: Sequence[int], now: float) -> None:
        """Mark several deliveries done in one transaction (what a pooled sender's finished posts cost: one commit)."""
        if not item_ids:
            return
        db = self._connection()
        with self._writing():
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("UPDATE outbox SET delivered = ?, attempts = attempts + 1 WHERE id = ?",
                               [(now, item_id) for item_id in item_ids])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @_translated
    def outbox_failed(self, item_id: int, error: str, next_attempt: float | None) -> None:
        """Record a failed attempt; ``next_attempt`` None gives up (the row stays, marked dead)."""
        if next_attempt is None:
            self._write("UPDATE outbox SET attempts = attempts + 1, last_error = ?, dead = 1 WHERE id = ?", (error, item_id))
        else:
            self._write(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ? WHERE id = ?",
                (error, next_attempt, item_id),
            )

    @_translated
    def outbox_rows(self) -> list[dict[str, Any]]:
        """Every outbox row, for inspection and tests."""
        cursor = self._connection().execute(
            "SELECT id, event_id, target, attempts, next_attempt, last_error, delivered, dead FROM outbox ORDER BY id"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def _write(self, sql: str, args: Iterable[Any]) -> None:
        with self._writing():
            self._connection().execute(sql, tuple(args))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """This process's write lock (see ``__init__``), waited for as long as SQLite's busy timeout."""
        if not self._write_lock.acquire(timeout=self.busy_timeout):
            raise StoreUnavailable("the SQLite store is locked (another thread of this process is writing)")
        try:
            yield
        finally:
            self._write_lock.release()


_KEY_COLUMNS = "key_id, account, scopes, created, revoked, name"


def _api_key(row: Sequence[Any]) -> ApiKey:
    key_id, account, scopes, created, revoked, name = row
    return ApiKey(key_id, account, frozenset(json.loads(scopes)), created, revoked, name)


def _row(event: TrackingEvent) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.event_type.value,
        event.timestamp.timestamp(),
        event.message_id,
        _NO_RECIPIENT if event.recipient is None else event.recipient,
        event.url,
        event.link_index,
        event.user_agent,
        event.ip,
        event.referer,
        json.dumps(dict(event.metadata), separators=(",", ":"), sort_keys=True, default=str),
        int(bool(event.first)),
        event.machine,
        json.dumps(list(event.tags), separators=(",", ":")),
    )


def _event(row: Sequence[Any]) -> TrackingEvent:
    (event_id, event_type, timestamp, message_id, recipient, url, link_index, user_agent, ip, referer, metadata, first,
     machine, tags) = row
    return TrackingEvent(
        event_type=event_type,
        timestamp=datetime.fromtimestamp(timestamp, timezone.utc),
        message_id=message_id,
        recipient=None if recipient == _NO_RECIPIENT else recipient,
        url=url,
        link_index=link_index,
        user_agent=user_agent,
        ip=ip,
        referer=referer,
        metadata=json.loads(metadata),
        first=bool(first),
        machine=machine,
        event_id=event_id,
        tags=tuple(json.loads(tags)),
    )


_E_COLUMNS = ", ".join("e." + column.strip() for column in _COLUMNS.split(","))
_ROLLUP_UPSERT = (
    "INSERT INTO rollups (dim, key, value, day, url, opens, unique_opens, clicks, unique_clicks, link_unique_clicks,"
    " unsubscribes, unique_unsubscribes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (dim, key, value, day, url) DO UPDATE SET opens = opens + excluded.opens,"
    " unique_opens = unique_opens + excluded.unique_opens, clicks = clicks + excluded.clicks,"
    " unique_clicks = unique_clicks + excluded.unique_clicks,"
    " link_unique_clicks = link_unique_clicks + excluded.link_unique_clicks,"
    " unsubscribes = unsubscribes + excluded.unsubscribes,"
    " unique_unsubscribes = unique_unsubscribes + excluded.unique_unsubscribes"
)
_DAY = 86400
#: The ``day`` of the all-time total rows of the rollups.
_TOTAL = -1
#: The seven counts, in rollup column order, as sums over events ``e`` (the fallback's equivalent of the rollups).
_EVENT_SUMS = (
    f"sum(e.event_type = {_OPENED}), sum(e.event_type = {_OPENED} AND e.first), sum(e.event_type = {_CLICKED}),"
    f" sum(e.event_type = {_CLICKED} AND e.first), sum(e.event_type = {_CLICKED} AND e.link_first),"
    f" sum(e.event_type = {_UNSUBSCRIBED}), sum(e.event_type = {_UNSUBSCRIBED} AND e.first)"
)
_ROLLUP_SUMS = ("sum(opens), sum(unique_opens), sum(clicks), sum(unique_clicks), sum(link_unique_clicks),"
                " sum(unsubscribes), sum(unique_unsubscribes)")


def _meta_value(value: Any) -> str:
    """How a metadata value is indexed and matched: a str as itself, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)


def _plan(query: EventQuery, by_time: bool = False) -> tuple[str, str, list[str], list[Any]]:
    """``FROM`` clause, the id column to order by, and the conditions with their arguments, for ``query``.

    The most selective indexed condition drives (``CROSS JOIN`` fixes the
    join order in SQLite): message or recipient, else tag, else a metadata pair,
    else (``by_time``, see :func:`_window_is_narrow`) the time index.
    """
    where: list[str] = []
    args: list[Any] = []
    metadata = list(query.metadata)
    tag = query.tag
    if query.message_id is None and query.recipient is None and tag is not None:
        source, order = "event_tags d CROSS JOIN events e ON e.id = d.event", "d.event"
        where.append("d.tag = ?")
        args.append(tag)
        tag = None
    elif query.message_id is None and query.recipient is None and metadata:
        key, value = metadata.pop(0)
        source, order = "event_meta d CROSS JOIN events e ON e.id = d.event", "d.event"
        where += ["d.key = ?", "d.value = ?"]
        args += [key, value]
    elif by_time and query.message_id is None and query.recipient is None:
        source, order = "events e INDEXED BY events_time", "e.id"
    else:
        source, order = "events e", "e.id"
        by_time = False
    for column, pinned in (("message_id", query.message_id), ("recipient", query.recipient)):
        if pinned is not None:
            where.append(f"e.{column} = ?")
            args.append(pinned)
    # with a selective driver (message, recipient, tag, metadata), type and time are checked per row found: the
    # unary + keeps SQLite from walking the type or time index instead (which it would, to avoid sorting)
    plus = "+" if order != "e.id" or query.message_id is not None or query.recipient is not None else ""
    if query.event_type is not None:
        where.append(f"{plus}e.event_type = ?")
        args.append(query.event_type.value)
    if by_time:
        plus = ""
    if query.since is not None:
        where.append(f"{plus}e.timestamp >= ?")
        args.append(query.since)
    if query.until is not None:
        where.append(f"{plus}e.timestamp < ?")
        args.append(query.until)
    if tag is not None:
        where.append("EXISTS (SELECT 1 FROM event_tags t WHERE t.tag = ? AND t.event = e.id)")
        args.append(tag)
    for key, value in metadata:
        where.append("EXISTS (SELECT 1 FROM event_meta m WHERE m.key = ? AND m.value = ? AND m.event = e.id)")
        args += [key, value]
    return source, order, where, args


def _window_is_narrow(db: sqlite3.Connection, query: EventQuery) -> bool:
    """Whether a ``since``..``until`` window is best read through the time index (then sorted by id).

    Without a more selective condition, newest-first walks the primary key
    down from the newest event, skipping those after ``until``; reading the
    window from the time index instead costs the events inside it. Events
    arrive at roughly even times, so the two time spans compare the two costs
    (the newest timestamp is one index lookup).
    """
    if query.since is None or query.message_id is not None or query.recipient is not None or query.tag is not None \
            or query.metadata:
        return False
    newest = db.execute("SELECT max(timestamp) FROM events").fetchone()[0]
    if newest is None:
        return False
    end = newest if query.until is None else min(query.until, newest)
    return bool(newest - end > end - query.since)


def _from_rollups(db: sqlite3.Connection, query: EventQuery, group_by: GroupBy,
                  campaign_key: str) -> list[tuple[Any, ...]] | None:
    """``(group, seven counts)`` rows from the rollups, or None when they cannot answer ``query`` exactly."""
    if query.recipient is not None or any(t is not None and t % _DAY for t in (query.since, query.until)):
        return None
    named: list[tuple[str, str | None, str | None]] = []  # (dim, key, value) the conditions pin
    if query.message_id is not None:
        named.append(("message", query.message_id, ""))
    named += [("meta", key, value) for key, value in query.metadata]
    if query.tag is not None:
        named.append(("tag", query.tag, ""))
    grouping = {"campaign": ("meta", campaign_key, None), "message": ("message", None, ""),
                "tag": ("tag", None, "")}.get(group_by)
    if grouping is not None and named:
        # one dimension at most: grouping by what a condition pins (a message, one metadata key) is that one group
        if len(named) > 1 or grouping[0] == "tag" or named[0][0] != grouping[0] or \
                (grouping[0] == "meta" and named[0][1] != campaign_key):
            return None
    elif len(named) > 1:
        return None
    dim, key, value = named[0] if named else grouping if grouping is not None else ("all", "", "")
    where: list[str] = ["dim = ?"]
    args: list[Any] = [dim]
    if key is not None:
        where.append("key = ?")
        args.append(key)
    if value is not None:
        where.append("value = ?")
        args.append(value)
    if query.since is None and query.until is None and group_by not in ("day", "link"):
        where.append(f"day = {_TOTAL}")
    else:
        where.append("day >= 0")
    if query.since is not None:
        where.append("day >= ?")
        args.append(int(query.since // _DAY))
    if query.until is not None:
        where.append("day < ?")
        args.append(int(query.until // _DAY))
    group = {"day": "day", "link": "url", "campaign": "value", "message": "key", "tag": "key"}[group_by]
    if group_by == "link":
        where.append("url != ''")
    sql = f"SELECT {group}, {_ROLLUP_SUMS} FROM rollups WHERE {' AND '.join(where)} GROUP BY {group}"
    return db.execute(sql, args).fetchall()


def _from_events(db: sqlite3.Connection, query: EventQuery, group_by: GroupBy, campaign_key: str) -> list[tuple[Any, ...]]:
    """``(group, seven counts)`` rows counted over the events ``query`` selects, found through :func:`_plan`'s indexes."""
    source, _, where, args = _plan(query)
    group = {"day": "CAST(e.timestamp / 86400 AS INTEGER)", "link": "e.url", "message": "e.message_id",
             "campaign": "g.value", "tag": "g.tag"}[group_by]
    if group_by == "campaign":  # CROSS JOIN: from the events found to their rows (event_meta_event, event_tags_event)
        source += " CROSS JOIN event_meta g ON g.event = e.id AND g.key = ?"
        args = [campaign_key, *args]  # the join's placeholder comes before every WHERE one
    if group_by == "tag":
        source += " CROSS JOIN event_tags g ON g.event = e.id"
    if group_by == "link":
        where.append(f"+e.event_type = {_CLICKED} AND e.url IS NOT NULL")
    sql = f"SELECT {group}, {_EVENT_SUMS} FROM {source} WHERE {' AND '.join(where) or '1'} GROUP BY {group}"
    return db.execute(sql, args).fetchall()


def _stats_rows(rows: list[tuple[Any, ...]], group_by: GroupBy, event_type: EventType | None) -> list[StatsRow]:
    """:class:`StatsRow` per group, counts of other types than ``event_type`` zeroed, in the group's order."""
    result = []
    for group, opens, unique_opens, clicks, unique_clicks, link_unique, unsubscribes, unique_unsubscribes in rows:
        keep = {t: event_type is None or event_type is t for t in EventType}
        opens, unique_opens = (opens, unique_opens) if keep[EventType.OPENED] else (0, 0)
        clicks, unique_clicks, link_unique = (clicks, unique_clicks, link_unique) if keep[EventType.CLICKED] else (0, 0, 0)
        if not keep[EventType.UNSUBSCRIBED]:
            unsubscribes = unique_unsubscribes = 0
        if group_by == "day":
            key = datetime.fromtimestamp(int(group) * _DAY, timezone.utc).strftime("%Y-%m-%d")
        else:
            key = str(group)
        if group_by == "link":
            result.append(StatsRow(key, None, None, int(clicks or 0), int(link_unique or 0), None, None))
        else:
            result.append(StatsRow(key, int(opens or 0), int(unique_opens or 0), int(clicks or 0),
                                   int(unique_clicks or 0), int(unsubscribes or 0), int(unique_unsubscribes or 0)))
    if group_by == "link":
        result.sort(key=lambda row: (-row.clicks, row.key))
    else:
        result.sort(key=lambda row: row.key)
    return [row for row in result if row.opens or row.clicks or row.unsubscribes]
