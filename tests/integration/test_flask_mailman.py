"""Flask-Mailman through mailtrack's ``MailmanBackend``: end to end over a real SMTP server, and its configuration.

An aiosmtpd server on 127.0.0.1 receives what Flask-Mailman's SMTP backend
sends through ``MailmanBackend``; the test reads each envelope, follows its
pixel and links with Flask's test client, and waits for the events on the
``tracking`` signal. Flask-Mailman (unlike Flask-Mail) leaves the stdlib's
charset registry alone, so no save/restore is needed here.
"""

from __future__ import annotations

import email
import logging
import re
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("flask")
pytest.importorskip("flask_mailman")
pytest.importorskip("aiosmtpd")

import flask  # noqa: E402
import flask_mailman  # noqa: E402
from support.helpers import wait_until
from support.smtp import Inbox  # noqa: E402

import mailtrack  # noqa: E402
import mailtrack.contrib.flask  # noqa: E402
from mailtrack.contrib.flask import Mailtrack, MailtrackState, tracking  # noqa: E402
from mailtrack.contrib.flask.mailman import MailmanBackend  # noqa: E402
from mailtrack.events import TrackingEvent  # noqa: E402

pytestmark = pytest.mark.timeout(120)

BASE = "https://app.example.com/t"
HTML = ('<html><body><p>Hi</p><a href="https://example.com/one">one</a> '
        '<a href="https://example.com/two?a=1&amp;b=2">two</a></body></html>')
BODY = "Hi, see https://example.com/one\n"


@pytest.fixture
def states() -> Iterator[list[MailtrackState]]:
    """Every state a test builds, closed afterwards (the recorder's threads)."""
    built: list[MailtrackState] = []
    yield built
    for state in built:
        state.close()


def _app(states: list[MailtrackState], *, mailtrack_ext: bool = True, **config: Any) -> tuple[flask.Flask, flask_mailman.Mail]:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="app-secret", MAILTRACK_BASE_URL=BASE, MAIL_DEFAULT_SENDER="shop@example.com",
                      MAIL_BACKEND="mailtrack.contrib.flask.mailman", MAILTRACK_MAILMAN_BACKEND="locmem")
    app.config.update(config)
    mail = flask_mailman.Mail(app)
    if mailtrack_ext:
        states.append(Mailtrack().init_app(app))
    return app, mail


