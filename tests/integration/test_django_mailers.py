"""The tracking backend configured the Django 6.1 way: a ``MAILERS`` entry wrapping another mailer (issue 9).

On Django 6.1+ ``MAILERS`` replaces ``EMAIL_BACKEND``: the tracking mailer's
``OPTIONS["mailer"]`` names the entry that really sends. The end-to-end test
sends through Django's SMTP backend to a real SMTP server (aiosmtpd on
loopback) and follows the tracked links with Django's test client, recording
every warning: Django 6.1 announces its deprecations as
``RemovedInDjango2028Warning`` (a ``PendingDeprecationWarning``), and none may
come from that path. The tests that need ``MAILERS`` skip on older Djangos;
the keyword-argument tests run on every Django.
"""

from __future__ import annotations

import email
import email.policy
import queue
import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from support.django_settings import configure
from support.smtp import Inbox

import mailtrack

pytest.importorskip("django")

from django.core import mail  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

from mailtrack.contrib.django import TrackingEmailBackend  # noqa: E402
from mailtrack.contrib.django.signals import tracking  # noqa: E402

BASE_URL = "http://testserver/t"
OURS = "mailtrack.contrib.django.TrackingEmailBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
TRACKED = re.compile(re.escape(BASE_URL) + r"/([ocu])/([A-Za-z0-9_.\-~%]+)")
HTML = '<p>Hello, <a href="https://example.com/one">one</a> and <a href="https://example.com/two">two</a>.</p>'
TRACKER = mailtrack.Tracker(["django-test-secret-key-older", "django-test-secret-key-newest"], BASE_URL)

needs_mailers = pytest.mark.skipif(not hasattr(mail, "mailers"), reason="MAILERS and mail.mailers are new in Django 6.1")


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

    tracking.connect(receiver, weak=False, dispatch_uid="test-mailers-events")
    yield received
    tracking.disconnect(dispatch_uid="test-mailers-events")


def tracking_mailer(mailer: Any = "sender", **options: Any) -> dict[str, Any]:
    return {"BACKEND": OURS, "OPTIONS": {"mailer": mailer, **options}}


def mailers(**entries: Any) -> dict[str, Any]:
    """MAILERS with a tracking ``default`` wrapping a locmem ``sender``, changed by ``entries``."""
    return {"default": tracking_mailer(), "sender": {"BACKEND": LOCMEM}, **entries}


def message(to: list[str] | None = None, message_id: str = "<m-1@example.com>") -> mail.EmailMultiAlternatives:
    msg = mail.EmailMultiAlternatives("Offers", "Hello", "shop@example.com", to or ["ann@example.com"],
                                      headers={"Message-ID": message_id})
    msg.attach_alternative(HTML, "text/html")
    return msg


def deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    """The deprecation warnings among ``caught`` (Django 6.1's are PendingDeprecationWarnings), as text."""
    return [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught
            if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]


@needs_mailers
@pytest.mark.timeout(60)
def test_smtp_through_a_tracking_mailer_tracks_each_copy_and_warns_about_nothing(
    smtp: tuple[Inbox, int], events: queue.Queue[Any]
) -> None:
    inbox, port = smtp
    settings = {
        "MAILERS": {"default": tracking_mailer("smtp"), "smtp": {"BACKEND": SMTP, "OPTIONS": {"host": "127.0.0.1", "port": port}}},
        "MAILTRACK": {"BASE_URL": BASE_URL},
    }
    with warnings.catch_warnings(record=True) as caught, override_settings(**settings):
        warnings.simplefilter("always")
        backend = mail.mailers.default
        assert isinstance(backend, TrackingEmailBackend) and backend.alias == "default"
        assert backend.connection.alias == "smtp" and backend.connection.port == port
        msg = message(["ann@example.com", "bob@example.com"])
        assert msg.send() == 1  # EmailMessage.send() without arguments: the default mailer
        assert mail.send_mail("Hi", "Hello", "shop@example.com", ["cat@example.com"], html_message=HTML, using="default") == 1

        assert sorted(rcpts for rcpts, _ in inbox.envelopes) == [["ann@example.com"], ["bob@example.com"], ["cat@example.com"]]
        client = Client()
        for (recipient,), content in inbox.envelopes:
            received = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(received, email.message.EmailMessage)
            part = received.get_body(preferencelist=("html",))
            assert part is not None
            urls = {kind: [] for kind in "oc"}  # type: dict[str, list[str]]
            for match in TRACKED.finditer(str(part.get_content())):
                urls[match.group(1)].append(match.group(0))
            assert len(urls["c"]) == 2 and len(urls["o"]) == 1

            click = client.get(urls["c"][1][len("http://testserver"):])
            assert click.status_code == 302 and click["Location"] == "https://example.com/two"
            clicked = events.get(timeout=10)
            assert (clicked.event_type.value, clicked.recipient, clicked.url) == ("clicked", recipient, "https://example.com/two")
            assert client.get(urls["o"][0][len("http://testserver"):]).status_code == 200
            assert (events.get(timeout=10).event_type.value, recipient) == ("opened", recipient)
    assert deprecations(caught) == []


