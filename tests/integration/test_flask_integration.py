"""The Flask integration end to end: Flask-Mail sends through a real SMTP server, the blueprint serves the links.

An aiosmtpd server on 127.0.0.1 receives what Flask-Mail sends through
``Mailtrack``; the test reads each envelope, follows its pixel and links with
Flask's test client, and waits for the events on the ``tracking`` signal (and
in the store).
"""

from __future__ import annotations

import email
import email.charset  # noqa: E402
import re
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.flask_mail_charsets import flask_mail_charsets

# Flask-Mail changes the stdlib's global charset registry when it is imported (utf-8 bodies are then
# neither base64 nor quoted-printable). Keep that to this module's tests: the rest of the suite parses
# with the stdlib as it ships.
pytest.importorskip("flask")
pytest.importorskip("flask_mail")
pytest.importorskip("aiosmtpd")


import flask  # noqa: E402
import flask_mail  # noqa: E402
from support.helpers import wait_until
from support.smtp import Inbox  # noqa: E402

import mailtrack  # noqa: E402
from mailtrack.contrib.flask import Mailtrack, MailtrackState, tracking  # noqa: E402
from mailtrack.events import TrackingEvent  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _flask_mail_charsets() -> Iterator[None]:
    """The charset registry as Flask-Mail sets it, for this module only (support.flask_mail_charsets)."""
    with flask_mail_charsets():
        yield

pytestmark = pytest.mark.timeout(120)

BASE = "https://app.example.com/t"
RECIPIENTS = ["ann@example.com", "bob@example.com", "cy@example.com"]
HTML = ('<html><body><p>Hi</p><a href="https://example.com/one">one</a> '
        '<a href="https://example.com/two?a=1&amp;b=2">two</a></body></html>')
BODY = "Hi, see https://example.com/one\n"


def _app(**config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="app-secret", MAILTRACK_BASE_URL=BASE, MAIL_DEFAULT_SENDER="shop@example.com")
    app.config.update(config)
    return app


@pytest.fixture
def states() -> Iterator[list[MailtrackState]]:
    """Every state a test builds, closed afterwards (the recorder's threads, the store)."""
    built: list[MailtrackState] = []
    yield built
    for state in built:
        state.close()


def _events(app: flask.Flask) -> list[TrackingEvent]:
    received: list[TrackingEvent] = []

    def receiver(sender: flask.Flask, event: TrackingEvent) -> None:
        received.append(event)

    tracking.connect(receiver, sender=app, weak=False)
    app.extensions["test_receiver"] = receiver  # keep it alive with the app; disconnected in _disconnect
    return received


def _disconnect(app: flask.Flask) -> None:
    tracking.disconnect(app.extensions["test_receiver"], sender=app)


