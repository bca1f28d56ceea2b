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

from mailtrack.delivery.privacy import Privacy
from mailtrack.http.auth import error
from mailtrack.http.endpoints import Endpoints
from mailtrack.http.messages import MAX_BODY, Request, Response, routed_path, too_large
from mailtrack.http.v2_api import PREFIX as V2_PREFIX
from mailtrack.http.v2_api import refusal as v2_refusal

__all__ = ["MAX_BODY", "ApiHandler", "StartResponse", "WsgiApp", "log_access", "text"]


StartResponse = Callable[..., Any]
#: An API module's entry point (``SettingsApi.handle``...): its answer for a request, or None when the path is not its.
ApiHandler = Callable[[Request], "Response | None"]
#: Paths below these are API paths: their refusals are JSON, never the tracking endpoints' pages.
API_PREFIXES = ("/v3/", "/v1/")
#: Single API paths outside those prefixes.
API_PATHS = frozenset({"/v3", "/v1", "/openapi.json"})
_TOO_LARGE = f"the request body is larger than {MAX_BODY} bytes"


class WsgiApp:
    """A WSGI callable around :class:`~mailtrack.http.endpoints.Endpoints` and the API modules in ``apis``.

    Each API handler is asked in turn; the first that answers (not None) wins,
    and a request none of them takes goes to the tracking endpoints.
    """

    def __init__(self, endpoints: Endpoints, apis: Sequence[ApiHandler] = (), *, access_log: bool = False,
                 privacy: Privacy | None = None) -> None:
        self.endpoints = endpoints
        self.apis = tuple(apis)
        self.access_log = access_log
        #: privacy mode for the access log's address and user agent: the log keeps no more than the events
        self.privacy = privacy if privacy is not None else Privacy()

    def log_access(self, address: str | None, method: str, path: str, query: bool, response: Response, seconds: float,
                   agent: str) -> None:
        """:func:`log_access` with the address and user agent reduced as privacy mode reduces the events'."""
        log_access(self.privacy.reduce_ip(address), method, path, query, response, seconds,
                   self.privacy.reduce_user_agent(agent) or "")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter() if self.access_log else 0.0
        try:
            response = self.respond(environ)
        except Exception:  # a bug, or a stored value the code did not expect: a 500, never a hung or dropped request
            response = self.internal_error(environ.get("REQUEST_METHOD", "GET"), text(environ.get("PATH_INFO", "")))
        start_response(f"{response.status} {response.reason}", response.safe_headers)
        if self.access_log:
            self.log_access(environ.get("REMOTE_ADDR"), environ.get("REQUEST_METHOD", "GET"),
                       text(environ.get("PATH_INFO", "")), bool(environ.get("QUERY_STRING")), response,
                       time.perf_counter() - started, text(environ.get("HTTP_USER_AGENT", "")))
        # HEAD: the headers of the GET, never a body (one would desynchronize a keep-alive connection).
        return [b""] if environ.get("REQUEST_METHOD", "GET").upper() == "HEAD" else [response.body]

    def internal_error(self, method: str, path: str) -> Response:
        """The 500 for a request whose answer raised (called in the ``except``): logged with its traceback and the
        path's tokens shortened, answered in the path's own shape."""
        log.exception("mailtrack: internal error answering %s %s", method, _shortened(path))
        return self.refusal(path, 500, "internal error") or Response(
            500, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "15"),
                  ("Cache-Control", "no-store")], b"internal error\n")

    def refusal(self, path: str, status: int, message: str) -> Response | None:
        """An error answer for an API ``path`` in that API's shape (v2: JSON or XML by suffix; else SendGrid's JSON).

        None when ``path`` is not an API path (or no API is served): the
        caller answers as it would for the tracking endpoints. The WSGI server
        uses this too, for the refusals it makes before the app runs (a
        chunked body over the limit, broken chunked encoding).
        """
        if not self.apis:
            return None
        if path.startswith(V2_PREFIX) or path == V2_PREFIX.rstrip("/"):
            return v2_refusal(path, status, message)
        if path.startswith(API_PREFIXES) or path in API_PATHS:
            return error(status, message)
        return None

    def server_refusal(self, wsgi_path: str, status: int, detail: str) -> Response | None:
        """:meth:`refusal` for an error the WSGI server found before calling us (``wsgi_path`` as PEP 3333 gives it).

        A 413 gets our own message (the server's names its own limit);
        other statuses keep the server's ``detail``.
        """
        return self.refusal(text(wsgi_path), status, _TOO_LARGE if status == 413 else detail)

    def respond(self, environ: dict[str, Any]) -> Response:
        """The answer to one request: an API's, else the tracking endpoints'; bodies over MAX_BODY get a 413."""
        path = routed_path(text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")))
        refused = too_large(environ.get("CONTENT_LENGTH"))
        if refused is not None:
            return self.refusal(path, 413, _TOO_LARGE) or refused
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        stream = environ["wsgi.input"]
        if length >= 0:
            body = stream.read(length) if length > 0 else b""
        elif environ.get("wsgi.input_terminated"):  # a chunked body, no Content-Length: read one byte past the limit
            body = stream.read(MAX_BODY + 1)
        else:  # no length and a stream that may not end: no body (PEP 3333)
            body = b""
        if len(body) > MAX_BODY:  # a chunked body over the limit: refused as a declared one is
            return self.refusal(path, 413, _TOO_LARGE) or Response(413, [("Content-Type", "text/plain"),
                                                                          ("Content-Length", "0")])
        headers = {
            key[5:].replace("_", "-").lower(): text(value) for key, value in environ.items() if key.startswith("HTTP_")
        }
        # PEP 3333 keeps these two out of HTTP_*: without them the APIs never saw a body's Content-Type.
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = text(environ[key])

        request = Request(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=path,
            query=environ.get("QUERY_STRING", ""),
            headers=headers,
            remote_addr=environ.get("REMOTE_ADDR"),
            body=body,
        )
        return self.answer(request)

    def answer(self, request: Request) -> Response:
        """The answer to a request read whole (its body within :data:`MAX_BODY`): an API's, else the endpoints'."""
        path = request.path
        for api in self.apis:
            answer = api(request)
            if answer is not None:
                return answer
        if path == V2_PREFIX.rstrip("/") and self.apis:  # /apiv2 alone: v2's own "no such method", not a page
            refused = self.refusal(path, 404, "no such API method")
            if refused is not None:
                return refused
        return self.endpoints.handle(request)


access_log = logging.getLogger("mailtrack.access")
#: A path segment this long is a token (it names a recipient and a message): logged as its first characters only.
_TOKEN_LENGTH = 24


log = logging.getLogger("mailtrack")


def _shortened(path: str) -> str:
    """``path`` with each token-long segment cut to its first characters (a token names a recipient)."""
    return "/".join(segment if len(segment) < _TOKEN_LENGTH else segment[:8] + "..." for segment in path.split("/"))


def log_access(address: str | None, method: str, path: str, query: bool, response: Response, seconds: float,
               agent: str) -> None:
    """One line for the request: address, method, path with tokens shortened (no query string, only whether
    there was one: it may name recipients), status, body bytes, time, user agent. Never a header that could
    carry a key. Used by the WSGI and the ASGI app alike."""
    agent = agent[:200].replace('"', "'")
    line = (f'{address or "-"} "{method} {_shortened(path)}{"?..." if query else ""}" '
            f'{response.status} {len(response.body)} {seconds * 1000:.1f}ms "{agent}"')
    access_log.info("%s", line.translate(_CONTROL))


_CONTROL = {code: "?" for code in (*range(32), 127)}


def text(value: str) -> str:
    """A path or header value as text: PEP 3333 hands over bytes as Latin-1; clients send UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that did not follow PEP 3333: take the text as it is
        return value

