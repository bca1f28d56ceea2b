"""Privacy mode end to end: a real ``mailtrack serve`` over loopback, a real webhook receiver, the real CLI.

Each test runs on SQLite and on the session's PostgreSQL (``--db postgresql://...``).
A request comes from 203.0.113.77 or 2001:db8:85a3:8d3:1319:8a2e:370:7348
(``X-Forwarded-For`` through ``--trusted-proxy 127.0.0.1``) with a full
browser or mail-client user agent; the store, the Events API, ``mailtrack
events`` and the signed webhook must all hold the truncated address and the
family, and the full values must be nowhere in the database. ``mailtrack
purge`` and ``forget`` run as subprocesses, as a user runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from support.helpers import wait_until
from support.stores import Backend
from test_events_api_http import api, key_for
from test_serve_http import Receiver, Server, path_of, receivers, serve  # noqa: F401  (the fixtures)

import mailtrack
from mailtrack.delivery.webhooks import verify_signature
from mailtrack.events import TrackingEvent

SECRET = "s3cret-0123456789"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
          "Safari/537.36")
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)"
V4, V6 = "203.0.113.77", "2001:db8:85a3:8d3:1319:8a2e:370:7348"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailtrack", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_serve_stores_and_sends_only_the_truncated_address_and_the_family(
        serve: Callable[..., Server], receivers: Callable[..., Receiver],  # noqa: F811
        tracker: mailtrack.Tracker,
        backend: Backend) -> None:
    store = backend.open()  # first: on PostgreSQL it makes the schema the server's URL names
    receiver = receivers()
    server = serve("--privacy-ip", "truncate", "--privacy-user-agent", "family", "--trusted-proxy", "127.0.0.1",
                   "--webhook", receiver.url, "--webhook-secret", SECRET, db=backend.serve_db)
    click = tracker.tracking_url("click", message_id="m-priv", recipient="ann@example.com",
                                 url="https://x.example/w", link_index=0)
    pixel = tracker.tracking_url("open", message_id="m-priv", recipient="ann@example.com")
    assert server.get(path_of(click), headers={"User-Agent": CHROME, "X-Forwarded-For": V4}).status == 302
    assert server.get(path_of(pixel), headers={"User-Agent": OUTLOOK, "X-Forwarded-For": V6}).status == 200

    events = sorted(store.events(), key=lambda e: e.event_type.value)
    assert [(e.event_type.value, e.ip, e.user_agent) for e in events] == [
        ("clicked", "203.0.113.0", "Chrome"), ("opened", "2001:db8:85a3::", "Outlook")]
    dump = backend.dump()
    assert V4 not in dump and "8a2e" not in dump and "Windows NT" not in dump

    delivered = wait_until(lambda: receiver.delivered() if len(receiver.delivered()) == 2 else None, timeout=30,
                           what="both webhooks delivered")
    sent = sorted((verify_signature(r.body, r.headers["Mailtrack-Signature"], SECRET)["data"] for r in delivered),
                  key=lambda data: data["event_type"])
    assert [(d["ip"], d["user_agent"]) for d in sent] == [("203.0.113.0", "Chrome"), ("2001:db8:85a3::", "Outlook")]
    assert all(V4 not in r.body.decode() and "Windows NT" not in r.body.decode() for r in delivered)

    status, body = api(server, "/v1/events", key_for(store, "events.read"))
    assert status == 200
    assert sorted((e["ip"], e["user_agent"]) for e in body["data"]) == [  # type: ignore[union-attr]
        ("2001:db8:85a3::", "Outlook"), ("203.0.113.0", "Chrome")]
    listed = run("events", "--db", backend.serve_db, "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted((json.loads(line)["ip"], json.loads(line)["user_agent"]) for line in listed.stdout.splitlines()) == [
        ("2001:db8:85a3::", "Outlook"), ("203.0.113.0", "Chrome")]


def test_serve_reads_privacy_from_its_variables_and_keeps_nothing_with_none(
        serve: Callable[..., Server], tracker: mailtrack.Tracker, backend: Backend) -> None:  # noqa: F811
    store = backend.open()
    server = serve("--trusted-proxy", "127.0.0.1", db=backend.serve_db,
                   env={"MAILTRACK_PRIVACY_IP": "none", "MAILTRACK_PRIVACY_USER_AGENT": "none"})
    pixel = tracker.tracking_url("open", message_id="m-none", recipient="bob@example.com")
    assert server.get(path_of(pixel), headers={"User-Agent": CHROME, "X-Forwarded-For": V4}).status == 200
    (event,) = store.events()
    assert (event.ip, event.user_agent) == (None, None)


def test_serve_default_keeps_the_full_values_as_before(serve: Callable[..., Server],  # noqa: F811
                                                       tracker: mailtrack.Tracker,
                                                       backend: Backend) -> None:
    store = backend.open()
    server = serve("--trusted-proxy", "127.0.0.1", db=backend.serve_db)
    pixel = tracker.tracking_url("open", message_id="m-full", recipient="bob@example.com")
    assert server.get(path_of(pixel), headers={"User-Agent": CHROME, "X-Forwarded-For": V4}).status == 200
    (event,) = store.events()
    assert (event.ip, event.user_agent) == (V4, CHROME)


def test_serve_refuses_bad_privacy_settings_in_one_line(backend: Backend) -> None:
    for args, named in ((("--privacy-ip", "mask"), "--privacy-ip"), (("--privacy-user-agent", "os"),
                                                                     "--privacy-user-agent"),
                        (("--purge-after", "90"), "--purge-after")):
        proc = run("serve", "--db", backend.serve_db, "--secret-key", "k", "--base-url", "https://t.example",
                   "--port", "0", *args)
        assert proc.returncode != 0 and named in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def opened(when: datetime, recipient: str, message_id: str = "m1") -> TrackingEvent:
    return TrackingEvent("opened", when, message_id, recipient)


def test_purge_and_forget_commands(backend: Backend) -> None:
    store = backend.open()
    now = datetime.now(timezone.utc)
    store.record_many([opened(now - timedelta(days=100), "old@example.com"),
                       opened(now - timedelta(days=40), "mid@example.com"),
                       opened(now, "Ann@Example.com"), opened(now, "ann@example.com", "m2"),
                       opened(now, "bob@example.com")], ["https://hook.example/"])

    proc = run("purge", "--db", backend.serve_db, "--older-than", "90d")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("purged 1 event, 1 webhook delivery and 1 first-event key older than ")
    proc = run("purge", "--db", backend.serve_db, "--older-than", "30d", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {k: v for k, v in json.loads(proc.stdout).items() if k != "before"} == {"events": 1, "outbox": 1, "firsts": 1}
    assert sorted(e.recipient or "" for e in store.events()) == ["Ann@Example.com", "ann@example.com", "bob@example.com"]

    proc = run("forget", "--db", backend.serve_db, "--recipient", "ANN@example.COM")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "forgot ANN@example.COM: deleted 2 events, 2 webhook deliveries and 2 first-event keys\n"
    assert [e.recipient for e in store.events()] == ["bob@example.com"]
    proc = run("forget", "--db", backend.serve_db, "--recipient", "nobody@example.com", "--json")
    assert json.loads(proc.stdout) == {"events": 0, "outbox": 0, "firsts": 0, "recipient": "nobody@example.com"}


def test_purge_and_forget_refuse_bad_input_cleanly(backend: Backend, tmp_path: Any) -> None:
    backend.open()
    cases: list[tuple[tuple[str, ...], int, str]] = [
        (("purge", "--db", backend.serve_db, "--older-than", "90"), 2, "not a duration"),
        (("purge", "--db", backend.serve_db, "--older-than=-1d"), 2, "not a duration"),
        (("purge", "--db", backend.serve_db, "--older-than", "0h"), 2, "more than zero"),
        (("purge", "--db", backend.serve_db), 2, "--older-than"),
        (("forget", "--db", backend.serve_db, "--recipient", "  "), 2, "recipient"),
        (("forget", "--db", backend.serve_db), 2, "--recipient"),
        (("purge", "--older-than", "90d"), 2, "--db"),
        (("forget", "--db", str(tmp_path / "missing.sqlite"), "--recipient", "a@x"), 1, "no event database"),
    ]
    for args, status, says in cases:
        proc = run(*args)
        assert proc.returncode == status, (args, proc.stderr)
        assert says in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr  # argparse's usage line + the error


def test_serve_purges_old_events_in_the_background(serve: Callable[..., Server],  # noqa: F811
                                                   tracker: mailtrack.Tracker,
                                                   backend: Backend) -> None:
    store = backend.open()
    now = datetime.now(timezone.utc)
    store.record_many([opened(now - timedelta(days=100), "old@example.com"), opened(now, "new@example.com")])
    server = serve("--purge-after", "90d", db=backend.serve_db)
    wait_until(lambda: store.count() == 1 or None, timeout=30, what="the old event purged at start")
    assert [e.recipient for e in store.events()] == ["new@example.com"]
    assert server.get(path_of(tracker.tracking_url("open", message_id="m9", recipient="x@example.com"))).status == 200
    assert store.count() == 2  # new events are kept


def test_the_access_log_keeps_no_more_than_the_events(serve: Callable[..., Server],  # noqa: F811
                                                      tracker: mailtrack.Tracker) -> None:
    for server_kind in ("uvicorn", "waitress"):
        server = serve("--access-log", "--server", server_kind, "--privacy-ip", "truncate", "--privacy-user-agent",
                       "family")
        pixel = tracker.tracking_url("open", message_id="m-log", recipient="ann@example.com")
        assert server.get(path_of(pixel), headers={"User-Agent": CHROME}).status == 200
        line = wait_until(lambda server=server: [line for line in server.stderr().splitlines() if '"GET /o/' in line],
                          timeout=10, what="the access log line")[0]
        assert line.split("mailtrack.access INFO ", 1)[1].startswith("127.0.0.0 ") and line.endswith('"Chrome"'), line
        assert "127.0.0.1" not in line and "Windows NT" not in line, line
        server.stop()