@needs_mailers
def test_each_tracking_mailer_has_its_own_options_over_mailtrack() -> None:
    entries = mailers(
        receipts=tracking_mailer(tracking_settings={"click_tracking": {"enable": False}}, split_recipients=False),
    )
    mail.outbox = []
    with warnings.catch_warnings(record=True) as caught, \
            override_settings(MAILERS=entries, MAILTRACK={"BASE_URL": BASE_URL, "SPLIT_RECIPIENTS": True}):
        warnings.simplefilter("always")
        assert mail.mailers.default.send_messages([message(["ann@example.com", "bob@example.com"])]) == 1
        assert message(["cat@example.com"], "<m-2@example.com>").send(using="receipts") == 1
    assert deprecations(caught) == []
    assert [(sent.recipients(), sent.sent_using) for sent in mail.outbox] == [
        (["ann@example.com"], "sender"), (["bob@example.com"], "sender"), (["cat@example.com"], "sender")]
    default_kinds = [m.group(1) for m in TRACKED.finditer(mail.outbox[0].alternatives[0][0])]
    receipt_html = mail.outbox[2].alternatives[0][0]
    assert default_kinds == ["c", "c", "o"]
    assert [m.group(1) for m in TRACKED.finditer(receipt_html)] == ["o"] and 'href="https://example.com/one"' in receipt_html
    pixel = TRACKED.search(receipt_html)
    assert pixel is not None and TRACKER.verify(pixel.group(0)).recipient == "cat@example.com"


@needs_mailers
def test_code_still_on_get_connection_gets_the_tracking_mailer_even_with_fail_silently() -> None:
    mail.outbox = []
    with override_settings(MAILERS=mailers(), MAILTRACK={"BASE_URL": BASE_URL}), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # get_connection() itself is deprecated: the caller is told, not us
        backend = mail.get_connection(fail_silently=True)
        assert isinstance(backend, TrackingEmailBackend)
        assert backend.send_messages([message()]) == 1
    assert len(mail.outbox) == 1 and TRACKED.search(mail.outbox[0].alternatives[0][0])


@needs_mailers
@pytest.mark.parametrize(
    ("entries", "mailtrack_setting", "says"),
    [
        ({"default": {"BACKEND": OURS}}, None, "OPTIONS must name the mailer"),
        ({"default": tracking_mailer("")}, None, "OPTIONS must name the mailer"),
        ({"default": tracking_mailer("smtp")}, None, "'smtp', which is not in MAILERS"),
        ({"default": tracking_mailer("default")}, None, "'default', itself"),
        ({"other": tracking_mailer()}, None, "another tracking mailer"),
        ({"sender": {"BACKEND": SMTP}}, None, "'sender', which cannot be built"),  # the SMTP backend needs a host
        ({"default": tracking_mailer(host="mail.example.com")}, None, "'host'"),
        ({"default": tracking_mailer(fail_silently=True)}, None, "'fail_silently'"),
        ({"default": tracking_mailer(split_recipients="no")}, None, "MAILERS['default'] OPTIONS['split_recipients']"),
        ({"default": tracking_mailer(tracking_settings={"open_tracking": {"enable": 1}})}, None,
         "MAILERS['default'] OPTIONS['tracking_settings']: open_tracking.enable"),
        ({}, {"BASE_URL": BASE_URL, "BACKEND": SMTP}, "MAILTRACK['BACKEND'] is only for EMAIL_BACKEND"),
        ({}, {"SECRET_KEYS": ["k"]}, "BASE_URL"),
        ({}, "https://t.example.com", "MAILTRACK must be a dict"),
    ],
)
def test_a_bad_mailers_configuration_raises_configuration_error_when_the_mailer_is_built(
    entries: dict[str, Any], mailtrack_setting: Any, says: str
) -> None:
    config = mailtrack_setting if mailtrack_setting is not None else {"BASE_URL": BASE_URL}
    if "other" in entries:
        entries = {**entries, "default": tracking_mailer("other")}
    with override_settings(MAILERS=mailers(**entries), MAILTRACK=config), \
            pytest.raises(mailtrack.ConfigurationError, match=re.escape(says)):
        mail.mailers["default"]