def _html(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def _text(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _urls(text: str, kind: str) -> list[str]:
    return re.findall(re.escape(BASE) + "/" + kind + r"/[^\"'\s<>]+", text)


@pytest.mark.parametrize("with_db", [False, True], ids=["signal-only", "with-store"])
def test_flask_mail_send_to_three_recipients_is_tracked_per_recipient_end_to_end(
    smtp: tuple[Inbox, int], states: list[MailtrackState], tmp_path: Path, with_db: bool
) -> None:
    inbox, port = smtp
    db = tmp_path / "events.db"
    app = _app(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_USE_TLS=False, MAIL_USE_SSL=False, MAIL_SUPPRESS_SEND=False,
               MAILTRACK_TRACK_FLASK_MAIL=True, MAILTRACK_TRACKING_SETTINGS={"click_tracking": {"enable_text": True}},
               **({"MAILTRACK_DB": str(db)} if with_db else {}))
    mail = flask_mail.Mail(app)
    Mailtrack(app, mail=mail)
    states.append(app.extensions["mailtrack"])
    received = _events(app)
    try:
        with app.app_context():
            message = flask_mail.Message("Hello", recipients=list(RECIPIENTS), body=BODY, html=HTML)
            message_id = message.msgId.strip("<>")
            mail.send(message)
            assert message.html == HTML and message.body == BODY  # the caller's message is left as it was

        assert sorted(rcpts for rcpts, _ in inbox.envelopes) == [[r] for r in RECIPIENTS]
        client = app.test_client()
        for rcpts, raw in inbox.envelopes:
            html = _html(raw)
            pixels, clicks = _urls(html, "o"), _urls(html, "c")
            assert len(pixels) == 1 and len(clicks) == 2
            assert len(_urls(_text(raw), "c")) == 1
            for url in clicks:
                assert app.extensions["mailtrack"].tracker.verify(url.replace("&amp;", "&")).recipient == rcpts[0]

            pixel = client.get(urlsplit(pixels[0]).path)
            assert pixel.status_code == 200 and pixel.mimetype == "image/gif" and pixel.data.startswith(b"GIF89a")
            click = client.get(urlsplit(clicks[1].replace("&amp;", "&")).path)
            assert click.status_code == 302 and click.headers["Location"] == "https://example.com/two?a=1&b=2"

        wait_until(lambda: len(received) >= 6, what="six events on the tracking signal")
        assert sorted((e.recipient, str(e.event_type)) for e in received) == sorted(
            (r, t) for r in RECIPIENTS for t in ("opened", "clicked"))
        assert {e.message_id for e in received} == {message_id}
        if with_db:
            store = app.extensions["mailtrack"].store
            stored = store.events(message_id=message_id)
            assert sorted((e.recipient, str(e.event_type)) for e in stored) == sorted(
                (r, t) for r in RECIPIENTS for t in ("opened", "clicked"))
    finally:
        _disconnect(app)


def test_track_rewrites_a_single_recipient_message_in_place(states: list[MailtrackState]) -> None:
    app = _app()
    ext = Mailtrack(app)
    states.append(app.extensions["mailtrack"])
    with app.app_context():
        flask_mail.Mail(app)
        message = flask_mail.Message("Hi", recipients=["Ann <ann@example.com>"], body=BODY, html=HTML)
        assert ext.track(message) is message
    assert len(_urls(message.html, "c")) == 2 and len(_urls(message.html, "o")) == 1
    assert message.body == BODY  # text click tracking is off by default
    verified = app.extensions["mailtrack"].tracker.verify(_urls(message.html, "o")[0])
    assert verified.recipient == "ann@example.com" and verified.message_id == message.msgId.strip("<>")


def test_track_a_message_to_several_people_signs_no_recipient_and_honours_anymail_attributes(
    states: list[MailtrackState],
) -> None:
    app = _app()
    ext = Mailtrack(app)
    state = app.extensions["mailtrack"]
    states.append(state)
    received: list[TrackingEvent] = []

    def receiver(sender: Any, event: TrackingEvent, **kwargs: Any) -> None:
        received.append(event)

    with app.app_context(), tracking.connected_to(receiver, sender=app):
        flask_mail.Mail(app)
        message = flask_mail.Message("Hi", recipients=["ann@example.com"], cc=["bob@example.com"], html=HTML)
        message.tags = ["weekly"]  # type: ignore[attr-defined]
        message.metadata = {"issue": 12}  # type: ignore[attr-defined]
        message.track_opens = False  # type: ignore[attr-defined]
        ext.track(message)
        urls = re.findall(r'href="(' + re.escape(BASE) + r'/c/[^"]+)"', message.html)
        assert len(urls) == 2 and "/t/o/" not in message.html  # track_opens=False: no pixel
        claims = [state.tracker.verify(url) for url in urls]
        assert {(c.recipient, c.tags, c.metadata["issue"]) for c in claims} == {(None, ("weekly",), 12)}
        client = app.test_client()
        assert client.get(urlsplit(urls[0]).path).status_code == 302
        wait_until(lambda: len(received) == 1)
    assert (received[0].recipient, received[0].tags, received[0].url) == (None, ("weekly",), claims[0].url)


def test_app_factory_pattern_init_app_later(states: list[MailtrackState]) -> None:
    ext = Mailtrack()
    app = _app()
    state = ext.init_app(app)
    states.append(state)
    assert app.extensions["mailtrack"] is state
    with app.test_request_context():
        assert flask.url_for("mailtrack.click", token="abc") == "/t/c/abc"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"MAILTRACK_BASE_URL": None}, "MAILTRACK_BASE_URL"),
        ({"SECRET_KEY": None}, "MAILTRACK_SECRET_KEYS"),
        ({"MAILTRACK_URL_PREFIX": "/track"}, "MAILTRACK_URL_PREFIX"),
        ({"MAILTRACK_BASE_URL": "https://app.example.com", "MAILTRACK_URL_PREFIX": "/t"}, "MAILTRACK_URL_PREFIX"),
        ({"MAILTRACK_BASE_URL": "https://x.example/t", "MAILTRACK_URL_PREFIX": "/"}, "MAILTRACK_URL_PREFIX"),
        ({"MAILTRACK_TRUSTED_PROXIES": ["10.0.0.0/33"]}, "MAILTRACK_TRUSTED_PROXIES"),
        ({"MAILTRACK_TRUSTED_PROXIES": [10]}, "MAILTRACK_TRUSTED_PROXIES"),
        ({"MAILTRACK_TRUSTED_PROXIES": 10}, "MAILTRACK_TRUSTED_PROXIES"),
        ({"MAILTRACK_MAX_AGE": 0}, "MAILTRACK_MAX_AGE"),
        ({"MAILTRACK_MAX_AGE": "1d"}, "MAILTRACK_MAX_AGE"),
        ({"MAILTRACK_MAX_AGE": True}, "MAILTRACK_MAX_AGE"),
        ({"MAILTRACK_URL_PREFIX": "t"}, "MAILTRACK_URL_PREFIX"),
        ({"MAILTRACK_TRACK_FLASK_MAIL": True}, "MAILTRACK_TRACK_FLASK_MAIL"),
        ({"MAILTRACK_TRACKING_SETTINGS": {"click_tracking": {"enable": "yes"}}}, "MAILTRACK_TRACKING_SETTINGS"),
        ({"MAILTRACK_TOKEN_FORMAT": "encrypted"}, "MAILTRACK_TOKEN_FORMAT must be one of opaque, signed"),
    ],
)
def test_bad_configuration_is_a_configuration_error_at_init_app_naming_the_key(config: dict[str, Any], message: str) -> None:
    app = _app(**config)
    with pytest.raises(mailtrack.ConfigurationError, match=message):
        Mailtrack().init_app(app)
    assert "mailtrack" not in app.extensions


