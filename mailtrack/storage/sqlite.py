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
from mailtrack.storage.base import OutboxItem, StoreError, StoreUnavailable, UnknownAccount

__all__ = ["MIGRATIONS", "OutboxItem", "SQLiteStore"]

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
            db.execute(f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join('?' * 14)})", _row(event))
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

    # -- reading -------------------------------------------------------------------
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
