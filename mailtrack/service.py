"""The one place the tracking service is wired: store, recorder, webhook deliveries, endpoints, WSGI app.

``mailtrack serve``, the WSGI entry point (``mailtrack.wsgi:application``,
through :func:`from_environment`) and ``mailtrack demo`` all build their
service here from a :class:`~mailtrack.config.Config`, so they run the same
thing. :func:`create_server` puts a service on waitress the way ``serve`` and
the demo both need it.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mailtrack.config import Config
from mailtrack.core.tracker import Tracker
from mailtrack.delivery.recorder import Recorder
from mailtrack.delivery.webhooks import WebhookDelivery
from mailtrack.exceptions import ConfigurationError
from mailtrack.http.auth import authorize as key_authorize
from mailtrack.http.endpoints import Endpoints
from mailtrack.http.events_api import Authorize, EventsApi, error
from mailtrack.http.messages import Request, Response
from mailtrack.http.openapi import OpenApiDocument
from mailtrack.http.settings_api import SettingsApi
from mailtrack.http.v2_api import V2Api
from mailtrack.http.wsgi import MAX_BODY, WsgiApp
from mailtrack.storage.base import AccountStore, EventStore
from mailtrack.storage.sqlite import SQLiteStore

__all__ = ["Service", "build_service", "create_server", "from_environment", "open_account_store", "open_store"]


class Service(NamedTuple):
    """A configured tracking service: the WSGI app, its recorder, and the started webhook deliveries."""

    app: WsgiApp
    recorder: Recorder
    deliveries: list[WebhookDelivery]

    def close(self) -> None:
        """Stop the webhook deliveries and close the recorder (a last drain of its spool)."""
        for delivery in self.deliveries:
            delivery.stop()
        self.recorder.close()


def open_store(db: str | Path, *, create: bool = True) -> EventStore:
    """The event store at ``db``: the one place that picks the implementation (SQLite today).

    With ``create=False`` (readers such as ``mailtrack events``) a missing
    database is a :class:`ConfigurationError` instead of a new empty file.
    """
    if not create and not Path(db).is_file():
        raise ConfigurationError(f"no event database at {str(db)!r}: no such file (check --db or MAILTRACK_DB)")
    return SQLiteStore(db)


def open_account_store(db: str | Path) -> AccountStore:
    """The account store at ``db`` (the same file and implementation as the events'; created if missing)."""
    if not Path(db).resolve().parent.is_dir():
        raise ConfigurationError(f"the directory of the database {str(db)!r} does not exist (--db, MAILTRACK_DB)")
    return SQLiteStore(db)


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
    """The Events API's authorization: a live API key (``Authorization: Bearer``) holding the scope asked for."""

    def authorize(request: Request, scope: str) -> Response | None:
        found = key_authorize(request, scope, store=store)
        return found if isinstance(found, Response) else None

    return authorize


def build_service(config: Config, *, authorize: Authorize | None = None) -> Service:
    """Wire tracker, store, recorder, endpoints and webhook deliveries from ``config``.

    Needs ``secret_keys``, ``base_url`` and ``db`` (a :class:`~mailtrack.config.MissingSetting`
    otherwise). Every check runs before anything opens the database or starts a thread. The Events API
    (``/v1/events``, ``/v1/stats``) is served beside the tracking URLs, each request allowed by
    ``authorize(request, scope)`` (default: :func:`api_keys`, a live API key holding
    ``events.read`` or ``stats.read``; :func:`loopback_only` is the key-less alternative).
    """
    config.require("secret_keys", "base_url", "db")
    assert config.base_url is not None and config.db is not None  # require() checked them; for mypy
    if not Path(config.db).resolve().parent.is_dir():
        raise ConfigurationError(f"the directory of the database {config.db!r} does not exist (--db, MAILTRACK_DB)")
    tracker = Tracker(list(config.secret_keys), config.base_url)
    store = SQLiteStore(config.db)  # an EventStore and an AccountStore
    recorder = Recorder(store, outbox=config.webhooks)
    landing: str | Callable[[], str | None] | None = config.landing_html
    if landing is None:  # the parent account's stored subscription.landing, read when the page is shown
        landing = functools.partial(_stored_landing, store, config.account_name)
    endpoints = Endpoints(tracker, recorder, trusted_proxies=config.trusted_proxies, max_age=config.max_age,
                          landing_html=landing)
    deliveries = [WebhookDelivery(store, url, config.webhook_secret or "").start() for url in config.webhooks]
    events = EventsApi(store, authorize=authorize if authorize is not None else api_keys(store))

    def events_api(request: Request) -> Response | None:
        return events.handle(request) if events.handles(request.path) else None

    apis = [OpenApiDocument().handle, SettingsApi(store).handle, V2Api(store).handle, events_api]
    return Service(WsgiApp(endpoints, apis), recorder, deliveries)


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

    ``X-Forwarded-For`` is judged by the endpoints (``--trusted-proxy``), so
    waitress passes it through untouched; bodies over :data:`~mailtrack.http.wsgi.MAX_BODY`
    are refused before they are read. Raises ``ImportError`` without waitress,
    :class:`~mailtrack.exceptions.ConfigurationError` when the address cannot be bound.
    """
    import waitress  # type: ignore[import-untyped]

    where: dict[str, Any] = {"sockets": list(sockets)} if sockets is not None else {"host": config.host,
                                                                                      "port": config.port}
    servers: dict[Any, Any] = {}  # waitress' socket map: the listening servers register themselves in it
    try:
        # Twice ours: waitress counts a chunked body's framing too (and refuses a body that reaches its limit), so a
        # body of MAX_BODY bytes in chunks passes it and WsgiApp judges the real length. Anything bigger is still
        # refused by waitress before it is buffered (a Content-Length unread), in the API's shape (_api_error_channel).
        server = waitress.create_server(service.app, map=servers, threads=config.threads, ident="mailtrack",
                                        clear_untrusted_proxy_headers=False, max_request_body_size=2 * MAX_BODY,
                                        **where)
    except (OSError, ValueError) as exc:  # in use, not ours, or waitress' own refusal of the address
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(f"cannot listen on {config.host}:{config.port}: {reason} (--host, --port)") from None
    channel = _api_error_channel(service.app)
    for listener in servers.values():  # before run(): every connection accepted from now on uses it
        if hasattr(listener, "channel_class"):
            listener.channel_class = channel
    return server


def _api_error_channel(app: WsgiApp) -> Any:
    """A waitress channel class whose own refusals on API paths are in the API's shape (JSON, or v2's XML).

    waitress answers some requests itself, before the app runs: a chunked body
    over ``max_request_body_size`` (413), broken chunked encoding (400), an
    app that raised (500). Its answer is ``text/plain``; on an API path that
    breaks the promise of the API's error shape, so :meth:`WsgiApp.server_refusal`
    writes it instead. Other paths keep waitress' answer. ``error_task_class``
    is waitress' hook for this (``HTTPChannel`` reads it for each refusal).
    """
    from waitress.channel import HTTPChannel  # type: ignore[import-untyped]
    from waitress.task import ErrorTask  # type: ignore[import-untyped]

    class ApiErrorTask(ErrorTask):  # type: ignore[misc]
        def execute(self) -> None:
            problem = self.request.error
            answer = app.server_refusal(self.request.path or "", int(problem.code), f"{problem.reason}: {problem.body}")
            if answer is None:
                super().execute()
                return
            self.status = f"{answer.status} {answer.reason}"
            self.response_headers.extend((name, value) for name, value in answer.safe_headers
                                         if name.lower() != "content-length")  # waitress writes its own
            self.set_close_on_finish()
            self.content_length = len(answer.body)
            self.write(answer.body)

    class ApiChannel(HTTPChannel):  # type: ignore[misc]
        error_task_class = ApiErrorTask

    return ApiChannel
