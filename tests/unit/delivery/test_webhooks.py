"""Webhook signing and delivery (mailtrack.webhook) against a real local HTTP receiver."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.helpers import wait_until
from support.stores import Backend

from mailtrack.delivery.webhooks import SIGNATURE_HEADER, WebhookDelivery, payload, sign, verify_signature
from mailtrack.events import TrackingEvent
from mailtrack.exceptions import ConfigurationError, MailtrackError, WebhookSignatureError
from mailtrack.storage.sqlite import SQLiteStore

T0 = 1_700_000_000.0
SECRET = "whsec_test_0123456789"


def event(event_type: str = "opened", **kwargs: Any) -> TrackingEvent:
    kwargs.setdefault("timestamp", datetime.fromtimestamp(T0, timezone.utc))
    if event_type == "clicked":
        kwargs.setdefault("url", "https://example.com/")
        kwargs.setdefault("link_index", 1)
    return TrackingEvent(event_type=event_type, message_id="m1", recipient="a@x", **kwargs)


# -- signing ---------------------------------------------------------------------------------


def test_sign_and_verify_round_trip() -> None:
    e = event("clicked", metadata={"c": "spring"})
    body = payload(e)
    header = sign(body, SECRET, 1_700_000_123)
    assert header.startswith("t=1700000123,v1=")
    assert len(header.split("v1=")[1]) == 64
    data = verify_signature(body, header, SECRET, now=1_700_000_123)
    assert data["type"] == "email.clicked"
    assert data["data"] == e.to_dict()
    assert str(data["created_at"]).endswith("Z")


@pytest.mark.parametrize(("event_type", "name"), [("opened", "email.opened"), ("clicked", "email.clicked"),
                                                   ("unsubscribed", "email.unsubscribed")])
def test_payload_types(event_type: str, name: str) -> None:
    assert json.loads(payload(event(event_type)))["type"] == name


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    expected = hmac.new(b"k" * 16, b"42." + body, hashlib.sha256).hexdigest()
    assert sign(body, "k" * 16, 42) == f"t=42,v1={expected}"
    assert sign(body, b"k" * 16, 42) == sign(body, "k" * 16, 42)


def test_verify_with_rotation_list() -> None:
    body = payload(event())
    old = sign(body, "old-secret-0123456", 1000)
    assert verify_signature(body, old, ["new-secret-0123456", "old-secret-0123456"], now=1000)["type"] == "email.opened"
    assert verify_signature(body, old, [b"new-secret-0123456", b"old-secret-0123456"], now=1000)
    with pytest.raises(MailtrackError, match="does not match"):
        verify_signature(body, old, ["new-secret-0123456"], now=1000)
    with pytest.raises(ConfigurationError, match="no webhook secret"):
        verify_signature(body, old, [], now=1000)


def test_wrong_secret_refused() -> None:
    body = payload(event())
    with pytest.raises(MailtrackError, match="does not match"):
        verify_signature(body, sign(body, "right-secret-0123456", 1000), "wrong-secret-0123456", now=1000)


def test_tampered_body_or_timestamp_refused() -> None:
    body = payload(event())
    header = sign(body, SECRET, 1000)
    with pytest.raises(MailtrackError, match="does not match"):
        verify_signature(body.replace(b"a@x", b"b@x"), header, SECRET, now=1000)
    with pytest.raises(MailtrackError, match="does not match"):
        verify_signature(body + b" ", header, SECRET, now=1000)
    replayed = header.replace("t=1000,", "t=1001,")  # a fresh timestamp on a captured signature
    with pytest.raises(MailtrackError, match="does not match"):
        verify_signature(body, replayed, SECRET, now=1001)
    digest = header.split("v1=")[1]
    with pytest.raises(MailtrackError, match="does not match"):
        verify_signature(body, f"t=1000,v1={digest[:-1]}{'0' if digest[-1] != '0' else '1'}", SECRET, now=1000)


def test_stale_or_future_timestamp_refused() -> None:
    body = payload(event())
    header = sign(body, SECRET, 10_000)
    assert verify_signature(body, header, SECRET, now=10_300)
    assert verify_signature(body, header, SECRET, now=9_700)
    for now in (10_301, 9_699, 0):
        with pytest.raises(MailtrackError, match="tolerance"):
            verify_signature(body, header, SECRET, now=now)
    assert verify_signature(body, header, SECRET, now=10_500, tolerance=600)
    with pytest.raises(MailtrackError, match="tolerance"):
        verify_signature(body, header, SECRET, now=10_001, tolerance=0)
    with pytest.raises(MailtrackError, match="tolerance"):
        verify_signature(body, header, SECRET)  # real clock: 10_000 is 1970


@pytest.mark.parametrize(
    "header",
    ["", "garbage", "t=abc,v1=00", "v1=00", "t=1000", "t=1000;v1=ab", "t=,v1=", "t=1e3,v1=00",
     "t=" + "9" * 5000 + ",v1=00"],
)
def test_malformed_header_refused(header: str) -> None:
    with pytest.raises(MailtrackError, match="malformed"):
        verify_signature(b"{}", header, SECRET, now=1000)


@pytest.mark.parametrize("v1", ["é" * 64, "\u00ff", "☃"], ids=["latin-1", "y-umlaut", "snowman"])
def test_non_ascii_signature_is_refused_with_mailtrackerror(v1: str) -> None:
    # hmac.compare_digest refuses str holding non-ASCII ("comparing strings with non-ASCII characters is not
    # supported"), so an attacker-controlled header makes verify_signature raise TypeError: a receiver that
    # catches MailtrackError (the documented failure) answers 500 instead of refusing the request.
    with pytest.raises(MailtrackError):
        verify_signature(b"{}", f"t=1000,v1={v1}", SECRET, now=1000)


@pytest.mark.parametrize("header", ["t=\u00b2,v1=ab", "t=\u0661\u0660\u0660\u0660,v1=ab", "t=\uff11,v1=ab",
                                    "t=1000,t=\u00b2,v1=ab"])
def test_non_ascii_digits_in_the_timestamp_raise_webhook_signature_error(header: str) -> None:
    # str.isdigit() is true for "²", but int("²") raises ValueError.
    with pytest.raises(WebhookSignatureError) as info:
        verify_signature(b"{}", header, SECRET, now=1000)
    assert info.value.header == header


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000, b'"text"'])
def test_signed_body_that_is_not_a_json_object_raises_webhook_signature_error(body: bytes) -> None:
    header = sign(body, SECRET, 1000)
    with pytest.raises(WebhookSignatureError) as info:
        verify_signature(body, header, SECRET, now=1000)
    assert info.value.header == header


@pytest.mark.parametrize("header", [None, 42, b"t=1000,v1=ab"])
def test_missing_or_non_text_header_raises_webhook_signature_error(header: object) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_signature(b"{}", header, SECRET, now=1000)  # type: ignore[arg-type]


@pytest.mark.parametrize("now", [float("nan"), float("inf")])
def test_a_clock_that_is_not_a_number_refuses_every_signature(now: float) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_signature(b"{}", sign(b"{}", SECRET, 1000), SECRET, now=now)


@settings(max_examples=1000)
@given(st.binary(max_size=64), st.one_of(
    st.text(),
    st.builds(lambda t, vs: f"t={t}," + ",".join(f"v1={v}" for v in vs),
              st.one_of(st.text(max_size=14), st.integers(-10, 10**13).map(str),
                        st.text("0123456789\u00b2\u00b9\u0661\uff11 +-_.", min_size=1, max_size=14)),
              st.lists(st.one_of(st.text(max_size=70), st.text("0123456789abcdef\u00e9", max_size=66)), max_size=3)),
))
def test_verify_signature_raises_only_webhook_signature_error(body: bytes, header: str) -> None:
    try:
        verify_signature(body, header, SECRET, now=1000)
    except WebhookSignatureError as exc:
        assert exc.header == header


@pytest.mark.parametrize("secret", ["k", "s3cret", b"fifteen-bytes!!", "\u00e9" * 7 + "x"])
def test_short_webhook_secret_is_refused_with_configuration_error(store: SQLiteStore, secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match="16 bytes"):
        WebhookDelivery(store, "https://example.com/hook", secret)
    with pytest.raises(ConfigurationError, match="16 bytes"):
        sign(b"{}", secret, 1000)
    with pytest.raises(ConfigurationError, match="16 bytes"):
        verify_signature(b"{}", "t=1000,v1=00", secret, now=1000)
    with pytest.raises(ConfigurationError, match="16 bytes"):
        verify_signature(b"{}", "t=1000,v1=00", [SECRET, secret], now=1000)


def test_sixteen_byte_secret_is_accepted(store: SQLiteStore) -> None:
    secret = "0123456789abcdef"
    WebhookDelivery(store, "https://example.com/hook", secret)
    assert verify_signature(b"{}", sign(b"{}", secret, 1000), secret, now=1000) == {}
    assert verify_signature(b"{}", sign(b"{}", "\u00e9" * 8, 1000), "\u00e9" * 8, now=1000) == {}  # 16 UTF-8 bytes


# -- a real receiver -----------------------------------------------------------------------------


class Receiver:
    """A local HTTP endpoint answering POSTs with scripted statuses (then 200), recording every request."""

    def __init__(self) -> None:
        self.script: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.hold: threading.Event | None = None  # when set up, every answer waits for it (a receiver that hangs)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                          "body": body})
                if receiver.hold is not None:
                    receiver.hold.wait(60)
                answer = receiver.script.pop(0) if receiver.script else 200
                status, location, extra = (answer, None, {}) if isinstance(answer, int) else (*answer, {})[:3]
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_GET = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A client that gave up (the timeout tests) leaves a broken pipe behind: expected, not worth a traceback.
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def store(backend: Backend) -> Iterator[SQLiteStore]:
    """A store on a fresh database of each kind (SQLite, PostgreSQL): deliveries only use the protocol."""
    s = backend.open()
    yield s
    s.close()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/hook"


def row(store: SQLiteStore, index: int = 0) -> dict[str, Any]:
    return store.outbox_rows()[index]


def test_2xx_marks_delivered_and_request_is_signed(receiver: Receiver, store: SQLiteStore) -> None:
    clock = Clock(T0 + 5)
    e = store.record(event("clicked", metadata={"k": 1}), outbox=[receiver.url])
    delivery = WebhookDelivery(store, receiver.url, SECRET, backoff=0.01, clock=clock)
    assert delivery.deliver_due() == 1
    [request] = receiver.posts()
    assert request["path"] == "/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Mailtrack-Event-Id"] == e.event_id
    assert request["headers"]["User-Agent"] == "mailtrack-webhook"
    data = verify_signature(request["body"], request["headers"][SIGNATURE_HEADER], SECRET, now=clock.now)
    assert data["type"] == "email.clicked"
    assert data["data"] == e.to_dict()
    r = row(store)
    assert (r["delivered"], r["attempts"], r["dead"]) == (T0 + 5, 1, 0)
    assert delivery.deliver_due() == 0
    assert len(receiver.posts()) == 1


@pytest.mark.parametrize("status", [201, 202, 204])
def test_any_2xx_is_delivered(receiver: Receiver, store: SQLiteStore, status: int) -> None:
    receiver.script = [status]
    store.record(event(), outbox=[receiver.url])
    assert WebhookDelivery(store, receiver.url, SECRET, clock=Clock()).deliver_due() == 1
    assert row(store)["delivered"] == T0


def test_retries_on_500_with_exponential_backoff_until_delivered(receiver: Receiver, store: SQLiteStore) -> None:
    receiver.script = [500, 503, 500]
    clock = Clock()
    store.record(event(), outbox=[receiver.url])
    delivery = WebhookDelivery(store, receiver.url, SECRET, backoff=0.01, jitter=False, clock=clock)
    schedule = []
    for attempt in range(1, 4):
        assert delivery.deliver_due() == 0
        r = row(store)
        assert r["attempts"] == attempt and r["dead"] == 0 and r["delivered"] is None
        assert r["last_error"] == ["HTTP 500", "HTTP 503", "HTTP 500"][attempt - 1]
        schedule.append(round(r["next_attempt"] - clock.now, 6))
        clock.now = r["next_attempt"] - 0.001
        assert delivery.deliver_due() == 0  # not due yet: no request
        assert len(receiver.posts()) == attempt
        clock.now = r["next_attempt"]
    assert schedule == [0.01, 0.02, 0.04]
    assert delivery.deliver_due() == 1
    r = row(store)
    assert (r["attempts"], r["delivered"], r["dead"]) == (4, clock.now, 0)
    ids = {p["headers"]["Mailtrack-Event-Id"] for p in receiver.posts()}
    assert len(receiver.posts()) == 4 and len(ids) == 1  # the same event each time: receivers de-duplicate


def test_retries_on_connection_refused_with_capped_backoff(store: SQLiteStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    url = closed_port_url()
    clock = Clock()
    store.record(event(), outbox=[url])
    delivery = WebhookDelivery(store, url, SECRET, backoff=1, max_backoff=5, max_attempts=50, timeout=5, jitter=False,
                               clock=clock)
    delays = []
    for _ in range(6):
        assert delivery.deliver_due() == 0
        r = row(store)
        delays.append(r["next_attempt"] - clock.now)
        assert r["last_error"] and "HTTP" not in r["last_error"]
        clock.now = r["next_attempt"]
    assert delays == [1, 2, 4, 5, 5, 5]
    assert row(store)["attempts"] == 6 and row(store)["dead"] == 0
    assert any("webhook attempt 1" in r.getMessage() for r in caplog.records)


def test_gives_up_after_max_attempts(receiver: Receiver, store: SQLiteStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    receiver.script = [500] * 10
    clock = Clock()
    e = store.record(event(), outbox=[receiver.url])
    delivery = WebhookDelivery(store, receiver.url, SECRET, backoff=0.01, max_attempts=3, clock=clock)
    for _ in range(3):
        delivery.deliver_due()
        clock.now = row(store)["next_attempt"]
    r = row(store)
    assert (r["attempts"], r["dead"], r["last_error"], r["delivered"]) == (3, 1, "HTTP 500", None)
    clock.now += 10**6
    assert delivery.deliver_due() == 0
    assert len(receiver.posts()) == 3
    assert store.outbox_due(clock.now) == []
    gave_up = [rec for rec in caplog.records if "gave up" in rec.getMessage()]
    assert len(gave_up) == 1 and gave_up[0].levelno == logging.ERROR and e.event_id in gave_up[0].getMessage()


def test_4xx_is_retried_too(receiver: Receiver, store: SQLiteStore) -> None:
    receiver.script = [404, 400]
    clock = Clock()
    store.record(event(), outbox=[receiver.url])
    delivery = WebhookDelivery(store, receiver.url, SECRET, backoff=0.01, clock=clock)
    for expected in ("HTTP 404", "HTTP 400"):
        delivery.deliver_due()
        assert row(store)["last_error"] == expected
        clock.now = row(store)["next_attempt"]
    assert delivery.deliver_due() == 1


@pytest.mark.timeout(120)
def test_timeout_is_a_failed_attempt(receiver: Receiver, store: SQLiteStore) -> None:
    receiver.hold = threading.Event()  # never answers while the delivery waits: its 0.2 s timeout must end the attempt
    store.record(event(), outbox=[receiver.url])
    delivery = WebhookDelivery(store, receiver.url, SECRET, backoff=0.01, timeout=0.2, clock=Clock())
    assert delivery.deliver_due() == 0
    r = row(store)
    assert r["attempts"] == 1 and r["delivered"] is None and "timed out" in r["last_error"]


def test_only_rows_for_its_own_url(receiver: Receiver, store: SQLiteStore) -> None:
    store.record(event(), outbox=[receiver.url, "https://other.example/hook"])
    delivery = WebhookDelivery(store, receiver.url, SECRET, clock=Clock())
    assert delivery.deliver_due() == 1
    mine, other = store.outbox_rows()
    assert mine["delivered"] == T0
    assert (other["attempts"], other["delivered"], other["last_error"]) == (0, None, None)


def test_background_thread_delivers_after_receiver_recovers(receiver: Receiver, store: SQLiteStore) -> None:
    receiver.script = [500, 500]
    events = [store.record(event(), outbox=[receiver.url]) for _ in range(3)]
    delivery = WebhookDelivery(store, receiver.url, SECRET, backoff=0.01, poll_interval=0.05).start()
    try:
        wait_until(lambda: all(r["delivered"] is not None for r in store.outbox_rows()))
    finally:
        delivery.stop()
    assert delivery._thread is not None and not delivery._thread.is_alive()
    delivered_ids = {p["headers"]["Mailtrack-Event-Id"] for p in receiver.posts()[-3:]}
    assert delivered_ids == {e.event_id for e in events}
    for post in receiver.posts():
        verify_signature(post["body"], post["headers"][SIGNATURE_HEADER], SECRET)


def test_outbox_survives_a_restart(receiver: Receiver, backend: Backend) -> None:
    first = backend.open()
    first.record(event(), outbox=[receiver.url])
    receiver.script = [500]
    WebhookDelivery(first, receiver.url, SECRET, backoff=0.01, clock=Clock()).deliver_due()
    first.close()
    again = backend.open()
    assert WebhookDelivery(again, receiver.url, SECRET, clock=Clock(T0 + 1)).deliver_due() == 1
    assert row(again)["attempts"] == 2


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///etc/passwd", "javascript:alert(1)", "",
                                 "example.com/hook", "//example.com/hook"])
def test_non_http_url_rejected(store: SQLiteStore, url: str) -> None:
    with pytest.raises(MailtrackError, match="http"):
        WebhookDelivery(store, url, SECRET)


@pytest.mark.parametrize("secret", ["", b""])
def test_empty_secret_rejected(store: SQLiteStore, secret: str | bytes) -> None:
    with pytest.raises(MailtrackError, match="secret"):
        WebhookDelivery(store, "https://example.com/hook", secret)


# -- found by these tests (each a fixed bug) ---------------------------------------------------


def test_a_redirect_answer_is_a_failed_attempt_never_a_delivery(receiver: Receiver, store: SQLiteStore) -> None:
    # urllib follows a 301/302/303 answer to a POST with a bodyless GET (carrying the signature header, to
    # whatever host Location names); a 2xx to that GET marks the row delivered, although the endpoint that
    # got the POST refused it and the redirect target never saw the event (an http:// URL behind an https
    # redirect, a moved endpoint). Webhook senders usually treat any 3xx as a failed attempt.
    receiver.script = [(302, "/elsewhere")]
    store.record(event(), outbox=[receiver.url])
    WebhookDelivery(store, receiver.url, SECRET, backoff=0.01, clock=Clock()).deliver_due()
    delivered_with_body = [r for r in receiver.requests if r["method"] == "POST" and r["body"] and r["path"] != "/hook"]
    assert row(store)["delivered"] is None or delivered_with_body, receiver.requests


def test_due_rows_of_another_target_do_not_starve_delivery(receiver: Receiver, store: SQLiteStore) -> None:
    # Rows queued for a target nobody delivers (a webhook URL that was changed) stay due forever; they must not
    # fill the batch that our target's delivery reads.
    for _ in range(60):
        store.record(event(), outbox=["https://old-hook.example/"])
    mine = store.record(event(timestamp=datetime.fromtimestamp(T0 + 1, timezone.utc)), outbox=[receiver.url])
    delivery = WebhookDelivery(store, receiver.url, SECRET, clock=Clock(T0 + 60))
    assert delivery.deliver_due() == 1
    [my_row] = [r for r in store.outbox_rows() if r["event_id"] == mine.event_id]
    assert my_row["delivered"] == T0 + 60


def test_two_deliveries_for_one_url_attempt_each_row_once(receiver: Receiver, store: SQLiteStore, backend: Backend) -> None:
    # Several server processes each run a WebhookDelivery for the same URL over one outbox.
    events = [store.record(event(), outbox=[receiver.url]) for _ in range(20)]
    deliveries = [WebhookDelivery(backend.open(), receiver.url, SECRET, backoff=0.01, poll_interval=0.02)
                  for _ in range(3)]
    for delivery in deliveries:
        delivery.start()
    try:
        wait_until(lambda: all(r["delivered"] is not None for r in store.outbox_rows()))
    finally:
        for delivery in deliveries:
            delivery.stop()
    posted = [p["headers"]["Mailtrack-Event-Id"] for p in receiver.posts()]
    assert sorted(posted) == sorted(e.event_id for e in events)  # each once
    assert all(r["attempts"] == 1 for r in store.outbox_rows())


def test_stopped_delivery_gives_claimed_rows_back(receiver: Receiver, store: SQLiteStore) -> None:
    for _ in range(3):
        store.record(event(), outbox=[receiver.url])
    clock = Clock()
    delivery = WebhookDelivery(store, receiver.url, SECRET, clock=clock)
    delivery._stop.set()  # stop() while a batch is claimed: the rows are released, not attempted
    assert delivery.deliver_due() == 0
    assert receiver.posts() == []
    assert [r["next_attempt"] for r in store.outbox_rows()] == [T0] * 3
    assert len(store.outbox_due(T0)) == 3


def test_slow_receiver_holds_only_the_row_it_is_posting(receiver: Receiver, store: SQLiteStore, backend: Backend) -> None:
    # Regression: deliver_due once claimed 50 rows under one lease and posted them one by one, so a slow receiver
    # let the lease of rows still waiting in the batch run out, and another worker posted them too. Rows are now
    # claimed only as threads are free to post them (here one). Forced with a shared fake clock: the first request "takes" 100 s (past its 31 s
    # lease) while a second worker runs. Only the row whose own attempt outlived its lease may be posted twice
    # (delivery is at least once; receivers de-duplicate on Mailtrack-Event-Id).
    events = [store.record(event(), outbox=[receiver.url]) for _ in range(3)]
    clock = Clock()
    first_arrived, answer_first = threading.Event(), threading.Event()
    slow = WebhookDelivery(store, receiver.url, SECRET, timeout=1, clock=clock, concurrency=1)  # lease: 31 s
    other = WebhookDelivery(backend.open(), receiver.url, SECRET, timeout=1, clock=clock, concurrency=1)
    real_handler = receiver.server.RequestHandlerClass

    class Slow(real_handler):  # type: ignore[misc,valid-type]
        def do_POST(self) -> None:
            if not first_arrived.is_set():
                first_arrived.set()
                answer_first.wait(20)
            super().do_POST()

    receiver.server.RequestHandlerClass = Slow
    worker = threading.Thread(target=slow.deliver_due)
    worker.start()
    try:
        assert first_arrived.wait(20)
        clock.now = T0 + 100  # the first request has been running for 100 s
        other.deliver_due()  # the other worker's poll: the rest of the batch is due again
    finally:
        answer_first.set()
        worker.join(30)
    posted = [p["headers"]["Mailtrack-Event-Id"] for p in receiver.posts()]
    assert set(posted) == {e.event_id for e in events}, posted
    assert sorted(posted.count(e.event_id) for e in events) in ([1, 1, 1], [1, 1, 2]), posted


# -- moved from tests/integration/test_serve_review.py (issue 8) -------------------------------


def test_signatures_with_several_secrets_and_several_v1_values() -> None:
    body, now = b'{"type": "email.opened"}', 1_700_000_000
    old, new = sign(body, "old" * 6, now), sign(body, "new" * 6, now)  # secrets of 16+ bytes
    both = f"t={now}, v1={old.split('v1=')[1]}, v1={new.split('v1=')[1]}"  # sender rotating: two signatures
    assert verify_signature(body, both, "new" * 6, now=now) and verify_signature(body, both, ("x" * 16, "old" * 6), now=now)
    with pytest.raises(MailtrackError, match="does not match"):
        verify_signature(body, both, ["x" * 16, "y" * 16], now=now)


# -- Standard Webhooks (issue 12) -------------------------------------------------------------

from standardwebhooks.webhooks import Webhook, WebhookVerificationError  # noqa: E402

from mailtrack.delivery.webhooks import new_secret, retry_after, secret_keys, standard_secret  # noqa: E402


def _deliver_now(store: SQLiteStore, url: str, secret: str, **kwargs: Any) -> WebhookDelivery:
    delivery = WebhookDelivery(store, url, secret, backoff=0.01, **kwargs)  # the real clock: the library checks it
    return delivery


def test_deliveries_verify_with_the_standardwebhooks_library_under_both_header_names(
    receiver: Receiver, store: SQLiteStore
) -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret_keys(secret)[0]) == 32
    e = store.record(event("clicked", timestamp=datetime.now(timezone.utc)), outbox=[receiver.url])
    assert _deliver_now(store, receiver.url, secret).deliver_due() == 1
    [request] = receiver.posts()
    headers = request["headers"]
    data = Webhook(secret).verify(request["body"], headers)
    assert data["type"] == "email.clicked" and data["data"] == e.to_dict() and data["data"]["recipient"] == "a@x"
    assert headers["webhook-id"] == e.event_id
    svix = {name.replace("svix-", "webhook-"): value for name, value in headers.items() if name.startswith("svix-")}
    assert svix == {name: headers[name] for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    assert Webhook(secret).verify(request["body"], svix) == data
    tampered = request["body"].replace(b"clicked", b"opened!")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(request["body"], headers)
    # The deprecated header is still there for one release, and still verifies.
    assert verify_signature(request["body"], headers[SIGNATURE_HEADER], secret)["data"] == e.to_dict()


def test_rotation_signs_with_every_secret_and_either_verifies(receiver: Receiver, store: SQLiteStore) -> None:
    old, new = new_secret(), new_secret()
    store.record(event(timestamp=datetime.now(timezone.utc)), outbox=[receiver.url])
    assert _deliver_now(store, receiver.url, f"{new} {old}").deliver_due() == 1
    [request] = receiver.posts()
    signatures = request["headers"]["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (old, new):
        assert Webhook(secret).verify(request["body"], request["headers"])["type"] == "email.opened"
        assert verify_signature(request["body"], request["headers"][SIGNATURE_HEADER], secret)


def test_a_plain_secret_from_before_verifies_through_its_whsec_form(receiver: Receiver, store: SQLiteStore) -> None:
    plain = "a plain old secret of 32 bytes.."
    store.record(event(timestamp=datetime.now(timezone.utc)), outbox=[receiver.url])
    assert _deliver_now(store, receiver.url, plain).deliver_due() == 1
    [request] = receiver.posts()
    assert standard_secret(plain).startswith("whsec_") and standard_secret(standard_secret(plain)) == standard_secret(plain)
    assert Webhook(standard_secret(plain)).verify(request["body"], request["headers"])
    assert verify_signature(request["body"], request["headers"][SIGNATURE_HEADER], plain)


@pytest.mark.parametrize("bad", ["whsec_" + "QUFB", "short", b"x" * 15])
def test_too_short_secrets_are_configuration_errors(bad: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        secret_keys(bad)


def test_the_body_is_the_same_bytes_on_every_attempt(receiver: Receiver, store: SQLiteStore) -> None:
    receiver.script = [500]
    clock = Clock()
    store.record(event(), outbox=[receiver.url])
    delivery = WebhookDelivery(store, receiver.url, SECRET, backoff=0.01, clock=clock)
    delivery.deliver_due()
    clock.now = row(store)["next_attempt"] + 5
    assert delivery.deliver_due() == 1
    first, second = receiver.posts()
    assert first["body"] == second["body"] and json.loads(first["body"])["created_at"] == "2023-11-14T22:13:20Z"
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert first["headers"]["webhook-timestamp"] != second["headers"]["webhook-timestamp"]  # signed at each attempt


def test_410_disables_the_endpoint_and_keeps_its_deliveries_as_dead(
    receiver: Receiver, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mailtrack")
    receiver.script = [410]
    clock = Clock()
    store.record(event(), outbox=[receiver.url])
    delivery = WebhookDelivery(store, receiver.url, SECRET, clock=clock, concurrency=1)
    assert delivery.deliver_due() == 0
    assert delivery.disabled is not None and "410" in delivery.disabled
    later = [store.record(event(), outbox=[receiver.url]) for _ in range(3)]
    assert delivery.deliver_due() == 0
    assert len(receiver.posts()) == 1  # nothing more was posted to a gone endpoint
    rows = store.outbox_rows()
    assert len(rows) == 1 + len(later) and all(r["dead"] == 1 and "410" in r["last_error"] for r in rows)
    gone = [r for r in caplog.records if "410" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.ERROR
    assert store.outbox_requeue(clock.now) == 4  # an operator can bring them back (mailtrack webhooks --requeue)
    assert WebhookDelivery(store, receiver.url, SECRET, clock=clock).deliver_due() == 4  # a fresh start (restart)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_honoured(receiver: Receiver, store: SQLiteStore, status: int) -> None:
    receiver.script = [(status, None, {"Retry-After": "120"})]
    clock = Clock()
    store.record(event(), outbox=[receiver.url])
    WebhookDelivery(store, receiver.url, SECRET, backoff=0.01, clock=clock).deliver_due()
    r = row(store)
    assert r["next_attempt"] == clock.now + 120 and r["last_error"] == f"HTTP {status}"


def test_retry_after_as_a_date_is_honoured_and_capped(receiver: Receiver, store: SQLiteStore) -> None:
    receiver.script = [(503, None, {"Retry-After": "Tue, 14 Nov 2023 22:23:20 GMT"})]  # T0 + 600 s
    clock = Clock()
    store.record(event(), outbox=[receiver.url])
    WebhookDelivery(store, receiver.url, SECRET, clock=clock, max_backoff=3600).deliver_due()
    assert row(store)["next_attempt"] == pytest.approx(clock.now + 600)
    assert retry_after("99999", 0) == 99999 and retry_after("soon", 0) is None and retry_after(None, 0) is None
    assert retry_after("Tue, 14 Nov 2023 22:23:20 GMT", T0 + 700) == 0.0  # a date in the past: now
    receiver.script = [(429, None, {"Retry-After": "99999"})]
    store.record(event(), outbox=[receiver.url])
    clock.now += 601
    WebhookDelivery(store, receiver.url, SECRET, clock=clock, max_backoff=3600).deliver_due()
    assert max(r["next_attempt"] for r in store.outbox_rows()) == clock.now + 3600


def test_backoff_is_jittered_between_half_and_all_of_the_exponential_delay(receiver: Receiver, store: SQLiteStore) -> None:
    receiver.script = [500] * 40
    clock = Clock()
    for _ in range(30):
        store.record(event(), outbox=[receiver.url])
    WebhookDelivery(store, receiver.url, SECRET, backoff=10, clock=clock).deliver_due()
    delays = [r["next_attempt"] - clock.now for r in store.outbox_rows()]
    assert all(5 <= d <= 10 for d in delays) and len(set(delays)) > 20  # spread, not one synchronized wave


class _Held:
    """A receiver whose answers wait until released: counts how many requests are open at once, and on which connections."""

    def __init__(self, keep_alive: bool) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.most = 0
        self.release = threading.Event()
        self.ports: set[int] = set()
        held = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with held.lock:
                    held.open += 1
                    held.most = max(held.most, held.open)
                    held.ports.add(self.client_address[1])
                held.release.wait(30)
                with held.lock:
                    held.open -= 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_posts_run_concurrently_and_claim_only_what_they_can_post(store: SQLiteStore) -> None:
    held = _Held(keep_alive=False)
    try:
        for _ in range(10):
            store.record(event(), outbox=[held.url])
        clock = Clock()
        delivery = WebhookDelivery(store, held.url, SECRET, clock=clock, concurrency=4)
        worker = threading.Thread(target=delivery.deliver_due)
        worker.start()
        wait_until(lambda: held.open == 4, timeout=20)
        claimed = [r for r in store.outbox_rows() if r["next_attempt"] > clock.now]
        assert len(claimed) == 4  # the other six wait, unclaimed, for a free thread
        held.release.set()
        worker.join(30)
        assert held.most == 4
        assert all(r["delivered"] is not None for r in store.outbox_rows())
    finally:
        held.close()


def test_connections_are_kept_alive_and_reused(store: SQLiteStore) -> None:
    held = _Held(keep_alive=True)
    held.release.set()
    try:
        for _ in range(60):
            store.record(event(), outbox=[held.url])
        delivery = WebhookDelivery(store, held.url, SECRET, clock=Clock(), concurrency=3)
        assert delivery.deliver_due() == 60
        delivery.stop()
        assert 1 <= len(held.ports) <= 3  # 60 posts over at most one connection per thread
    finally:
        held.close()


# -- machine-event verdicts (issue 14) ---------------------------------------------------------


def test_payloads_carry_the_verdict_and_a_receiver_may_skip_machine_events(store: SQLiteStore) -> None:
    everything, people = Receiver(), Receiver()
    try:
        targets = [everything.url, people.url]
        person = store.record(event("opened"), outbox=targets)
        mpp = store.record(event("opened", machine="apple_mpp", machine_reasons=("Apple's proxy address",)),
                           outbox=targets)
        click = store.record(event("clicked"), outbox=targets)
        assert WebhookDelivery(store, everything.url, SECRET, clock=Clock()).deliver_due() == 3
        assert WebhookDelivery(store, people.url, SECRET, clock=Clock(), skip_machine=True).deliver_due() == 3
        sent = {json.loads(r["body"])["data"]["event_id"]: json.loads(r["body"])["data"] for r in everything.posts()}
        assert set(sent) == {person.event_id, mpp.event_id, click.event_id}
        assert (sent[mpp.event_id]["machine"], sent[mpp.event_id]["machine_reasons"]) == \
            ("apple_mpp", ["Apple's proxy address"])
        assert (sent[person.event_id]["machine"], sent[person.event_id]["machine_reasons"]) == (None, [])
        assert sorted(json.loads(r["body"])["data"]["event_id"] for r in people.posts()) == \
            sorted([person.event_id, click.event_id])  # posted concurrently: in no fixed order
        assert all(outbox["delivered"] is not None for outbox in store.outbox_rows())  # the skipped one is done too
    finally:
        everything.close()
        people.close()


def test_a_relabel_before_delivery_is_what_the_webhook_says(store: SQLiteStore) -> None:
    """A click relabelled by a honeypot click a few seconds later, before its delivery, goes out relabelled (and not
    at all to a receiver without machine events)."""
    everything, people = Receiver(), Receiver()
    try:
        targets = [everything.url, people.url]
        click = store.record(event("clicked", link_index=0, url="https://example.com/a"), outbox=targets)
        honeypot = store.record(event("clicked", link_index=7, url="https://example.com/trap", machine="honeypot",
                                      machine_reasons=("the honeypot link",),
                                      timestamp=datetime.fromtimestamp(T0 + 5, timezone.utc)), outbox=targets)
        assert WebhookDelivery(store, everything.url, SECRET, clock=Clock(T0 + 10)).deliver_due() == 2
        assert WebhookDelivery(store, people.url, SECRET, clock=Clock(T0 + 10), skip_machine=True).deliver_due() == 2
        sent = {json.loads(r["body"])["data"]["event_id"]: json.loads(r["body"])["data"] for r in everything.posts()}
        assert (sent[click.event_id]["machine"], sent[click.event_id]["machine_reasons"]) == \
            ("honeypot", ["near a honeypot click", "clicked before any open"])
        assert sent[honeypot.event_id]["machine"] == "honeypot"
        assert people.posts() == []
    finally:
        everything.close()
        people.close()


def test_serve_wires_webhook_skip_machine_per_receiver(tmp_path: Any) -> None:
    """``--webhook-skip-machine URL`` (Config.webhooks_skip_machine): that receiver gets people's events only, the
    other every event; both through ``build_service``'s recorder, writer and deliveries."""
    from mailtrack.config import Config
    from mailtrack.service import build_service

    everything, people = Receiver(), Receiver()
    service = build_service(Config(secret_keys=("k" * 32,), base_url="https://t.example",
                                   db=str(tmp_path / "events.sqlite"), webhooks=(everything.url, people.url),
                                   webhooks_skip_machine=(people.url,), webhook_secret=SECRET))
    try:
        assert [(d.url, d.skip_machine) for d in service.deliveries] == [(everything.url, False), (people.url, True)]
        now = datetime.now(timezone.utc)
        person = service.recorder.record(event("opened", timestamp=now))
        mpp = service.recorder.record(TrackingEvent(event_type="opened", timestamp=now, message_id="m1",
                                                    recipient="b@x", machine="apple_mpp",
                                                    machine_reasons=("Apple's proxy",)))
        wait_until(lambda: len(everything.posts()) == 2, timeout=30, what="both events at the first receiver")
        store = SQLiteStore(tmp_path / "events.sqlite")
        try:
            wait_until(lambda: all(row["delivered"] is not None for row in store.outbox_rows()), timeout=30,
                       what="every delivery done")
        finally:
            store.close()
        assert {json.loads(r["body"])["data"]["event_id"] for r in everything.posts()} == {person.event_id, mpp.event_id}
        assert [json.loads(r["body"])["data"]["event_id"] for r in people.posts()] == [person.event_id]
    finally:
        service.close()
        everything.close()
        people.close()