def test_token_format_is_opaque_by_default_and_signed_when_set(states: list[MailtrackState]) -> None:
    for config, expected in (({}, "opaque"), ({"MAILTRACK_TOKEN_FORMAT": "signed"}, "signed")):
        app = _app(**config)
        Mailtrack().init_app(app)
        assert app.extensions["mailtrack"].tracker.codec.token_format == expected
        states.append(app.extensions["mailtrack"])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"MAILTRACK_TRACK_FLASK_MAIL": "false"}, "MAILTRACK_TRACK_FLASK_MAIL must be True or False"),
        ({"MAILTRACK_SPLIT_RECIPIENTS": "no"}, "MAILTRACK_SPLIT_RECIPIENTS must be True or False"),
        ({"MAILTRACK_FAIL_SILENTLY_TRACKING": 0}, "MAILTRACK_FAIL_SILENTLY_TRACKING must be True or False"),
        ({"MAILTRACK_MAILMAN_BACKEND": "mailtrack.contrib.flask.mailman"}, "MAILTRACK_MAILMAN_BACKEND names mailtrack's own"),
        ({"MAILTRACK_TRACK_FLASKMAIL": True}, "unknown keys: MAILTRACK_TRACK_FLASKMAIL"),
    ],
)
def test_what_is_read_at_send_time_is_checked_at_init_app_too(config: dict[str, Any], message: str) -> None:
    """A mistake in the keys the Flask-Mail and Flask-Mailman sending reads, or a misspelt key, fails at start-up."""
    app = _app(**config)
    with pytest.raises(mailtrack.ConfigurationError, match=message):
        Mailtrack().init_app(app, mail=flask_mail.Mail(app))
    assert "mailtrack" not in app.extensions


def test_init_app_twice_on_one_app_is_a_configuration_error_that_starts_nothing(tmp_path: Path, states: list[MailtrackState]) -> None:
    app = _app()
    first = Mailtrack().init_app(app)
    states.append(first)
    app.config["MAILTRACK_DB"] = str(tmp_path / "events.db")
    with pytest.raises(mailtrack.ConfigurationError, match="already"):
        Mailtrack().init_app(app)
    assert app.extensions["mailtrack"] is first and not (tmp_path / "events.db").exists()


