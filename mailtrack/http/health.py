"""``GET /healthz``: whether this server can keep what it answers, for load balancers and monitoring (sans-IO).

Answers ``{"status": ..., "store": {"ok", "error"}, "writer": {"ok", "error", "queued", "oldest_wait",
"stalled"}, "spool": {"events", "bytes", "full"}, "webhooks": {"backlog"}, "lost": n}``.

``store`` is whether the store answers this check's own read (reachable); ``writer`` is whether the events
reach it: ``ok`` (its last write succeeded and nothing waits in the spool), the last write's ``error``,
``queued`` (events waiting for it now), ``oldest_wait`` (seconds the longest-waiting one has waited) and
``stalled`` (that wait passed :data:`STALL_SECONDS`: a writer stopped or blocked on a lock, though the store
may be fine). The two were one ``store.ok``, so a stuck writer read as an unreachable store.

``status`` is ``ok`` (both fine, the spool empty), ``degraded`` (the store is unreachable, the writer fails
or stalls, or the spool holds events: nothing answered is lost, so still ``200``, keep sending traffic) or
``failing`` (``503``: the spool is full or cannot be written, events are being lost and counted in
``lost``). Nothing in it is secret (no paths, keys or addresses), so it needs no key; it is never cached.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from mailtrack.http.messages import Request, Response

__all__ = ["PATH", "STALL_SECONDS", "HealthCheck", "HealthReport"]

PATH = "/healthz"
#: Seconds an event may wait for the writer before it counts as stalled (a commit takes milliseconds; a request
#: spools its event itself after the recorder's ``write_timeout``, 10 s by default).
STALL_SECONDS = 5.0


@dataclass(frozen=True)
class HealthReport:
    """What :class:`HealthCheck` answers; made by the service's probe."""

    store_ok: bool  #: the store answered the check's own read
    store_error: str | None = None
    writer_ok: bool = True  #: the writer's last write succeeded and it is not spooling
    writer_error: str | None = None
    writer_queued: int = 0  #: events waiting for the writer now
    writer_oldest_wait: float = 0.0  #: seconds the longest-waiting of them has waited
    spool_events: int = 0  #: events waiting in the spool
    spool_bytes: int = 0
    spool_full: bool = False
    webhook_backlog: int | None = None
    lost: int = 0

    @property
    def writer_stalled(self) -> bool:
        """An event has waited for the writer longer than :data:`STALL_SECONDS`."""
        return self.writer_oldest_wait > STALL_SECONDS

    @property
    def status(self) -> str:
        """``ok``, ``degraded`` (nothing lost, but the store, the writer or the spool needs a look) or ``failing``
        (events are lost now: the spool is full or unwritable)."""
        if self.spool_full:
            return "failing"
        healthy = self.store_ok and self.writer_ok and not self.writer_stalled
        return "ok" if healthy and not self.spool_events and not self.spool_bytes else "degraded"

    def to_dict(self) -> dict[str, object]:
        """The JSON body."""
        return {
            "status": self.status,
            "store": {"ok": self.store_ok, "error": self.store_error},
            "writer": {"ok": self.writer_ok, "error": self.writer_error, "queued": self.writer_queued,
                       "oldest_wait": round(self.writer_oldest_wait, 3), "stalled": self.writer_stalled},
            "spool": {"events": self.spool_events, "bytes": self.spool_bytes, "full": self.spool_full},
            "webhooks": {"backlog": self.webhook_backlog},
            "lost": self.lost,
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
