"""Django's own messages through Tracker.rewrite_message (issue 8, defect 9).

``django.core.mail.EmailMessage.message()`` returns ``SafeMIMEText`` or
``SafeMIMEMultipart``: compat32 ``email.mime`` subclasses whose ``as_bytes``
takes no ``policy`` argument. They must be rewritten like any other
``email.message.Message``, come back as a new object of the same class, leave
the input and the attachments alone, and stay serializable by Django itself.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from typing import Any

import pytest
from support.django_settings import configure
from support.helpers import make_tracker

import mailtrack

pytest.importorskip("django")

from django.core import mail  # noqa: E402

TRACKER = make_tracker(settings={"click_tracking": {"enable_text": True}})
# A Message-ID of our own: Django would otherwise ask the resolver for this host's name.
HEADERS = {"Message-ID": "<django-1@example.com>"}
PNG = bytes(range(256)) * 4 + b"https://example.com/not-a-link-in-an-image\r\n"
NOTES = "Notes: https://attached.example.com/notes stay as they are.\n"


@pytest.fixture(scope="module", autouse=True)
def django_settings() -> Iterator[None]:
    """The Django configuration shared with the other Django test modules (settings.configure runs once)."""
    configure()
    yield


def rewrite(message: Any) -> mailtrack.MessageResult[Any]:
    before = message.as_bytes()
    result = TRACKER.rewrite_message(message, issued_at=0)
    assert message.as_bytes() == before, "the input message was changed"
    assert result.message is not message and type(result.message) is type(message)
    return result


def reparsed(message: Any) -> email.message.EmailMessage:
    """The rewritten message as Django serializes it, read back by the stdlib."""
    data = message.as_bytes()
    assert isinstance(message.as_string(), str)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def destinations(result: mailtrack.MessageResult[Any]) -> list[str]:
    for link in result.links:
        assert TRACKER.verify(link.tracking_url).url == link.url
    return [link.url for link in result.links]


def test_email_message_with_an_html_body() -> None:
    msg = mail.EmailMessage(
        "Grüße aus Köln — 日本",
        '<p>Hallo Jörg, <a href="https://example.com/angebot?a=1&amp;b=2">unser Angebot</a> für dich.</p>',
        "shop@example.com",
        ["Jörg <joerg@example.com>"],
        headers=HEADERS,
    )
    msg.content_subtype = "html"
    original = msg.message()
    result = rewrite(original)
    assert result.recipient == "joerg@example.com" and result.message_id == "django-1@example.com"
    assert destinations(result) == ["https://example.com/angebot?a=1&b=2"]
    parsed = reparsed(result.message)
    assert str(parsed["Subject"]) == "Grüße aus Köln — 日本"
    html = parsed.get_body(("html",))
    assert html is not None
    content = html.get_content()
    assert "Hallo Jörg" in content and "https://t.example.com/c/" in content and "https://t.example.com/o/" in content
    # Still a working Django object: its own __setitem__ (which needs the attributes Django set) accepts a header.
    result.message["X-Campaign"] = "spring"
    assert b"X-Campaign: spring" in result.message.as_bytes()


def test_email_multi_alternatives_with_an_attachment() -> None:
    long_line = "Lange Zeile äöü " * 80  # over 998 octets: Django writes this part as quoted-printable
    msg = mail.EmailMultiAlternatives(
        "Neuigkeiten ✓",
        f"Hallo! Mehr unter https://example.com/text?x=1\n{long_line}\nhttps://example.com/lang\n",
        "shop@example.com",
        ["ann@example.com"],
        headers=HEADERS,
    )
    msg.attach_alternative(
        '<html><body><p>Hallo! <a href="https://example.com/html">Mehr</a> — schön.</p></body></html>', "text/html"
    )
    msg.attach("logo.png", PNG, "image/png")
    msg.attach("notes.txt", NOTES, "text/plain")
    original = msg.message()
    attachments_before = {
        part.get_filename(): part.get_payload(decode=True)
        for part in email.message_from_bytes(original.as_bytes(), policy=email.policy.default).iter_attachments()
    }
    assert set(attachments_before) == {"logo.png", "notes.txt"}
    result = rewrite(original)
    assert destinations(result) == ["https://example.com/text?x=1", "https://example.com/lang", "https://example.com/html"]
    assert {p.status for p in result.parts if p.body} == {"rewritten"}
    assert [(p.content_type, p.status, p.reason) for p in result.parts if not p.body] == [
        ("image/png", "left", "not a text body"),
        ("text/plain", "left", "attachment"),
    ]
    parsed = reparsed(result.message)
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and html is not None
    assert long_line in text.get_content() and "https://t.example.com/c/" in text.get_content()
    assert "— schön" in html.get_content() and "https://t.example.com/o/" in html.get_content()
    attachments_after = {part.get_filename(): part.get_payload(decode=True) for part in parsed.iter_attachments()}
    assert attachments_after == attachments_before
    assert attachments_after["logo.png"] == PNG
    # The attachment's bytes in the message are the very bytes Django wrote.
    for part in original.walk():
        if part.get_filename():
            assert part.get_payload().encode("ascii", "surrogateescape") in result.message.as_bytes()


def test_a_second_pass_over_a_django_result_changes_nothing() -> None:
    msg = mail.EmailMultiAlternatives("Hi", "Go https://example.com/a\n", "shop@example.com", ["ann@example.com"],
                                      headers=HEADERS)
    msg.attach_alternative('<p><a href="https://example.com/a">a</a></p>', "text/html")
    first = rewrite(msg.message())
    again = TRACKER.rewrite_message(first.message, issued_at=0)
    assert again.message.as_bytes() == first.message.as_bytes()
    assert type(again.message) is type(first.message)