@pytest.mark.parametrize(
    ("base_url", "mounted_at"),
    [("https://t.example.com", "/c/abc"), ("https://t.example.com/", "/c/abc"),
     ("https://x.example/t", "/t/c/abc"), ("https://x.example/mail/track/", "/mail/track/c/abc")],
)
def test_url_prefix_defaults_to_the_path_of_the_base_url(
    base_url: str, mounted_at: str, states: list[MailtrackState]
) -> None:
    app = _app(MAILTRACK_BASE_URL=base_url)
    state = Mailtrack().init_app(app)
    states.append(state)
    with app.test_request_context():
        assert flask.url_for("mailtrack.click", token="abc") == mounted_at
    url = state.tracker.tracking_url("click", message_id="m1", recipient="ann@example.com", url="https://example.com/")
    response = app.test_client().get(urlsplit(url).path)
    assert response.status_code == 302 and response.headers["Location"] == "https://example.com/"


def test_an_explicit_url_prefix_that_agrees_with_the_base_url_is_accepted(states: list[MailtrackState]) -> None:
    app = _app(MAILTRACK_BASE_URL="https://x.example/t/", MAILTRACK_URL_PREFIX="/t/")
    states.append(Mailtrack().init_app(app))
    with app.test_request_context():
        assert flask.url_for("mailtrack.open", token="abc") == "/t/o/abc"


