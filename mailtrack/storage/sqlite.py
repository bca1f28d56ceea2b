"""The embedded event store: one SQLite file, safe for several threads and processes.

WAL journaling lets readers run beside the one writer, and a short busy
timeout bounds how long a write waits for another process; a write that still
fails raises, and :class:`~mailtrack.delivery.recorder.Recorder` spools the event
instead of failing the request. The schema is versioned (``PRAGMA
user_version``) and upgraded by the migrations below, in order, on open.

An event and its webhook outbox rows are written in one transaction, so a
webhook is never told about an event the store lost, nor the reverse. The
stats rollups are not written there: :meth:`SQLiteStore.roll` adds the events
stored since its last run to them in batches (``mailtrack serve`` runs it in
the background, every stats read runs it first), and a read adds the events
it could not roll itself, so stats stay exact.

Machine-event verdicts (issue 14): an event may be relabelled after it is
stored (a honeypot click marks the clicks of its message around it), by the
batch write that learns it (:func:`_decide_verdicts`, :func:`_apply_relabels`):
the row is updated, its first-event slots pass on, and the rollups follow.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from mailtrack.core.settings import TrackingSettings
from mailtrack.events import EventType, TrackingEvent
from mailtrack.exceptions import ArgumentError, ConfigurationError
from mailtrack.storage._shared import (
    _COLUMNS,
    _GROUP_SHOWN,
    _KEY_COLUMNS,
    _N,
    _NO_RECIPIENT,
    _PARENT,
    _PINNED_SHOWN,
    _PINNED_SUMS,
    _ROLL_COLUMNS,
    _ROLLUP_COUNTS,
    _ROLLUP_SUMS,
    _SHOWN,
    _SQLITE,
    _STORED_CLICK,
    _WIDTH,
    Relabel,
    _api_key,
    _batch_first_opens,
    _click_groups,
    _delta_cells,
    _event,
    _group_value,
    _machine_filter,
    _merge,
    _message_report,
    _meta_value,
    _nonzero,
    _relabel_batch,
    _relabel_rows,
    _rollup_cells,
    _rollup_spec,
    _row,
    _Spec,
    _stats_rows,
    _totals_of,
    _window,
)
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
    Erased,
    EventPage,
    EventQuery,
    GroupBy,
    OutboxItem,
    StatsPage,
    StatsRow,
    StoreError,
    StoreUnavailable,
    UnknownAccount,
    check_before,
    check_recipient,
    same_recipient,
)

__all__ = ["EVENTS_API_MIGRATION", "MIGRATIONS", "ROLL_BATCH", "ROLLER_MIGRATION", "STATS_MIGRATION",
           "VERDICTS_MIGRATION", "OutboxItem", "SQLiteStore"]

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

#: The seven counts of a rollup row, in column order (``_ROLLUP_SUMS`` sums them).
_COUNTS_COLUMNS = ("opens INTEGER NOT NULL, unique_opens INTEGER NOT NULL, clicks INTEGER NOT NULL,"
                   " unique_clicks INTEGER NOT NULL, link_unique_clicks INTEGER NOT NULL, unsubscribes INTEGER NOT NULL,"
                   " unique_unsubscribes INTEGER NOT NULL")
_SOURCE_SUMS = "sum(o), sum(uo), sum(c), sum(uc), sum(lc), sum(u), sum(uu)"
#: Stats from rollups for every group_by x filter, and the account of each event (issue 11). Replaces v5's one-dimension
#: ``rollups`` with two tables keyed by (account, filter atom f, group atom g[, day], url), where an atom is
#: ('all', '', ''), ('message', id, ''), ('meta', key, value) or ('tag', tag, ''), with the two atoms' dims first so
#: that each kind of row is one key range:
#:   - (all, all) and (atom, all) per (day, url): group_by day/link, and every group of message/campaign/tag unfiltered;
#:   - (meta or tag atom f, atom g) per (day, url): group_by message/campaign/tag filtered by a metadata pair or tag,
#:     and group_by day/link filtered by two atoms; g = f only for tags (a tag filter grouped by tag shows that tag).
#: ``rollup_totals`` holds the same sums over every day, so a request without since/until reads one row per group.
#: Backfilled from the events already stored (v5 files upgrade in place); the v5 ``rollups`` table is dropped.
STATS_MIGRATION = f"""
    ALTER TABLE events ADD COLUMN account TEXT NOT NULL DEFAULT '';
    CREATE INDEX events_account ON events (account, id);
    DROP TABLE rollups;
    CREATE TABLE rollup_days (
        account TEXT NOT NULL, fdim TEXT NOT NULL, fkey TEXT NOT NULL, fvalue TEXT NOT NULL,
        gdim TEXT NOT NULL, gkey TEXT NOT NULL, gvalue TEXT NOT NULL, day INTEGER NOT NULL, url TEXT NOT NULL,
        {_COUNTS_COLUMNS},
        PRIMARY KEY (account, fdim, gdim, fkey, fvalue, gkey, gvalue, day, url)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_totals (
        account TEXT NOT NULL, fdim TEXT NOT NULL, fkey TEXT NOT NULL, fvalue TEXT NOT NULL,
        gdim TEXT NOT NULL, gkey TEXT NOT NULL, gvalue TEXT NOT NULL, url TEXT NOT NULL,
        {_COUNTS_COLUMNS},
        PRIMARY KEY (account, fdim, gdim, fkey, fvalue, gkey, gvalue, url)
    ) WITHOUT ROWID;
    CREATE TEMP TABLE atoms (
        event INTEGER NOT NULL, dim TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (event, dim, key, value)
    ) WITHOUT ROWID;
    INSERT INTO atoms SELECT id, 'message', message_id, '' FROM events;
    INSERT OR IGNORE INTO atoms SELECT event, 'meta', key, value FROM event_meta;
    INSERT OR IGNORE INTO atoms SELECT event, 'tag', tag, '' FROM event_tags;
    CREATE TEMP VIEW rollup_source AS SELECT id, account, CAST(timestamp / 86400 AS INTEGER) AS day,
        coalesce(url, '') AS url, event_type = {_OPENED} AS o, event_type = {_OPENED} AND first AS uo,
        event_type = {_CLICKED} AS c, event_type = {_CLICKED} AND first AS uc, event_type = {_CLICKED} AND link_first AS lc,
        event_type = {_UNSUBSCRIBED} AS u, event_type = {_UNSUBSCRIBED} AND first AS uu FROM events;
    INSERT INTO rollup_days SELECT account, 'all', '', '', 'all', '', '', day, url, {_SOURCE_SUMS}
        FROM rollup_source GROUP BY account, day, url;
    INSERT INTO rollup_days SELECT s.account, a.dim, a.key, a.value, 'all', '', '', s.day, s.url, {_SOURCE_SUMS}
        FROM atoms a JOIN rollup_source s ON s.id = a.event GROUP BY s.account, a.dim, a.key, a.value, s.day, s.url;
    INSERT INTO rollup_days SELECT s.account, f.dim, f.key, f.value, g.dim, g.key, g.value, s.day, s.url, {_SOURCE_SUMS}
        FROM atoms f JOIN atoms g ON g.event = f.event JOIN rollup_source s ON s.id = f.event
        WHERE f.dim IN ('meta', 'tag') AND (f.dim = 'tag' OR f.dim != g.dim OR f.key != g.key OR f.value != g.value)
        GROUP BY s.account, f.dim, f.key, f.value, g.dim, g.key, g.value, s.day, s.url;
    DROP VIEW rollup_source;
    DROP TABLE atoms;
    INSERT INTO rollup_totals SELECT account, fdim, fkey, fvalue, gdim, gkey, gvalue, url, sum(opens), sum(unique_opens),
        sum(clicks), sum(unique_clicks), sum(link_unique_clicks), sum(unsubscribes), sum(unique_unsubscribes)
        FROM rollup_days GROUP BY account, fdim, fkey, fvalue, gdim, gkey, gvalue, url
"""
MIGRATIONS += (STATS_MIGRATION,)

#: The rollups leave the event's write (issue 12): :meth:`SQLiteStore.record` writes the event and its indexes only,
#: and :meth:`SQLiteStore.roll` adds the events above ``rollup_state.rolled`` (the highest event id in the rollups) to
#: them in batches. v6 kept the rollups inside every event's transaction (and its migration backfilled them), so every
#: event a v6 file holds is in them already: the watermark starts at the highest id (0 for an empty store).
ROLLER_MIGRATION = """
    CREATE TABLE rollup_state (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        rolled INTEGER NOT NULL
    );
    INSERT INTO rollup_state (one, rolled) SELECT 1, coalesce(max(id), 0) FROM events
"""
MIGRATIONS += (ROLLER_MIGRATION,)

#: ``first`` per account (issue 11's review): the first open of a message by a recipient is decided within the
#: account whose token it was (the parent's: ''), so one account's events never make another's "not first", and
#: ``first`` reveals nothing about another account's mail. The tables are rebuilt from the events (each event's
#: account, type, message and recipient; clicks' URLs): the flags already stored on events stay as they were.
ACCOUNT_FIRSTS_MIGRATION = f"""
    DROP TABLE firsts;
    CREATE TABLE firsts (
        account TEXT NOT NULL,
        event_type TEXT NOT NULL,
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        PRIMARY KEY (account, event_type, message_id, recipient)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO firsts SELECT account, event_type, message_id, recipient FROM events;
    DROP TABLE link_firsts;
    CREATE TABLE link_firsts (
        account TEXT NOT NULL,
        url TEXT NOT NULL,
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        PRIMARY KEY (account, url, message_id, recipient)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO link_firsts SELECT account, url, message_id, recipient FROM events
        WHERE event_type = {_CLICKED} AND url IS NOT NULL
"""
MIGRATIONS += (ACCOUNT_FIRSTS_MIGRATION,)

#: One index fewer to write per event (issue 12): ``events_message`` (message, type, recipient) decided ``first``
#: before v2's ``firsts`` table did; since then no query needs it (``events_message_id`` and ``events_recipient``
#: serve every filter), and with random message ids and recipients each event's insert dirtied one more page of it.
DROP_MESSAGE_INDEX_MIGRATION = "DROP INDEX IF EXISTS events_message"
MIGRATIONS += (DROP_MESSAGE_INDEX_MIGRATION,)

#: Machine-event verdicts (issue 14): each event's ``machine_reasons`` (JSON list; ``machine`` has had its column
#: since v1), the rollups' machine counts beside the people's, and ``rollup_state.relabels``, which every write
#: that relabels an event not rolled yet moves, so that a roller that summed the old labels starts its batch again.
#: From this version on a machine event never takes a ``firsts``/``link_firsts`` slot (``first`` and the unique
#: counts are people's). mailtrack stored no verdict before (its endpoints left ``machine`` None), so the counts
#: already rolled stay as they are (an event recorded by hand with a ``machine`` before this version stays counted
#: as a person's in the rollups).
VERDICTS_MIGRATION = f"""
    ALTER TABLE events ADD COLUMN machine_reasons TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE rollup_days ADD COLUMN machine_opens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollup_days ADD COLUMN machine_clicks INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollup_days ADD COLUMN machine_unsubscribes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollup_totals ADD COLUMN machine_opens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollup_totals ADD COLUMN machine_clicks INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollup_totals ADD COLUMN machine_unsubscribes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollup_state ADD COLUMN relabels INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_clicks ON events (message_id, recipient, timestamp) WHERE event_type = {_CLICKED}
"""
MIGRATIONS += (VERDICTS_MIGRATION,)

#: How many events :meth:`SQLiteStore.roll` adds to the rollups per write transaction (by default)...
ROLL_BATCH = 2000
#: ... unless their distinct ``rollup_days`` cells reach this many first (events of many distinct messages share few
#: cells): the transaction upserts at most about twice as many rows, so other writers wait tens of milliseconds at most.
ROLL_CELLS = 4000
#: How many events :meth:`SQLiteStore.purge` and :meth:`SQLiteStore.forget` delete per write transaction.
ERASE_BATCH = 500
#: Events summed at a time while filling a batch up to ``ROLL_CELLS``.
_ROLL_CHUNK = 250


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
            if args and isinstance(args[0], SQLiteStore) and not _is_busy(exc):
                args[0]._drop_connection()  # read-only, I/O error, gone: the next call opens the file afresh
            raise StoreUnavailable(f"the SQLite store{_at(args)} is unavailable: {exc}", cause=exc) from exc
        except sqlite3.Error as exc:
            raise StoreError(f"the SQLite store{_at(args)} refused the operation: {exc}") from exc

    return wrapper


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` only says another writer holds the lock (the connection itself is fine)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)  # pragma: no cover - Python < 3.11 has no error codes


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

    def _drop_connection(self) -> None:
        """Forget this thread's connection after a failure that is not a busy lock; never raises.

        SQLite opens a file it cannot write read-only without a word, and such
        a connection stays read-only after the file (or its volume) becomes
        writable again; a connection that met an I/O error may keep failing
        too. Opening a new one on the next call is what makes the store work
        again by itself once the cause is gone.
        """
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            try:
                connection.close()
            except sqlite3.Error:
                pass

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

    @_translated
    def record_many(self, events: Sequence[TrackingEvent], outbox: Sequence[str] = ()) -> list[TrackingEvent]:
        """Store ``events`` in order, in one transaction: each as :meth:`record` would, all or none.

        The group commit of the recorder: one commit for many concurrent
        requests. ``first`` is decided per event exactly as :meth:`record`
        decides it, in the order given, so two opens of one recipient in the
        same batch get ``True`` then ``False``; an ``event_id`` stored before
        (or earlier in the batch) is not stored again and comes back with its
        stored ``first``. Outbox rows are written in the same transaction.
        Returns the events as stored, in the order given. Raises
        :class:`StoreUnavailable` (nothing written) when the database cannot
        be written now, :class:`StoreError` or ``TypeError`` (nothing written)
        when one of the events is refused: the caller may then record them
        one by one to find it.
        """
        if isinstance(events, TrackingEvent) or not all(isinstance(event, TrackingEvent) for event in events):
            raise ArgumentError("record_many takes a sequence of TrackingEvent")
        if not events:
            return []
        db = self._connection()
        batch = _Batch(events, outbox) if len(events) > 1 else None
        with self._writing():
            db.execute("BEGIN IMMEDIATE")
            try:
                events, relabels = _decide_verdicts(db, events)
                if batch is not None:
                    batch.relabel(events)
                    stored = self._insert_batch(db, events, batch)
                else:
                    stored = [self._insert(db, event, outbox) for event in events]
                stored = _apply_relabels(db, relabels, stored)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return stored

    @_translated
    def release_space(self) -> None:
        """Copy the write-ahead log into the database and truncate it (``wal_checkpoint(TRUNCATE)``).

        Not part of the storage protocol: the recorder calls it, when a store
        has it, after each batch it moves from the spool. Without it the WAL
        grows to about 4 MiB before SQLite checkpoints it, holding every page
        twice (log and, later, file): on a volume that was full, a drain then
        ran out of space with the freed spool pages all taken by the log.
        """
        with self._writing():
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _record(self, db: sqlite3.Connection, event: TrackingEvent, outbox: Sequence[str]) -> TrackingEvent:
        db.execute("BEGIN IMMEDIATE")
        try:
            decided, relabels = _decide_verdicts(db, [event])
            event = _apply_relabels(db, relabels, [self._insert(db, decided[0], outbox)])[0]
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return event

    def _insert(self, db: sqlite3.Connection, event: TrackingEvent, outbox: Sequence[str]) -> TrackingEvent:
        """Write ``event`` in the open transaction (unless its ``event_id`` is stored); return it with ``first``."""
        stored = db.execute("SELECT first FROM events WHERE event_id = ?", (event.event_id,)).fetchone()
        if stored is not None:  # a retried write: recorded already
            return event.with_first(bool(stored[0]))
        person = event.machine is None  # a machine event never takes a first-event slot
        first = person and db.execute(
            "INSERT OR IGNORE INTO firsts (account, event_type, message_id, recipient) VALUES (?, ?, ?, ?)",
            (_PARENT if event.account is None else event.account, event.event_type, event.message_id,
             _NO_RECIPIENT if event.recipient is None else event.recipient),
        ).rowcount == 1
        event = event.with_first(first)
        row = _row(event)
        link_first = person and event.event_type is EventType.CLICKED and event.url is not None and db.execute(
            "INSERT OR IGNORE INTO link_firsts (account, url, message_id, recipient) VALUES (?, ?, ?, ?)",
            (row[14], event.url, row[3], row[4]),
        ).rowcount == 1
        rowid = db.execute(f"INSERT INTO events ({_COLUMNS}, link_first) VALUES ({', '.join('?' * (_WIDTH + 1))})",
                           (*row, int(link_first))).lastrowid
        self._index(db, rowid, event, row, link_first)
        now = event.timestamp.timestamp()
        db.executemany(
            "INSERT OR IGNORE INTO outbox (event_id, target, next_attempt) VALUES (?, ?, ?)",
            [(event.event_id, target, now) for target in outbox],
        )
        return event

    @staticmethod
    def _insert_batch(db: sqlite3.Connection, events: Sequence[TrackingEvent], batch: _Batch) -> list[TrackingEvent]:
        """:meth:`_insert` for every event of ``events`` at once, in a fixed handful of statements.

        Why: each ``execute`` (and each row SQLite steps through) releases the
        GIL around SQLite and must take it back, and under load (the server's
        other threads busy) taking it back waits up to the interpreter's switch
        interval. At about four statements per event the writer spent most of
        a batch waiting for the GIL; here a batch of any size is at most seven
        statements (per :func:`_rows_per_statement` rows), each with multi-row
        ``VALUES`` whose parameters are bound as :meth:`_insert` binds them (so
        every value is stored exactly so). The decisions are :meth:`_insert`'s,
        made in Python from two lookups: which ``event_id`` are stored already
        (a retry keeps its stored ``first``) and which first-event keys exist;
        within the batch, the earlier event of a key is the first.
        """
        stored_first = dict(_select_rows(db, "SELECT event_id, first FROM events WHERE event_id IN ({})",
                                         [[row[0]] for row in batch.rows], 1, values=False))
        firsts_known = _known(db, _KNOWN_FIRSTS, batch.first_key_values)
        links_known = _known(db, _KNOWN_LINK_FIRSTS, batch.link_key_values)
        result: list[TrackingEvent] = []
        rows: list[list[Any]] = []
        new_firsts: list[list[Any]] = []
        new_links: list[list[Any]] = []
        taken_firsts: set[int] = set()
        taken_links: set[int] = set()
        for index, event in enumerate(events):
            if event.event_id in stored_first:
                result.append(_flagged(event, bool(stored_first[event.event_id])))
                continue
            first_key, link_key = batch.first_of[index], batch.link_of[index]
            if event.machine is not None:  # a machine event never takes a first-event slot
                link_key = None
            first = event.machine is None and first_key not in firsts_known and first_key not in taken_firsts
            if first:
                taken_firsts.add(first_key)
                new_firsts.append(batch.first_key_values[first_key])
            link_first = link_key is not None and link_key not in links_known and link_key not in taken_links
            if link_first:
                assert link_key is not None
                taken_links.add(link_key)
                new_links.append(batch.link_key_values[link_key])
            stored_first[event.event_id] = int(first)  # a later copy of this event_id in the batch is a retry
            row = batch.rows[index]
            row[11] = int(first)
            rows.append([*row, int(link_first)])
            result.append(_flagged(event, first))
        _insert_rows(db, "INSERT OR IGNORE INTO firsts (account, event_type, message_id, recipient) VALUES {}",
                     new_firsts, 4)
        _insert_rows(db, "INSERT OR IGNORE INTO link_firsts (account, url, message_id, recipient) VALUES {}",
                     new_links, 4)
        _insert_rows(db, f"INSERT INTO events ({_COLUMNS}, link_first) VALUES {{}}", rows, _WIDTH + 1)
        if rows:
            stored_ids = {row[0] for row in rows}
            _insert_rows(db, _INSERT_TAGS, [pair for pair in batch.tags if pair[1] in stored_ids], 2)
            _insert_rows(db, _INSERT_META, [triple for triple in batch.meta if triple[2] in stored_ids], 3)
            _insert_rows(db, "INSERT OR IGNORE INTO outbox (event_id, target, next_attempt) VALUES {}",
                         [triple for triple in batch.outbox if triple[0] in stored_ids], 3)
        return result

    @staticmethod
    def _index(db: sqlite3.Connection, rowid: int | None, event: TrackingEvent, row: tuple[Any, ...],
               link_first: bool) -> None:
        """Index the new event's tags and metadata (same transaction); the rollups are :meth:`roll`'s."""
        tags = sorted(set(event.tags))
        meta = [(key, _meta_value(value)) for key, value in json.loads(row[10]).items()]
        db.executemany("INSERT OR IGNORE INTO event_tags (tag, event) VALUES (?, ?)", [(tag, rowid) for tag in tags])
        db.executemany("INSERT OR IGNORE INTO event_meta (key, value, event) VALUES (?, ?, ?)",
                       [(key, value, rowid) for key, value in meta])

    # -- rolling the stats rollups ---------------------------------------------------
    @_translated
    def roll(self, max_events: int | None = None, *, batch: int = ROLL_BATCH) -> int:
        """Add the events stored since the last roll to the stats rollups; returns how many were added.

        Reads the events above the watermark (``rollup_state.rolled``) in id
        order, at most ``batch`` per write transaction (fewer once their cells
        reach ``ROLL_CELLS``, bounding how long the write lock is held), sums their cells in
        Python (one key, seven counts: a batch of thousands of events of a few
        campaigns is a few hundred upserts) and in one ``BEGIN IMMEDIATE``
        transaction upserts them and moves the watermark. The batch is read
        and summed before that transaction (the write lock is held for the
        upserts only) and written only if the watermark is still where the
        batch started, else read again from where another roller left it: so
        several threads and processes may roll one file, and each event is
        added once. Exact because ids only grow (SQLite gives each new row the
        highest id plus one, under the write lock) and an event changed once
        stored (a machine verdict given later: :func:`_apply_relabels`) either
        is rolled already (the write corrects the rollups itself) or moves
        ``rollup_state.relabels``, which the batch also checks (read again when
        it moved: the rows it summed may be the old ones). Rolls the events present when called (``max_events``: at
        most that many), not those arriving meanwhile, so it always ends.
        Raises :class:`StoreUnavailable` when the database cannot be written now
        (whatever was committed before stays rolled).
        """
        if max_events is not None and (isinstance(max_events, bool) or not isinstance(max_events, int)
                                       or max_events < 1):
            raise ArgumentError(f"max_events must be a positive int or None, not {max_events!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ArgumentError(f"batch must be a positive int, not {batch!r}")
        return self._roll(max_events, batch, wait=True)

    def _roll(self, max_events: int | None, batch: int, *, wait: bool) -> int:
        """:meth:`roll`; ``wait=False`` takes the write lock only if it is free now (else ``StoreUnavailable``)."""
        db = self._connection()
        end = int(db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])
        done = 0
        if not wait:
            db.execute("PRAGMA busy_timeout = 0")
        try:
            while max_events is None or done < max_events:
                rolled = self._roll_batch(db, end, batch if max_events is None else min(batch, max_events - done),
                                          wait)
                if not rolled:
                    break
                done += rolled
        finally:
            if not wait:
                db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return done

    def _roll_batch(self, db: sqlite3.Connection, end: int, size: int, wait: bool) -> int:
        """Roll the next at most ``size`` events with ids up to ``end``; how many (0: none left)."""
        while True:
            start, relabels = db.execute("SELECT rolled, relabels FROM rollup_state").fetchone()
            rows = db.execute(f"SELECT {_ROLL_COLUMNS} FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                              (start, end, size)).fetchall()
            if not rows:
                return 0
            days: dict[tuple[Any, ...], list[int]] = {}
            taken = 0
            while taken < len(rows) and len(days) < ROLL_CELLS:  # bounds the upserts, so the write lock's hold
                for key, counts in _rollup_cells(rows[taken:taken + _ROLL_CHUNK]).items():
                    into = days.get(key)
                    days[key] = counts if into is None else [a + b for a, b in zip(into, counts, strict=True)]
                taken += _ROLL_CHUNK
            rows = rows[:taken]
            totals = _totals_of(days)
            with self._writing(wait=wait):
                db.execute("BEGIN IMMEDIATE")
                try:
                    # another roller took this batch meanwhile (read on from its mark), or a write relabelled
                    # events not rolled yet (read them again, with their new verdicts)
                    if tuple(db.execute("SELECT rolled, relabels FROM rollup_state").fetchone()) != (start, relabels):
                        db.execute("ROLLBACK")
                        continue
                    db.executemany(_DAYS_UPSERT, [(*key, *counts) for key, counts in sorted(days.items())])
                    db.executemany(_TOTALS_UPSERT, [(*key, *counts) for key, counts in sorted(totals.items())])
                    db.execute("UPDATE rollup_state SET rolled = ?", (rows[-1][0],))
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            return len(rows)

    @_translated
    def unrolled(self) -> int:
        """How many stored events the rollups do not hold yet (the roller's backlog): an index range count."""
        db = self._connection()
        return int(db.execute("SELECT count(*) FROM events WHERE id > ?", (_watermark(db),)).fetchone()[0])

    def _catch_up(self) -> None:
        """Roll what is stored before a stats read, if the write lock is free now (a read never waits for it).

        A database that cannot be written now (another writer holds the lock,
        the disk is full) leaves the unrolled events to :class:`_Tail`: the read
        counts them itself, exactly, without waiting for the busy timeout.
        """
        try:
            self._roll(None, ROLL_BATCH, wait=False)
        except (sqlite3.OperationalError, StoreUnavailable):
            pass

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
        where, args = _machine_filter(query, where, args)
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
        """Every group of :meth:`stats_page` (see there), in key order; ``link`` groups by clicks, most first.

        The order of ``link`` groups is the one this method always had (the
        dashboard's top links); ``stats_page`` and ``GET /v1/stats`` order
        every grouping by key, so that they can be paged.
        """
        rows = self._grouped(query, group_by, campaign_key, None, None)[0]
        if group_by == "link":
            rows.sort(key=lambda row: (-row.clicks, row.key))
        return rows

    @_translated
    def stats_page(self, query: EventQuery, group_by: GroupBy, *, campaign_key: str = "campaign",
                   after: str | None = None, limit: int = 100) -> StatsPage:
        """Counts of the events matching ``query`` per ``group_by`` group (see :class:`StatsRow`), by key, paged.

        At most ``limit`` (1 to ``MAX_PAGE``) groups whose key is above
        ``after`` (the last key of the previous page; ``next_after`` gives it
        while more follow). Groups: ``day`` (``YYYY-MM-DD`` UTC), ``campaign``
        (the value of metadata ``campaign_key``; events without it are left
        out), ``message``, ``link`` (clicked URL; clicks only) and ``tag`` (an
        event counts in each of its tags); a group with nothing to count
        (after ``type``) is left out.

        No request counts every event. Answered from the rollups
        (``STATS_MIGRATION``), read in key order so the cost is the rows of the
        groups returned. :meth:`roll` keeps them (not :meth:`record`): every
        read first rolls what is stored, then reads in one snapshot the
        rollups plus the events still above the watermark (those it could not
        roll: another writer holds the write lock, which a read does not wait
        for, or the disk is full), counted as the roller would add them, so the answer is
        exact for that snapshot either way; the cost of the second part is the
        unrolled events, which a running roller keeps few. Served from rollups:

        - no condition, or one of message_id / a metadata pair / tag, with
          every ``group_by`` (a message_id with group_by campaign or tag excepted);
        - two of those with group_by ``day`` or ``link``, or with the group pinned by
          one of them (message_id + group_by message, the campaign pair + group_by campaign);
        - ``type`` always (the rollups count each type apart);
        - ``since``/``until``: whole UTC days from the day rows; the partial
          days at the window's ends are counted from the events the time index
          finds in them (at most two days' events);
        - ``account`` always (the rollups are kept per account; None reads each
          account's page and merges them).

        Page-bounded: group_by ``message`` under two or more metadata pairs /
        tag (no message_id, no recipient) takes the page's candidate messages
        in key order from one condition's pair rows and counts only their
        events (``(message_id, id)`` index), page after page until it is full.

        Index-bounded instead (counted over the events an index finds for the
        most selective condition, so the cost is those events, not the store):
        a ``recipient`` (the recipient's events); a message_id with group_by
        campaign or tag (the message's events); group_by campaign/tag under two
        or more metadata pairs / tag, or three conditions (the events of the
        message, else of whichever of the tag and metadata pairs the rollups
        say has the fewest); :meth:`grouped_stats` (no page) for the
        page-bounded case above, likewise.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ArgumentError(f"limit must be an int from 1 to {MAX_PAGE}, not {limit!r}")
        if after is not None and not isinstance(after, str):
            raise ArgumentError(f"after must be a group's key (str) or None, not {after!r}")
        rows, more = self._grouped(query, group_by, campaign_key, after, limit)
        return StatsPage(rows, rows[-1].key if more else None)

    def _grouped(self, query: EventQuery, group_by: GroupBy, campaign_key: str, after: str | None,
                 limit: int | None) -> tuple[list[StatsRow], bool]:
        """The groups above ``after`` in key order, at most ``limit`` (None: all), and whether more follow."""
        if not isinstance(query, EventQuery):
            raise ArgumentError(f"grouped_stats takes an EventQuery, not {type(query).__name__}")
        if group_by not in GROUP_BYS:
            raise ArgumentError(f"group_by must be one of {', '.join(GROUP_BYS)}, not {group_by!r}")
        if not isinstance(campaign_key, str) or not campaign_key:
            raise ArgumentError(f"campaign_key must be a non-empty str, not {campaign_key!r}")
        if query.machine is not None:
            raise ArgumentError("stats count people and machines apart (machine_* beside the people's counts): "
                                "the machine filter is the events'")
        start = None if after is None else _group_value(after, group_by)
        fetch = None if limit is None else limit + 1
        spec = _rollup_spec(query, group_by, campaign_key)
        db = self._connection()
        if db.execute("SELECT (SELECT rolled FROM rollup_state) < (SELECT coalesce(max(id), 0) FROM events)"
                      ).fetchone()[0]:
            self._catch_up()
            db = self._connection()
        sources: list[tuple[list[tuple[Any, ...]], bool]] = []
        with _snapshot(db):  # the watermark, the unrolled events, the rollups and the events read at one moment
            tail = _Tail.read(db) if spec is not None or group_by == "message" else _Tail({})
            if spec is None and group_by == "message" and query.message_id is None and query.recipient is None \
                    and limit is not None:
                sources.append(_by_candidate_messages(db, tail, query, campaign_key, start, fetch))
            elif spec is None:
                sources.append((_from_events(db, query, group_by, campaign_key), True))
            else:
                use_days, low, high, edges = _window(query)
                if use_days or not edges:
                    accounts = _accounts(db, tail) if query.account is None else [query.account]
                    days = (low, high) if use_days else None
                    for account in accounts:
                        rows = _from_rollups(db, spec, account, days, group_by, query.event_type, start, fetch)
                        sources.append((rows, fetch is None or len(rows) < fetch))
                        if tail.cells:
                            sources.append((tail.rows(spec, account, days, group_by), True))
                for since, until in edges:
                    edge = EventQuery(message_id=query.message_id, recipient=query.recipient,
                                      event_type=query.event_type, since=since, until=until, metadata=query.metadata,
                                      tag=query.tag, account=query.account)
                    sources.append((_from_events(db, edge, group_by, campaign_key, time_first=True), True))
        found = _stats_rows(_merge(sources, start), group_by, query.event_type)
        if limit is None:
            return found, False
        return found[:limit], len(found) > limit

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
        """Opens and clicks per message and per link, total and unique (distinct recipients), people's.

        ``recipients`` is how many recipients did anything at all: the store
        does not know how many were sent, so click-through is unique clickers
        over those (``ctr``) and over unique openers (``click_to_open``).
        Events with a machine verdict are left out of those and counted beside
        them (``machine_opened``, ``machine_clicked``, ``machine_unsubscribed``).
        """
        db = self._connection()
        return _message_report(
            db.execute("SELECT message_id, event_type, count(*), count(DISTINCT recipient) FROM events"
                       " WHERE machine IS NULL GROUP BY message_id, event_type").fetchall(),
            db.execute("SELECT message_id, count(DISTINCT recipient) FROM events WHERE machine IS NULL"
                       " GROUP BY message_id").fetchall(),
            db.execute("SELECT message_id, link_index, url, count(*), count(DISTINCT recipient) FROM events "
                       "WHERE event_type = ? AND machine IS NULL GROUP BY message_id, link_index, url "
                       "ORDER BY message_id, link_index, url", (EventType.CLICKED.value,)).fetchall(),
            db.execute("SELECT message_id, event_type, count(*) FROM events WHERE machine IS NOT NULL"
                       " GROUP BY message_id, event_type").fetchall())

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

    # -- retention and erasure ------------------------------------------------------
    @_translated
    def purge(self, before: float, *, batch: int = ERASE_BATCH) -> Erased:
        """Delete the events older than ``before`` (Unix seconds): see :meth:`EventStore.purge`.

        The rollups are aggregates (counts per account, message, metadata
        value, tag, day and link; no recipient, address or agent) and stay:
        :meth:`roll` runs first, so every event deleted here is counted there,
        and only events the rollups hold (ids up to the watermark) are deleted,
        so stats from the rollups are what they were. Stats a read must count
        from the events themselves (a ``recipient`` filter, a window that
        does not start and end on whole days) only see what is still stored.
        With each event go its tag and metadata index rows and its outbox rows
        (a pending delivery of a deleted event is dropped), and the
        ``firsts``/``link_firsts`` keys no remaining event uses. ``batch``
        events per transaction, so other writers wait tens of milliseconds at
        most (measured: about 25 ms for 500 events).
        """
        cutoff = check_before(before)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ArgumentError(f"batch must be a positive int, not {batch!r}")
        self._roll(None, ROLL_BATCH, wait=True)
        return self._erase("SELECT id FROM events WHERE timestamp < ? AND id <= ? ORDER BY timestamp LIMIT ?",
                           lambda db: (cutoff, _watermark(db), batch))

    @_translated
    def forget(self, recipient: str, *, batch: int = ERASE_BATCH) -> Erased:
        """Delete every event of ``recipient`` in any letter case: see :meth:`EventStore.forget`.

        Every spelling of the address stored (``same_recipient``) is found in
        the events and in the first-event tables; its events, their index and
        outbox rows, and its ``firsts``/``link_firsts`` keys are deleted (a
        later event of that recipient counts as a first again). The rollups
        (aggregates, no recipient) are rolled first and keep the counts.
        """
        wanted = check_recipient(recipient)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ArgumentError(f"batch must be a positive int, not {batch!r}")
        self._roll(None, ROLL_BATCH, wait=True)
        db = self._connection()
        spellings = sorted({row[0] for table in ("events", "firsts", "link_firsts")
                            for row in db.execute(f"SELECT DISTINCT recipient FROM {table}")
                            if row[0] != _NO_RECIPIENT and same_recipient(row[0], wanted)})
        if not spellings:
            return Erased()
        names = json.dumps(spellings)
        erased = self._erase("SELECT id FROM events WHERE recipient IN (SELECT value FROM json_each(?)) LIMIT ?",
                             lambda db: (names, batch))
        with self._writing():
            db.execute("BEGIN IMMEDIATE")
            try:
                keys = sum(db.execute(f"DELETE FROM {table} WHERE recipient IN (SELECT value FROM json_each(?))",
                                      (names,)).rowcount for table in ("firsts", "link_firsts"))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return erased + Erased(firsts=keys)

    def _erase(self, select: str, args: Callable[[sqlite3.Connection], tuple[Any, ...]]) -> Erased:
        """Delete the events ``select`` (run with ``args(db)`` in each transaction) picks, a batch per transaction,
        until it picks none; with them their index and outbox rows and the first-event keys left unused."""
        db = self._connection()
        total = Erased()
        while True:
            with self._writing():
                db.execute("BEGIN IMMEDIATE")
                try:
                    ids = json.dumps([row[0] for row in db.execute(select, args(db))])
                    if ids == "[]":
                        db.execute("COMMIT")
                        return total
                    chosen = "(SELECT value FROM json_each(?))"
                    firsts = db.execute(f"SELECT DISTINCT account, event_type, message_id, recipient FROM events "
                                        f"WHERE id IN {chosen}", (ids,)).fetchall()
                    links = db.execute(f"SELECT DISTINCT account, url, message_id, recipient FROM events WHERE id IN "
                                       f"{chosen} AND event_type = {_CLICKED} AND url IS NOT NULL", (ids,)).fetchall()
                    outbox = db.execute(f"DELETE FROM outbox WHERE event_id IN (SELECT event_id FROM events WHERE id IN "
                                        f"{chosen})", (ids,)).rowcount
                    db.execute(f"DELETE FROM event_tags WHERE event IN {chosen}", (ids,))
                    db.execute(f"DELETE FROM event_meta WHERE event IN {chosen}", (ids,))
                    events = db.execute(f"DELETE FROM events WHERE id IN {chosen}", (ids,)).rowcount
                    # a key whose events are all gone: the check reads one recipient's or one message's events
                    # (events_recipient, events_message_id); the unary + keeps SQLite off events_account and
                    # events_type, which it otherwise picks, and which hold every event of the account or type
                    keys = sum(db.execute(
                        "DELETE FROM firsts WHERE account = ? AND event_type = ? AND message_id = ? AND recipient = ? "
                        "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.message_id = firsts.message_id AND "
                        "e.recipient = firsts.recipient AND +e.event_type = firsts.event_type AND "
                        "+e.account = firsts.account)", key).rowcount for key in firsts)
                    keys += sum(db.execute(
                        "DELETE FROM link_firsts WHERE account = ? AND url = ? AND message_id = ? AND recipient = ? "
                        f"AND NOT EXISTS (SELECT 1 FROM events e WHERE e.message_id = link_firsts.message_id AND "
                        f"e.recipient = link_firsts.recipient AND +e.event_type = {_CLICKED} AND "
                        "e.url = link_firsts.url AND +e.account = link_firsts.account)", key).rowcount for key in links)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            total += Erased(events, outbox, keys)

    def _write(self, sql: str, args: Iterable[Any]) -> None:
        with self._writing():
            self._connection().execute(sql, tuple(args))

    @contextlib.contextmanager
    def _writing(self, *, wait: bool = True) -> Iterator[None]:
        """This process's write lock (see ``__init__``), waited for as long as SQLite's busy timeout (or not at all)."""
        if not self._write_lock.acquire(timeout=self.busy_timeout if wait else 0):
            raise StoreUnavailable("the SQLite store is locked (another thread of this process is writing)")
        try:
            yield
        finally:
            self._write_lock.release()


_E_COLUMNS = ", ".join("e." + column.strip() for column in _COLUMNS.split(","))
_ROLLUP_KEY = "account, fdim, gdim, fkey, fvalue, gkey, gvalue"


def _upsert(table: str, key: str) -> str:
    """``INSERT ... ON CONFLICT DO UPDATE`` adding one event's counts to the ``table`` row of ``key``."""
    return (f"INSERT INTO {table} ({key}, {', '.join(_ROLLUP_COUNTS)}) VALUES "
            f"({', '.join('?' * (key.count(',') + 1 + _N))})"
            f" ON CONFLICT ({key}) DO UPDATE SET "
            + ", ".join(f"{column} = {column} + excluded.{column}" for column in _ROLLUP_COUNTS))


_DAYS_UPSERT = _upsert("rollup_days", f"{_ROLLUP_KEY}, day, url")
_TOTALS_UPSERT = _upsert("rollup_totals", f"{_ROLLUP_KEY}, url")
#: The ten counts, in rollup column order, as sums over events ``e`` (the fallback's equivalent of the rollups):
#: people's (``machine`` NULL), then machines'.
_PERSON = "e.machine IS NULL"
_EVENT_SUMS = (
    f"sum(e.event_type = {_OPENED} AND {_PERSON}), sum(e.event_type = {_OPENED} AND e.first AND {_PERSON}),"
    f" sum(e.event_type = {_CLICKED} AND {_PERSON}), sum(e.event_type = {_CLICKED} AND e.first AND {_PERSON}),"
    f" sum(e.event_type = {_CLICKED} AND e.link_first AND {_PERSON}), sum(e.event_type = {_UNSUBSCRIBED} AND {_PERSON}),"
    f" sum(e.event_type = {_UNSUBSCRIBED} AND e.first AND {_PERSON}), sum(e.event_type = {_OPENED} AND NOT {_PERSON}),"
    f" sum(e.event_type = {_CLICKED} AND NOT {_PERSON}), sum(e.event_type = {_UNSUBSCRIBED} AND NOT {_PERSON})"
)


#: Where each rollup column sits in a cell's key (a ``rollup_days`` primary key in column order).
_CELL_COLUMNS = {column: i for i, column in enumerate(
    ("account", "fdim", "gdim", "fkey", "fvalue", "gkey", "gvalue", "day", "url"))}



# -- the set-based batch write (record_many) ------------------------------------------------------

#: Bound parameters one statement may take when the SQLite library cannot say (its default before 3.32).
_DEFAULT_VARIABLES = 999


def _rows_per_statement(db: sqlite3.Connection, width: int) -> int:
    """How many rows of ``width`` parameters fit one statement (SQLite's ``SQLITE_LIMIT_VARIABLE_NUMBER``)."""
    getlimit = getattr(db, "getlimit", None)  # Python 3.11+
    limit = _DEFAULT_VARIABLES
    if getlimit is not None:
        try:
            limit = int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        except sqlite3.Error:  # pragma: no cover - every SQLite has this limit
            pass
    return max(1, min(limit // width, 2000))


def _chunks(db: sqlite3.Connection, rows: list[list[Any]], width: int) -> Iterator[list[list[Any]]]:
    size = _rows_per_statement(db, width)
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _placeholders(count: int, width: int, *, values: bool = True) -> str:
    one = "(" + ", ".join("?" * width) + ")" if values else ", ".join("?" * width)
    return ", ".join([one] * count)


def _insert_rows(db: sqlite3.Connection, sql: str, rows: list[list[Any]], width: int) -> None:
    """``sql`` (with ``{}`` where the ``VALUES`` rows go) for ``rows``: one statement per chunk, not per row."""
    for chunk in _chunks(db, rows, width):
        db.execute(sql.format(_placeholders(len(chunk), width)), [value for row in chunk for value in row])


def _select_rows(db: sqlite3.Connection, sql: str, rows: list[list[Any]], width: int, *,
                 values: bool = True) -> list[Any]:
    """The rows ``sql`` (``{}``: the parameters of ``rows``, as ``VALUES`` rows or a plain list) selects."""
    found: list[Any] = []
    for chunk in _chunks(db, rows, width):
        found.extend(db.execute(sql.format(_placeholders(len(chunk), width, values=values)),
                                [value for row in chunk for value in row]).fetchall())
    return found


def _known(db: sqlite3.Connection, sql: str, keys: list[list[Any]]) -> set[int]:
    """The indexes of ``keys`` already in the table ``sql`` looks in, read as one row per chunk (SQLite steps
    once, not once per key: see :meth:`SQLiteStore._insert_batch`)."""
    known: set[int] = set()
    numbered = [[index, *key] for index, key in enumerate(keys)]
    for (found,) in _select_rows(db, sql, numbered, 5):
        if found:
            known.update(int(index) for index in found.split(","))
    return known


def _flagged(event: TrackingEvent, first: bool) -> TrackingEvent:
    """``event.with_first(first)`` without validating every field again (``dataclasses.replace`` does: a fifth of
    the writer's Python time per event). The batch's events were validated when made, and a field forced past
    that makes the batch's insert fail, so nothing unchecked is returned as stored."""
    if event.first is first:
        return event
    copy = object.__new__(TrackingEvent)
    copy.__dict__.update(event.__dict__)
    object.__setattr__(copy, "first", first)
    return copy


def _decide_verdicts(db: sqlite3.Connection, events: Sequence[TrackingEvent]
                     ) -> tuple[list[TrackingEvent], list[Relabel]]:
    """The stateful verdicts of a batch (see :func:`~mailtrack.storage._shared._verdicts`), in its transaction.

    Reads the stored clicks of each (account, message, recipient) the batch clicks, within reach of its clicks
    (the ``events_clicks`` index), and the earliest person's open when a verdict may need it. Returns the events
    (new ones relabelled) and the stored clicks to relabel (:func:`_apply_relabels`, after the batch's insert).
    Batches without clicks cost nothing here.
    """
    spans = _click_groups(events)
    if not spans:
        return list(events), []
    known = {row[0] for row in _select_rows(db, "SELECT event_id FROM events WHERE event_id IN ({})",
                                            [[event.event_id] for event in events], 1, values=False)}
    new: dict[str, TrackingEvent] = {}
    for event in events:
        if event.event_id not in known:
            new.setdefault(event.event_id, event)
    stored: list[tuple[Any, ...]] = []
    first_opens: dict[tuple[str, str, str], float | None] = dict(_batch_first_opens(new.values()))
    for (account, message_id, recipient), (low, high) in spans.items():
        stored += db.execute(f"SELECT {_STORED_CLICK} FROM events INDEXED BY events_clicks WHERE message_id = ? AND"
                             f" recipient = ? AND timestamp BETWEEN ? AND ? AND event_type = {_CLICKED} AND account = ?",
                             (message_id, recipient, low, high, account)).fetchall()
        opened = db.execute(f"SELECT min(timestamp) FROM events WHERE message_id = ? AND recipient = ? AND"
                            f" +event_type = {_OPENED} AND machine IS NULL AND +account = ?",
                            (message_id, recipient, account)).fetchone()[0]
        key = (account, message_id, recipient)
        if opened is not None:
            first_opens[key] = min(opened, first_opens.get(key) or opened)
    decided, relabels = _relabel_batch(list(new.values()), stored, first_opens)
    by_id = {event.event_id: event for event in decided}
    return [by_id.get(event.event_id, event) if event.event_id not in known else event for event in events], relabels


def _apply_relabels(db: sqlite3.Connection, relabels: Sequence[Relabel],
                    stored: list[TrackingEvent]) -> list[TrackingEvent]:
    """Relabel stored clicks (their rows are updated; nothing of the request is deleted), in the batch's transaction.

    A relabelled click loses its first-event slots (``firsts``, ``link_firsts``) to the next person's event of its
    key in recording order, if any (so ``first`` and the unique counts stay people's). The rollups follow: for events
    already rolled (ids up to the watermark) the difference of their cells is added to them here; for events not
    rolled yet ``rollup_state.relabels`` moves, so a roller that summed their old rows reads them again. Returns
    ``stored`` (the batch's events as stored) with ``first`` as it now stands for any that took a slot.
    """
    if not relabels:
        return stored
    before, rows, promoted = _relabel_rows(db.execute, _SQLITE, relabels)
    watermark = _watermark(db)
    delta = _delta_cells((before[rowid], tuple(row)) for rowid, row in rows.items() if rowid <= watermark)
    if delta:
        db.executemany(_DAYS_UPSERT, [(*key, *counts) for key, counts in sorted(delta.items())])
        db.executemany(_TOTALS_UPSERT, [(*key, *counts) for key, counts in sorted(_totals_of(delta).items())])
    if any(rowid > watermark for rowid in rows):
        db.execute("UPDATE rollup_state SET relabels = relabels + 1")
    return [_flagged(event, True) if event.event_id in promoted else event for event in stored]


class _Batch:
    """The rows of a batch of events as ``record_many`` writes them, prepared before the write lock is taken.

    ``rows``: each event's ``_row`` (a list: its ``first`` is set in the transaction); ``first_of``/``link_of``:
    each event's index among the distinct ``firsts`` keys (and ``link_firsts`` keys, or None), whose values
    are ``first_key_values``/``link_key_values``; ``tags``, ``meta``, ``outbox``: index rows, by event id.
    """

    __slots__ = ("first_key_values", "first_of", "link_key_values", "link_of", "meta", "outbox", "rows", "tags")

    def __init__(self, events: Sequence[TrackingEvent], outbox: Sequence[str]) -> None:
        self.rows: list[list[Any]] = []
        self.first_of: list[int] = []
        self.link_of: list[int | None] = []
        self.tags: list[list[Any]] = []
        self.meta: list[list[Any]] = []
        self.outbox: list[list[Any]] = []
        firsts: dict[tuple[Any, ...], int] = {}
        links: dict[tuple[Any, ...], int] = {}
        for event in events:
            row = list(_row(event))
            self.rows.append(row)
            self.first_of.append(firsts.setdefault((row[14], row[1], row[3], row[4]), len(firsts)))
            if event.event_type is EventType.CLICKED and event.url is not None:
                self.link_of.append(links.setdefault((row[14], event.url, row[3], row[4]), len(links)))
            else:
                self.link_of.append(None)
            event_id = row[0]
            self.tags.extend([tag, event_id] for tag in sorted(set(event.tags)))
            self.meta.extend([key, _meta_value(value), event_id] for key, value in json.loads(row[10]).items())
            self.outbox.extend([event_id, target, row[2]] for target in outbox)
        self.first_key_values = [list(key) for key in firsts]
        self.link_key_values = [list(key) for key in links]

    def relabel(self, events: Sequence[TrackingEvent]) -> None:
        """Take the verdicts :func:`_decide_verdicts` gave the batch's events into their rows."""
        for row, event in zip(self.rows, events, strict=True):
            if row[12] != event.machine:
                row[12] = event.machine
                row[15] = json.dumps(list(event.machine_reasons), separators=(",", ":"))


_KNOWN_FIRSTS = ("SELECT group_concat(column1) FROM (VALUES {}) WHERE EXISTS (SELECT 1 FROM firsts f"
                 " WHERE f.account = column2 AND f.event_type = column3 AND f.message_id = column4"
                 " AND f.recipient = column5)")
_KNOWN_LINK_FIRSTS = ("SELECT group_concat(column1) FROM (VALUES {}) WHERE EXISTS (SELECT 1 FROM link_firsts f"
                      " WHERE f.account = column2 AND f.url = column3 AND f.message_id = column4"
                      " AND f.recipient = column5)")
_INSERT_TAGS = ("INSERT OR IGNORE INTO event_tags (tag, event)"
                " SELECT column1, (SELECT id FROM events WHERE event_id = column2) FROM (VALUES {})")
_INSERT_META = ("INSERT OR IGNORE INTO event_meta (key, value, event)"
                " SELECT column1, column2, (SELECT id FROM events WHERE event_id = column3) FROM (VALUES {})")


def _watermark(db: sqlite3.Connection) -> int:
    """The highest event id the rollups hold (``rollup_state``, see ``ROLLER_MIGRATION``)."""
    return int(db.execute("SELECT rolled FROM rollup_state").fetchone()[0])


class _Tail:
    """The events stored above the watermark (not in the rollups yet), as the rollup cells the roller would add.

    A stats read adds them to what it reads from the rollups, in the same
    snapshot, so its answer is exact even when it could not roll them
    (another writer held the lock, which a read does not wait for, or the disk
    is full): the cost is these events, which a running roller keeps few.
    """

    def __init__(self, cells: dict[tuple[Any, ...], list[int]]) -> None:
        self.cells = cells
        self.accounts = {key[0] for key in cells}

    @classmethod
    def read(cls, db: sqlite3.Connection) -> _Tail:
        rows = db.execute(f"SELECT {_ROLL_COLUMNS} FROM events WHERE id > (SELECT rolled FROM rollup_state) ORDER BY id")
        return cls(_rollup_cells(rows))

    def rows(self, spec: _Spec, account: str, days: tuple[int | None, int | None] | None,
             group_by: GroupBy) -> list[tuple[Any, ...]]:
        """What :func:`_from_rollups` adds up for these cells (every group, in order; ``_merge`` cuts and sums)."""
        fixed, group, pinned = spec
        wanted = [(_CELL_COLUMNS[column], value) for column, value in fixed.items()]
        low, high = days if days is not None else (None, None)
        sums: dict[Any, list[int]] = {}
        for key, counts in self.cells.items():
            if key[0] != account or any(key[i] != value for i, value in wanted) \
                    or (low is not None and key[7] < low) or (high is not None and key[7] >= high) \
                    or (group_by == "link" and key[8] == ""):
                continue
            into = sums.setdefault(pinned if group is None else key[_CELL_COLUMNS[group]], [0] * _N)
            for i, count in enumerate(counts):
                into[i] += count
        return sorted((name, *counts) for name, counts in sums.items())


@contextlib.contextmanager
def _snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: every statement inside sees the database as of the first (WAL snapshot isolation)."""
    if db.in_transaction:  # pragma: no cover - reads run outside transactions
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        if db.in_transaction:
            db.execute("COMMIT")


def _plan(query: EventQuery, by_time: bool = False, *, time_first: bool = False,
          driver: tuple[str, str] | None = None, messages: Sequence[str] = ()) -> tuple[str, str, list[str], list[Any]]:
    """``FROM`` clause, the id column to order by, and the conditions with their arguments, for ``query``.

    The most selective indexed condition drives (``CROSS JOIN`` fixes the
    join order in SQLite): message or recipient, else tag, else a metadata pair,
    else (``by_time``, see :func:`_window_is_narrow`) the time index, else the
    account's ``(account, id)`` index when one is named. ``time_first`` puts
    the time index before tag and metadata (stats' partial edge days);
    ``driver``, one of the query's metadata pairs, drives before the tag (stats:
    the condition the rollups say selects the fewest events). ``messages``
    (with no ``message_id``) drives by those messages' ``(message_id, id)`` rows.
    """
    if messages:
        narrowed = _plan(EventQuery(
            recipient=query.recipient, event_type=query.event_type, since=query.since, until=query.until,
            metadata=query.metadata, tag=query.tag, account=query.account, message_id=messages[0]))
        conditions, values = narrowed[2], narrowed[3]
        at = conditions.index("e.message_id = ?")
        conditions[at] = f"e.message_id IN ({', '.join('?' * len(messages))})"
        marks = sum(part.count("?") for part in conditions[:at])
        return narrowed[0], narrowed[1], conditions, [*values[:marks], *messages, *values[marks + 1:]]
    where: list[str] = []
    args: list[Any] = []
    metadata = list(query.metadata)
    tag = query.tag
    if driver is not None and driver in metadata and not time_first:
        metadata.remove(driver)
        metadata.insert(0, driver)
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM event_tags t WHERE t.tag = ? AND t.event = e.id)")
            args.append(tag)
            tag = None
    if time_first and query.message_id is None and query.recipient is None and query.since is not None:
        source, order = "events e INDEXED BY events_time", "e.id"
        by_time = True
    elif query.message_id is None and query.recipient is None and tag is not None:
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
    if query.account is not None:
        where.append(f"{plus}e.account = ?")
        args.append(query.account)
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


def _accounts(db: sqlite3.Connection, tail: _Tail) -> list[str]:
    """The accounts that have events: a skip scan over the rollups' leading column (one seek per account), and the
    accounts of the events not rolled yet."""
    rows = db.execute(
        "WITH RECURSIVE a(x) AS (SELECT (SELECT min(account) FROM rollup_totals) UNION ALL"
        " SELECT (SELECT min(account) FROM rollup_totals WHERE account > a.x) FROM a WHERE a.x IS NOT NULL)"
        " SELECT x FROM a WHERE x IS NOT NULL").fetchall()
    return sorted({row[0] for row in rows} | tail.accounts)


def _from_rollups(db: sqlite3.Connection, spec: _Spec, account: str, days: tuple[int | None, int | None] | None,
                  group_by: GroupBy, event_type: EventType | None, after: int | str | None,
                  fetch: int | None) -> list[tuple[Any, ...]]:
    """``(group, seven counts)`` rows of ``account`` above ``after`` in group order, at most ``fetch`` (None: all).

    Reads the rows of one key prefix in primary-key order, so the groups come
    out ordered without a sort and ``LIMIT`` stops the read: the cost is the
    rows of the groups returned (times their days or URLs), not the store's size.
    """
    fixed, group, pinned = spec
    use_days = days is not None or group == "day"
    where = ["account = ?", *(f"{column} = ?" for column in fixed)]
    args: list[Any] = [account, *fixed.values()]
    if days is not None:
        for bound, op in zip(days, (">=", "<"), strict=True):
            if bound is not None:
                where.append(f"day {op} ?")
                args.append(bound)
    if group_by == "link":
        where.append("url != ''")
    sums = f"{_ROLLUP_SUMS} FROM {'rollup_days' if use_days else 'rollup_totals'} WHERE {' AND '.join(where)}"
    if group is None:  # one group, pinned by a condition
        if after is not None and str(pinned) <= str(after):
            return []
        nonzero = _nonzero(group_by, event_type, _PINNED_SHOWN)
        sql = f"SELECT * FROM (SELECT ? AS g, {_PINNED_SUMS} FROM {sums.split(' FROM ', 1)[1]}) WHERE {nonzero}"
        return db.execute(sql, [pinned, *args]).fetchall()
    if after is not None:
        where.append(f"{group} > ?")
        args.append(after)
        sums = f"{_ROLLUP_SUMS} FROM {'rollup_days' if use_days else 'rollup_totals'} WHERE {' AND '.join(where)}"
    nonzero = _nonzero(group_by, event_type, _GROUP_SHOWN)
    sql = f"SELECT {group}, {sums} GROUP BY {group} HAVING {nonzero} ORDER BY {group}"
    if fetch is not None:
        sql += f" LIMIT {int(fetch)}"
    return db.execute(sql, args).fetchall()


def _from_events(db: sqlite3.Connection, query: EventQuery, group_by: GroupBy, campaign_key: str, *,
                 time_first: bool = False, messages: Sequence[str] = ()) -> list[tuple[Any, ...]]:
    """``(group, seven counts)`` rows counted over the events ``query`` selects, found through :func:`_plan`'s indexes.

    ``time_first`` (a window's partial edge days) drives by the time index
    unless a message or recipient is pinned, so the cost is the edge's events.
    Otherwise, among a tag and metadata pairs, the one with the fewest events
    (the rollups' totals tell) drives.
    """
    source, _, where, args = _plan(query, time_first=time_first, driver=None if messages else _fewest(db, query),
                                   messages=messages)
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


def _by_candidate_messages(db: sqlite3.Connection, tail: _Tail, query: EventQuery, campaign_key: str,
                           after: int | str | None, fetch: int | None) -> tuple[list[tuple[Any, ...]], bool]:
    """group_by=message under two or more of metadata pairs / tag: a page's messages, counted one message at a time.

    The candidates are the messages of one condition (the pair rows of the
    tag, or of the metadata pair with the fewest events), read in key order
    from the rollups; each is counted over its own events (the
    ``(message_id, id)`` index) with every condition, until ``fetch`` groups
    have counts. The cost is the candidates read times their events, bounded
    by the page, not by the store or the conditions' events.
    """
    driver = _fewest(db, query)
    atom = ("meta", *driver) if driver is not None else ("tag", query.tag or "", "") if query.tag is not None \
        else ("meta", *query.metadata[0])
    spec: _Spec = ({**dict(zip(("fdim", "fkey", "fvalue"), atom, strict=True)), "gdim": "message", "gvalue": ""},
                   "gkey", None)
    accounts = _accounts(db, tail) if query.account is None else [query.account]
    found: list[tuple[Any, ...]] = []
    cursor = after
    batch = max(fetch or 0, 20)
    while fetch is None or len(found) < fetch:
        sources = [(rows, len(rows) < batch) for rows in
                   (_from_rollups(db, spec, account, None, "message", None, cursor, batch) for account in accounts)]
        if tail.cells:  # messages only the unrolled events have
            sources += [(tail.rows(spec, account, None, "message"), True) for account in accounts]
        candidates = [row[0] for row in _merge(sources, cursor)]
        if not candidates:
            return found, True
        counted = {row[0]: row for row in _from_events(db, query, "message", campaign_key, messages=candidates)
                   if any(row[i] for i in _SHOWN[query.event_type])}
        for message_id in candidates:  # in key order, so that a cut page knows every group before its last
            if message_id in counted:
                found.append(counted[message_id])
                if fetch is not None and len(found) >= fetch:
                    return found, False
        cursor = candidates[-1]
    return found, False


def _fewest(db: sqlite3.Connection, query: EventQuery) -> tuple[str, str] | None:
    """The metadata pair of ``query`` with fewer events than its tag and its other pairs (None: the tag, or no choice)."""
    if query.message_id is not None or query.recipient is not None or not query.metadata or \
            len(query.metadata) + (query.tag is not None) < 2:
        return None
    accounts = _accounts(db, _Tail({})) if query.account is None else [query.account]

    def events_of(dim: str, key: str, value: str) -> int:
        total = 0
        for account in accounts:
            row = db.execute("SELECT sum(opens) + sum(clicks) + sum(unsubscribes) FROM rollup_totals WHERE account = ?"
                             " AND fdim = ? AND gdim = 'all' AND fkey = ? AND fvalue = ? AND gkey = '' AND gvalue = ''",
                             (account, dim, key, value)).fetchone()
            total += int(row[0] or 0)
        return total

    sizes = {pair: events_of("meta", *pair) for pair in query.metadata}
    best = min(sizes, key=lambda pair: sizes[pair])
    if query.tag is not None and events_of("tag", query.tag, "") <= sizes[best]:
        return None
    return best

