"""The tracking endpoints as a WSGI application (PEP 3333), for any WSGI server.

``mailtrack serve`` runs it on waitress; gunicorn, uWSGI or mod_wsgi take the
entry point :mod:`mailtrack.wsgi` (``mailtrack.wsgi:application``), which is
configured from the environment by :mod:`mailtrack.service`.

This module only translates between WSGI and :class:`~mailtrack.http.endpoints.Endpoints`;
it knows nothing of configuration or wiring (dependencies point inward).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mailtrack.http.endpoints import Endpoints
from mailtrack.http.messages import Request, Response

__all__ = ["MAX_BODY", "StartResponse", "WsgiApp"]

#: Request bodies above this many bytes are refused (an unsubscribe POST is a few dozen).
MAX_BODY = 64 * 1024

StartResponse = Callable[..., Any]


class WsgiApp:
    """A WSGI callable around :class:`~mailtrack.http.endpoints.Endpoints`."""

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