def _html(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def _urls(text: str, kind: str) -> list[str]:
    return re.findall(re.escape(BASE) + "/" + kind + r"/[^\"'\s<>]+", text)


def test_mailman_smtp_send_is_tracked_per_recipient_end_to_end(smtp: tuple[Inbox, int], states: list[MailtrackState]) -> None:
    inbox, port = smtp
    app, _ = _app(states, MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_USE_TLS=False, MAIL_USE_SSL=False,
                  MAILTRACK_MAILMAN_BACKEND="smtp", MAILTRACK_TRACKING_SETTINGS={"click_tracking": {"enable_text": True}})
    received: list[TrackingEvent] = []

    def receiver(sender: flask.Flask, event: TrackingEvent) -> None:
        received.append(event)

    tracking.connect(receiver, sender=app, weak=False)
    try:
        with app.app_context():
            message = flask_mailman.EmailMultiAlternatives(
                "Hello", BODY, to=["Ann <ann@example.com>", "bob@example.com"], cc=["cy@example.com"],
                bcc=["dee@example.com"])
            message.attach_alternative(HTML, "text/html")
            assert message.send() == 1
            assert message.body == BODY and message.alternatives[0][0] == HTML and message.bcc == ["dee@example.com"]

        assert sorted(rcpts for rcpts, _ in inbox.envelopes) == [
            ["ann@example.com"], ["bob@example.com"], ["cy@example.com"], ["dee@example.com"]]
        tracker = app.extensions["mailtrack"].tracker
        message_ids = set()
        client = app.test_client()
        for rcpts, raw in inbox.envelopes:
            parsed = email.message_from_bytes(raw, policy=default)
            assert parsed["To"] == "Ann <ann@example.com>, bob@example.com" and parsed["Cc"] == "cy@example.com"
            assert parsed["Bcc"] is None
            message_ids.add(parsed["Message-ID"])
            html = _html(raw)
            pixels, clicks = _urls(html, "o"), _urls(html, "c")
            assert len(pixels) == 1 and len(clicks) == 2
            for url in clicks:
                assert tracker.verify(url.replace("&amp;", "&")).recipient == rcpts[0]
            assert client.get(urlsplit(pixels[0]).path).status_code == 200
            click = client.get(urlsplit(clicks[1].replace("&amp;", "&")).path)
            assert click.status_code == 302 and click.headers["Location"] == "https://example.com/two?a=1&b=2"
        assert len(message_ids) == 1

        wait_until(lambda: len(received) >= 8, what="eight events on the tracking signal")
        assert sorted((e.recipient, str(e.event_type)) for e in received) == sorted(
            (r, t) for r in ("ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com")
            for t in ("opened", "clicked"))
        assert {e.message_id for e in received} == {message_ids.pop().strip("<>")}
    finally:
        tracking.disconnect(receiver, sender=app)


@pytest.mark.parametrize("backend", [MailmanBackend, "mailtrack.contrib.flask.mailman",
                                     "mailtrack.contrib.flask.mailman.EmailBackend"])
def test_mail_backend_may_be_the_class_or_the_module_and_the_plain_body_is_untouched_by_default(
    backend: Any, states: list[MailtrackState]
) -> None:
    app, mail = _app(states, MAIL_BACKEND=backend)
    with app.app_context():
        message = flask_mailman.EmailMessage("Hi", HTML, to=["ann@example.com"])
        message.content_subtype = "html"
        message.send()
        plain = flask_mailman.EmailMessage("Hi", BODY, to=["bob@example.com"])
        plain.send()
    assert [m.to for m in mail.outbox] == [[], []] and [m.bcc for m in mail.outbox] == [["ann@example.com"], ["bob@example.com"]]
    verified = app.extensions["mailtrack"].tracker.verify(_urls(mail.outbox[0].body, "o")[0])
    assert verified.recipient == "ann@example.com"
    assert mail.outbox[1].body == BODY  # text click tracking is off by default
    assert message.body == HTML


def test_the_package_exports_mailman_backend_lazily() -> None:
    assert mailtrack.contrib.flask.MailmanBackend is MailmanBackend


def test_a_message_whose_tracking_fails_is_sent_untracked_and_logged(
    states: list[MailtrackState], caplog: pytest.LogCaptureFixture
) -> None:
    app, mail = _app(states)
    with app.app_context(), caplog.at_level(logging.ERROR, logger="mailtrack"):
        message = flask_mailman.EmailMessage("Hi", HTML, to=["ann@example.com", "bob@example.com"])
        message.content_subtype = "html"
        message.tracking_settings = "not a dict"  # type: ignore[attr-defined]
        assert message.send() == 1
    assert [(m.to, m.body) for m in mail.outbox] == [(["ann@example.com", "bob@example.com"], HTML)]
    assert "tracking failed" in caplog.text


def test_fail_silently_tracking_off_raises_the_tracking_error(states: list[MailtrackState]) -> None:
    app, mail = _app(states, MAILTRACK_FAIL_SILENTLY_TRACKING=False)
    with app.app_context():
        message = flask_mailman.EmailMessage("Hi", HTML, to=["ann@example.com"])
        message.tracking_settings = "not a dict"  # type: ignore[attr-defined]
        with pytest.raises(mailtrack.ArgumentError, match="tracking_settings"):
            message.send()
    assert getattr(mail, "outbox", []) == []


def test_without_splitting_a_message_to_several_people_is_one_copy_tracked_without_a_recipient(
    states: list[MailtrackState],
) -> None:
    app, mail = _app(states, MAILTRACK_SPLIT_RECIPIENTS=False)
    with app.app_context():
        for to in (["ann@example.com"], ["ann@example.com", "bob@example.com"]):
            message = flask_mailman.EmailMessage("Hi", HTML, to=to)
            message.content_subtype = "html"
            message.tags = ["t1"]  # type: ignore[attr-defined]
            message.send()
        tracker = app.extensions["mailtrack"].tracker
        assert [m.to for m in mail.outbox] == [["ann@example.com"], ["ann@example.com", "bob@example.com"]]
        claims = [tracker.verify(_urls(m.body, "o")[0]) for m in mail.outbox]
    assert [(c.recipient, c.tags) for c in claims] == [("ann@example.com", ("t1",)), (None, ("t1",))]


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"MAILTRACK_MAILMAN_BACKEND": "no.such.backend"}, "MAILTRACK_MAILMAN_BACKEND"),
        ({"MAILTRACK_MAILMAN_BACKEND": "mailtrack.contrib.flask.mailman"}, "MAILTRACK_MAILMAN_BACKEND"),
        ({"MAILTRACK_MAILMAN_BACKEND": MailmanBackend}, "MAILTRACK_MAILMAN_BACKEND"),
        ({"MAILTRACK_SPLIT_RECIPIENTS": "yes"}, "MAILTRACK_SPLIT_RECIPIENTS"),
        ({"MAILTRACK_FAIL_SILENTLY_TRACKING": 0}, "MAILTRACK_FAIL_SILENTLY_TRACKING"),
    ],
)
def test_bad_configuration_is_a_configuration_error_when_the_connection_is_made(
    config: dict[str, Any], key: str, states: list[MailtrackState]
) -> None:
    app, mail = _app(states)
    app.config.update(config)  # changed after init_app (which checks them too): the connection checks again
    with app.app_context(), pytest.raises(mailtrack.ConfigurationError, match=key):
        mail.get_connection()


def test_mailman_backend_without_mailtrack_on_the_app_is_a_configuration_error(states: list[MailtrackState]) -> None:
    app, mail = _app(states, mailtrack_ext=False)
    with app.app_context(), pytest.raises(mailtrack.ConfigurationError, match="no Mailtrack"):
        mail.get_connection()


def test_one_connection_shared_by_threads_sends_every_message_once(smtp: tuple[Inbox, int], states: list[MailtrackState]) -> None:
    """Flask-Mailman's SMTP backend may be shared by threads (it locks around each batch): so may ours."""
    import threading

    inbox, port = smtp
    app, mail = _app(states, MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_USE_TLS=False, MAIL_USE_SSL=False,
                     MAILTRACK_MAILMAN_BACKEND="smtp")
    with app.app_context():
        connection = mail.get_connection()
    counts: list[int] = []
    errors: list[BaseException] = []

    def send(thread: int) -> None:
        with app.app_context():
            for n in range(15):
                message = flask_mailman.EmailMessage("Hi", HTML, to=[f"a{thread}-{n}@example.com", f"b{thread}-{n}@example.com"])
                message.content_subtype = "html"
                try:
                    counts.append(connection.send_messages([message]))
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)

    threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and counts == [1] * 60
    assert sorted(rcpts[0] for rcpts, _ in inbox.envelopes) == sorted(
        f"{who}{t}-{n}@example.com" for who in "ab" for t in range(4) for n in range(15))
