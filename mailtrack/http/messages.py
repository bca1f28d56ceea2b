"""An HTTP request and response as plain values: what the sans-IO endpoints take and give.

No server type leaks past this module: the WSGI adapter (and any future ASGI
or framework adapter) builds a :class:`Request` and writes out a
:class:`Response`, so the endpoints, the router and the pages are tested
without a socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["MAX_BODY", "Request", "Response", "routed_path", "too_large"]

#: Request bodies above this many bytes are refused unread (an unsubscribe POST is a few dozen).
MAX_BODY = 64 * 1024


def routed_path(path: str) -> str:
    """``path`` with a run of leading slashes as one (``//healthz`` is ``/healthz``), as waitress gives
    ``PATH_INFO``: so every server routes a request alike (uvicorn, gunicorn and others pass ``//`` through).

    Only the path's start: ``/a//b`` is left alone (a token may hold anything). Safe because a request path is
    only ever matched against our own routes, never echoed into a ``Location``: ``//evil.com/x`` becomes the
    path ``/evil.com/x``, which no route takes (a 404), never a redirect to ``evil.com``.
    """
    return "/" + path.lstrip("/") if path.startswith("//") else path


@dataclass(frozen=True)
class Request:
    """What the endpoints need from an HTTP request; ``headers`` keys are lowercase."""

    method: str
    path: str  # decoded path, e.g. "/c/WyJ..."
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    remote_addr: str | None = None
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    """A status, its headers in order, and the body (empty for ``HEAD``: the adapter sends none then either)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def reason(self) -> str:
        """The reason phrase of the status line (``"Found"`` for 302)."""
        return _REASONS.get(self.status, "")

    @property
    def safe_headers(self) -> list[tuple[str, str]]:
        """The headers with any CR, LF or NUL removed: every adapter's last guard against response splitting."""
        return [(name, value.translate(_UNSAFE)) for name, value in self.headers]


def too_large(content_length: object) -> Response | None:
    """The 413 answer when a declared body exceeds :data:`MAX_BODY` (checked before reading it), else None."""
    try:
        length = int(content_length or 0)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        length = 0
    if length > MAX_BODY:
        return Response(413, [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return None


_UNSAFE = {13: None, 10: None, 0: None}


_REASONS = {200: "OK", 302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large", 415: "Unsupported Media Type",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable"}
