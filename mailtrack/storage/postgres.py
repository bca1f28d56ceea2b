"""The shared event store: one PostgreSQL database for several ``mailtrack serve`` machines.

Same protocol and semantics as :mod:`mailtrack.storage.sqlite` (the
reference), for when one box is not enough:

* **Events once per event_id, ``first`` decided atomically across servers.**
  ``first`` is whoever inserts the ``(event_type, message_id, recipient)`` row
  of ``firsts`` (``INSERT ... ON CONFLICT DO NOTHING RETURNING``) inside the
  event's transaction: a second server inserting the same key waits for the
  first one's transaction and then sees the conflict. Per-link firsts
  (``link_firsts``), the tag and metadata indexes and the rollups are written
  in that same transaction, as SQLite does.
* **Ids in commit order.** Every event transaction updates the one row of
  ``event_order`` before it inserts its events, so event ids are handed out
  in the order transactions commit, as with SQLite's single writer: a reader
  paging down by id (``find(before=)``) or following new ids (``events(after_id=)``)
  never misses a row committed later with a lower id.
* **Stats as SQLite answers them.** Events carry their account; the
  per-account two-atom rollups (``rollup_days``/``rollup_totals``, schema
  version 2, SQLite's v6) are kept in the event's transaction, and
  :meth:`PostgresStore.stats_page` follows SQLite's plan (the pure part is
  :mod:`mailtrack.storage._shared`): rollups for what they hold, index-bounded
  event reads for the rest, key order in the "C" collation.
* **Machine-event verdicts decided across servers.** The stateful verdicts
  (a burst of clicks, a honeypot click's neighbours: see
  :func:`~mailtrack.storage._shared._verdicts`) are decided in the batch's
  transaction, after a transaction-level advisory lock per (account, message,
  recipient) the batch clicks, so two servers writing clicks of one message at
  once see each other's; a relabelled stored event's row, first-event slots
  and rollups are updated in the same transaction.
* **Batched.** :meth:`PostgresStore.record_many` writes many events (a group
  commit) in one transaction with one ``unnest`` statement per table.
* **Webhook outbox with leases.** :meth:`PostgresStore.outbox_claim` takes due
  rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` and moves their next attempt
  past the lease, so two servers never deliver the same attempt.
* **Migrations.** A versioned ``mailtrack_schema`` table; the upgrade runs under
  a transaction-level advisory lock, so servers starting together migrate once.
* **Connections.** A :class:`psycopg_pool.ConnectionPool` shared by the
  threads; each connection is checked when taken, so after a database restart
  the dead ones are replaced instead of failing requests. Outages (refused,
  timed out, restarting, disk full, read-only, a lock held past
  ``busy_timeout``) raise :class:`~mailtrack.storage.base.StoreUnavailable`, and
  the recorder spools; anything else raises :class:`~mailtrack.storage.base.StoreError`.
  No message shows the password of the URL.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from mailtrack.core.settings import TrackingSettings
from mailtrack.events import EventType, TrackingEvent
from mailtrack.exceptions import ArgumentError, ConfigurationError
from mailtrack.storage._shared import (
    _COLUMNS,
    _DAY,
    _GROUP_SHOWN,
    _N,
    _PINNED_SHOWN,
    _PINNED_SUMS,
    _POSTGRES,
    _ROLLUP_COUNTS,
    _ROLLUP_SUMS,
    _SHOWN,
    _STORED_CLICK,
    _WIDTH,
    Relabel,
    _api_key,
    _batch_first_opens,
    _click_groups,
    _counts,
    _delta_cells,
    _event,
    _event_cells,
    _group_value,
    _machine_filter,
    _merge,
    _message_report,
    _meta_value,
    _nonzero,
    _relabel_batch,
    _relabel_rows,
    _rollup_spec,
    _row,
    _Spec,
    _stats_rows,
    _totals_of,
    _window,
)
from mailtrack.storage.accounts import Account, ApiKey, check_account_name, check_scopes, digest_matches, new_key, split_key
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
from mailtrack.storage.dsn import is_postgres_url, masked

__all__ = ["MIGRATIONS", "STATS_MIGRATION", "VERDICTS_MIGRATION", "PostgresStore"]

P = ParamSpec("P")
R = TypeVar("R")

_OPENED, _CLICKED, _UNSUBSCRIBED = (f"'{kind.value}'" for kind in (EventType.OPENED, EventType.CLICKED,
                                                                     EventType.UNSUBSCRIBED))

#: Each entry upgrades the schema by one version (``mailtrack_schema.version`` = index + 1). Version 1 is the
#: whole of SQLite's v1..v5 at once (events, firsts, outbox, tags, accounts and keys, the Events API's indexes and
#: rollups): PostgreSQL had no earlier mailtrack schema to upgrade.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        timestamp DOUBLE PRECISION NOT NULL,
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        url TEXT,
        link_index INTEGER,
        user_agent TEXT,
        ip TEXT,
        referer TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        first BOOLEAN NOT NULL,
        machine TEXT,
        tags TEXT NOT NULL DEFAULT '[]',
        link_first BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX events_message ON events (message_id, event_type, recipient);
    CREATE INDEX events_time ON events (timestamp);
    CREATE INDEX events_message_id ON events (message_id, id);
    CREATE INDEX events_recipient ON events (recipient, id);
    CREATE INDEX events_type ON events (event_type, id);
    CREATE TABLE firsts (
        event_type TEXT NOT NULL,
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        PRIMARY KEY (event_type, message_id, recipient)
    );
    CREATE TABLE link_firsts (
        url TEXT NOT NULL,
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        PRIMARY KEY (url, message_id, recipient)
    );
    CREATE TABLE outbox (
        id BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES events (event_id),
        target TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt DOUBLE PRECISION NOT NULL,
        last_error TEXT,
        delivered DOUBLE PRECISION,
        dead INTEGER NOT NULL DEFAULT 0,
        UNIQUE (event_id, target)
    );
    CREATE INDEX outbox_due ON outbox (target, next_attempt) WHERE delivered IS NULL AND dead = 0;
    CREATE TABLE event_tags (
        tag TEXT NOT NULL,
        event BIGINT NOT NULL,
        PRIMARY KEY (tag, event)
    );
    CREATE INDEX event_tags_event ON event_tags (event);
    CREATE TABLE event_meta (
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        event BIGINT NOT NULL,
        PRIMARY KEY (key, value, event)
    );
    CREATE INDEX event_meta_event ON event_meta (event, key);
    CREATE TABLE rollups (
        dim TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        day BIGINT NOT NULL,
        url TEXT NOT NULL,
        opens BIGINT NOT NULL,
        unique_opens BIGINT NOT NULL,
        clicks BIGINT NOT NULL,
        unique_clicks BIGINT NOT NULL,
        link_unique_clicks BIGINT NOT NULL,
        unsubscribes BIGINT NOT NULL,
        unique_unsubscribes BIGINT NOT NULL,
        PRIMARY KEY (dim, key, value, day, url)
    );
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        parent TEXT REFERENCES accounts (name) ON DELETE CASCADE,
        created DOUBLE PRECISION NOT NULL,
        settings TEXT NOT NULL DEFAULT '{}'
    );
    CREATE UNIQUE INDEX accounts_one_parent ON accounts ((parent IS NULL)) WHERE parent IS NULL;
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        scopes TEXT NOT NULL,
        name TEXT,
        created DOUBLE PRECISION NOT NULL,
        revoked DOUBLE PRECISION
    );
    CREATE INDEX api_keys_account ON api_keys (account);
    """,
)

#: The seven counts of a rollup row, in column order (``_ROLLUP_SUMS`` sums them).
_COUNTS_COLUMNS = ("opens BIGINT NOT NULL, unique_opens BIGINT NOT NULL, clicks BIGINT NOT NULL,"
                   " unique_clicks BIGINT NOT NULL, link_unique_clicks BIGINT NOT NULL, unsubscribes BIGINT NOT NULL,"
                   " unique_unsubscribes BIGINT NOT NULL")
