"""The Django integration end to end (issue 9): TrackingEmailBackend, the tracking URLs and the ``tracking`` signal.

A real SMTP server (aiosmtpd, on a free local port) receives what Django's own
SMTP backend, wrapped by ours, sends; the test reads the tracking URLs out of
what arrived, requests them through Django's test client and receives the
events through the signal.
"""

from __future__ import annotations

import email
import email.policy
import logging
import queue
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.django_settings import configure
from support.smtp import Inbox

import mailtrack

pytest.importorskip("django")
pytest.importorskip("aiosmtpd.controller")

from django.core import mail  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

from mailtrack.contrib.django import TrackingEmailBackend  # noqa: E402
from mailtrack.contrib.django.signals import tracking  # noqa: E402

BASE_URL = "http://testserver/t"
BACKEND = "mailtrack.contrib.django.TrackingEmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
TRACKED = re.compile(re.escape(BASE_URL) + r"/([ocu])/([A-Za-z0-9_.\-~%]+)")
HTML = ('<html><body><p>Hello, <a href="https://example.com/one">one</a> and '
        '<a href="https://example.com/two?a=1&amp;b=2">two</a>.</p></body></html>')
TEXT = "Hello, see https://example.com/one and https://example.com/two?a=1&b=2\n"
ATTACHMENT = bytes(range(256)) * 3 + b'<a href="https://example.com/in-attachment">x</a>'


def mailtrack_settings(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"BACKEND": LOCMEM, "BASE_URL": BASE_URL}
    settings.update(overrides)
    return settings


@pytest.fixture(scope="module", autouse=True)
def django_settings() -> Iterator[None]:
    configure()
    yield


@pytest.fixture
def events() -> Iterator[queue.Queue[Any]]:
    """Every event the ``tracking`` signal sends during the test."""
    received: queue.Queue[Any] = queue.Queue()

    def receiver(sender: Any, event: Any, **kwargs: Any) -> None:
        received.put(event)

    tracking.connect(receiver, weak=False, dispatch_uid="test-events")
    yield received
    tracking.disconnect(dispatch_uid="test-events")


def html_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def tracked_message() -> mail.EmailMultiAlternatives:
    msg = mail.EmailMultiAlternatives(
        "Offers", TEXT, "shop@example.com", ["ann@example.com"], cc=["bob@example.com"], bcc=["cat@example.com"],
        headers={"Message-ID": "<campaign-1@example.com>"},
    )
    msg.attach_alternative(HTML, "text/html")
    return msg


@pytest.mark.timeout(60)
@pytest.mark.parametrize("with_db", [False, True], ids=["signal-only", "with-store"])
def test_smtp_copies_per_recipient_whose_links_and_pixel_report_that_recipient(
    smtp: tuple[Inbox, int], events: queue.Queue[Any], with_db: bool, tmp_path: Any
) -> None:
    sink, port = smtp
    db = str(tmp_path / "events.db") if with_db else None
    config = mailtrack_settings(BACKEND="django.core.mail.backends.smtp.EmailBackend", DB=db)
    msg = tracked_message()
    msg.tags = ["spring", "promo"]  # type: ignore[attr-defined]
    msg.metadata = {"campaign": "spring-2026"}  # type: ignore[attr-defined]
    with override_settings(EMAIL_BACKEND=BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, MAILTRACK=config):
        connection = mail.get_connection()
        assert isinstance(connection, TrackingEmailBackend)
        assert connection.send_messages([msg]) == 1

        assert sorted(rcpts[0] for rcpts, _ in sink.envelopes) == ["ann@example.com", "bob@example.com", "cat@example.com"]
        assert all(len(rcpts) == 1 for rcpts, _ in sink.envelopes)
        client = Client()
        for (recipient,), content in sink.envelopes:
            received = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(received, email.message.EmailMessage)
            assert received["To"] == "ann@example.com" and received["Cc"] == "bob@example.com"
            assert received["Bcc"] is None
            assert received["Message-ID"] == "<campaign-1@example.com>"
            html = html_of(received)
            urls = [match.group(0) for match in TRACKED.finditer(html)]
            kinds = [match.group(1) for match in TRACKED.finditer(html)]
            assert kinds == ["c", "c", "o"], html

            pixel = client.get(urls[2][len("http://testserver"):])
            assert pixel.status_code == 200 and pixel["Content-Type"] == "image/gif" and pixel.content.startswith(b"GIF")
            opened = events.get(timeout=10)
            assert (opened.event_type.value, opened.recipient, opened.message_id) == (
                "opened", recipient, "campaign-1@example.com")
            # anymail's normalized event: tags and metadata back, an event_id, the raw request as esp_event
            assert opened.tags == ("spring", "promo") and opened.metadata == {"campaign": "spring-2026"}
            assert len(opened.event_id) == 32 and opened.esp_event["method"] == "GET"
            assert opened.esp_event["path"].endswith(urls[2].rsplit("/", 1)[1])

            for url, destination in zip(urls[:2], ["https://example.com/one", "https://example.com/two?a=1&b=2"], strict=True):
                click = client.get(url[len("http://testserver"):])
                assert click.status_code == 302 and click["Location"] == destination
                clicked = events.get(timeout=10)
                assert (clicked.event_type.value, clicked.recipient, clicked.url) == ("clicked", recipient, destination)
            # The text body is left alone: click tracking's enable_text is off by default.
            text = received.get_body(preferencelist=("plain",))
            assert text is not None and text.get_content().replace("\r\n", "\n") == TEXT
    if db is not None:
        stored = mailtrack.SQLiteStore(db).events(message_id="campaign-1@example.com")
        assert sorted((e.recipient, e.event_type.value) for e in stored) == sorted(
            (r, t) for r in ("ann@example.com", "bob@example.com", "cat@example.com") for t in ("opened", "clicked", "clicked"))
        assert {e.tags for e in stored} == {("spring", "promo")}


