"""The tracking endpoints as a WSGI application (PEP 3333), for any WSGI server.

``mailtrack serve`` runs it on waitress; gunicorn, uWSGI or mod_wsgi take it
as ``mailtrack.wsgi:application`` configured from the environment
(``MAILTRACK_SECRET_KEY``, ``MAILTRACK_BASE_URL``, ``MAILTRACK_DB``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from .recorder import Recorder
from .web import Endpoints, Request, Response

__all__ = ["MAX_BODY", "WsgiApp", "application", "from_environment"]

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
        return [response.body]

    def respond(self, environ: dict[str, Any]) -> Response:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            return Response(413, [("Content-Type", "text/plain"), ("Content-Length", "0")])
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        # PEP 3333 gives the path as latin-1-decoded bytes.
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        try:
            path = path.encode("latin-1").decode("utf-8", "replace")
        except UnicodeEncodeError:  # a server that did not follow PEP 3333: take the text as it is
            pass
        headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
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


def _safe_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers with any CR, LF or NUL removed: a last guard against response splitting."""
    return [(name, value.translate({13: None, 10: None, 0: None})) for name, value in headers]


def from_environment(environ: dict[str, str] | None = None) -> tuple[WsgiApp, Recorder]:
    """Build the app from ``MAILTRACK_SECRET_KEY`` (comma-separated for rotation, newest last),
    ``MAILTRACK_BASE_URL`` and ``MAILTRACK_DB``."""
    from .store import SQLiteStore
    from .tracker import Tracker

    env = os.environ if environ is None else environ
    missing = [name for name in ("MAILTRACK_SECRET_KEY", "MAILTRACK_BASE_URL", "MAILTRACK_DB") if not env.get(name)]
    if missing:
        raise RuntimeError(f"set {', '.join(missing)}")
    tracker = Tracker(env["MAILTRACK_SECRET_KEY"].split(","), env["MAILTRACK_BASE_URL"])
    recorder = Recorder(SQLiteStore(env["MAILTRACK_DB"]))
    return WsgiApp(Endpoints(tracker, recorder)), recorder


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI entry point configured from the environment on first use (``mailtrack.wsgi:application``)."""
    global _app
    if _app is None:
        _app = from_environment()[0]
    return _app(environ, start_response)


_app: WsgiApp | None = None
