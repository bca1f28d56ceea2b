"""Machine verdicts in the sans-IO endpoints: every event, before privacy mode; the honeypot; RFC 8058 against scanners.

Requests are built by hand and answered in process; events go through a real
Recorder to a real SQLite store (which keeps ``machine``) and to a callback
(which sees ``machine_reasons``; storing them is the store's business).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.helpers import BASE_URL, make_tracker

import mailtrack
from mailtrack.core.rewrite.honeypot import HONEYPOT_INDEX
from mailtrack.delivery.privacy import Privacy
from mailtrack.delivery.recorder import Recorder
from mailtrack.events import CallbackSink, TrackingEvent
from mailtrack.exceptions import ConfigurationError
from mailtrack.http.endpoints import Endpoints, Request, Response
from mailtrack.storage.sqlite import SQLiteStore

GMAIL = {"user-agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"}
SAFE_LINKS = {"user-agent": "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/57.0.2987.133 "
                            "Safari/537.36"}
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
           "accept-language": "en"}
ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "events.sqlite")
    yield store
    store.close()


@pytest.fixture
def seen() -> list[TrackingEvent]:
    return []


def recorder_for(store: SQLiteStore, seen: list[TrackingEvent], privacy: Privacy | None = None) -> Recorder:
    return Recorder(store, [CallbackSink(seen.append)], retry_interval=0.05, privacy=privacy or Privacy())


@pytest.fixture
def endpoints(tracker: mailtrack.Tracker, store: SQLiteStore, seen: list[TrackingEvent]) -> Iterator[Endpoints]:
    recorder = recorder_for(store, seen)
    yield Endpoints(tracker, recorder)
    recorder.close()


def url(tracker: mailtrack.Tracker, kind: str, **kwargs: object) -> str:
    kwargs.setdefault("message_id", "msg-1")
    kwargs.setdefault("recipient", "ann@example.com")
    if kind == "click":
        kwargs.setdefault("url", "https://example.com/page")
    full = tracker.tracking_url(kind, **kwargs)  # type: ignore[arg-type]
    assert full.startswith(BASE_URL + "/")
    return full[len(BASE_URL):]


def settle(endpoints: Endpoints) -> None:
    """Close the recorder: the callback sinks run on a thread of their own, and have all run once it is closed."""
    assert endpoints.recorder is not None
    endpoints.recorder.close()


def ask(endpoints: Endpoints, target: str, method: str = "GET", headers: dict[str, str] | None = None,
        remote: str = "203.0.113.5", body: bytes = b"") -> Response:
    return endpoints.handle(Request(method, target, headers=headers or {}, remote_addr=remote, body=body))


def test_a_gmail_proxy_open_and_a_safe_links_click(endpoints: Endpoints, tracker: mailtrack.Tracker,
                                                   store: SQLiteStore, seen: list[TrackingEvent]) -> None:
    assert ask(endpoints, url(tracker, "open"), headers=GMAIL, remote="66.249.84.1").status == 200
    assert ask(endpoints, url(tracker, "click"), headers=SAFE_LINKS, remote="40.107.218.12").status == 302
    assert ask(endpoints, url(tracker, "click"), headers=BROWSER).status == 302
    assert [(e.event_type, e.machine) for e in store.events()] == [
        ("opened", "image_proxy"), ("clicked", "link_scanner"), ("clicked", None)]
    settle(endpoints)
    assert [bool(e.machine_reasons) for e in seen] == [True, True, False]
    assert "GoogleImageProxy" in seen[0].machine_reasons[0] and "40.107.0.0/16" in seen[1].machine_reasons[0]


def test_the_verdict_sees_the_request_before_privacy_mode(tracker: mailtrack.Tracker, store: SQLiteStore,
                                                          seen: list[TrackingEvent]) -> None:
    recorder = recorder_for(store, seen, Privacy(ip="truncate", user_agent="none"))
    try:
        endpoints = Endpoints(tracker, recorder)
        ask(endpoints, url(tracker, "click"), headers=SAFE_LINKS, remote="40.107.218.12")
        ask(endpoints, url(tracker, "open"), headers=GMAIL, remote="66.249.84.1")
    finally:
        recorder.close()
    [click, opened] = store.events()
    assert (click.ip, click.user_agent, click.machine) == ("40.107.218.0", None, "link_scanner")
    assert (opened.ip, opened.user_agent, opened.machine) == ("66.249.84.0", None, "image_proxy")
    assert not any("40.107.218.12" in reason for reason in seen[0].machine_reasons)


def test_the_client_address_behind_a_trusted_proxy(tracker: mailtrack.Tracker, store: SQLiteStore,
                                                   seen: list[TrackingEvent]) -> None:
    recorder = recorder_for(store, seen)
    try:
        endpoints = Endpoints(tracker, recorder, trusted_proxies=["127.0.0.1"])
        ask(endpoints, url(tracker, "click"), headers={**BROWSER, "x-forwarded-for": "40.107.218.12"},
            remote="127.0.0.1")
        ask(endpoints, url(tracker, "click"), headers={**BROWSER, "x-forwarded-for": "40.107.218.12"},
            remote="198.51.100.1")  # not a trusted proxy: its header is ignored
    finally:
        recorder.close()
    assert [e.machine for e in store.events()] == ["link_scanner", None]


def test_the_honeypot(endpoints: Endpoints, tracker: mailtrack.Tracker, store: SQLiteStore,
                      seen: list[TrackingEvent]) -> None:
    target = tracker.honeypot_url(message_id="msg-1", recipient="ann@example.com")[len(BASE_URL):]
    for method in ("GET", "HEAD"):
        response = ask(endpoints, target, method, headers=BROWSER)
        assert response.status == 204 and response.body == b""
        assert "location" not in {name.lower() for name, _ in response.headers}  # never a redirect
    [event] = store.events()  # the GET only
    assert (event.event_type, event.machine, event.link_index) == ("clicked", "honeypot", HONEYPOT_INDEX)
    settle(endpoints)
    assert "honeypot" in seen[0].machine_reasons[0]
    # a real link of the same message is still a redirect, and a person's
    assert ask(endpoints, url(tracker, "click"), headers=BROWSER).status == 302


def test_honeypot_links_from_a_rewrite_are_answered_so(tracker: mailtrack.Tracker, store: SQLiteStore,
                                                       seen: list[TrackingEvent]) -> None:
    honeypot = make_tracker(honeypot=True)
    html = honeypot.rewrite_html('<p><a href="https://example.com/">x</a></p>', message_id="m", recipient="r@x").html
    found = html.split('<a href="')[-1].split('"')[0]
    recorder = recorder_for(store, seen)
    try:
        response = ask(Endpoints(honeypot, recorder), found[len(BASE_URL):], headers=BROWSER)
    finally:
        recorder.close()
    assert response.status == 204 and [e.machine for e in store.events()] == ["honeypot"]


def test_a_scanner_never_unsubscribes_without_rfc_8058s_body(endpoints: Endpoints, tracker: mailtrack.Tracker,
                                                             store: SQLiteStore) -> None:
    target = url(tracker, "unsubscribe")
    # a scanner's GET: the confirmation page, nothing recorded (as for anyone)
    page = ask(endpoints, target, headers=SAFE_LINKS, remote="40.107.218.12")
    assert page.status == 200 and b'<form method="post">' in page.body
    # its POST without the body, or a prefetch's, or a HEAD-shaped scanner: the page again, nothing recorded
    for headers, remote in ((SAFE_LINKS, "40.107.218.12"), ({**BROWSER, "sec-purpose": "prefetch"}, "203.0.113.9"),
                            ({"user-agent": "python-requests/2.31.0"}, "203.0.113.9"), ({}, "203.0.113.9")):
        refused = ask(endpoints, target, "POST", headers={**headers, **FORM}, remote=remote, body=b"")
        assert refused.status == 200 and b'<form method="post">' in refused.body
        assert b"will no longer receive" not in refused.body
    assert store.events() == []
    # RFC 8058's one-click POST is honoured from anyone (Gmail's and Yahoo's servers send it), and says who sent it
    done = ask(endpoints, target, "POST", headers={**SAFE_LINKS, **FORM}, remote="40.107.218.12", body=ONE_CLICK)
    assert done.status == 200 and b"will no longer receive" in done.body
    # a person's POST without the body (an old form) still unsubscribes
    assert b"will no longer receive" in ask(endpoints, target, "POST", headers={**BROWSER, **FORM}).body
    assert [(e.event_type, e.machine) for e in store.events()] == [("unsubscribed", "link_scanner"),
                                                                   ("unsubscribed", None)]


def test_scanner_post_refused_without_a_recorder_too(tracker: mailtrack.Tracker) -> None:
    endpoints = Endpoints(tracker)
    refused = ask(endpoints, url(tracker, "unsubscribe"), "POST", headers=SAFE_LINKS, remote="40.107.218.12")
    assert b"will no longer receive" not in refused.body


def test_classification_off(tracker: mailtrack.Tracker, store: SQLiteStore, seen: list[TrackingEvent]) -> None:
    recorder = recorder_for(store, seen)
    try:
        endpoints = Endpoints(tracker, recorder, classifier=None)
        ask(endpoints, url(tracker, "open"), headers=GMAIL, remote="66.249.84.1")
        done = ask(endpoints, url(tracker, "unsubscribe"), "POST", headers=SAFE_LINKS, remote="40.107.218.12")
        assert b"will no longer receive" in done.body  # as before the classifier: any POST unsubscribes
    finally:
        recorder.close()
    assert [(e.machine, e.machine_reasons) for e in seen] == [(None, ()), (None, ())]
    with pytest.raises(ConfigurationError, match="classifier"):
        Endpoints(tracker, classifier="on")  # type: ignore[arg-type]


def test_timing_uses_the_signing_time(store: SQLiteStore, seen: list[TrackingEvent]) -> None:
    now = [1_700_000_000.0]
    tracker = make_tracker(clock=lambda: now[0])
    recorder = recorder_for(store, seen)
    try:
        endpoints = Endpoints(tracker, recorder, clock=lambda: now[0])
        old_chrome = {"user-agent": SAFE_LINKS["user-agent"], "accept-language": "en"}
        target = url(tracker, "click", issued_at=now[0])
        now[0] += 3  # three seconds after signing, an old Chrome: two weak signals
        ask(endpoints, target, headers=old_chrome)
        now[0] += 3600  # an hour later, the same agent: one weak signal, a person
        ask(endpoints, target, headers=old_chrome)
    finally:
        recorder.close()
    assert [e.machine for e in store.events()] == ["link_scanner", None]
    assert "3 s after signing" in seen[0].machine_reasons[0]
