"""The tracking endpoints as a WSGI application (PEP 3333), for any WSGI server.

``mailtrack serve`` runs it on waitress; gunicorn, uWSGI or mod_wsgi take the
entry point :mod:`mailtrack.wsgi` (``mailtrack.wsgi:application``), which is
configured from the environment by :mod:`mailtrack.service`.

This module only translates between WSGI and :class:`~mailtrack.http.endpoints.Endpoints`;
it knows nothing of configuration or wiring (dependencies point inward).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from mailtrack.http.endpoints import Endpoints
from mailtrack.http.messages import MAX_BODY, Request, Response, too_large

__all__ = ["MAX_BODY", "Api", "StartResponse", "WsgiApp"]


StartResponse = Callable[..., Any]


class Api(Protocol):
    """An API served beside the tracking endpoints (:class:`~mailtrack.http.events_api.EventsApi`)."""

    def handles(self, path: str) -> bool:
        """Whether requests for ``path`` are this API's."""
        ...

    def handle(self, request: Request) -> Response:
        """Answer a request for one of its paths."""
        ...


class WsgiApp:
    """A WSGI callable around :class:`~mailtrack.http.endpoints.Endpoints` and the ``apis`` served beside them.

    A request goes to the first API that ``handles`` its path, else to the
    tracking endpoints (whose paths are under the tracking base URL).
    """

    def __init__(self, endpoints: Endpoints, apis: Sequence[Api] = ()) -> None:
        self.endpoints = endpoints
        self.apis = tuple(apis)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        response = self.respond(environ)
        start_response(f"{response.status} {response.reason}", response.safe_headers)
        # HEAD: the headers of the GET, never a body (one would desynchronize a keep-alive connection).
        return [b""] if environ.get("REQUEST_METHOD", "GET").upper() == "HEAD" else [response.body]

    def respond(self, environ: dict[str, Any]) -> Response:
        refused = too_large(environ.get("CONTENT_LENGTH"))
        if refused is not None:
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
        request = Request(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=path,
            query=environ.get("QUERY_STRING", ""),
            headers=headers,
            remote_addr=environ.get("REMOTE_ADDR"),
            body=body,
        )
        for api in self.apis:
            if api.handles(path):
                return api.handle(request)
        return self.endpoints.handle(request)


def _text(value: str) -> str:
    """A path or header value as text: PEP 3333 hands over bytes as Latin-1; clients send UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that did not follow PEP 3333: take the text as it is
        return value

