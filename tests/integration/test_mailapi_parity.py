"""The shared Django-shaped mail logic (``mailtrack.contrib._mailapi``) behaves as the Django backend does.

Flask-Mailman's ``MailmanBackend`` uses ``_mailapi``; the Django backend keeps
its own copy of the same rules for now. This pins the two together on Django
messages, so a change to one that the other does not follow fails here.
Tokens carry a timestamp, so each tracking URL is compared by what it
verifies to (kind, recipient, message, link, destination), not by its bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("django")

from support.django_settings import configure  # noqa: E402

from mailtrack.contrib import _mailapi  # noqa: E402

BASE = "https://app.example.com/t"
HTML = '<html><body><a href="https://example.com/one">one</a> <a href="https://example.com/no" data-no-track>no</a></body></html>'
TEXT = "See https://example.com/one and https://example.com/no\n"


@pytest.fixture(scope="module", autouse=True)
def django_settings() -> Iterator[None]:
    configure()
    yield


def _backend() -> Any:
    from django.test import override_settings

    from mailtrack.contrib.django.backend import TrackingEmailBackend

    with override_settings(MAILTRACK={"BACKEND": "django.core.mail.backends.locmem.EmailBackend", "BASE_URL": BASE,
                                      "SECRET_KEYS": ["k"], "TRACKING_SETTINGS": {"click_tracking": {"enable_text": True}}}):
        return TrackingEmailBackend()


def _claims(tracker: Any, text: str) -> str:
    def verified(match: re.Match[str]) -> str:
        claims = tracker.verify(match.group(0).replace("&amp;", "&"))
        return repr((claims.kind, claims.recipient, claims.message_id, claims.link_index, claims.url, claims.metadata))

    return re.sub(re.escape(BASE) + r"/[a-z]/[^\"'\s<>]+", verified, text)


def _shape(tracker: Any, msg: Any) -> tuple[Any, ...]:
    alternatives = [(_claims(tracker, str(a[0])), a[1]) for a in getattr(msg, "alternatives", [])]
    return (msg.to, msg.cc, msg.bcc, dict(msg.extra_headers), msg.content_subtype, _claims(tracker, msg.body), alternatives)


def _messages() -> list[Any]:
    from django.core.mail import EmailMessage, EmailMultiAlternatives

    html = EmailMessage("Hi", HTML, to=["Ann <ann@example.com>", "bob@example.com"], cc=["ANN@example.com"],
                        bcc=["dee@example.com"], headers={"Message-ID": "<m1@example.com>"})
    html.content_subtype = "html"
    alternatives = EmailMultiAlternatives("Hi", TEXT, to=["ann@example.com"], headers={"Message-ID": "<m2@example.com>"})
    alternatives.attach_alternative(HTML, "text/html")
    alternatives.metadata = {"campaign": "c1"}  # type: ignore[attr-defined]
    opted_out = EmailMessage("Hi", TEXT, to=["ann@example.com"], headers={"Message-ID": "<m3@example.com>"})
    opted_out.track_clicks = False  # type: ignore[attr-defined]
    broken = EmailMessage("Hi", TEXT, to=["ann@example.com"], headers={"Message-ID": "<m4@example.com>"})
    broken.tracking_settings = "not a dict"  # type: ignore[attr-defined]
    return [html, alternatives, opted_out, broken]


@pytest.mark.parametrize("index", range(4), ids=["html-split", "alternatives-metadata", "clicks-off", "fail-open"])
def test_mailapi_prepare_gives_what_the_django_backend_gives(index: int) -> None:
    backend = _backend()
    ours = _mailapi.prepare(backend.tracker, _messages()[index])
    django = backend._prepare(_messages()[index])
    assert [_shape(backend.tracker, m) for m in ours] == [_shape(backend.tracker, m) for m in django]
    assert ours  # each case sends something
