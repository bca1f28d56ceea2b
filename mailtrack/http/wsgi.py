"""The tracking endpoints as a WSGI application (PEP 3333), for any WSGI server.

``mailtrack serve`` runs it on waitress; gunicorn, uWSGI or mod_wsgi take it
as ``mailtrack.wsgi:application``, configured from the environment (see
:func:`from_environment`), e.g. ``gunicorn -w 4 mailtrack.wsgi:application``
for one process per core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mailtrack.core.tracker import Tracker
from mailtrack.delivery.recorder import Recorder
from mailtrack.delivery.webhooks import WebhookDelivery
from mailtrack.exceptions import ConfigurationError
from mailtrack.http.endpoints import Endpoints, Request, Response, check_max_age
from mailtrack.storage.sqlite import SQLiteStore

__all__ = ["MAX_BODY", "Service", "WsgiApp", "application", "build_service", "from_environment"]

#: Request bodies above this many bytes are refused (an unsubscribe POST is a few dozen).
MAX_BODY = 64 * 1024

StartResponse = Callable[..., Any]


class WsgiApp:
    """A WSGI callable around :class:`~mailtrack.web.Endpoints`."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        response = self.respond(environ)
        start_response(f"{response.status} {response.reason}", _safe_headers(response.headers))
        # HEAD: the headers of the GET, never a body (one would desynchronize a keep-alive connection).
        return [b""] if environ.get("REQUEST_METHOD", "GET").upper() == "HEAD" else [response.body]

    def respond(self, environ: dict[str, Any]) -> Response:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            return Response(413, [("Content-Type", "text/plain"), ("Content-Length", "0")])
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        path = _text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        headers = {
            key[5:].replace("_", "-").lower(): _text(value) for key, value in environ.items() if key.startswith("HTTP_")
        }
        request = Request(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=path,
            query=environ.get("QUERY_STRING", ""),
            headers=headers,
            remote_addr=environ.get("REMOTE_ADDR"),
            body=body,
        )
        return self.endpoints.handle(request)


def _text(value: str) -> str:
    """A path or header value as text: PEP 3333 hands over bytes as Latin-1; clients send UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that did not follow PEP 3333: take the text as it is
        return value


def _safe_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers with any CR, LF or NUL removed: a last guard against response splitting."""
    return [(name, value.translate({13: None, 10: None, 0: None})) for name, value in headers]


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


def build_service(
    secret_keys: Sequence[str],
    base_url: str,
    db: str | Path,
    *,
    trusted_proxies: Sequence[str] = (),
    max_age: float | None = None,
    landing_html: str | None = None,
    webhooks: Sequence[str] = (),
    webhook_secret: str | None = None,
) -> Service:
    """Wire tracker, store, recorder, endpoints and webhook deliveries, as ``mailtrack serve`` runs them."""
    check_max_age(max_age)  # every check before anything starts a thread
    if webhooks and not webhook_secret:
        raise ConfigurationError("webhooks need a secret (--webhook-secret or MAILTRACK_WEBHOOK_SECRET)")
    if not Path(db).resolve().parent.is_dir():
        raise ConfigurationError(f"the directory of the database {str(db)!r} does not exist")
    tracker = Tracker(list(secret_keys), base_url)
    store = SQLiteStore(db)
    deliveries = [WebhookDelivery(store, url, webhook_secret or "").start() for url in webhooks]
    recorder = Recorder(store, outbox=webhooks)
    endpoints = Endpoints(tracker, recorder, trusted_proxies=trusted_proxies, max_age=max_age, landing_html=landing_html)
    return Service(WsgiApp(endpoints), recorder, deliveries)


def from_environment(environ: Mapping[str, str] | None = None) -> Service:
    """:func:`build_service` configured from environment variables.

    ``MAILTRACK_SECRET_KEY`` (comma-separated for rotation, newest last),
    ``MAILTRACK_BASE_URL``, ``MAILTRACK_DB``; optional
    ``MAILTRACK_TRUSTED_PROXIES`` (comma-separated addresses or networks),
    ``MAILTRACK_MAX_AGE`` (seconds, for click links), ``MAILTRACK_WEBHOOK``
    (comma-separated URLs) with ``MAILTRACK_WEBHOOK_SECRET``, and
    ``MAILTRACK_LANDING`` (a file with the unsubscribe page's HTML).
    """
    env = os.environ if environ is None else environ
    missing = [name for name in ("MAILTRACK_SECRET_KEY", "MAILTRACK_BASE_URL", "MAILTRACK_DB") if not env.get(name)]
    if missing:
        raise ConfigurationError(f"set {', '.join(missing)}")

    def listed(name: str) -> list[str]:
        return [item.strip() for item in env.get(name, "").split(",") if item.strip()]

    return build_service(
        listed("MAILTRACK_SECRET_KEY"),
        env["MAILTRACK_BASE_URL"],
        env["MAILTRACK_DB"],
        trusted_proxies=listed("MAILTRACK_TRUSTED_PROXIES"),
        max_age=float(env["MAILTRACK_MAX_AGE"]) if env.get("MAILTRACK_MAX_AGE") else None,
        landing_html=Path(env["MAILTRACK_LANDING"]).read_text(encoding="utf-8") if env.get("MAILTRACK_LANDING") else None,
        webhooks=listed("MAILTRACK_WEBHOOK"),
        webhook_secret=env.get("MAILTRACK_WEBHOOK_SECRET"),
    )


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI entry point configured from the environment on first use (``mailtrack.wsgi:application``)."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                _app = from_environment()[0]
    return _app(environ, start_response)


_app: WsgiApp | None = None
_app_lock = threading.Lock()