def test_bcc_recipient_is_never_in_any_copys_headers(smtp: tuple[Inbox, int]) -> None:
    sink, port = smtp
    config = mailtrack_settings(BACKEND="django.core.mail.backends.smtp.EmailBackend")
    with override_settings(EMAIL_BACKEND=BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, MAILTRACK=config):
        mail.get_connection().send_messages([tracked_message()])
    assert len(sink.envelopes) == 3
    for _, content in sink.envelopes:
        headers = content.split(b"\r\n\r\n", 1)[0]
        assert b"cat@example.com" not in headers and b"Bcc" not in headers


def test_locmem_backend_gets_one_copy_per_recipient_and_the_caller_counts_one() -> None:
    mail.outbox = []
    original = tracked_message()
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=mailtrack_settings()):
        assert mail.get_connection().send_messages([original]) == 1
    assert [m.recipients() for m in mail.outbox] == [["ann@example.com"], ["bob@example.com"], ["cat@example.com"]]
    assert original.alternatives[0][0] == HTML and original.to == ["ann@example.com"], "the caller's message changed"
    tracker = mailtrack.Tracker(["django-test-secret-key-older", "django-test-secret-key-newest"], BASE_URL)
    for sent, recipient in zip(mail.outbox, ["ann@example.com", "bob@example.com", "cat@example.com"], strict=True):
        html = sent.alternatives[0][0]
        tokens = [m.group(0) for m in TRACKED.finditer(html) if m.group(1) == "c"]
        assert [tracker.verify(url).recipient for url in tokens] == [recipient, recipient]


def test_a_message_id_is_generated_and_carried_when_the_message_has_none() -> None:
    mail.outbox = []
    msg = mail.EmailMessage("Hi", HTML, "shop@example.com", ["ann@example.com"])
    msg.content_subtype = "html"
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=mailtrack_settings(SPLIT_RECIPIENTS=False)):
        assert mail.get_connection().send_messages([msg]) == 1
    (sent,) = mail.outbox
    header = sent.message()["Message-ID"]
    assert header.startswith("<") and header.endswith("@example.com>")
    tracker = mailtrack.Tracker(["django-test-secret-key-newest"], BASE_URL)
    url = TRACKED.search(sent.body)
    assert url is not None and tracker.verify(url.group(0)).message_id == header.strip("<>")


def test_per_message_track_clicks_false_leaves_links_alone_but_keeps_the_pixel() -> None:
    mail.outbox = []
    msg = tracked_message()
    msg.track_clicks = False  # type: ignore[attr-defined]
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=mailtrack_settings()):
        mail.get_connection().send_messages([msg])
    for sent in mail.outbox:
        html = sent.alternatives[0][0]
        assert 'href="https://example.com/one"' in html and "&amp;b=2" in html
        assert [m.group(1) for m in TRACKED.finditer(html)] == ["o"]


