"""The one place the tracking service is wired: store, recorder, webhook deliveries, endpoints, WSGI app.

``mailtrack serve``, the WSGI entry point (``mailtrack.wsgi:application``,
through :func:`from_environment`) and ``mailtrack demo`` all build their
service here from a :class:`~mailtrack.config.Config`, so they run the same
thing. :func:`create_server` puts a service on waitress the way ``serve`` and
the demo both need it.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mailtrack.config import Config
from mailtrack.core.tracker import Tracker
from mailtrack.delivery.recorder import Recorder
from mailtrack.delivery.webhooks import WebhookDelivery
from mailtrack.exceptions import ConfigurationError
from mailtrack.http.auth import authorize as key_authorize
from mailtrack.http.dashboard import Dashboard
from mailtrack.http.endpoints import Endpoints
from mailtrack.http.events_api import Authorize, EventsApi, error
from mailtrack.http.health import HealthCheck, HealthReport
from mailtrack.http.messages import Request, Response
from mailtrack.http.openapi import OpenApiDocument
from mailtrack.http.settings_api import SettingsApi
from mailtrack.http.v2_api import V2Api
from mailtrack.http.wsgi import MAX_BODY, WsgiApp
from mailtrack.storage.base import AccountStore, EventStore, StoreError, StoreUnavailable
from mailtrack.storage.dsn import is_postgres_url, masked
from mailtrack.storage.purger import Purger
from mailtrack.storage.roller import Rollable, Roller
from mailtrack.storage.sqlite import SQLiteStore
from mailtrack.storage.writer_process import ProcessWriter

if TYPE_CHECKING:
    from mailtrack.storage.postgres import PostgresStore

#: Seconds between two rolls of a SQLite store's stats rollups (by the writer process or the Roller thread).
ROLL_INTERVAL = 0.5

__all__ = ["Service", "build_service", "create_loop_server", "create_server", "from_environment", "open_account_store",
           "open_store"]


class Service(NamedTuple):
    """A configured tracking service: the WSGI app, its recorder, the started webhook deliveries, stats roller
    and purger (``--purge-after``)."""

    app: WsgiApp
    recorder: Recorder
    deliveries: list[WebhookDelivery]
    roller: Roller | None = None
    purger: Purger | None = None

    def close(self) -> None:
        """Stop the webhook deliveries, the roller and the purger, close the recorder (a last drain of its spool),
        then the store."""
        for delivery in self.deliveries:
            delivery.stop()
        if self.roller is not None:
            self.roller.stop()
        if self.purger is not None:
            self.purger.stop()
        self.recorder.close()
        if self.recorder.store is not None:
            self.recorder.store.close()


def open_store(db: str | Path, *, create: bool = True) -> EventStore:
    """The event store ``db`` names: the one place that picks the implementation.

    A ``postgresql://`` (or ``postgres://``) URL opens a :class:`~mailtrack.storage.postgres.PostgresStore`
    (the ``mailtrack[postgres]`` extra); anything else is a SQLite file. With ``create=False`` (readers such
    as ``mailtrack events``) a missing SQLite file is a :class:`ConfigurationError` instead of a new empty
    file (a PostgreSQL database is always there to read, migrated on open).
    """
    if is_postgres_url(db):
        return _postgres(str(db))
    if not create and not Path(db).is_file():
        raise ConfigurationError(f"no event database at {str(db)!r}: no such file (check --db or MAILTRACK_DB)")
    return SQLiteStore(db)


def open_account_store(db: str | Path) -> AccountStore:
    """The account store ``db`` names (the same database and implementation as the events'; created if missing)."""
    if is_postgres_url(db):
        return _postgres(str(db))
    _check_directory(db)
    return SQLiteStore(db)


def _check_directory(db: str | Path) -> None:
    """A SQLite file's directory must exist (SQLite creates the file, never its directory)."""
    if not Path(db).resolve().parent.is_dir():
        raise ConfigurationError(f"the directory of the database {str(db)!r} does not exist (--db, MAILTRACK_DB)")


def _postgres(url: str) -> PostgresStore:
    """A :class:`~mailtrack.storage.postgres.PostgresStore` on ``url``; a one-line error without the extra."""
    try:
        from mailtrack.storage.postgres import PostgresStore
    except ImportError as exc:
        raise ConfigurationError(f"--db {masked(url)} needs psycopg: pip install 'mailtrack[postgres]' ({exc})") from None
    return PostgresStore(url)


def loopback_only(endpoints: Endpoints) -> Authorize:
    """A key-less authorization for the Events API: requests from this machine only (403 otherwise).

    The client address is judged as the tracking endpoints judge it (a
    trusted proxy's ``X-Forwarded-For`` is believed), so a remote client
    behind a trusted proxy is refused. A proxy on this machine that is not
    declared with ``--trusted-proxy`` makes every request look local: declare it.
    """

    def authorize(request: Request, scope: str) -> Response | None:
        address = endpoints.client_ip(request)
        try:
            local = address is not None and ipaddress.ip_address(address.split("%")[0]).is_loopback
        except ValueError:
            local = False
        if local:
            return None
        return error(403, [(None, f"the {scope} scope is only granted to requests from this machine")],
                     head=request.method == "HEAD")

    return authorize


def api_keys(store: AccountStore) -> Authorize:
    """The Events API's authorization: a live API key (``Authorization: Bearer``) holding the scope asked for.

    Allowed requests read one account's events: a subuser's key its own; a
    parent's key the parent's (``""``), or a subuser's with ``on-behalf-of``.
    """

    def authorize(request: Request, scope: str) -> Response | str | None:
        found = key_authorize(request, scope, store=store)
        if isinstance(found, Response):
            return found
        try:
            acting = store.account(found.account)
        except StoreError:
            return error(503, [(None, "the store is unavailable; try again")], head=request.method == "HEAD",
                         headers=[("Retry-After", "1")])
        return found.account if acting is not None and acting.is_subuser else ""

    return authorize


def build_service(config: Config, *, authorize: Authorize | None = None, background: bool = True) -> Service:
    """Wire tracker, store, recorder, endpoints and webhook deliveries from ``config``.

    Needs ``secret_keys``, ``base_url`` and ``db`` (a :class:`~mailtrack.config.MissingSetting`
    otherwise). Every check runs before anything opens the database or starts a thread. The Events API
    (``/v1/events``, ``/v1/stats``) is served beside the tracking URLs, each request allowed by
    ``authorize(request, scope)`` (default: :func:`api_keys`, a live API key holding
    ``events.read`` or ``stats.read``; :func:`loopback_only` is the key-less alternative). The dashboard
    (``/dashboard``, :mod:`mailtrack.http.dashboard`) always asks for a key holding ``stats.read``. A
    SQLite store's stats rollups are kept caught up in the background (every half second), so stats reads seldom
    have events to roll or count themselves: by the writer process (:class:`~mailtrack.storage.writer_process.
    ProcessWriter`, ``config.writer == "process"``, the default), which also writes the events, else by a
    :class:`~mailtrack.storage.roller.Roller` thread (``Service.roller``); a PostgreSQL store writes its rollups
    in each event's transaction and gets neither (``Service.roller`` is None). ``background=False`` starts
    neither the webhook deliveries nor the rolls: ``serve --workers N`` runs them in its first worker only
    (every worker records events and answers requests). Privacy mode (``config.privacy``) is given to the
    recorder, which reduces every event before the store, the outbox or the spool sees it; ``config.purge_after``
    starts a :class:`~mailtrack.storage.purger.Purger` (with the background work: one worker purges).
    """
    config.require("secret_keys", "base_url", "db")
    assert config.base_url is not None and config.db is not None  # require() checked them; for mypy
    postgres = is_postgres_url(config.db)
    if not postgres:
        _check_directory(config.db)
    tracker = Tracker(list(config.secret_keys), config.base_url)
    # an EventStore and an AccountStore: PostgreSQL for a database several servers share, else a SQLite file
    store: SQLiteStore | PostgresStore = _postgres(config.db) if postgres else SQLiteStore(config.db)
    # a database URL names no local place: unless told (--spool-dir), a PostgreSQL server spools where it runs
    spool_dir = config.spool_dir if config.spool_dir is not None else _spool_dir(config.db) if postgres else None
    # SQLite: the writes (and, in the background, the rolls) run in a child process beside the server (--writer)
    writer = (ProcessWriter(config.db, roll_interval=ROLL_INTERVAL if background else None)
              if not postgres and config.writer == "process" else None)
    recorder = Recorder(store, outbox=config.webhooks, spool_dir=spool_dir, spool_max_bytes=config.spool_max_bytes,
                        writer=writer, privacy=config.privacy)
    landing: str | Callable[[], str | None] | None = config.landing_html
    if landing is None:  # the parent account's stored subscription.landing, read when the page is shown
        landing = functools.partial(_stored_landing, store, config.account_name)
    endpoints = Endpoints(tracker, recorder, trusted_proxies=config.trusted_proxies, max_age=config.max_age,
                          landing_html=landing, parent_account=config.account_name,
                          account_landing=functools.partial(_own_landing, store), classifier=config.classifier)
    deliveries = [WebhookDelivery(store, url, config.webhook_secret or "",
                                  skip_machine=url in config.webhooks_skip_machine).start()
                  for url in (config.webhooks if background else ())]
    # SQLite's rollups are rolled in the background; PostgreSQL writes them in each event's transaction (no roll)
    if writer is not None:
        writer.start()  # the rolls begin now, and the event loop finds a child to send its batches to
    roller = (Roller(store, interval=ROLL_INTERVAL).start()
              if background and writer is None and isinstance(store, Rollable) else None)
    events = EventsApi(store, authorize=authorize if authorize is not None else api_keys(store))

    def events_api(request: Request) -> Response | None:
        return events.handle(request) if events.handles(request.path) else None

    health = HealthCheck(functools.partial(health_report, recorder, store))
    dashboard = Dashboard(store, store, base_url=config.base_url)
    apis = [health.handle, OpenApiDocument().handle, SettingsApi(store).handle, V2Api(store).handle, events_api,
            dashboard.handle]
    # its own store object: a purge's connection (SQLite: per thread anyway; PostgreSQL: its pool) is never the events'
    purger = (Purger(open_store(config.db), config.purge_after).start()
              if background and config.purge_after is not None else None)
    return Service(WsgiApp(endpoints, apis, access_log=config.access_log, privacy=config.privacy), recorder, deliveries,
                   roller, purger)



_QUOTED_PATH = re.compile(r"""(['"])/[^'"]*\1""")


def public_error(error: str | None, places: Sequence[str]) -> str | None:
    """``error`` as ``/healthz`` may show it to anyone: the store's file or database and the spool's folder (and
    any other quoted absolute path, as an ``OSError`` names its file) replaced by ``<hidden>``. The log keeps the
    whole message, for the operator; a health check needs no key, so it shows no paths or hosts."""
    if not error:
        return error
    error = _QUOTED_PATH.sub("<hidden>", error)
    for place in sorted(places, key=len, reverse=True):
        for spelling in (repr(place), place):
            error = error.replace(spelling, "<hidden>")
    return error


def health_report(recorder: Recorder, store: EventStore) -> HealthReport:
    """``/healthz``'s answer now: the store asked (a cheap indexed count: is it reachable), and the recorder's own
    account of its writer (do events reach the store, does it make progress) and of the spool; kept apart, so a
    writer that is stuck or refused (a lock held elsewhere) does not read as an unreachable store."""
    try:
        backlog: int | None = store.outbox_backlog()
        ok, error = True, None
    except StoreUnavailable as exc:
        backlog, ok, error = None, False, str(exc) or type(exc).__name__
    recording = recorder.health()
    places = [str(place) for place in (getattr(store, "path", None), getattr(store, "where", None),
                                       getattr(recorder, "spool_dir", None)) if place]
    return HealthReport(
        store_ok=ok, store_error=public_error(error, places),
        writer_ok=recording.store_ok,
        writer_error=None if recording.store_ok else public_error(recording.last_error, places),
        writer_queued=recording.queued, writer_oldest_wait=recording.oldest_wait,
        spool_events=recording.spool_events, spool_bytes=recording.spool_bytes,
        spool_full=recording.spool_full or recording.memory_events > 0, webhook_backlog=backlog, lost=recording.lost)


def _spool_dir(url: str) -> Path:
    """Where a server spools events while PostgreSQL is unreachable: ``mailtrack-<id>.spool`` in the working directory.

    A SQLite store spools beside its file; a database URL names no local place, so the spool goes where the
    server runs, named after the database (a hash of its URL without the password), so that a restarted server,
    or another one started there, finds and drains what a killed one left.
    """
    return Path(f"mailtrack-{hashlib.sha256(masked(url).encode()).hexdigest()[:12]}.spool").resolve()


def _own_landing(store: AccountStore, account: str) -> str | None:
    """The landing page ``account`` itself stored (not its defaults), or None: then the parent's is shown."""
    if store.account(account) is None:
        return None
    landing = store.account_settings(account).get("subscription", {}).get("landing")
    return landing if isinstance(landing, str) and landing else None


def _stored_landing(store: AccountStore, account: str) -> str | None:
    """The landing page stored for ``account`` (``PATCH /v3/tracking_settings/subscription``), or None."""
    if store.account(account) is None:
        return None
    return store.tracking_settings(account).subscription_tracking.landing


def from_environment(environ: Mapping[str, str] | None = None) -> Service:
    """:func:`build_service` configured from ``MAILTRACK_*`` variables only (the WSGI entry point's way).

    ``environ`` defaults to ``os.environ``; the variables are those of
    :data:`mailtrack.config.OPTIONS` (``MAILTRACK_SECRET_KEY`` comma-separated,
    newest last, or ``MAILTRACK_SECRET_KEY_FILE``; ``MAILTRACK_BASE_URL``;
    ``MAILTRACK_DB``; optional ``MAILTRACK_TRUSTED_PROXIES``,
    ``MAILTRACK_MAX_AGE``, ``MAILTRACK_LANDING``, ``MAILTRACK_WEBHOOK`` with
    ``MAILTRACK_WEBHOOK_SECRET``).
    """
    return build_service(Config.from_sources(None, environ))


def create_server(service: Service, config: Config, *, sockets: Sequence[socket.socket] | None = None) -> Any:
    """A waitress server for ``service`` on ``config.host``/``config.port`` (or on ``sockets``), not yet running.

    Tuned to hold thousands of idle or slow connections (:mod:`mailtrack.http.server`: poll, a
    connection limit from the file limit, a request deadline, idle connections shed at the limit).
    ``X-Forwarded-For`` is judged by the endpoints (``--trusted-proxy``), so waitress passes it
    through untouched; bodies over :data:`~mailtrack.http.wsgi.MAX_BODY` are refused by the app in
    each path's own shape. Raises ``ImportError`` without waitress,
    :class:`~mailtrack.exceptions.ConfigurationError` when the address cannot be bound.
    """
    from mailtrack.http import server

    try:
        return server.create(service.app, threads=config.threads, max_body=MAX_BODY, host=config.host,
                             port=config.port, sockets=sockets, refusal=service.app.server_refusal)
    except (OSError, ValueError) as exc:  # in use, not ours, or waitress' own refusal of the address
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(f"cannot listen on {config.host}:{config.port}: {reason} (--host, --port)") from None


def create_loop_server(service: Service, config: Config, *, sockets: Sequence[socket.socket] | None = None,
                       grace: float = 10.0) -> Any:
    """The event-loop server for ``service`` (:mod:`mailtrack.http.loop_server`: uvicorn around
    :class:`~mailtrack.http.asgi.AsgiApp`), listening on ``config.host``/``config.port`` (or ``sockets``), not yet
    running. ``config.threads`` threads answer the requests that read the store (APIs, dashboard, unsubscribe
    pages). Raises :class:`~mailtrack.exceptions.ConfigurationError` when the address cannot be bound."""
    from mailtrack.http import loop_server
    from mailtrack.http.asgi import AsgiApp

    try:
        return loop_server.create(AsgiApp(service.app, threads=config.threads), host=config.host, port=config.port,
                                  sockets=sockets, grace=grace, refusal=service.app.refusal)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigurationError(f"cannot listen on {config.host}:{config.port}: {reason} (--host, --port)") from None