def test_an_app_mounted_below_a_script_root_serves_its_tracking_urls(states: list[MailtrackState]) -> None:
    """Served at /app (SCRIPT_NAME, as gunicorn or DispatcherMiddleware set it), with tracking URLs under /app/t."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.test import Client
    from werkzeug.wrappers import Response as WerkzeugResponse

    app = _app(MAILTRACK_BASE_URL="https://x.example/app/t", MAILTRACK_URL_PREFIX="/t")  # the blueprint, below /app
    state = Mailtrack().init_app(app)
    states.append(state)
    site = Client(DispatcherMiddleware(WerkzeugResponse("not here", 404), {"/app": app.wsgi_app}))
    url = state.tracker.tracking_url("click", message_id="m1", recipient="ann@example.com", url="https://example.com/")
    assert urlsplit(url).path.startswith("/app/t/c/")
    response = site.get(urlsplit(url).path)
    assert response.status_code == 302 and response.headers["Location"] == "https://example.com/"
    assert site.get(urlsplit(url).path.replace("/app/t/", "/app/x/", 1)).status_code == 404


@pytest.mark.parametrize(("proxies", "seen_ip"), [(None, "127.0.0.1"), (["127.0.0.1"], "203.0.113.9"),
                                                  (["127.0.0.0/8", "10.0.0.1"], "203.0.113.9"), (["10.0.0.1"], "127.0.0.1")])
def test_trusted_proxies_decide_whether_x_forwarded_for_is_believed(
    proxies: list[str] | None, seen_ip: str, states: list[MailtrackState]
) -> None:
    app = _app(**({"MAILTRACK_TRUSTED_PROXIES": proxies} if proxies is not None else {}))
    state = Mailtrack().init_app(app)
    states.append(state)
    received = _events(app)
    try:
        url = state.tracker.tracking_url("open", message_id="m1", recipient="ann@example.com")
        response = app.test_client().get(urlsplit(url).path, headers={"X-Forwarded-For": "203.0.113.9"})
        assert response.status_code == 200
        wait_until(lambda: received, what="the open event")
        assert [e.ip for e in received] == [seen_ip]
    finally:
        _disconnect(app)


def test_max_age_refuses_older_click_tokens_only(states: list[MailtrackState]) -> None:
    app = _app(MAILTRACK_MAX_AGE=3600)
    state = Mailtrack().init_app(app)
    states.append(state)
    assert state.endpoints.max_age == 3600
    tracker, client = state.tracker, app.test_client()
    old, fresh = time.time() - 7200, time.time() - 60
    click = {"message_id": "m1", "recipient": "ann@example.com", "url": "https://example.com/"}
    assert client.get(urlsplit(tracker.tracking_url("click", issued_at=old, **click)).path).status_code == 404
    assert client.get(urlsplit(tracker.tracking_url("click", issued_at=fresh, **click)).path).status_code == 302
    unsubscribe = tracker.tracking_url("unsubscribe", message_id="m1", recipient="ann@example.com", issued_at=old)
    assert client.get(urlsplit(unsubscribe).path).status_code == 200  # unsubscribe links never expire


def test_a_bad_trusted_proxy_is_refused_before_the_store_is_opened(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    app = _app(MAILTRACK_DB=str(db), MAILTRACK_TRUSTED_PROXIES=["not-an-ip"])
    with pytest.raises(mailtrack.ConfigurationError, match="MAILTRACK_TRUSTED_PROXIES"):
        Mailtrack().init_app(app)
    assert not db.exists()


def test_head_of_the_pixel_has_headers_and_no_body_and_records_nothing(states: list[MailtrackState]) -> None:
    app = _app()
    Mailtrack(app)
    state = app.extensions["mailtrack"]
    states.append(state)
    received = _events(app)
    try:
        client = app.test_client()
        head = client.head(urlsplit(state.tracker.tracking_url("open", message_id="m-head", recipient="ann@example.com")).path)
        assert head.status_code == 200 and head.data == b""
        assert head.headers["Content-Type"] == "image/gif" and head.headers["Content-Length"] == "43"
        # Then a GET, which records: events reach receivers in order, so one from the HEAD would come first.
        get = client.get(urlsplit(state.tracker.tracking_url("open", message_id="m-get", recipient="ann@example.com")).path)
        assert get.status_code == 200 and len(get.data) == 43
        wait_until(lambda: received, what="the open event")
        assert [(str(e.event_type), e.message_id) for e in received] == [("opened", "m-get")]
    finally:
        _disconnect(app)


def test_unsubscribe_one_click_post_records_and_get_only_confirms(tmp_path: Path, states: list[MailtrackState]) -> None:
    app = _app(MAILTRACK_DB=str(tmp_path / "events.db"))
    Mailtrack(app)
    state = app.extensions["mailtrack"]
    states.append(state)
    received = _events(app)
    try:
        path = urlsplit(state.tracker.tracking_url("unsubscribe", message_id="m1", recipient="ann@example.com")).path
        client = app.test_client()
        page = client.get(path)
        assert page.status_code == 200 and b"<form" in page.data
        done = client.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
        assert done.status_code == 200 and b"ann@example.com" in done.data
        wait_until(lambda: received, what="the unsubscribe event")
        assert [(str(e.event_type), e.recipient) for e in received] == [("unsubscribed", "ann@example.com")]
        assert [str(e.event_type) for e in state.store.events(message_id="m1")] == ["unsubscribed"]
    finally:
        _disconnect(app)


def test_a_failing_receiver_never_breaks_the_response(states: list[MailtrackState]) -> None:
    app = _app()
    Mailtrack(app)
    state = app.extensions["mailtrack"]
    states.append(state)
    received = _events(app)

    def broken(sender: flask.Flask, event: TrackingEvent) -> None:
        raise RuntimeError("receiver bug")

    tracking.connect(broken, sender=app)
    try:
        url = state.tracker.tracking_url("click", message_id="m1", recipient="ann@example.com", url="https://example.com/")
        response = app.test_client().get(urlsplit(url).path)
        assert response.status_code == 302 and response.headers["Location"] == "https://example.com/"
        wait_until(lambda: received, what="the click event")
    finally:
        tracking.disconnect(broken, sender=app)
        _disconnect(app)


def test_a_failing_receiver_never_keeps_the_event_from_the_others(states: list[MailtrackState]) -> None:
    """As Django's send_robust: each receiver gets the event whatever the others do (blinker calls them in no set order)."""
    app = _app()
    state = Mailtrack().init_app(app)
    states.append(state)
    got: list[int] = []
    receivers: list[Any] = []
    for n in range(6):
        def receiver(sender: flask.Flask, event: TrackingEvent, n: int = n) -> None:
            if n % 2:
                raise RuntimeError(f"receiver bug {n}")
            got.append(n)

        receivers.append(receiver)
        tracking.connect(receiver, sender=app)
    try:
        url = state.tracker.tracking_url("open", message_id="m1", recipient="ann@example.com")
        assert app.test_client().get(urlsplit(url).path).status_code == 200
        state.recorder.close()  # waits for the sinks: every receiver has run
        assert sorted(got) == [0, 2, 4]
    finally:
        for receiver in receivers:
            tracking.disconnect(receiver, sender=app)


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(states: list[MailtrackState]) -> None:
    """No Content-Length to refuse up front (Transfer-Encoding: chunked): at most MAX_BODY + 1 bytes are read."""
    import io

    from mailtrack.http.messages import MAX_BODY

    app = _app()
    states.append(Mailtrack().init_app(app))

    class Huge(io.RawIOBase):
        """A 16 MB request body, counting what is read of it."""

        read_so_far = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            size = min(len(buffer), 16 * 1024 * 1024 - self.read_so_far)
            buffer[:size] = b"x" * size
            self.read_so_far += size
            return size

    body = Huge()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/t/u/forged", "SERVER_NAME": "app.example.com", "SERVER_PORT": "443",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "https", "wsgi.input": body, "wsgi.errors": io.StringIO(),
               "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}
    status: list[str] = []
    b"".join(app.wsgi_app(environ, lambda line, headers, exc_info=None: status.append(line)))
    assert status[0].startswith("413") and body.read_so_far <= 2 * MAX_BODY