def test_attachments_are_byte_identical() -> None:
    mail.outbox = []
    msg = tracked_message()
    msg.attach("data.bin", ATTACHMENT, "application/octet-stream")
    msg.attach("page.html", '<a href="https://example.com/attached">x</a>', "text/html")
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=mailtrack_settings()):
        mail.get_connection().send_messages([msg])
    assert len(mail.outbox) == 3

    def attachments(message: Any) -> dict[str, Any]:
        parsed = email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return {part.get_filename(): part.get_content() for part in parsed.iter_attachments()}

    # Django 6 serializes a text attachment with a final newline added: compare with Django's own untracked output.
    untracked = attachments(msg)
    assert untracked["data.bin"] == ATTACHMENT
    assert untracked["page.html"].rstrip("\n") == '<a href="https://example.com/attached">x</a>'
    for sent in mail.outbox:
        assert attachments(sent) == untracked


def test_a_message_whose_tracking_raises_is_sent_once_untracked(caplog: pytest.LogCaptureFixture) -> None:
    mail.outbox = []
    msg = tracked_message()
    msg.tracking_settings = "not a dict"  # type: ignore[attr-defined]
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=mailtrack_settings()), caplog.at_level(logging.ERROR, "mailtrack"):
        assert mail.get_connection().send_messages([msg]) == 1
    (sent,) = mail.outbox
    assert sent.alternatives[0][0] == HTML and sent.recipients() == msg.recipients() and sent.body == TEXT
    assert "tracking failed" in caplog.text


def test_an_unexpected_bug_in_tracking_still_sends_the_message_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in the rewriter")

    mail.outbox = []
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=mailtrack_settings()), caplog.at_level(logging.ERROR, "mailtrack"):
        connection = mail.get_connection()
        monkeypatch.setattr(connection.tracker, "rewrite_html", broken)
        assert connection.send_messages([tracked_message()]) == 1
    (sent,) = mail.outbox
    assert sent.alternatives[0][0] == HTML and len(sent.recipients()) == 3
    assert "bug in the rewriter" in caplog.text


def test_fail_silently_tracking_false_raises_and_sends_nothing() -> None:
    mail.outbox = []
    msg = tracked_message()
    msg.tracking_settings = "not a dict"  # type: ignore[attr-defined]
    config = mailtrack_settings(FAIL_SILENTLY_TRACKING=False)
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=config), pytest.raises(mailtrack.ArgumentError):
        mail.get_connection().send_messages([msg])
    assert mail.outbox == []


@pytest.mark.timeout(60)
def test_without_split_recipients_one_copy_goes_to_all_tracked_without_a_recipient(
    smtp: tuple[Inbox, int], events: queue.Queue[Any], tmp_path: Any
) -> None:
    sink, port = smtp
    db = str(tmp_path / "events.db")
    config = mailtrack_settings(BACKEND="django.core.mail.backends.smtp.EmailBackend", SPLIT_RECIPIENTS=False, DB=db)
    msg = tracked_message()
    msg.tags = ["digest"]  # type: ignore[attr-defined]
    with override_settings(EMAIL_BACKEND=BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, MAILTRACK=config):
        assert mail.get_connection().send_messages([msg]) == 1
        [(envelope, content)] = sink.envelopes  # one SMTP transaction, to all three
        assert sorted(envelope) == ["ann@example.com", "bob@example.com", "cat@example.com"]
        received = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(received, email.message.EmailMessage)
        urls = [match.group(0) for match in TRACKED.finditer(html_of(received))]
        assert [url.split("/")[-2] for url in urls] == ["c", "c", "o"]
        tracker = mailtrack.Tracker(secret_keys=["django-test-secret-key-newest"], base_url=BASE_URL)
        assert {tracker.verify(url).recipient for url in urls} == {None}
        client = Client()
        for url in (urls[2], urls[0], urls[2]):  # (a person's browser: a bare client is a link scanner's)
            assert client.get(url[len("http://testserver"):], HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                              HTTP_ACCEPT_LANGUAGE="en").status_code in (200, 302)
        got = [events.get(timeout=10) for _ in range(3)]
    assert [(e.event_type.value, e.recipient, e.tags) for e in got] == [
        ("opened", None, ("digest",)), ("clicked", None, ("digest",)), ("opened", None, ("digest",))]
    stored = mailtrack.SQLiteStore(db).events(message_id="campaign-1@example.com")
    assert [(e.event_type.value, e.recipient, e.first) for e in stored] == [
        ("opened", None, True), ("clicked", None, True), ("opened", None, False)]