_SOURCE_SUMS = "sum(o), sum(uo), sum(c), sum(uc), sum(lc), sum(u), sum(uu)"
#: Version 2: SQLite's ``STATS_MIGRATION`` (schema v6) on PostgreSQL: each event's ``account`` (column, index) and
#: the two-atom rollups ``rollup_days``/``rollup_totals`` keyed by (account, filter atom, group atom[, day], url),
#: which replace version 1's one-dimension ``rollups`` (see sqlite.py for what each kind of row serves). Their text
#: columns use the "C" collation, so that their key order (pages, ``after``) is Python's and SQLite's code-point
#: order whatever the database's locale. ``event_order`` is the one row every event transaction updates before it
#: takes ids (version 1 used the all-time ``all`` rollup row, which is per account now): ids in commit order.
#: Backfilled from the events already stored, so a version 1 database upgrades in place.
STATS_MIGRATION = f"""
    ALTER TABLE events ADD COLUMN account TEXT NOT NULL DEFAULT '';
    CREATE INDEX events_account ON events (account, id);
    DROP TABLE rollups;
    CREATE TABLE event_order (writes BIGINT NOT NULL);
    INSERT INTO event_order (writes) VALUES (0);
    CREATE TABLE rollup_days (
        account TEXT COLLATE "C" NOT NULL, fdim TEXT COLLATE "C" NOT NULL, fkey TEXT COLLATE "C" NOT NULL,
        fvalue TEXT COLLATE "C" NOT NULL, gdim TEXT COLLATE "C" NOT NULL, gkey TEXT COLLATE "C" NOT NULL,
        gvalue TEXT COLLATE "C" NOT NULL, day BIGINT NOT NULL, url TEXT COLLATE "C" NOT NULL,
        {_COUNTS_COLUMNS},
        PRIMARY KEY (account, fdim, gdim, fkey, fvalue, gkey, gvalue, day, url)
    );
    CREATE TABLE rollup_totals (
        account TEXT COLLATE "C" NOT NULL, fdim TEXT COLLATE "C" NOT NULL, fkey TEXT COLLATE "C" NOT NULL,
        fvalue TEXT COLLATE "C" NOT NULL, gdim TEXT COLLATE "C" NOT NULL, gkey TEXT COLLATE "C" NOT NULL,
        gvalue TEXT COLLATE "C" NOT NULL, url TEXT COLLATE "C" NOT NULL,
        {_COUNTS_COLUMNS},
        PRIMARY KEY (account, fdim, gdim, fkey, fvalue, gkey, gvalue, url)
    );
    CREATE TEMP TABLE atoms ON COMMIT DROP AS
        SELECT id AS event, 'message'::text AS dim, message_id AS key, ''::text AS value FROM events
        UNION SELECT event, 'meta', key, value FROM event_meta
        UNION SELECT event, 'tag', tag, '' FROM event_tags;
    CREATE INDEX ON atoms (event);
    CREATE TEMP TABLE rollup_source ON COMMIT DROP AS SELECT id, account, floor(timestamp / {_DAY})::bigint AS day,
        coalesce(url, '') AS url, (event_type = {_OPENED})::int AS o, (event_type = {_OPENED} AND first)::int AS uo,
        (event_type = {_CLICKED})::int AS c, (event_type = {_CLICKED} AND first)::int AS uc,
        (event_type = {_CLICKED} AND link_first)::int AS lc, (event_type = {_UNSUBSCRIBED})::int AS u,
        (event_type = {_UNSUBSCRIBED} AND first)::int AS uu FROM events;
    INSERT INTO rollup_days SELECT account, 'all', '', '', 'all', '', '', day, url, {_SOURCE_SUMS}
        FROM rollup_source GROUP BY account, day, url;
    INSERT INTO rollup_days SELECT s.account, a.dim, a.key, a.value, 'all', '', '', s.day, s.url, {_SOURCE_SUMS}
        FROM atoms a JOIN rollup_source s ON s.id = a.event GROUP BY s.account, a.dim, a.key, a.value, s.day, s.url;
    INSERT INTO rollup_days SELECT s.account, f.dim, f.key, f.value, g.dim, g.key, g.value, s.day, s.url, {_SOURCE_SUMS}
        FROM atoms f JOIN atoms g ON g.event = f.event JOIN rollup_source s ON s.id = f.event
        WHERE f.dim IN ('meta', 'tag') AND (f.dim = 'tag' OR f.dim != g.dim OR f.key != g.key OR f.value != g.value)
        GROUP BY s.account, f.dim, f.key, f.value, g.dim, g.key, g.value, s.day, s.url;
    INSERT INTO rollup_totals SELECT account, fdim, fkey, fvalue, gdim, gkey, gvalue, url, sum(opens), sum(unique_opens),
        sum(clicks), sum(unique_clicks), sum(link_unique_clicks), sum(unsubscribes), sum(unique_unsubscribes)
        FROM rollup_days GROUP BY account, fdim, fkey, fvalue, gdim, gkey, gvalue, url;
    DROP TABLE atoms;
    DROP TABLE rollup_source;
"""
MIGRATIONS += (STATS_MIGRATION,)

#: Version 3: ``first`` per account, as SQLite's ``ACCOUNT_FIRSTS_MIGRATION`` (the same tables, rebuilt from the
#: events; the flags already stored on events stay as they were).
ACCOUNT_FIRSTS_MIGRATION = f"""
    DROP TABLE firsts;
    CREATE TABLE firsts (
        account TEXT NOT NULL,
        event_type TEXT NOT NULL,
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        PRIMARY KEY (account, event_type, message_id, recipient)
    );
    INSERT INTO firsts SELECT DISTINCT account, event_type, message_id, recipient FROM events;
    DROP TABLE link_firsts;
    CREATE TABLE link_firsts (
        account TEXT NOT NULL,
        url TEXT NOT NULL,
        message_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        PRIMARY KEY (account, url, message_id, recipient)
    );
    INSERT INTO link_firsts SELECT DISTINCT account, url, message_id, recipient FROM events
        WHERE event_type = {_CLICKED} AND url IS NOT NULL;
"""
MIGRATIONS += (ACCOUNT_FIRSTS_MIGRATION,)

#: Version 4: machine-event verdicts, as SQLite's ``VERDICTS_MIGRATION`` (each event's ``machine_reasons``, the
#: rollups' machine counts beside the people's, the index the stateful verdicts read a message's clicks by).
VERDICTS_MIGRATION = f"""
    ALTER TABLE events ADD COLUMN machine_reasons TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE rollup_days ADD COLUMN machine_opens BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN machine_clicks BIGINT NOT NULL DEFAULT 0, ADD COLUMN machine_unsubscribes BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE rollup_totals ADD COLUMN machine_opens BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN machine_clicks BIGINT NOT NULL DEFAULT 0, ADD COLUMN machine_unsubscribes BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX events_clicks ON events (message_id, recipient, timestamp) WHERE event_type = {_CLICKED};
"""
MIGRATIONS += (VERDICTS_MIGRATION,)

#: The advisory lock every mailtrack takes while it migrates (any 64-bit number no other application uses).
MIGRATION_LOCK = 0x6D61_696C_7472_6B01
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: How many events :meth:`PostgresStore.purge` and :meth:`PostgresStore.forget` delete per transaction.
ERASE_BATCH = 500
#: How many times a transaction that lost a deadlock or an event_id race is tried again before giving up.
_ATTEMPTS = 4
#: SQLSTATE classes that mean "not now" rather than "never": connection (08), transaction rollback (40:
#: deadlock, serialization), insufficient resources (53: disk full, out of memory, too many connections),
#: operator intervention (57: shutdown, statement or lock timeout), system errors (58), and single states:
#: lock not available, read-only transaction (a standby, default_transaction_read_only), cannot connect now.
_UNAVAILABLE_CLASSES = ("08", "40", "53", "57", "58")
_UNAVAILABLE_STATES = ("55P03", "25006", "55006")