@pytest.mark.parametrize("fail_silently", [True, False])
def test_flask_mail_sending_fails_open_when_tracking_fails(
    fail_silently: bool, states: list[MailtrackState], caplog: pytest.LogCaptureFixture
) -> None:
    """As the Django and Flask-Mailman backends: the message goes out once, untracked, unless told to raise."""
    import logging

    mail = flask_mail.Mail()
    app = _app(MAILTRACK_TRACK_FLASK_MAIL=True, MAIL_SUPPRESS_SEND=True, MAILTRACK_FAIL_SILENTLY_TRACKING=fail_silently)
    mail.init_app(app)
    states.append(Mailtrack().init_app(app, mail=mail))
    with app.app_context(), mail.record_messages() as outbox, caplog.at_level(logging.ERROR, "mailtrack"):
        message = flask_mail.Message("Hi", recipients=["ann@example.com", "bob@example.com"], html=HTML)
        message.tracking_settings = "not a dict"  # type: ignore[attr-defined]
        if fail_silently:
            mail.send(message)
        else:
            with pytest.raises(mailtrack.ArgumentError):
                mail.send(message)
    if fail_silently:
        assert [(m.recipients, m.html) for m in outbox] == [(["ann@example.com", "bob@example.com"], HTML)]
        assert "tracking failed" in caplog.text
    else:
        assert outbox == []


def test_subscription_tracking_adds_rfc_8058_headers_to_flask_mail_messages(states: list[MailtrackState]) -> None:
    """Tracked by track() or by the wrapped Mail.send: List-Unsubscribe, whose one-click POST unsubscribes."""
    mail = flask_mail.Mail()
    app = _app(MAILTRACK_TRACK_FLASK_MAIL=True, MAIL_SUPPRESS_SEND=True,
               MAILTRACK_TRACKING_SETTINGS={"subscription_tracking": {"enable": True}})
    mail.init_app(app)
    ext = Mailtrack()
    state = ext.init_app(app, mail=mail)
    states.append(state)
    received = _events(app)
    try:
        with app.app_context(), mail.record_messages() as outbox:
            mail.send(flask_mail.Message("Hi", recipients=["ann@example.com", "bob@example.com"], html=HTML))
            own = flask_mail.Message("Hi", recipients=["cy@example.com"], html=HTML,
                                     extra_headers={"List-Unsubscribe": "<mailto:u@example.com>"})
            ext.track(own)
        client = app.test_client()
        for sent, recipient in zip(outbox, ["ann@example.com", "bob@example.com"], strict=True):
            with app.app_context():
                headers = email.message_from_bytes(sent.as_bytes(), policy=default)
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            url = str(headers["List-Unsubscribe"]).strip()
            assert url.startswith(f"<{BASE}/u/") and url.endswith(">")
            assert state.tracker.verify(url[1:-1]).recipient == recipient
            response = client.post(urlsplit(url[1:-1]).path, data="List-Unsubscribe=One-Click",
                                   content_type="application/x-www-form-urlencoded")
            assert response.status_code == 200
        wait_until(lambda: len(received) == 2, what="two unsubscribe events")
        assert sorted((str(e.event_type), e.recipient) for e in received) == [
            ("unsubscribed", "ann@example.com"), ("unsubscribed", "bob@example.com")]
        assert own.extra_headers == {"List-Unsubscribe": "<mailto:u@example.com>"}
    finally:
        _disconnect(app)


def test_a_forged_click_is_a_404_without_redirect(states: list[MailtrackState]) -> None:
    app = _app()
    Mailtrack(app)
    states.append(app.extensions["mailtrack"])
    response = app.test_client().get("/t/c/forged.token")
    assert response.status_code == 404 and "Location" not in response.headers


