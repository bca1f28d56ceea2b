"""An HTTP request and response as plain values: what the sans-IO endpoints take and give.

No server type leaks past this module: the WSGI adapter (and any future ASGI
or framework adapter) builds a :class:`Request` and writes out a
:class:`Response`, so the endpoints, the router and the pages are tested
without a socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Request", "Response"]


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


_REASONS = {200: "OK", 302: "Found", 404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large"}