_E_COLUMNS = ", ".join("e." + column.strip() for column in _COLUMNS.split(","))
_EVENT_SUMS = (
    f"count(*) FILTER (WHERE e.event_type = {_OPENED} AND e.machine IS NULL),"
    f" count(*) FILTER (WHERE e.event_type = {_OPENED} AND e.first AND e.machine IS NULL),"
    f" count(*) FILTER (WHERE e.event_type = {_CLICKED} AND e.machine IS NULL),"
    f" count(*) FILTER (WHERE e.event_type = {_CLICKED} AND e.first AND e.machine IS NULL),"
    f" count(*) FILTER (WHERE e.event_type = {_CLICKED} AND e.link_first AND e.machine IS NULL),"
    f" count(*) FILTER (WHERE e.event_type = {_UNSUBSCRIBED} AND e.machine IS NULL),"
    f" count(*) FILTER (WHERE e.event_type = {_UNSUBSCRIBED} AND e.first AND e.machine IS NULL),"
    f" count(*) FILTER (WHERE e.event_type = {_OPENED} AND e.machine IS NOT NULL),"
    f" count(*) FILTER (WHERE e.event_type = {_CLICKED} AND e.machine IS NOT NULL),"
    f" count(*) FILTER (WHERE e.event_type = {_UNSUBSCRIBED} AND e.machine IS NOT NULL)"
)
_KEY_COLUMNS = "key_id, account, scopes, created, revoked, name"
#: Names for the columns an events insert unnests (ids handed out in the batch's order).
_U_COLUMNS = ", ".join(f"c{i}" for i in range(_WIDTH + 1))
_ROLLUP_KEY = "account, fdim, gdim, fkey, fvalue, gkey, gvalue"
_DAY_TYPES = ", ".join(["%s::text[]"] * 7 + ["%s::bigint[]", "%s::text[]"] + ["%s::bigint[]"] * _N)
_TOTAL_TYPES = ", ".join(["%s::text[]"] * 8 + ["%s::bigint[]"] * _N)
#: Adds a batch's summed counts to the rows of ``{table}`` (key columns ``{key}``, unnest casts ``{types}``).
_ROLLUP_UPSERT = ("INSERT INTO {table} ({key}, " + ", ".join(_ROLLUP_COUNTS) + ") SELECT * FROM unnest({types})"
                  " ON CONFLICT ({key}) DO UPDATE SET "
                  + ", ".join(f"{column} = {{table}}.{column} + excluded.{column}" for column in _ROLLUP_COUNTS))


class _Retry(Exception):
    """The transaction lost a race (another server stored one of its event_ids meanwhile): roll back, try again."""


