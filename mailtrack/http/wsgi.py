"""The tracking endpoints as a WSGI application (PEP 3333), for any WSGI server.

``mailtrack serve`` runs it on waitress; gunicorn, uWSGI or mod_wsgi take the
entry point :mod:`mailtrack.wsgi` (``mailtrack.wsgi:application``), which is
configured from the environment by :mod:`mailtrack.service`.

This module only translates between WSGI and :class:`~mailtrack.http.endpoints.Endpoints`;
it knows nothing of configuration or wiring (dependencies point inward).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mailtrack.http.auth import error
from mailtrack.http.endpoints import Endpoints
from mailtrack.http.messages import MAX_BODY, Request, Response, too_large
from mailtrack.http.v2_api import PREFIX as V2_PREFIX
from mailtrack.http.v2_api import too_large as v2_too_large

__all__ = ["MAX_BODY", "ApiHandler", "StartResponse", "WsgiApp"]


StartResponse = Callable[..., Any]
#: An API module's entry point (``SettingsApi.handle``...): its answer for a request, or None when the path is not its.
ApiHandler = Callable[[Request], "Response | None"]
#: Paths below these are API paths: their refusals are JSON, never the tracking endpoints' pages.
API_PREFIXES = ("/v3/", "/v1/")


class WsgiApp:
    """A WSGI callable around :class:`~mailtrack.http.endpoints.Endpoints` and the API modules in ``apis``.

    Each API handler is asked in turn; the first that answers (not None) wins,
    and a request none of them takes goes to the tracking endpoints.
    """

    def __init__(self, endpoints: Endpoints, apis: Sequence[ApiHandler] = (), *, access_log: bool = False) -> None:
        self.endpoints = endpoints
        self.apis = tuple(apis)
        self.access_log = access_log

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter() if self.access_log else 0.0
        response = self.respond(environ)
        start_response(f"{response.status} {response.reason}", response.safe_headers)
        if self.access_log:
            _log_access(environ, response, time.perf_counter() - started)
        # HEAD: the headers of the GET, never a body (one would desynchronize a keep-alive connection).
        return [b""] if environ.get("REQUEST_METHOD", "GET").upper() == "HEAD" else [response.body]

    def respond(self, environ: dict[str, Any]) -> Response:
        refused = too_large(environ.get("CONTENT_LENGTH"))
        if refused is not None:
            path = environ.get("PATH_INFO", "")
            if self.apis and path.startswith(V2_PREFIX):  # v2's error shape, in the format the path asks for
                return v2_too_large(path)
            if self.apis and path.startswith(API_PREFIXES):
                return error(413, f"the request body is larger than {MAX_BODY} bytes")
            return refused
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        path = _text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        headers = {
            key[5:].replace("_", "-").lower(): _text(value) for key, value in environ.items() if key.startswith("HTTP_")
        }
        # PEP 3333 keeps these two out of HTTP_*: without them no handler could tell a form body from another
        for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
            if environ.get(key):
                headers[name] = _text(environ[key])
        request = Request(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=path,
            query=environ.get("QUERY_STRING", ""),
            headers=headers,
            remote_addr=environ.get("REMOTE_ADDR"),
            body=body,
        )
        for api in self.apis:
            answer = api(request)
            if answer is not None:
                return answer
        return self.endpoints.handle(request)


access_log = logging.getLogger("mailtrack.access")
#: A path segment this long is a token (it names a recipient and a message): logged as its first characters only.
_TOKEN_LENGTH = 24


def _log_access(environ: dict[str, Any], response: Response, seconds: float) -> None:
    """One line for the request: address, method, path with tokens shortened (no query string: it may name
    recipients), status, body bytes, time, user agent. Never a header that could carry a key."""
    path = "/".join(segment if len(segment) < _TOKEN_LENGTH else segment[:8] + "..."
                    for segment in _text(environ.get("PATH_INFO", "")).split("/"))
    query = "?..." if environ.get("QUERY_STRING") else ""
    agent = _text(environ.get("HTTP_USER_AGENT", ""))[:200].replace('"', "'")
    line = (f'{environ.get("REMOTE_ADDR", "-")} "{environ.get("REQUEST_METHOD", "GET")} {path}{query}" '
            f'{response.status} {len(response.body)} {seconds * 1000:.1f}ms "{agent}"')
    access_log.info("%s", line.translate(_CONTROL))


_CONTROL = {code: "?" for code in (*range(32), 127)}


def _text(value: str) -> str:
    """A path or header value as text: PEP 3333 hands over bytes as Latin-1; clients send UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that did not follow PEP 3333: take the text as it is
        return value

