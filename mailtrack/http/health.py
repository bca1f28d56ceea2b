"""``GET /healthz``: whether this server can keep what it answers, for load balancers and monitoring (sans-IO).

Answers ``{"status": ..., "store": {"ok", "error"}, "spool": {"events", "bytes", "full"}, "webhooks":
{"backlog"}, "lost": n}``. ``status`` is ``ok`` (the store takes events), ``degraded`` (the store
fails but events go to the spool, so nothing answered is lost: still ``200``, keep sending traffic)
or ``failing`` (``503``: the spool is full or cannot be written, events are being lost and counted
in ``lost``). Nothing in it is secret (no paths, keys or addresses), so it needs no key; it is
never cached.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

from mailtrack.http.messages import Request, Response

__all__ = ["PATH", "HealthCheck", "HealthReport"]

PATH = "/healthz"


@dataclass(frozen=True)
class HealthReport:
    """What :class:`HealthCheck` answers; made by the service's probe."""

    store_ok: bool
    store_error: str | None = None
    spool_events: int = 0  #: events waiting in the spool
    spool_bytes: int = 0
    spool_full: bool = False
    webhook_backlog: int | None = None
    lost: int = 0

    @property
    def status(self) -> str:
        """``ok``, ``degraded`` (the spool holds what the store does not take) or ``failing`` (events are lost now:
        the spool is full or unwritable)."""
        if self.spool_full:
            return "failing"
        return "ok" if self.store_ok and not self.spool_events and not self.spool_bytes else "degraded"

    def to_dict(self) -> dict[str, object]:
        """The JSON body."""
        fields = asdict(self)
        return {
            "status": self.status,
            "store": {"ok": fields["store_ok"], "error": fields["store_error"]},
            "spool": {"events": fields["spool_events"], "bytes": fields["spool_bytes"], "full": fields["spool_full"]},
            "webhooks": {"backlog": fields["webhook_backlog"]},
            "lost": fields["lost"],
        }


class HealthCheck:
    """Answers ``{prefix}/healthz`` from ``probe()``; other paths are not its (None)."""

    def __init__(self, probe: Callable[[], HealthReport], *, prefix: str = "") -> None:
        self.probe = probe
        self.path = prefix.rstrip("/") + PATH

    def handle(self, request: Request) -> Response | None:
        if request.path != self.path:
            return None
        head = request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            return _json(405, {"errors": [{"field": None, "message": "use GET"}]}, head=head, allow=True)
        report = self.probe()
        return _json(503 if report.status == "failing" else 200, report.to_dict(), head=head)


def _json(status: int, body: object, *, head: bool, allow: bool = False) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
               ("Cache-Control", "no-store")]
    if allow:
        headers.append(("Allow", "GET, HEAD"))
    return Response(status, headers, b"" if head else data)