def _unavailable(exc: BaseException) -> bool:
    """Whether a psycopg/pool failure is an outage (try later) rather than a refusal (retrying cannot help)."""
    if isinstance(exc, (PoolTimeout, PoolClosed, psycopg.OperationalError, psycopg.InterfaceError)):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith(_UNAVAILABLE_CLASSES) or state in _UNAVAILABLE_STATES


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """Raise psycopg's failures as the storage protocol's (see the module docstring); passwords never shown."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            store = args[0] if args else None
            where = f" at {store.where}" if isinstance(store, PostgresStore) else ""
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(store, PostgresStore):
                detail = store.scrub(detail)
            if _unavailable(exc):
                raise StoreUnavailable(f"the PostgreSQL store{where} is unavailable: {detail}", cause=exc) from None
            raise StoreError(f"the PostgreSQL store{where} refused the operation: {detail}") from None

    return wrapper


class PostgresStore:
    """Events, outbox, accounts and keys in a PostgreSQL database, shared by every server that names it.

    Implements :class:`~mailtrack.storage.base.EventStore` and
    :class:`~mailtrack.storage.base.AccountStore`. ``url`` is a libpq URL
    (``postgresql://user:password@host:5432/db``; any libpq parameter in its
    query). ``schema`` keeps mailtrack's tables in that schema (created when
    missing) instead of the user's default one. ``busy_timeout`` (seconds) bounds
    how long a statement waits for a lock another connection holds before the
    store gives up with :class:`StoreUnavailable` (the recorder then spools);
    ``pool_timeout`` how long a caller waits for a connection (the database
    being unreachable looks like that); ``pool_size`` is the most connections
    this store opens. Requires ``pip install 'mailtrack[postgres]'``.
    """

    @_translated
    def __init__(self, url: str, *, schema: str | None = None, busy_timeout: float = 1.0, pool_timeout: float = 5.0,
                 pool_size: int = 10, connect_timeout: int = 5) -> None:
        if not is_postgres_url(url):
            raise ConfigurationError(f"a PostgreSQL store needs a postgresql:// URL, not {masked(url)!r}")
        if schema is not None and (not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema)):
            raise ConfigurationError(f"schema must be a lower-case SQL identifier, not {schema!r}")
        for name, value in (("busy_timeout", busy_timeout), ("pool_timeout", pool_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigurationError(f"pool_size must be a positive int, not {pool_size!r}")
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(f"not a valid PostgreSQL URL: {masked(url)!r}") from exc
        self.url = url
        self.where = repr(masked(url)) + (f" (schema {schema})" if schema else "")
        self._password = str(params.get("password") or "")
        self.schema = schema
        self.busy_timeout = float(busy_timeout)
        self.pool_timeout = float(pool_timeout)
        self.pool_size = pool_size
        self._connect_kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = connect_timeout
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pool_lock = threading.Lock()
        self._migrate()

    def __repr__(self) -> str:
        return f"PostgresStore({self.where})"

    def scrub(self, text: str) -> str:
        """``text`` with this store's password (if any) masked, for messages that quote the server or the URL."""
        text = masked(text)
        return text.replace(self._password, "***") if self._password else text

    # -- connections ---------------------------------------------------------------
    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        """Every new connection: the lock timeout, and the schema when one is named."""
        connection.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{int(self.busy_timeout * 1000)}ms")))
        if self.schema is not None:
            connection.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(self.schema)))

    def _open_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._pool_lock:
            if self._pool is None or self._pool.closed:
                self._pool = ConnectionPool(
                    self.url, kwargs=self._connect_kwargs, min_size=1, max_size=self.pool_size, open=True,
                    configure=self._configure, check=ConnectionPool.check_connection, timeout=self.pool_timeout,
                    reconnect_timeout=self.pool_timeout * 4, name="mailtrack")
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (autocommit; ``with connection.transaction()`` for writes), checked alive when taken."""
        for attempt in range(2):
            pool = self._open_pool()
            try:
                connection = pool.getconn()
            except PoolClosed:  # another thread's close() got in between: a fresh pool
                if attempt:
                    raise
                continue
            try:
                yield connection
            finally:
                try:
                    pool.putconn(connection)  # a broken connection is discarded by the pool
                except PoolClosed:
                    connection.close()
            return

    @_translated
    def close(self) -> None:
        """Close the pooled connections; the store opens new ones if it is used again."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=5)

    def _migrate(self) -> None:
        """Bring the schema to the newest version, once, however many servers start together."""
        with psycopg.connect(self.url, **self._connect_kwargs) as db:
            if self.schema is not None:
                db.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(self.schema)))
            if self._version(db) == len(MIGRATIONS):
                return  # up to date: no lock taken
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                if self.schema is not None:
                    db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                db.execute("CREATE TABLE IF NOT EXISTS mailtrack_schema (version INTEGER NOT NULL)")
                row = db.execute("SELECT version FROM mailtrack_schema FOR UPDATE").fetchone()
                version = 0 if row is None else int(row[0])
                if row is None:
                    db.execute("INSERT INTO mailtrack_schema (version) VALUES (0)")
                if version > len(MIGRATIONS):
                    raise StoreError(f"the PostgreSQL database {self.where} has schema version {version}; this "
                                     f"mailtrack knows up to {len(MIGRATIONS)} (it was written by a newer mailtrack)")
                for number, script in enumerate(MIGRATIONS[version:], version + 1):
                    db.execute(script.encode())  # no parameters: several statements in one go
                    db.execute("UPDATE mailtrack_schema SET version = %s", (number,))

    @staticmethod
    def _version(db: psycopg.Connection[Any]) -> int:
        if db.execute("SELECT to_regclass('mailtrack_schema')").fetchone() == (None,):
            return 0
        row = db.execute("SELECT version FROM mailtrack_schema").fetchone()
        return 0 if row is None else int(row[0])

    @property
    @_translated
    def version(self) -> int:
        """The schema version of the database (``len(MIGRATIONS)`` once opened)."""
        with self._connection() as db:
            return self._version(db)

    # -- writing -------------------------------------------------------------------
    @_translated
    def record(self, event: TrackingEvent, outbox: Sequence[str] = ()) -> TrackingEvent:
        """Store ``event`` (once per ``event_id``), decide ``first``, queue it for each ``outbox`` target.

        Returns the event as stored (with ``first`` set).
        """
        if not isinstance(event, TrackingEvent):
            raise ArgumentError(f"record takes a TrackingEvent, not {type(event).__name__}")
        return self._record_many([event], outbox)[0]

    @_translated
    def record_many(self, events: Sequence[TrackingEvent], outbox: Sequence[str] = ()) -> list[TrackingEvent]:
        """Store several events in one transaction (a group commit): each as :meth:`record` would, in order.

        Events are decided in the order given (of two opens of one recipient
        in a batch, the earlier is the ``first``); an ``event_id`` given twice,
        or stored already, is stored once and returned with its stored
        ``first``. All or nothing: on any failure nothing of the batch is written.
        """
        if isinstance(events, TrackingEvent) or not all(isinstance(event, TrackingEvent) for event in events):
            raise ArgumentError("record_many takes a sequence of TrackingEvent")
        events = list(events)
        return self._record_many(events, outbox) if events else []

    def _record_many(self, events: list[TrackingEvent], outbox: Sequence[str]) -> list[TrackingEvent]:
        targets = [str(target) for target in outbox]
        with self._connection() as db:
            for attempt in range(_ATTEMPTS):
                try:
                    with db.transaction(), db.cursor() as cursor:
                        return self._write_batch(cursor, events, targets)
                except (_Retry, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                    if attempt == _ATTEMPTS - 1:
                        raise StoreUnavailable(f"the PostgreSQL store at {self.where} kept losing write races "
                                               f"for {len(events)} event(s); try again") from None
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _write_batch(cursor: psycopg.Cursor[Any], events: list[TrackingEvent], targets: list[str]) -> list[TrackingEvent]:
        """One transaction's work for :meth:`record_many` (see the module docstring for the lock order)."""
        stored: dict[str, bool] = dict(cursor.execute(
            "SELECT event_id, first FROM events WHERE event_id = ANY(%s)",
            (list({event.event_id for event in events}),)).fetchall())
        new: dict[str, TrackingEvent] = {}
        for event in events:
            if event.event_id not in stored:
                new.setdefault(event.event_id, event)
        relabels = _decide_verdicts(cursor, new) if new else []
        if new:
            rows = [_row(event) for event in new.values()]  # builds (and checks) every row before anything is written
            # per account (v3); people's only (v4): a machine event never takes a first-event slot
            firsts = sorted({(row[14], row[1], row[3], row[4]) for row in rows if row[12] is None})
            won = set(cursor.execute(
                "INSERT INTO firsts (account, event_type, message_id, recipient) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING "
                "RETURNING account, event_type, message_id, recipient", _columns(firsts, 4)).fetchall())
            links = sorted({(row[14], row[5], row[3], row[4]) for row in rows if row[1] == EventType.CLICKED.value
                            and row[5] is not None and row[12] is None})
            link_won = set(cursor.execute(
                "INSERT INTO link_firsts (account, url, message_id, recipient) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING "
                "RETURNING account, url, message_id, recipient", _columns(links, 4)).fetchall()) if links else set()
            decided: list[tuple[TrackingEvent, tuple[Any, ...], bool]] = []
            for event, row in zip(new.values(), rows, strict=True):
                key = (row[14], row[1], row[3], row[4])
                first = row[12] is None and key in won
                if row[12] is None:
                    won.discard(key)  # one first per key, the earliest person's event of the batch
                link_key = (row[14], row[5], row[3], row[4])
                link_first = row[1] == EventType.CLICKED.value and row[5] is not None and row[12] is None \
                    and link_key in link_won
                if row[12] is None:
                    link_won.discard(link_key)
                event = event.with_first(first)
                decided.append((event, (*row[:11], first, *row[12:]), link_first))
            # every event transaction takes the one event_order row before its ids: they follow the commit order;
            # then the rollups, each table in key order (one lock order for every writer)
            cursor.execute("UPDATE event_order SET writes = writes + %s", (len(decided),))
            days, totals = _rollup_rows(decided)
            cursor.execute(_ROLLUP_UPSERT.format(table="rollup_days", key=f"{_ROLLUP_KEY}, day, url", types=_DAY_TYPES),
                           _columns(days, 9 + _N))
            cursor.execute(_ROLLUP_UPSERT.format(table="rollup_totals", key=f"{_ROLLUP_KEY}, url", types=_TOTAL_TYPES),
                           _columns(totals, 8 + _N))
            inserted = cursor.execute(
                f"INSERT INTO events ({_COLUMNS}, link_first) SELECT {_U_COLUMNS} FROM unnest(%s::text[], %s::text[],"
                " %s::float8[], %s::text[], %s::text[], %s::text[], %s::integer[], %s::text[], %s::text[], %s::text[],"
                " %s::text[], %s::boolean[], %s::text[], %s::text[], %s::text[], %s::text[], %s::boolean[])"
                f" WITH ORDINALITY AS u({_U_COLUMNS}, n) ORDER BY n ON CONFLICT (event_id) DO NOTHING"
                " RETURNING id, event_id",
                _columns([(*row, link_first) for _, row, link_first in decided], _WIDTH + 1)).fetchall()
            if len(inserted) != len(decided):
                raise _Retry  # another server stored one of these event_ids since the SELECT above
            ids = dict((event_id, rowid) for rowid, event_id in inserted)
            tags = sorted({(tag, ids[event.event_id]) for event, _, _ in decided for tag in event.tags})
            if tags:
                cursor.execute("INSERT INTO event_tags (tag, event) SELECT * FROM unnest(%s::text[], %s::bigint[])"
                               " ON CONFLICT DO NOTHING", _columns(tags, 2))
            meta = sorted({(key, _meta_value(value), ids[event.event_id]) for event, row, _ in decided
                           for key, value in json.loads(row[10]).items()})
            if meta:
                cursor.execute("INSERT INTO event_meta (key, value, event) SELECT * FROM unnest(%s::text[], %s::text[],"
                               " %s::bigint[]) ON CONFLICT DO NOTHING", _columns(meta, 3))
            if targets:
                cursor.execute(
                    "INSERT INTO outbox (event_id, target, next_attempt) SELECT * FROM unnest(%s::text[], %s::text[],"
                    " %s::float8[]) ON CONFLICT DO NOTHING",
                    _columns([(event.event_id, target, row[2]) for event, row, _ in decided for target in targets], 3))
            stored.update((event.event_id, bool(event.first)) for event, _, _ in decided)
            for event_id in _apply_relabels(cursor, relabels):
                if event_id in stored:
                    stored[event_id] = True
        return [(new[event.event_id] if event.event_id in new else event).with_first(bool(stored[event.event_id]))
                for event in events]

    # -- reading -------------------------------------------------------------------
    @_translated
    def find(self, query: EventQuery, *, before: int | None = None, limit: int = 100) -> EventPage:
        """Events matching ``query``, newest (highest id) first, below id ``before``; at most ``limit``.

        As :meth:`SQLiteStore.find <mailtrack.storage.sqlite.SQLiteStore.find>`:
        driven by the message or recipient index when given, else by the tag or
        first metadata pair (``event_tags``/``event_meta``), else by the id.
        """
        if not isinstance(query, EventQuery):
            raise ArgumentError(f"find takes an EventQuery, not {type(query).__name__}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ArgumentError(f"limit must be an int from 1 to {MAX_PAGE}, not {limit!r}")
        if before is not None and (isinstance(before, bool) or not isinstance(before, int)):
            raise ArgumentError(f"before must be an event id (int) or None, not {before!r}")
        source, order, where, args = _plan(query)
        where, args = _machine_filter(query, where, args)
        if before is not None:
            where.append(f"{order} < %s")
            args.append(before)
        statement = (f"SELECT e.id, {_E_COLUMNS} FROM {source} WHERE {' AND '.join(where) or 'TRUE'} "
                     f"ORDER BY {order} DESC LIMIT %s")
        with self._connection() as db:
            rows = db.execute(statement.encode(), (*args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return EventPage([_event(row[1:]) for row in rows], rows[-1][0] if more else None)

    @_translated
    def grouped_stats(self, query: EventQuery, group_by: GroupBy, *, campaign_key: str = "campaign") -> list[StatsRow]:
        """Every group of :meth:`stats_page`, in key order; ``link`` groups by clicks, most first (as SQLite's)."""
        rows = self._grouped(query, group_by, campaign_key, None, None)[0]
        if group_by == "link":
            rows.sort(key=lambda row: (-row.clicks, row.key))
        return rows

    @_translated
    def stats_page(self, query: EventQuery, group_by: GroupBy, *, campaign_key: str = "campaign",
                   after: str | None = None, limit: int = 100) -> StatsPage:
        """Counts of the events matching ``query`` per ``group_by`` group, by key, paged: at most ``limit`` above ``after``.

        The same groups, answers and plan as :meth:`SQLiteStore.stats_page
        <mailtrack.storage.sqlite.SQLiteStore.stats_page>` (whose docstring
        lists what the rollups serve and what is counted from index-bounded
        event reads). Every read of one call sees one snapshot (a repeatable
        read transaction), so rollups, edge days and candidate messages agree
        while other servers write.
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
        sources: list[tuple[list[tuple[Any, ...]], bool]] = []
        with self._connection() as db, db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if spec is None and group_by == "message" and query.message_id is None and query.recipient is None \
                    and limit is not None:
                sources.append(_by_candidate_messages(db, query, campaign_key, start, fetch))
            elif spec is None:
                sources.append((_from_events(db, query, group_by, campaign_key), True))
            else:
                use_days, low, high, edges = _window(query)
                if use_days or not edges:
                    accounts = _accounts(db) if query.account is None else [query.account]
                    for account in accounts:
                        rows = _from_rollups(db, spec, account, (low, high) if use_days else None, group_by,
                                             query.event_type, start, fetch)
                        sources.append((rows, fetch is None or len(rows) < fetch))
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
        where, args = ["id > %s"], [after_id]
        if message_id is not None:
            where.append("message_id = %s")
            args.append(message_id)  # type: ignore[arg-type]
        if event_type is not None:
            where.append("event_type = %s")
            args.append(event_type)  # type: ignore[arg-type]
        statement = f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY id"
        if limit is not None:
            statement += f" LIMIT {limit}"
        with self._connection() as db:
            return [_event(row) for row in db.execute(statement.encode(), args).fetchall()]

    @_translated
    def count(self) -> int:
        """How many events are stored."""
        with self._connection() as db:
            row = db.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0

    @_translated
    def stats(self) -> dict[str, Any]:
        """Opens and clicks per message and per link, total and unique, people's (as :meth:`SQLiteStore.stats`)."""
        with self._connection() as db:
            totals = db.execute("SELECT message_id, event_type, count(*), count(DISTINCT recipient) FROM events "
                                "WHERE machine IS NULL GROUP BY message_id, event_type").fetchall()
            readers = db.execute("SELECT message_id, count(DISTINCT recipient) FROM events WHERE machine IS NULL "
                                 "GROUP BY message_id").fetchall()
            links = db.execute(
                "SELECT message_id, link_index, url, count(*), count(DISTINCT recipient) FROM events "
                "WHERE event_type = %s AND machine IS NULL GROUP BY message_id, link_index, url "
                'ORDER BY message_id COLLATE "C", link_index NULLS FIRST, url COLLATE "C" NULLS FIRST',
                (EventType.CLICKED.value,)).fetchall()
            machines = db.execute("SELECT message_id, event_type, count(*) FROM events WHERE machine IS NOT NULL "
                                  "GROUP BY message_id, event_type").fetchall()
        return _message_report(totals, readers, links, machines)

    # -- accounts, keys and settings (AccountStore) ----------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._connection() as db, db.transaction():
            yield db

    @_translated
    def create_account(self, name: str, *, parent: str | None = None) -> Account:
        """Add the parent (``parent`` None) or a subuser of ``parent`` (the parent is created first when missing).

        A store has one parent: naming another raises :class:`StoreError`, as
        does a name already taken. Servers creating accounts at once are
        serialized by a lock on the accounts table.
        """
        check_account_name(name)
        if parent is not None:
            check_account_name(parent)
            if parent == name:
                raise ArgumentError(f"a subuser cannot be called like its parent ({name!r})")
        now = time.time()
        with self._transaction() as db:
            db.execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
            existing = db.execute("SELECT name FROM accounts WHERE parent IS NULL").fetchone()
            wanted_parent = name if parent is None else parent
            if existing is not None and existing[0] != wanted_parent:
                raise StoreError(f"this store's parent account is {existing[0]!r}, not {wanted_parent!r} "
                                 "(--account-name, MAILTRACK_ACCOUNT_NAME)")
            if existing is None:
                db.execute("INSERT INTO accounts (name, parent, created) VALUES (%s, NULL, %s)", (wanted_parent, now))
            elif parent is None:
                raise StoreError(f"the account {name!r} exists already")
            if parent is not None:
                if db.execute("SELECT 1 FROM accounts WHERE name = %s", (name,)).fetchone() is not None:
                    raise StoreError(f"the account {name!r} exists already")
                db.execute("INSERT INTO accounts (name, parent, created) VALUES (%s, %s, %s)", (name, parent, now))
        return Account(name, parent, now)

    @_translated
    def account(self, name: str) -> Account | None:
        """The account called ``name``, or None."""
        with self._connection() as db:
            row = db.execute("SELECT name, parent, created FROM accounts WHERE name = %s", (name,)).fetchone()
        return None if row is None else Account(*row)

    @_translated
    def accounts(self) -> list[Account]:
        """Every account: the parent first, then its subusers by name."""
        with self._connection() as db:
            rows = db.execute('SELECT name, parent, created FROM accounts ORDER BY parent IS NOT NULL, name COLLATE "C"'
                              ).fetchall()
        return [Account(*row) for row in rows]

    @_translated
    def delete_account(self, name: str) -> None:
        """Remove the subuser ``name`` with its keys and settings; the parent is refused."""
        with self._transaction() as db:
            row = db.execute("SELECT parent FROM accounts WHERE name = %s FOR UPDATE", (name,)).fetchone()
            if row is None:
                raise UnknownAccount(f"no account called {name!r}")
            if row[0] is None:
                raise StoreError(f"{name!r} is the parent account; only subusers can be deleted")
            db.execute("DELETE FROM accounts WHERE name = %s", (name,))

    @_translated
    def create_key(self, account: str, scopes: Iterable[str] | None = None, *, name: str | None = None) -> tuple[ApiKey, str]:
        """A new key for ``account`` with ``scopes`` (None: all); returns it and the full key, shown once (only its hash is stored)."""
        chosen = check_scopes(scopes)
        if name is not None and not isinstance(name, str):
            raise ArgumentError(f"a key's name must be a string, not {name!r}")
        made, now = new_key(), time.time()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM accounts WHERE name = %s FOR SHARE", (account,)).fetchone() is None:
                raise UnknownAccount(f"no account called {account!r}")
            db.execute(
                "INSERT INTO api_keys (key_id, account, digest, scopes, name, created) VALUES (%s, %s, %s, %s, %s, %s)",
                (made.key_id, account, made.digest, json.dumps(sorted(chosen)), name, now),
            )
        return ApiKey(made.key_id, account, chosen, now, None, name), made.key

    @_translated
    def api_keys(self, account: str | None = None) -> list[ApiKey]:
        """Stored keys (of ``account``, or every one), oldest first, revoked ones included."""
        with self._connection() as db:
            rows = db.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE %s::text IS NULL OR account = %s "
                'ORDER BY created, key_id COLLATE "C"', (account, account)).fetchall()
        return [_api_key(row) for row in rows]

    @_translated
    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke the key ``key_id`` (a :class:`StoreError` if there is none); a second revoke keeps the first time."""
        with self._transaction() as db:
            db.execute("UPDATE api_keys SET revoked = %s WHERE key_id = %s AND revoked IS NULL", (time.time(), key_id))
            row = db.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
        if row is None:
            raise StoreError(f"no API key with id {key_id!r}")
        return _api_key(row)

    @_translated
    def authenticate(self, key: str) -> ApiKey | None:
        """The live key that ``key`` is, or None: malformed, unknown, a wrong secret or revoked (constant-time compare)."""
        key_id = split_key(key)
        if key_id is None:
            return None
        with self._connection() as db:
            row = db.execute(f"SELECT {_KEY_COLUMNS}, digest FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
        digest = row[-1] if row is not None else "0" * 64
        if not digest_matches(key, digest) or row is None:
            return None
        found = _api_key(row[:-1])
        return None if found.revoked is not None else found

    @_translated
    def account_settings(self, name: str) -> dict[str, Any]:
        """The fields stored for account ``name``, in the v3 account shape (``{}``: none set)."""
        with self._connection() as db:
            return self._stored_settings(db, name, lock=False)

    def tracking_settings(self, name: str) -> TrackingSettings:
        """The defaults with account ``name``'s stored fields laid over them."""
        return TrackingSettings.from_account(self.account_settings(name))

    @_translated
    def patch_tracking_settings(
        self, name: str, section: str, body: Mapping[str, Any], *, every_field: bool = False
    ) -> tuple[TrackingSettings, dict[str, Any]]:
        """Apply ``PATCH /v3/tracking_settings/{section}`` to account ``name`` in one transaction.

        The account's row is locked while it is read and written, so two
        servers patching different fields at once both land.
        """
        with self._transaction() as db:
            stored = self._stored_settings(db, name, lock=True)
            updated, answer = TrackingSettings.from_account(stored).patch(section, body, every_field=every_field)
            stored.setdefault(section, {}).update(body)
            db.execute("UPDATE accounts SET settings = %s WHERE name = %s",
                       (json.dumps(stored, sort_keys=True, separators=(",", ":")), name))
        return updated, answer

    @staticmethod
    def _stored_settings(db: psycopg.Connection[Any], name: str, *, lock: bool) -> dict[str, Any]:
        row = db.execute(f"SELECT settings FROM accounts WHERE name = %s{' FOR UPDATE' if lock else ''}".encode(),
                         (name,)).fetchone()
        if row is None:
            raise UnknownAccount(f"no account called {name!r}")
        stored: dict[str, Any] = json.loads(row[0])
        return stored

    # -- the webhook outbox -------------------------------------------------------------
    @_translated
    def outbox_due(self, now: float, limit: int = 50, target: str | None = None) -> list[OutboxItem]:
        """Deliveries whose next attempt is due, oldest first (read only; see :meth:`outbox_claim`)."""
        with self._connection() as db:
            return _due(db, now, limit, target, lock=False)

    @_translated
    def outbox_claim(self, target: str, now: float, lease: float, limit: int = 50) -> list[OutboxItem]:
        """Take the due deliveries for ``target``: nobody else gets them for ``lease`` seconds.

        ``FOR UPDATE SKIP LOCKED``: servers claiming at the same moment take
        different rows instead of waiting for each other; the claim (the next
        attempt moved past the lease) commits with the read. A server that dies
        mid-delivery leaves its rows to be taken again when the lease ends.
        """
        with self._transaction() as db:
            items = _due(db, now, limit, target, lock=True)
            if items:
                db.execute("UPDATE outbox SET next_attempt = %s WHERE id = ANY(%s)", (now + lease, [i.id for i in items]))
        return items

    @_translated
    def outbox_delivered(self, item_id: int, now: float) -> None:
        """Mark a delivery done."""
        with self._connection() as db:
            db.execute("UPDATE outbox SET delivered = %s, attempts = attempts + 1 WHERE id = %s", (now, item_id))

    @_translated
    def outbox_delivered_many(self, item_ids: Sequence[int], now: float) -> None:
        """Mark several deliveries done in one statement (one commit)."""
        if not item_ids:
            return
        with self._connection() as db:
            db.execute("UPDATE outbox SET delivered = %s, attempts = attempts + 1 WHERE id = ANY(%s)",
                       (now, list(item_ids)))

    @_translated
    def outbox_backlog(self) -> int:
        """Deliveries waiting (not delivered, not dead), counted on the partial index ``outbox_due`` (``/healthz``)."""
        with self._connection() as db:
            row = db.execute("SELECT count(*) FROM outbox WHERE delivered IS NULL AND dead = 0").fetchone()
        return int(row[0]) if row else 0

    @_translated
    def outbox_failed(self, item_id: int, error: str, next_attempt: float | None) -> None:
        """Record a failed attempt; ``next_attempt`` None gives up (the row stays, marked dead)."""
        with self._connection() as db:
            if next_attempt is None:
                db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = %s, dead = 1 WHERE id = %s",
                           (error, item_id))
            else:
                db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = %s, next_attempt = %s WHERE id = %s",
                           (error, next_attempt, item_id))

    @_translated
    def outbox_requeue(self, now: float) -> int:
        """Give every dead delivery a fresh start (after a long outage of the receiver); returns how many."""
        with self._connection() as db:
            cursor = db.execute("UPDATE outbox SET dead = 0, attempts = 0, next_attempt = %s "
                                "WHERE dead = 1 AND delivered IS NULL", (now,))
            return int(cursor.rowcount)

    @_translated
    def outbox_rows(self) -> list[dict[str, Any]]:
        """Every outbox row, for inspection and tests."""
        with self._connection() as db:
            cursor = db.execute("SELECT id, event_id, target, attempts, next_attempt, last_error, delivered, dead "
                                "FROM outbox ORDER BY id")
            names = [d.name for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -- retention and erasure ------------------------------------------------------
    @_translated
    def purge(self, before: float, *, batch: int = ERASE_BATCH) -> Erased:
        """Delete the events older than ``before`` (Unix seconds), as :meth:`SQLiteStore.purge
        <mailtrack.storage.sqlite.SQLiteStore.purge>` does: the rollups (aggregates, written in each event's
        transaction, so they hold every stored event) keep their counts; with each event go its tag and metadata
        index rows, its outbox rows and the first-event keys no remaining event uses. ``batch`` events per
        transaction."""
        cutoff = check_before(before)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ArgumentError(f"batch must be a positive int, not {batch!r}")
        return self._erase("SELECT id FROM events WHERE timestamp < %s ORDER BY timestamp LIMIT %s FOR UPDATE",
                           (cutoff, batch))

    @_translated
    def forget(self, recipient: str, *, batch: int = ERASE_BATCH) -> Erased:
        """Delete every event of ``recipient`` in any letter case, with their index and outbox rows and the
        recipient's ``firsts``/``link_firsts`` keys, as :meth:`SQLiteStore.forget
        <mailtrack.storage.sqlite.SQLiteStore.forget>` does (the rollups keep their counts)."""
        wanted = check_recipient(recipient)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ArgumentError(f"batch must be a positive int, not {batch!r}")
        with self._connection() as db:
            spellings = sorted({row[0] for table in ("events", "firsts", "link_firsts")
                                for row in db.execute(f"SELECT DISTINCT recipient FROM {table}").fetchall()
                                if row[0] != "" and same_recipient(row[0], wanted)})
        if not spellings:
            return Erased()
        erased = self._erase("SELECT id FROM events WHERE recipient = ANY(%s) LIMIT %s FOR UPDATE",
                             (spellings, batch))
        with self._transaction() as db:
            keys = sum(db.execute(f"DELETE FROM {table} WHERE recipient = ANY(%s)", (spellings,)).rowcount
                       for table in ("firsts", "link_firsts"))
        return erased + Erased(firsts=keys)

    def _erase(self, select: str, args: tuple[Any, ...]) -> Erased:
        """Delete the events ``select`` picks, a batch per transaction, until it picks none; with them their index
        and outbox rows and the first-event keys left unused. Each transaction takes the ``event_order`` row first,
        as every event transaction does, so it never runs beside an event write."""
        total = Erased()
        while True:
            with self._transaction() as db:
                db.execute("UPDATE event_order SET writes = writes")
                ids = [row[0] for row in db.execute(select, args).fetchall()]
                if not ids:
                    return total
                firsts = db.execute("SELECT DISTINCT account, event_type, message_id, recipient FROM events "
                                    "WHERE id = ANY(%s)", (ids,)).fetchall()
                links = db.execute(f"SELECT DISTINCT account, url, message_id, recipient FROM events WHERE id = ANY(%s) "
                                   f"AND event_type = {_CLICKED} AND url IS NOT NULL", (ids,)).fetchall()
                outbox = db.execute("DELETE FROM outbox WHERE event_id IN (SELECT event_id FROM events WHERE "
                                    "id = ANY(%s))", (ids,)).rowcount
                db.execute("DELETE FROM event_tags WHERE event = ANY(%s)", (ids,))
                db.execute("DELETE FROM event_meta WHERE event = ANY(%s)", (ids,))
                events = db.execute("DELETE FROM events WHERE id = ANY(%s)", (ids,)).rowcount
                keys = 0
                if firsts:
                    keys += db.execute(
                        "DELETE FROM firsts f USING unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
                        "AS k(account, event_type, message_id, recipient) WHERE f.account = k.account AND "
                        "f.event_type = k.event_type AND f.message_id = k.message_id AND f.recipient = k.recipient "
                        "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.message_id = f.message_id AND "
                        "e.event_type = f.event_type AND e.recipient = f.recipient AND e.account = f.account)",
                        _columns(firsts, 4)).rowcount
                if links:
                    keys += db.execute(
                        "DELETE FROM link_firsts f USING unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
                        "AS k(account, url, message_id, recipient) WHERE f.account = k.account AND f.url = k.url "
                        "AND f.message_id = k.message_id AND f.recipient = k.recipient AND NOT EXISTS (SELECT 1 "
                        f"FROM events e WHERE e.message_id = f.message_id AND e.event_type = {_CLICKED} AND "
                        "e.url = f.url AND e.recipient = f.recipient AND e.account = f.account)",
                        _columns(links, 4)).rowcount
            total += Erased(events, outbox, keys)


def _lock_id(key: tuple[str, str, str]) -> int:
    """A signed 64-bit advisory lock id for one (account, message, recipient)."""
    digest = hashlib.blake2b("\0".join(key).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _decide_verdicts(cursor: psycopg.Cursor[Any], new: dict[str, TrackingEvent]
                     ) -> list[Relabel]:
    """SQLite's ``_decide_verdicts`` on PostgreSQL: relabels ``new`` in place; returns the stored clicks to relabel.

    Servers write at once here, so each (account, message, recipient) the batch clicks is held by a
    transaction-level advisory lock (taken in id order: no deadlock between two batches) before its stored clicks
    are read: of two batches clicking one message at once, the second reads what the first wrote (each statement
    of a READ COMMITTED transaction sees what committed before it), so a honeypot click and a click beside it
    meet whichever server writes them.
    """
    spans = _click_groups(list(new.values()))
    if not spans:
        return []
    cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k",
                   (sorted({_lock_id(key) for key in spans}),))
    stored: list[tuple[Any, ...]] = []
    first_opens: dict[tuple[str, str, str], float | None] = dict(_batch_first_opens(new.values()))
    for (account, message_id, recipient), (low, high) in spans.items():
        stored += cursor.execute(
            f"SELECT {_STORED_CLICK} FROM events WHERE message_id = %s AND recipient = %s AND timestamp BETWEEN %s"
            f" AND %s AND event_type = {_CLICKED} AND account = %s",
            (message_id, recipient, low, high, account)).fetchall()
        row = cursor.execute(f"SELECT min(timestamp) FROM events WHERE message_id = %s AND recipient = %s AND"
                             f" event_type = {_OPENED} AND machine IS NULL AND account = %s",
                             (message_id, recipient, account)).fetchone()
        key = (account, message_id, recipient)
        if row is not None and row[0] is not None:
            first_opens[key] = min(row[0], first_opens.get(key) or row[0])
    decided, relabels = _relabel_batch(list(new.values()), stored, first_opens)
    for event in decided:
        new[event.event_id] = event
    return relabels


def _apply_relabels(cursor: psycopg.Cursor[Any], relabels: Sequence[Relabel]
                    ) -> set[str]:
    """SQLite's ``_apply_relabels`` on PostgreSQL (whose rollups hold every stored event: the difference of the
    changed events' cells is always added); returns the event ids that took a ``first`` slot."""
    if not relabels:
        return set()
    before, rows, promoted = _relabel_rows(cursor.execute, _POSTGRES, relabels)
    delta = _delta_cells((before[rowid], tuple(row)) for rowid, row in rows.items())
    if delta:
        cursor.execute(_ROLLUP_UPSERT.format(table="rollup_days", key=f"{_ROLLUP_KEY}, day, url", types=_DAY_TYPES),
                       _columns([(*key, *counts) for key, counts in sorted(delta.items())], 9 + _N))
        cursor.execute(_ROLLUP_UPSERT.format(table="rollup_totals", key=f"{_ROLLUP_KEY}, url", types=_TOTAL_TYPES),
                       _columns([(*key, *counts) for key, counts in sorted(_totals_of(delta).items())], 8 + _N))
    return promoted


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists: the arrays an ``unnest(%s, %s, ...)`` insert takes."""
    return [[row[i] for row in rows] for i in range(width)]


def _rollup_rows(decided: list[tuple[TrackingEvent, tuple[Any, ...], bool]]
                 ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ``rollup_days`` and ``rollup_totals`` increments of a batch: summed per row key, sorted by it.

    The cells are those SQLite's :meth:`~mailtrack.storage.sqlite.SQLiteStore.roll` adds later, in batches
    (:func:`~mailtrack.storage._shared._event_cells`, per event); here they are written in the event's own
    transaction. One upsert statement may touch a row once only, hence the sums, and the sort gives every writer
    one lock order.
    """
    days: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * _N)
    totals: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * _N)
    for event, row, link_first in decided:
        counts = _counts(event, link_first)
        account, day = row[14], int(row[2] // _DAY)
        for f, g, url in _event_cells(event, row):
            key = (account, f[0], g[0], *f[1:], *g[1:])
            for into in (days[(*key, day, url)], totals[(*key, url)]):
                for i, count in enumerate(counts):
                    into[i] += count
    return ([(*key, *counts) for key, counts in sorted(days.items())],
            [(*key, *counts) for key, counts in sorted(totals.items())])


def _due(db: psycopg.Connection[Any], now: float, limit: int, target: str | None, *, lock: bool) -> list[OutboxItem]:
    rows = db.execute(
        f"SELECT o.id, o.target, o.attempts, {_E_COLUMNS} FROM outbox o JOIN events e ON e.event_id = o.event_id "
        "WHERE o.delivered IS NULL AND o.dead = 0 AND o.next_attempt <= %s AND (%s::text IS NULL OR o.target = %s) "
        f"ORDER BY o.next_attempt, o.id LIMIT %s{' FOR UPDATE OF o SKIP LOCKED' if lock else ''}".encode(),
        (now, target, target, limit),
    ).fetchall()
    return [OutboxItem(row[0], row[1], row[2], _event(row[3:])) for row in rows]


def _plan(query: EventQuery, *, time_first: bool = False, driver: tuple[str, str] | None = None,
          messages: Sequence[str] = ()) -> tuple[str, str, list[str], list[Any]]:
    """``FROM`` clause, the id column to order by, and the conditions with their arguments, for ``query``.

    As SQLite's :func:`~mailtrack.storage.sqlite._plan`: a tag or metadata
    pair drives through its index (kept in id order) when no message or
    recipient is named; ``driver`` (one of the query's metadata pairs, the one
    the rollups say selects the fewest events) drives before the tag;
    ``time_first`` leaves the time index to the planner for a window's edge
    days; ``messages`` (no ``message_id``) pins those messages. PostgreSQL's
    planner picks among the indexes for the rest (``(account, id)``, time, type).
    """
    where: list[str] = []
    args: list[Any] = []
    metadata = list(query.metadata)
    tag = query.tag
    pinned = query.message_id is not None or query.recipient is not None or bool(messages)
    if driver is not None and driver in metadata and not time_first:
        metadata.remove(driver)
        metadata.insert(0, driver)
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM event_tags t WHERE t.tag = %s AND t.event = e.id)")
            args.append(tag)
            tag = None
    if (time_first and query.since is not None) or pinned:
        source, order = "events e", "e.id"
    elif tag is not None:
        source, order = "event_tags d JOIN events e ON e.id = d.event", "d.event"
        where.append("d.tag = %s")
        args.append(tag)
        tag = None
    elif metadata:
        key, value = metadata.pop(0)
        source, order = "event_meta d JOIN events e ON e.id = d.event", "d.event"
        where += ["d.key = %s", "d.value = %s"]
        args += [key, value]
    else:
        source, order = "events e", "e.id"
    if messages:
        where.append("e.message_id = ANY(%s)")
        args.append(list(messages))
    for column, wanted in (("message_id", query.message_id), ("recipient", query.recipient),
                           ("account", query.account)):
        if wanted is not None:
            where.append(f"e.{column} = %s")
            args.append(wanted)
    if query.event_type is not None:
        where.append("e.event_type = %s")
        args.append(query.event_type.value)
    if query.since is not None:
        where.append("e.timestamp >= %s")
        args.append(float(query.since))
    if query.until is not None:
        where.append("e.timestamp < %s")
        args.append(float(query.until))
    if tag is not None:
        where.append("EXISTS (SELECT 1 FROM event_tags t WHERE t.tag = %s AND t.event = e.id)")
        args.append(tag)
    for key, value in metadata:
        where.append("EXISTS (SELECT 1 FROM event_meta m WHERE m.key = %s AND m.value = %s AND m.event = e.id)")
        args += [key, value]
    return source, order, where, args