@pytest.mark.parametrize(
    "config",
    [
        None,
        "https://t.example.com",
        {"BACKEND": LOCMEM},
        {"BASE_URL": "ftp://t.example.com"},
        {"BASE_URL": BASE_URL, "BACKEND": BACKEND},
        {"BASE_URL": BASE_URL, "BACKEND": "no.such.Backend"},
        {"BASE_URL": BASE_URL, "SECRET_KEYS": "one-string"},
        {"BASE_URL": BASE_URL, "SECRET_KEYS": []},
        {"BASE_URL": BASE_URL, "TRACKING_SETTINGS": {"click_tracking": {"enable": "yes"}}},
        {"BASE_URL": BASE_URL, "SPLIT_RECIPIENTS": "no"},
        {"BASE_URL": BASE_URL, "MAX_AGE": -1},
        {"BASE_URL": BASE_URL, "TYPO": 1},
    ],
)
def test_bad_configuration_raises_configuration_error_when_the_backend_is_built(config: Any) -> None:
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=config), pytest.raises(mailtrack.ConfigurationError):
        mail.get_connection()


def test_secret_keys_default_to_djangos_fallbacks_then_secret_key_the_last_signing() -> None:
    with override_settings(MAILTRACK=mailtrack_settings()):
        backend = TrackingEmailBackend()
    html = backend.tracker.rewrite_html(HTML, message_id="m", recipient="ann@example.com").html
    url = TRACKED.search(html)
    assert url is not None
    assert mailtrack.Tracker(["django-test-secret-key-newest"], BASE_URL).verify(url.group(0)).recipient == "ann@example.com"
    with pytest.raises(mailtrack.InvalidToken):
        mailtrack.Tracker(["django-test-secret-key-older"], BASE_URL).verify(url.group(0))


def test_a_receiver_that_raises_does_not_break_the_response(events: queue.Queue[Any]) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    tracking.connect(broken, weak=False, dispatch_uid="broken")
    try:
        with override_settings(MAILTRACK=mailtrack_settings()):
            tracker = TrackingEmailBackend().tracker
            html = tracker.rewrite_html(HTML, message_id="m", recipient="ann@example.com").html
            url = TRACKED.search(html)
            assert url is not None
            response = Client().get(url.group(0)[len("http://testserver"):])
            assert response.status_code == 302
            assert events.get(timeout=10).recipient == "ann@example.com"
    finally:
        tracking.disconnect(dispatch_uid="broken")


def test_unsubscribe_get_shows_a_page_and_post_records_without_csrf(events: queue.Queue[Any]) -> None:
    with override_settings(MAILTRACK=mailtrack_settings(TRACKING_SETTINGS={"subscription_tracking": {"enable": True}})):
        tracker = TrackingEmailBackend().tracker
        html = tracker.rewrite_html(HTML, message_id="m", recipient="ann@example.com").html
        url = next(m.group(0) for m in TRACKED.finditer(html) if m.group(1) == "u")
        client = Client(enforce_csrf_checks=True)
        path = url[len("http://testserver"):]
        assert client.get(path).status_code == 200
        assert events.empty()
        response = client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
        event = events.get(timeout=10)
        assert (event.event_type.value, event.recipient) == ("unsubscribed", "ann@example.com")


def test_a_forged_click_is_a_404_and_records_nothing(events: queue.Queue[Any]) -> None:
    with override_settings(MAILTRACK=mailtrack_settings()):
        assert Client().get("/t/c/forged-token").status_code == 404
    assert events.empty()


def test_with_db_events_are_stored_and_signalled(tmp_path: Any, events: queue.Queue[Any]) -> None:
    db = str(tmp_path / "events.db")
    with override_settings(MAILTRACK=mailtrack_settings(DB=db)):
        tracker = TrackingEmailBackend().tracker
        html = tracker.rewrite_html(HTML, message_id="m-db", recipient="ann@example.com").html
        url = next(m.group(0) for m in TRACKED.finditer(html) if m.group(1) == "o")
        assert Client().get(url[len("http://testserver"):]).status_code == 200
        assert events.get(timeout=10).first is True
    store = mailtrack.SQLiteStore(db)
    assert [e.recipient for e in store.events(message_id="m-db")] == ["ann@example.com"]