def test_one_mail_instance_shared_by_two_apps_tracks_only_where_configured(states: list[MailtrackState]) -> None:
    mail = flask_mail.Mail()
    tracked_app = _app(MAILTRACK_TRACK_FLASK_MAIL=True, MAIL_SUPPRESS_SEND=True)
    plain_app = _app(MAIL_SUPPRESS_SEND=True)
    ext = Mailtrack(mail=mail)
    for app in (tracked_app, plain_app):
        mail.init_app(app)
        states.append(ext.init_app(app, mail=mail))
    with tracked_app.app_context(), mail.record_messages() as outbox:
        message = flask_mail.Message("Hi", recipients=["ann@example.com"], cc=["Bob <bob@example.com>"], html=HTML)
        mail.send(message)
    assert [(m.recipients, m.cc) for m in outbox] == [(["ann@example.com"], []), (["Bob <bob@example.com>"], [])]
    signed_for = [tracked_app.extensions["mailtrack"].tracker.verify(_urls(m.html, "o")[0]).recipient for m in outbox]
    assert signed_for == ["ann@example.com", "bob@example.com"]
    assert message.html == HTML and message.cc == ["Bob <bob@example.com>"]
    with plain_app.app_context(), mail.record_messages() as outbox:
        mail.send(flask_mail.Message("Hi", recipients=["ann@example.com", "bob@example.com"], html=HTML))
    assert [m.html for m in outbox] == [HTML]


def test_privacy_settings_reduce_what_the_store_and_the_signal_get(states: list[MailtrackState], tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    app = _app(MAILTRACK_TRUSTED_PROXIES=["127.0.0.1"], MAILTRACK_DB=str(db), MAILTRACK_PRIVACY_IP="truncate",
               MAILTRACK_PRIVACY_USER_AGENT="family")
    state = Mailtrack().init_app(app)
    states.append(state)
    received = _events(app)
    try:
        url = state.tracker.tracking_url("open", message_id="m1", recipient="ann@example.com")
        response = app.test_client().get(urlsplit(url).path, headers={
            "X-Forwarded-For": "203.0.113.9", "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) "
                                                            "Gecko/20100101 Firefox/121.0"})
        assert response.status_code == 200
        (event,) = wait_until(lambda: received, what="the open event")
    finally:
        _disconnect(app)
    assert (event.ip, event.user_agent) == ("203.0.113.0", "Firefox")
    assert event.esp_event is not None and "x-forwarded-for" not in {k.lower() for k in event.esp_event["headers"]}
    assert state.store is not None
    assert [(e.ip, e.user_agent) for e in state.store.events()] == [("203.0.113.0", "Firefox")]


def test_a_bad_privacy_setting_is_refused_naming_its_key() -> None:
    with pytest.raises(mailtrack.ConfigurationError, match="MAILTRACK_PRIVACY_IP"):
        Mailtrack().init_app(_app(MAILTRACK_PRIVACY_IP="mask"))


def test_machine_ranges_and_the_honeypot(states: list[MailtrackState], tmp_path: Path) -> None:
    """MAILTRACK_MACHINE_RANGES and MAILTRACK_HONEYPOT, as for serve: verdicts on, off, or a bad file refused."""
    gmail = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    for config, expected in (({"MAILTRACK_HONEYPOT": True}, "image_proxy"), ({"MAILTRACK_MACHINE_RANGES": "off"}, None)):
        app = _app(**config)
        state = Mailtrack().init_app(app)
        states.append(state)
        assert state.tracker.honeypot is bool(config.get("MAILTRACK_HONEYPOT"))
        received = _events(app)
        url = state.tracker.tracking_url("open", message_id="m1", recipient="ann@example.com")
        assert app.test_client().get(urlsplit(url).path, headers={"User-Agent": gmail}).status_code == 200
        wait_until(lambda received=received: received, 10, what="the open's event")  # type: ignore[misc]
        assert received[0].machine == expected
        _disconnect(app)
    bad = tmp_path / "bad.csv"
    bad.write_text("network,label,source,retrieved\n10.0.0.0/8,nobody,https://x,2026-11-30\n", encoding="utf-8")
    for config, message in (({"MAILTRACK_MACHINE_RANGES": str(bad)}, r"MAILTRACK_MACHINE_RANGES.*line 2"),
                            ({"MAILTRACK_HONEYPOT": "yes"}, "MAILTRACK_HONEYPOT must be True or False")):
        with pytest.raises(mailtrack.ConfigurationError, match=message):
            Mailtrack().init_app(_app(**config))