def _accounts(db: psycopg.Connection[Any]) -> list[str]:
    """The accounts that have events (a skip scan over the rollups' leading column: one index probe per account)."""
    rows = db.execute(
        "WITH RECURSIVE a(x) AS (SELECT (SELECT min(account) FROM rollup_totals) UNION ALL"
        " SELECT (SELECT min(account) FROM rollup_totals WHERE account > a.x) FROM a WHERE a.x IS NOT NULL)"
        " SELECT x FROM a WHERE x IS NOT NULL").fetchall()
    return [row[0] for row in rows]


def _having(condition: str) -> str:
    """:func:`~mailtrack.storage._shared._nonzero`'s condition as a PostgreSQL boolean (its "nothing" is ``0``)."""
    return "false" if condition in ("0", "") else condition


def _from_rollups(db: psycopg.Connection[Any], spec: _Spec, account: str, days: tuple[int | None, int | None] | None,
                  group_by: GroupBy, event_type: EventType | None, after: int | str | None,
                  fetch: int | None) -> list[tuple[Any, ...]]:
    """``(group, seven counts)`` rows of ``account`` above ``after`` in group order, at most ``fetch`` (None: all).

    As SQLite's: one key prefix of the primary key read in order, so ``LIMIT``
    stops the read (the "C" collation of the key columns orders as Python does).
    """
    fixed, group, pinned = spec
    use_days = days is not None or group == "day"
    table = "rollup_days" if use_days else "rollup_totals"
    where = ["account = %s", *(f"{column} = %s" for column in fixed)]
    args: list[Any] = [account, *fixed.values()]
    if days is not None:
        for bound, op in zip(days, (">=", "<"), strict=True):
            if bound is not None:
                where.append(f"day {op} %s")
                args.append(bound)
    if group_by == "link":
        where.append("url != ''")
    if group is None:  # one group, pinned by a condition
        if after is not None and str(pinned) <= str(after):
            return []
        nonzero = _having(_nonzero(group_by, event_type, _PINNED_SHOWN))
        statement = (f"SELECT * FROM (SELECT %s::text AS g, {_PINNED_SUMS} FROM {table} WHERE {' AND '.join(where)}) s"
                     f" WHERE {nonzero}")
        return list(db.execute(statement.encode(), [pinned, *args]).fetchall())
    if after is not None:
        where.append(f"{group} > %s")
        args.append(after)
    nonzero = _having(_nonzero(group_by, event_type, _GROUP_SHOWN))
    statement = (f"SELECT {group}, {_ROLLUP_SUMS} FROM {table} WHERE {' AND '.join(where)} GROUP BY {group}"
                 f" HAVING {nonzero} ORDER BY {group}")
    if fetch is not None:
        statement += f" LIMIT {int(fetch)}"
    return list(db.execute(statement.encode(), args).fetchall())


