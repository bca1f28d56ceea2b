"""Findings of the issue-4 review, each pinned: HEAD bodies, big bodies, the WSGI entry point from the
environment, CLI errors, max_age, header decoding, the landing page, signatures, dead-letter requeue."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest
from support.helpers import BASE_URL, make_tracker
from test_serve_http import Server, http_request, path_of

import mailtrack
from mailtrack.delivery.webhooks import sign, verify_signature
from mailtrack.http.endpoints import Endpoints
from mailtrack.http.wsgi import WsgiApp, from_environment
from mailtrack.storage.sqlite import SQLiteStore

KEYS = "older-key,newest-key"


def call(app: WsgiApp, method: str, path: str, **environ: str) -> tuple[str, dict[str, str], bytes]:
    env: dict[str, object] = {"REQUEST_METHOD": method, "PATH_INFO": path, **environ}
    setup_testing_defaults(env)
    seen: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(env, start_response))
    return str(seen["status"]), dict(seen["headers"]), body  # type: ignore[arg-type]


def test_head_never_carries_a_body_not_even_on_404() -> None:
    app = WsgiApp(Endpoints(make_tracker()))
    for path in ("/favicon.ico", "/c/forged", "/u/forged", "/o/anything"):
        status, headers, body = call(app, "HEAD", path)
        assert body == b"" and int(headers["Content-Length"]) > 0, (path, status)


def test_the_wsgi_entry_point_reads_every_option_from_the_environment(tmp_path: Path) -> None:
    landing = tmp_path / "landing.html"
    landing.write_text("<html><body><h1>Leaving us?</h1></body></html>", encoding="utf-8")
    env = {"MAILTRACK_SECRET_KEY": KEYS, "MAILTRACK_BASE_URL": BASE_URL, "MAILTRACK_DB": str(tmp_path / "e.sqlite"),
           "MAILTRACK_TRUSTED_PROXIES": "10.0.0.0/8", "MAILTRACK_MAX_AGE": "60", "MAILTRACK_LANDING": str(landing),
           "MAILTRACK_WEBHOOK": "http://127.0.0.1:9/hook", "MAILTRACK_WEBHOOK_SECRET": "s"}
    app, recorder, deliveries = from_environment(env)
    try:
        tracker = make_tracker()
        pixel = path_of(tracker.tracking_url("open", message_id="w1", recipient="r@x.example"))
        status, _, _ = call(app, "GET", pixel, REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="203.0.113.9")
        assert status.startswith("200")
        old = path_of(tracker.tracking_url("click", message_id="w1", recipient="r@x.example", url="https://x.example/",
                                           issued_at=time.time() - 3600))
        assert call(app, "GET", old)[0].startswith("404")  # MAILTRACK_MAX_AGE
        unsubscribe = path_of(tracker.tracking_url("unsubscribe", message_id="w1", recipient="r@x.example"))
        assert b"Leaving us?" in call(app, "GET", unsubscribe)[2] and b'method="post"' in call(app, "GET", unsubscribe)[2]
        store = SQLiteStore(env["MAILTRACK_DB"])
        assert [e.ip for e in store.events()] == ["203.0.113.9"]
        assert [row["target"] for row in store.outbox_rows()] == ["http://127.0.0.1:9/hook"]
    finally:
        for delivery in deliveries:
            delivery.stop()
        recorder.close()
    with pytest.raises(mailtrack.MailtrackError, match="MAILTRACK_WEBHOOK_SECRET"):
        from_environment({**env, "MAILTRACK_WEBHOOK_SECRET": ""})
    with pytest.raises(mailtrack.MailtrackError, match="max_age"):
        from_environment({**env, "MAILTRACK_MAX_AGE": "-1"})


def test_user_agent_and_referer_are_read_as_utf8(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "e.sqlite")
    recorder = mailtrack.Recorder(store)
    try:
        app = WsgiApp(Endpoints(make_tracker(), recorder))
        pixel = path_of(make_tracker().tracking_url("open", message_id="u1", recipient="r@x.example"))
        as_wsgi = "Mozilla/5.0 (café)".encode().decode("latin-1")  # what PEP 3333 hands over
        call(app, "GET", pixel, HTTP_USER_AGENT=as_wsgi, HTTP_REFERER="https://ex.example/ü".encode().decode("latin-1"))
        event = store.events()[0]
        assert (event.user_agent, event.referer) == ("Mozilla/5.0 (café)", "https://ex.example/ü")
    finally:
        recorder.close()


@pytest.mark.parametrize("value", [-1, 0, float("nan"), float("inf"), True])
def test_max_age_must_be_a_positive_number(value: float) -> None:
    with pytest.raises(mailtrack.MailtrackError, match="max_age"):
        Endpoints(make_tracker(), max_age=value)


def test_signatures_with_several_secrets_and_several_v1_values() -> None:
    body, now = b'{"type": "email.opened"}', 1_700_000_000
    old, new = sign(body, "old" * 6, now), sign(body, "new" * 6, now)  # secrets of 16+ bytes
    both = f"t={now}, v1={old.split('v1=')[1]}, v1={new.split('v1=')[1]}"  # sender rotating: two signatures
    assert verify_signature(body, both, "new" * 6, now=now) and verify_signature(body, both, ("x" * 16, "old" * 6), now=now)
    with pytest.raises(mailtrack.MailtrackError, match="does not match"):
        verify_signature(body, both, ["x" * 16, "y" * 16], now=now)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailtrack", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_cli_errors_on_bad_databases_are_one_clear_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database " * 100)
    for args in (["events", "--db", str(text)], ["stats", "--db", str(tmp_path)], ["webhooks", "--db", str(text)],
                 ["events", "--db", str(tmp_path / "missing.sqlite")]):
        proc = run_cli(*args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.startswith("mailtrack "), args
    proc = run_cli("serve", "--db", str(tmp_path / "no" / "dir" / "e.sqlite"), "--secret-key", "k", "--base-url", BASE_URL,
                   "--port", "0")
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_dead_webhook_deliveries_can_be_requeued(tmp_path: Path) -> None:
    db = tmp_path / "e.sqlite"
    store = SQLiteStore(db)
    tracker = make_tracker()
    claims = tracker.verify(tracker.tracking_url("open", message_id="d1", recipient="r@x.example"))
    from datetime import datetime, timezone

    event = store.record(mailtrack.TrackingEvent("opened", datetime.now(timezone.utc), claims.message_id, claims.recipient),
                         outbox=["https://hook.example/"])
    row = store.outbox_rows()[0]
    store.outbox_failed(row["id"], "HTTP 500", None)
    assert run_cli("webhooks", "--db", str(db)).stdout.strip() == "https://hook.example/: 0 pending, 0 delivered, 1 dead"
    proc = run_cli("webhooks", "--db", str(db), "--requeue")
    assert "requeued 1 dead delivery" in proc.stdout and "1 pending, 0 delivered, 0 dead" in proc.stdout
    assert [item.event.event_id for item in store.outbox_due(time.time() + 1)] == [event.event_id]


def test_an_oversized_body_is_refused_before_it_is_read(tmp_path: Path) -> None:
    server = Server(tmp_path / "e.sqlite", tmp_path / "logs")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(b"POST /u/x HTTP/1.1\r\nHost: t\r\nContent-Length: 200000000\r\n\r\n" + b"x" * 1024)
            reply = connection.recv(4096)  # answered without the 200 MB ever being sent
        assert reply.startswith(b"HTTP/1.1 413")
    finally:
        server.stop()


def test_serve_uses_the_landing_page_file(tmp_path: Path) -> None:
    landing = tmp_path / "landing.html"
    landing.write_text("<html><body><p>Sorry to see you go</p></body></html>", encoding="utf-8")
    server = Server(tmp_path / "e.sqlite", tmp_path / "logs", "--landing", str(landing))
    try:
        url = make_tracker().tracking_url("unsubscribe", message_id="l1", recipient="r@x.example")
        reply = http_request(server.port, "GET", path_of(url))
        assert reply.status == 200 and b"Sorry to see you go" in reply.body and b'<form method="post">' in reply.body
    finally:
        server.stop()