def test_text_body_is_tracked_when_enable_text_is_on_and_metadata_is_signed() -> None:
    mail.outbox = []
    msg = tracked_message()
    msg.metadata = {"campaign": "spring"}  # type: ignore[attr-defined]
    config = mailtrack_settings(TRACKING_SETTINGS={"click_tracking": {"enable_text": True}})
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=config):
        tracker = TrackingEmailBackend().tracker
        mail.get_connection().send_messages([msg])
    for sent in mail.outbox:
        urls = [m.group(0) for m in TRACKED.finditer(sent.body)]
        assert [tracker.verify(url).url for url in urls] == ["https://example.com/one", "https://example.com/two?a=1&b=2"]
        assert {tracker.verify(url).metadata["campaign"] for url in urls} == {"spring"}


def test_a_named_or_repeated_address_gets_one_copy_and_tokens_carry_the_bare_address() -> None:
    mail.outbox = []
    msg = mail.EmailMultiAlternatives("Hi", TEXT, "shop@example.com", ["Ann <ann@example.com>"], cc=["ann@example.com"],
                                      headers={"Message-ID": "<m-2@example.com>"})
    msg.attach_alternative(HTML, "text/html")
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=mailtrack_settings()):
        tracker = TrackingEmailBackend().tracker
        assert mail.get_connection().send_messages([msg]) == 1
    (sent,) = mail.outbox
    url = TRACKED.search(sent.alternatives[0][0])
    assert url is not None and tracker.verify(url.group(0)).recipient == "ann@example.com"
    headers = sent.message()
    assert headers["To"] == "Ann <ann@example.com>" and headers["Cc"] == "ann@example.com"


def test_a_bcc_only_message_shows_no_to_header() -> None:
    mail.outbox = []
    msg = mail.EmailMessage("Hi", HTML, "shop@example.com", bcc=["cat@example.com", "dan@example.com"],
                            headers={"Message-ID": "<m-3@example.com>"})
    msg.content_subtype = "html"
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=mailtrack_settings()):
        assert mail.get_connection().send_messages([msg]) == 1
    assert [m.recipients() for m in mail.outbox] == [["cat@example.com"], ["dan@example.com"]]
    for sent in mail.outbox:
        built = sent.message()
        assert built["To"] is None and built["Cc"] is None and built["Bcc"] is None