@needs_mailers
def test_building_the_backend_directly_in_a_mailers_project_says_to_use_mailers() -> None:
    with override_settings(MAILERS=mailers(), MAILTRACK={"BASE_URL": BASE_URL}), \
            pytest.raises(mailtrack.ConfigurationError, match="django.core.mail.mailers"):
        TrackingEmailBackend()


def test_the_mailer_option_is_refused_without_mailers_on_every_django() -> None:
    with override_settings(MAILTRACK={"BACKEND": LOCMEM, "BASE_URL": BASE_URL}), \
            pytest.raises(mailtrack.ConfigurationError, match="'mailer' is an OPTION of a MAILERS entry"):
        TrackingEmailBackend(mailer="smtp")


def test_keyword_arguments_override_mailtrack_on_every_django() -> None:
    with override_settings(MAILTRACK={"BACKEND": LOCMEM, "BASE_URL": BASE_URL}):
        plain = TrackingEmailBackend()
        backend = TrackingEmailBackend(split_recipients=False, fail_silently_tracking=False,
                                       tracking_settings={"click_tracking": {"enable": False}})
        with pytest.raises(mailtrack.ConfigurationError, match=re.escape("TrackingEmailBackend(split_recipients=...)")):
            TrackingEmailBackend(split_recipients="no")
    assert (plain.config.split_recipients, plain.config.fail_silently_tracking) == (True, True)
    assert (backend.config.split_recipients, backend.config.fail_silently_tracking) == (False, False)
    assert backend.tracker.settings.click_tracking.enable is False and plain.tracker.settings.click_tracking.enable is True


@pytest.mark.skipif(hasattr(mail, "mailers"), reason="Django 6.1 deprecates EMAIL_BACKEND itself and says so")
def test_the_email_backend_form_warns_about_nothing_before_django_6_1() -> None:
    mail.outbox = []
    with warnings.catch_warnings(record=True) as caught, \
            override_settings(EMAIL_BACKEND=OURS, MAILTRACK={"BACKEND": LOCMEM, "BASE_URL": BASE_URL}):
        warnings.simplefilter("always")
        assert message().send() == 1
        assert mail.get_connection(fail_silently=True).send_messages([message()]) == 1
    assert deprecations(caught) == [] and len(mail.outbox) == 2


@needs_mailers
def test_fail_silently_reaches_the_mailer_that_sends_as_it_does_without_tracking() -> None:
    """send_mail(fail_silently=True) (deprecated, still honoured by Django 6.1) swallows SMTP errors, tracked or not."""
    from support.smtp import free_port

    smtp = {"BACKEND": SMTP, "OPTIONS": {"host": "127.0.0.1", "port": free_port()}}  # nothing listens there
    for entries in ({"default": smtp}, {"default": tracking_mailer("smtp"), "smtp": smtp}):
        with override_settings(MAILERS=entries, MAILTRACK={"BASE_URL": BASE_URL}), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fail_silently is deprecated: the caller is told, not us
            assert mail.send_mail("Hi", "Hello", "shop@example.com", ["ann@example.com"], fail_silently=True) == 0
            assert message().send(fail_silently=True) == 0
            with pytest.raises(OSError):
                message().send()