def _from_events(db: psycopg.Connection[Any], query: EventQuery, group_by: GroupBy, campaign_key: str, *,
                 time_first: bool = False, messages: Sequence[str] = ()) -> list[tuple[Any, ...]]:
    """``(group, seven counts)`` rows counted over the events ``query`` selects (see SQLite's ``_from_events``)."""
    source, _, where, args = _plan(query, time_first=time_first, driver=None if messages else _fewest(db, query),
                                   messages=messages)
    group = {"day": f"floor(e.timestamp / {_DAY})::bigint", "link": "e.url", "message": "e.message_id",
             "campaign": "g.value", "tag": "g.tag"}[group_by]
    if group_by == "campaign":
        source += " JOIN event_meta g ON g.event = e.id AND g.key = %s"
        args = [campaign_key, *args]  # the join's placeholder comes before every WHERE one
    if group_by == "tag":
        source += " JOIN event_tags g ON g.event = e.id"
    if group_by == "link":
        where.append(f"e.event_type = {_CLICKED} AND e.url IS NOT NULL")
    statement = f"SELECT {group}, {_EVENT_SUMS} FROM {source} WHERE {' AND '.join(where) or 'TRUE'} GROUP BY {group}"
    return list(db.execute(statement.encode(), args).fetchall())


def _by_candidate_messages(db: psycopg.Connection[Any], query: EventQuery, campaign_key: str,
                           after: int | str | None, fetch: int | None) -> tuple[list[tuple[Any, ...]], bool]:
    """group_by=message under two or more of metadata pairs / tag: a page's messages, counted one batch at a time.

    As SQLite's ``_by_candidate_messages``: candidates in key order from one
    condition's pair rows, each counted over its own events with every condition.
    """
    driver = _fewest(db, query)
    atom = ("meta", *driver) if driver is not None else ("tag", query.tag or "", "") if query.tag is not None \
        else ("meta", *query.metadata[0])
    spec: _Spec = ({**dict(zip(("fdim", "fkey", "fvalue"), atom, strict=True)), "gdim": "message", "gvalue": ""},
                   "gkey", None)
    accounts = _accounts(db) if query.account is None else [query.account]
    found: list[tuple[Any, ...]] = []
    cursor = after
    batch = max(fetch or 0, 20)
    while fetch is None or len(found) < fetch:
        sources = [(rows, len(rows) < batch) for rows in
                   (_from_rollups(db, spec, account, None, "message", None, cursor, batch) for account in accounts)]
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


def _fewest(db: psycopg.Connection[Any], query: EventQuery) -> tuple[str, str] | None:
    """The metadata pair of ``query`` with fewer events than its tag and its other pairs (None: the tag, or no choice)."""
    if query.message_id is not None or query.recipient is not None or not query.metadata or \
            len(query.metadata) + (query.tag is not None) < 2:
        return None
    accounts = _accounts(db) if query.account is None else [query.account]

    def events_of(dim: str, key: str, value: str) -> int:
        row = db.execute("SELECT sum(opens) + sum(clicks) + sum(unsubscribes) FROM rollup_totals WHERE"
                         " account = ANY(%s) AND fdim = %s AND gdim = 'all' AND fkey = %s AND fvalue = %s"
                         " AND gkey = '' AND gvalue = ''", (accounts, dim, key, value)).fetchone()
        return int(row[0] or 0) if row else 0

    sizes = {pair: events_of("meta", *pair) for pair in query.metadata}
    best = min(sizes, key=lambda pair: sizes[pair])
    if query.tag is not None and events_of("tag", query.tag, "") <= sizes[best]:
        return None
    return best