def test_a_tracking_request_with_a_body_over_the_limit_is_refused_unread() -> None:
    from django.test import Client

    from mailtrack.http.wsgi import MAX_BODY

    response = Client().generic("POST", "/t/u/forged", b"x" * (MAX_BODY + 1), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413


def test_a_receiver_written_for_anymail_reads_our_events() -> None:
    """The receiver below is anymail's documented tracking handler, unchanged but for the signal it connects to."""
    seen: queue.Queue[dict[str, Any]] = queue.Queue()

    def handle_tracking(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
        seen.put({
            "esp_name": esp_name, "type": event.event_type, "recipient": event.recipient, "url": event.click_url,
            "tags": event.tags, "metadata": event.metadata, "when": event.timestamp, "id": event.event_id,
            "ua": event.user_agent, "raw": event.esp_event, "mta": event.mta_response,
            "description": event.description, "reject": event.reject_reason,
        })

    tracker = mailtrack.Tracker(secret_keys=["django-test-secret-key-newest"], base_url=BASE_URL)
    url = tracker.tracking_url("click", message_id="m-anymail", recipient="ann@example.com", url="https://example.com/x",
                               metadata={"order": "42"}, tags=["receipt"])
    tracking.connect(handle_tracking, weak=False, dispatch_uid="anymail-style")
    try:
        with override_settings(MAILTRACK=mailtrack_settings()):
            response = Client().get(url[len("http://testserver"):], HTTP_USER_AGENT="Mozilla/5.0 test")
        assert response.status_code == 302
        got = seen.get(timeout=10)
    finally:
        tracking.disconnect(dispatch_uid="anymail-style")
    assert (got["esp_name"], got["type"], got["recipient"], got["url"]) == (
        "mailtrack", "clicked", "ann@example.com", "https://example.com/x")
    assert (got["tags"], got["metadata"], got["ua"]) == (("receipt",), {"order": "42"}, "Mozilla/5.0 test")
    assert got["raw"]["headers"]["user-agent"] == "Mozilla/5.0 test" and got["raw"]["method"] == "GET"
    assert (got["mta"], got["description"], got["reject"]) == (None, None, None)
    assert got["when"].tzinfo is not None and got["id"]


def test_send_mail_and_message_send_reach_a_wrapped_locmem_backend() -> None:
    # The message carries the tracking backend as its connection, and locmem (Django 5.0+) deep-copies messages.
    mail.outbox = []
    msg = tracked_message()
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=mailtrack_settings()):
        assert mail.send_mail("Hi", "Hello", "shop@example.com", ["ann@example.com"], html_message=HTML) == 1
        assert msg.send() == 1
    assert [m.recipients() for m in mail.outbox] == [["ann@example.com"], ["ann@example.com"], ["bob@example.com"],
                                                     ["cat@example.com"]]
    assert all(TRACKED.search(m.alternatives[0][0]) for m in mail.outbox)


@pytest.mark.parametrize("backend", ["console", "filebased", "locmem", "anymail"])
def test_any_backend_is_wrapped(backend: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Django's console, file and locmem backends and django-anymail's (its test ESP) each get the tracked copies."""
    if backend == "anymail":
        pytest.importorskip("anymail")
        path = "anymail.backends.test.EmailBackend"
    else:
        path = f"django.core.mail.backends.{backend}.EmailBackend"
    mail.outbox = []
    msg = tracked_message()
    msg.tags = ["spring"]  # type: ignore[attr-defined]
    msg.metadata = {"campaign": "c1"}  # type: ignore[attr-defined]
    with override_settings(EMAIL_BACKEND=BACKEND, EMAIL_FILE_PATH=str(tmp_path), ANYMAIL={},
                           MAILTRACK=mailtrack_settings(BACKEND=path)):
        assert mail.get_connection().send_messages([msg]) == 1
    tracker = mailtrack.Tracker(secret_keys=["django-test-secret-key-newest"], base_url=BASE_URL)
    if backend == "console":
        written = capsys.readouterr().out
    elif backend == "filebased":
        written = "".join(p.read_text() for p in tmp_path.iterdir())
    else:
        written = "".join(m.alternatives[0][0] for m in mail.outbox)
    urls = [m.group(0) for m in TRACKED.finditer(written.replace("=\n", ""))]
    assert len(urls) == 9, written[:2000]  # 2 links and a pixel, for each of the 3 copies
    assert {tracker.verify(url).recipient for url in urls} == {"ann@example.com", "bob@example.com", "cat@example.com"}
    assert {(tracker.verify(url).tags, tracker.verify(url).metadata["campaign"]) for url in urls} == {(("spring",), "c1")}
    if backend == "anymail":
        sent = mail.outbox
        # anymail's ESPs refuse a To header other than the recipients: each copy is To its recipient alone
        assert sorted(m.to[0] for m in sent) == ["ann@example.com", "bob@example.com", "cat@example.com"]
        assert all(len(m.recipients()) == 1 and not m.cc and not m.bcc for m in sent)
        # the ESP is told not to track again, and gets metadata and tags as anymail passes them on
        assert {(m.anymail_test_params["track_clicks"], m.anymail_test_params["track_opens"]) for m in sent} == {(False, False)}
        assert {tuple(m.anymail_test_params["tags"]) for m in sent} == {("spring",)}
        assert {m.anymail_test_params["metadata"]["campaign"] for m in sent} == {"c1"}
        # the caller's message carries the merged anymail_status, as anymail users expect
        assert set(msg.anymail_status.recipients) == {"ann@example.com", "bob@example.com", "cat@example.com"}
        assert msg.anymail_status.status == {"sent"}


def test_lazy_translation_bodies_and_alternatives_are_tracked() -> None:
    """gettext_lazy() bodies are str to Django (it calls str() on them when it builds the message): track them too."""
    from django.utils.translation import gettext_lazy

    mail.outbox = []
    html_body = mail.EmailMessage("Hi", gettext_lazy(HTML), "shop@example.com", ["ann@example.com"],
                                  headers={"Message-ID": "<lazy-1@example.com>"})
    html_body.content_subtype = "html"
    alternative = mail.EmailMultiAlternatives("Hi", gettext_lazy(TEXT), "shop@example.com", ["bob@example.com"],
                                              headers={"Message-ID": "<lazy-2@example.com>"})
    alternative.attach_alternative(gettext_lazy(HTML), "text/html")
    config = mailtrack_settings(TRACKING_SETTINGS={"click_tracking": {"enable_text": True}})
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=config):
        assert mail.get_connection().send_messages([html_body, alternative]) == 2
    first, second = mail.outbox
    assert [m.group(1) for m in TRACKED.finditer(first.body)] == ["c", "c", "o"]
    assert [m.group(1) for m in TRACKED.finditer(second.alternatives[0][0])] == ["c", "c", "o"]
    assert [m.group(1) for m in TRACKED.finditer(second.body)] == ["c", "c"]
    assert all(sent.message().as_bytes() for sent in mail.outbox)


@pytest.mark.parametrize(
    ("sender", "domain"),
    [("shop@bücher.example", "xn--bcher-kva.example"), ("Shop <shop@example.com> (sales)", "example.com"),
     ('"sales@old" <shop@example.com>', "example.com")],
)
def test_a_generated_message_id_is_a_valid_header_whatever_the_sender(sender: str, domain: str) -> None:
    mail.outbox = []
    msg = mail.EmailMessage("Hi", HTML, sender, ["ann@example.com"])
    msg.content_subtype = "html"
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=mailtrack_settings()):
        assert mail.get_connection().send_messages([msg]) == 1
    (sent,) = mail.outbox
    parsed = email.message_from_bytes(sent.message().as_bytes(), policy=email.policy.default)
    header = str(parsed["Message-ID"])
    assert re.fullmatch(r"<[^<>@\s]+@" + re.escape(domain) + ">", header), header
    url = TRACKED.search(sent.body)
    tracker = mailtrack.Tracker(["django-test-secret-key-newest"], BASE_URL)
    assert url is not None and tracker.verify(url.group(0)).message_id == header.strip("<>")

@pytest.mark.timeout(120)
def test_one_backend_shared_by_threads_sends_every_message_once(smtp: tuple[Inbox, int]) -> None:
    """Django's SMTP backend may be shared by threads (it locks around each batch): so may the tracking backend."""
    import threading

    inbox, port = smtp
    config = mailtrack_settings(BACKEND="django.core.mail.backends.smtp.EmailBackend")
    with override_settings(EMAIL_BACKEND=BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, MAILTRACK=config):
        connection = mail.get_connection()
        counts: list[int] = []
        errors: list[BaseException] = []

        def send(thread: int) -> None:
            for n in range(15):
                msg = mail.EmailMessage("Hi", HTML, "shop@example.com", [f"a{thread}-{n}@example.com", f"b{thread}-{n}@example.com"],
                                        headers={"Message-ID": f"<t{thread}-{n}@example.com>"})
                msg.content_subtype = "html"
                try:
                    counts.append(connection.send_messages([msg]))
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


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tracked", [False, True], ids=["django-alone", "tracked"])
def test_a_refused_recipient_does_not_keep_the_message_from_the_others(tracked: bool) -> None:
    """Django's SMTP backend sends to the recipients the server accepts and raises only when it accepts none.

    Tracked, each recipient is a copy of its own: a refused one must not stop
    the copies after it (nor count the message unsent), as it does not stop
    the one SMTP transaction of the untracked message.
    """
    import smtplib

    from support.smtp import smtp_server

    smtp = "django.core.mail.backends.smtp.EmailBackend"
    with smtp_server(refuse=frozenset({"nobody@example.com"})) as (inbox, port), \
            override_settings(EMAIL_BACKEND=BACKEND if tracked else smtp, EMAIL_HOST="127.0.0.1", EMAIL_PORT=port,
                              MAILTRACK=mailtrack_settings(BACKEND=smtp)):
        connection = mail.get_connection()
        msg = mail.EmailMessage("Hi", HTML, "shop@example.com", ["ann@example.com", "nobody@example.com"],
                                cc=["cat@example.com"], headers={"Message-ID": "<refused-1@example.com>"})
        msg.content_subtype = "html"
        after = mail.EmailMessage("Hi", HTML, "shop@example.com", ["dan@example.com"])
        assert connection.send_messages([msg, after]) == 2
        assert sorted(rcpt for rcpts, _ in inbox.envelopes for rcpt in rcpts) == [
            "ann@example.com", "cat@example.com", "dan@example.com"]
        alone = mail.EmailMessage("Hi", HTML, "shop@example.com", ["nobody@example.com"])
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            connection.send_messages([alone])


def test_subscription_tracking_adds_rfc_8058_headers_whose_one_click_post_unsubscribes_that_recipient(
    events: queue.Queue[Any],
) -> None:
    """What a mail client needs for one-click unsubscribe: List-Unsubscribe and List-Unsubscribe-Post on each copy."""
    mail.outbox = []
    base = "https://testserver/t"
    config = mailtrack_settings(BASE_URL=base, TRACKING_SETTINGS={"subscription_tracking": {"enable": True}})
    own = mail.EmailMessage("Hi", HTML, "shop@example.com", ["dan@example.com"],
                            headers={"Message-ID": "<own-1@example.com>", "List-Unsubscribe": "<mailto:u@example.com>"})
    with override_settings(EMAIL_BACKEND=BACKEND, MAILTRACK=config):
        assert mail.get_connection().send_messages([tracked_message(), own]) == 2
        client = Client(enforce_csrf_checks=True)
        for sent, recipient in zip(mail.outbox[:3], ["ann@example.com", "bob@example.com", "cat@example.com"], strict=True):
            headers = email.message_from_bytes(sent.message().as_bytes(), policy=email.policy.default)
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            url = str(headers["List-Unsubscribe"]).strip()  # a long value may be folded onto the next line
            assert url.startswith(f"<{base}/u/") and url.endswith(">")
            response = client.post(url[1:-1][len("https://testserver"):], "List-Unsubscribe=One-Click",
                                    content_type="application/x-www-form-urlencoded", secure=True)
            assert response.status_code == 200
            event = events.get(timeout=10)
            assert (event.event_type.value, event.recipient, event.message_id) == (
                "unsubscribed", recipient, "campaign-1@example.com")
    kept = mail.outbox[3].message()
    assert kept["List-Unsubscribe"] == "<mailto:u@example.com>" and kept["List-Unsubscribe-Post"] is None


def test_privacy_settings_reduce_what_the_store_and_the_signal_get(events: queue.Queue[Any], tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    config = mailtrack_settings(DB=str(db), TRUSTED_PROXIES=["127.0.0.1"], PRIVACY_IP="truncate",
                                PRIVACY_USER_AGENT="none")
    with override_settings(MAILTRACK=config):
        from mailtrack.contrib.django.conf import load

        url = load().tracker.tracking_url("open", message_id="m1", recipient="ann@example.com")
        response = Client().get(url[len("http://testserver"):], HTTP_X_FORWARDED_FOR="2001:db8:85a3:8d3::7",
                                HTTP_USER_AGENT="Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0; Pro)",
                                REMOTE_ADDR="127.0.0.1")
        assert response.status_code == 200
        event = events.get(timeout=10)
    assert (event.ip, event.user_agent) == ("2001:db8:85a3::", None)
    store = mailtrack.SQLiteStore(db)
    try:
        assert [(e.ip, e.user_agent) for e in store.events()] == [("2001:db8:85a3::", None)]
    finally:
        store.close()


def test_a_bad_privacy_setting_is_refused_naming_its_key() -> None:
    with override_settings(MAILTRACK=mailtrack_settings(PRIVACY_USER_AGENT="browser")):
        from mailtrack.contrib.django.conf import load

        with pytest.raises(mailtrack.ConfigurationError, match="PRIVACY_USER_AGENT"):
            load()


def test_machine_verdicts_and_the_honeypot(events: queue.Queue[Any], tmp_path: Path) -> None:
    """MACHINE_RANGES and HONEYPOT: the view labels a Gmail proxy open; off, it labels nothing; a bad file is refused."""
    gmail = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    from mailtrack.contrib.django.conf import load

    for ranges, expected in ((None, "image_proxy"), ("off", None)):
        settings = mailtrack_settings(HONEYPOT=True) if ranges is None else mailtrack_settings(MACHINE_RANGES=ranges)
        with override_settings(MAILTRACK=settings):  # a settings change rebuilds the views' endpoints
            config = load()
            assert config.tracker.honeypot is (ranges is None)
            url = config.tracker.tracking_url("open", message_id="m1", recipient="ann@example.com")
            assert Client().get(url[len("http://testserver"):], HTTP_USER_AGENT=gmail).status_code == 200
            assert events.get(timeout=10).machine == expected
    bad = tmp_path / "bad.csv"
    bad.write_text("network,label,source,retrieved\n10.0.0.0/8,nobody,https://x,2026-11-30\n", encoding="utf-8")
    for settings, message in ((mailtrack_settings(MACHINE_RANGES=str(bad)), r"MACHINE_RANGES.*line 2"),
                              (mailtrack_settings(HONEYPOT="yes"), "HONEYPOT")):
        with override_settings(MAILTRACK=settings), pytest.raises(mailtrack.ConfigurationError, match=message):
            load()
