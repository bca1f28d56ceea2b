"""/healthz's report (mailtrack.http.health), sans-IO: the store and the writer told apart, the status from both."""

from __future__ import annotations

import json

import pytest

from mailtrack.http.health import STALL_SECONDS, HealthCheck, HealthReport
from mailtrack.http.messages import Request


@pytest.mark.parametrize(("report", "status", "http"), [
    (HealthReport(store_ok=True), "ok", 200),
    # the writer is refused (a lock held elsewhere) or stopped: the store itself is fine, nothing is lost
    (HealthReport(store_ok=True, writer_ok=False, writer_error="database is locked", spool_bytes=10), "degraded", 200),
    (HealthReport(store_ok=True, writer_queued=3, writer_oldest_wait=STALL_SECONDS + 1), "degraded", 200),
    (HealthReport(store_ok=True, writer_queued=3, writer_oldest_wait=0.01), "ok", 200),  # a commit under way
    # the store does not answer reads: the spool takes the events
    (HealthReport(store_ok=False, store_error="gone", writer_ok=False, spool_events=2), "degraded", 200),
    # events are being lost now
    (HealthReport(store_ok=True, writer_ok=False, spool_full=True, lost=4), "failing", 503),
])
def test_the_status_and_the_http_status_follow_the_store_the_writer_and_the_spool(
        report: HealthReport, status: str, http: int) -> None:
    response = HealthCheck(lambda: report).handle(Request("GET", "/healthz"))
    assert response is not None and response.status == http
    body = json.loads(response.body)
    assert body["status"] == status
    assert body["store"] == {"ok": report.store_ok, "error": report.store_error}
    assert body["writer"] == {"ok": report.writer_ok, "error": report.writer_error, "queued": report.writer_queued,
                              "oldest_wait": round(report.writer_oldest_wait, 3),
                              "stalled": report.writer_oldest_wait > STALL_SECONDS}


def test_errors_shown_to_anyone_name_no_path_or_host() -> None:
    """/healthz needs no key: the store's file, a database URL and the spool's folder are hidden from its errors."""
    from mailtrack.service import public_error

    places = ["/srv/mail/events.sqlite", "'postgresql://app:***@db.internal/mail'", "/srv/mail/events.sqlite.spool"]
    assert public_error("the SQLite store at '/srv/mail/events.sqlite' is unavailable: database is locked",
                        places) == "the SQLite store at <hidden> is unavailable: database is locked"
    assert public_error("the PostgreSQL store at 'postgresql://app:***@db.internal/mail' kept losing write races",
                        places) == "the PostgreSQL store at <hidden> kept losing write races"
    assert public_error("spool write failed: [Errno 28] No space left on device: '/srv/mail/events.sqlite.spool/x'",
                        places) == "spool write failed: [Errno 28] No space left on device: <hidden>"
    assert public_error("[Errno 13] Permission denied: '/var/other/file'", []) == "[Errno 13] Permission denied: <hidden>"
    assert public_error(None, places) is None and public_error("database is locked", places) == "database is locked"
