"""Another message's tracking is signed again for this one (issue #8, defect 3).

Feeding Alice's tracked output in for Bob (same Tracker, another message ID,
recipient or metadata) must not keep Alice's links, pixel, footer or
``List-Unsubscribe``: Bob's clicks would be recorded as Alice's and his
one-click unsubscribe would remove her. Our URLs for this very message stay
as they are (a second pass is a byte-identical no-op); URLs under our base URL
that do not verify are left alone and reported as ``not-verified``.

Metadata: the same message and recipient with other metadata is signed
again: the new call's metadata wins. A call without metadata keeps what is
there (a second pass of a message whose X-SMTPAPI ``unique_args`` became its
metadata no longer has that header, and must be a no-op).
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any

import pytest
from support.helpers import BASE_URL, make_tracker

import mailtrack
from mailtrack.core.urlfinder import find_urls

T0 = 1_700_000_000
ALL_ON: dict[str, Any] = {
    "click_tracking": {"enable": True, "enable_text": True},
    "open_tracking": {"enable": True},
    "subscription_tracking": {"enable": True},
}
ALICE: dict[str, Any] = {"message_id": "msg-alice", "recipient": "alice@example.com", "metadata": {"campaign": "spring"}}
HTML = (
    '<html><body><p><a href="https://shop.example/sale?a=1&amp;b=2">sale</a> '
    '<a href="https://shop.example/blog">blog</a></p></body></html>'
)
TEXT = "Sale: https://shop.example/sale?a=1&b=2\nBlog: https://shop.example/blog\n"
BOBS = [
    pytest.param({"message_id": "msg-bob", "recipient": "bob@example.com"}, id="another message and recipient"),
    pytest.param({"message_id": "msg-alice", "recipient": "bob@example.com", "metadata": {"campaign": "spring"}},
                 id="another recipient"),
    pytest.param({"message_id": "msg-bob", "recipient": "alice@example.com", "metadata": {"campaign": "spring"}},
                 id="another message"),
    pytest.param({"message_id": "msg-alice", "recipient": "alice@example.com", "metadata": {"campaign": "summer"}},
                 id="other metadata"),
]


def html_for(tracker: mailtrack.Tracker, html: str, who: dict[str, Any], **kwargs: Any) -> mailtrack.HtmlResult:
    kwargs.setdefault("settings", ALL_ON)
    return tracker.rewrite_html(html, issued_at=T0, **who, **kwargs)


def text_for(tracker: mailtrack.Tracker, text: str, who: dict[str, Any], **kwargs: Any) -> mailtrack.TextResult:
    kwargs.setdefault("settings", ALL_ON)
    return tracker.rewrite_text(text, issued_at=T0, **who, **kwargs)


def our_urls(tracker: mailtrack.Tracker, document: str) -> list[mailtrack.Verified]:
    """Every tracking URL of ours in ``document``, verified (HTML-escaped ``&amp;`` aside, tokens hold none)."""
    found = re.findall(re.escape(BASE_URL) + r"/[cou]/[A-Za-z0-9_.-]+", document)
    return [tracker.verify(url.rstrip(".")) for url in found]


def identity(verified: mailtrack.Verified) -> dict[str, Any]:
    return {"message_id": verified.message_id, "recipient": verified.recipient, "metadata": dict(verified.metadata)}


def expected_identity(who: dict[str, Any]) -> dict[str, Any]:
    return {"message_id": who["message_id"], "recipient": who["recipient"], "metadata": who.get("metadata", {})}


# -- HTML ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bob", BOBS)
def test_html_tracked_for_another_message_is_signed_again_for_this_one(bob: dict[str, Any]) -> None:
    tracker = make_tracker()
    alice = html_for(tracker, HTML, ALICE)
    for_bob = html_for(tracker, alice.html, bob)
    urls = our_urls(tracker, for_bob.html)
    assert sorted(v.kind for v in urls) == ["click", "click", "open", "unsubscribe"], "no second pixel or footer"
    assert all(identity(v) == expected_identity(bob) for v in urls), "every URL is Bob's"
    clicks = [v for v in urls if v.kind == "click"]
    assert [(v.link_index, v.url) for v in clicks] == [(0, "https://shop.example/sale?a=1&b=2"), (1, "https://shop.example/blog")]
    assert [(link.index, link.url, link.raw) for link in for_bob.links] == [
        (link.index, link.url, link.tracking_url) for link in alice.links
    ]
    assert for_bob.html.count("<img") == 1 and for_bob.html.count("unsubscribe and stop") == 1
    # Alice's pixel and unsubscribe URL were replaced where they stood; the rest of the document is as it was.
    assert for_bob.pixel is not None and for_bob.pixel.replaced in alice.html
    assert [p.replaced for p in for_bob.unsubscribe][0] in alice.html
    # ... and Bob's output is his own: a second pass for him changes nothing.
    again = html_for(tracker, for_bob.html, bob)
    assert again.html == for_bob.html and again.links == [] and again.pixels == [] and again.unsubscribe == []


def test_html_second_pass_for_the_same_message_is_a_byte_identical_no_op() -> None:
    tracker = make_tracker()
    first = html_for(tracker, HTML, ALICE)
    second = tracker.rewrite_html(first.html, issued_at=T0 + 3600, settings=ALL_ON, **ALICE)  # later: another timestamp
    assert second.html == first.html
    assert second.links == [] and second.pixels == [] and second.unsubscribe == []
    assert [s.reason for s in second.skipped] == ["already-tracked"] * 3  # two links and the footer's


def test_html_second_pass_without_metadata_keeps_the_earlier_metadata() -> None:
    tracker = make_tracker()
    first = html_for(tracker, HTML, ALICE)
    second = html_for(tracker, first.html, {**ALICE, "metadata": None})
    assert second.html == first.html and second.links == [] and second.pixels == []


def test_html_signed_with_an_older_key_and_long_ago_is_signed_again() -> None:
    old = mailtrack.Tracker(secret_keys=["older-key"], base_url=BASE_URL)
    alice = old.rewrite_html(HTML, issued_at=0, settings=ALL_ON, **ALICE)
    tracker = make_tracker()  # older-key still verifies, newest-key signs
    for_bob = html_for(tracker, alice.html, {"message_id": "msg-bob", "recipient": "bob@example.com"})
    assert {v.message_id for v in our_urls(tracker, for_bob.html)} == {"msg-bob"}
    assert len(for_bob.links) == 2


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE_URL}/c/abc.def.ghi",  # forged
        f"{BASE_URL}/c/",  # empty
        f"{BASE_URL}/unknown/path",  # not a tracking path
    ],
)
def test_html_our_base_url_that_does_not_verify_is_left_alone_as_not_verified(url: str) -> None:
    tracker = make_tracker()
    html = f'<a href="{url}">x</a><a href="https://shop.example/">y</a>'
    result = html_for(tracker, html, ALICE, settings={"open_tracking": {"enable": False}})
    assert [(s.raw, s.reason) for s in result.skipped] == [(url, "not-verified")]
    assert [(link.index, link.url) for link in result.links] == [(0, "https://shop.example/")]
    assert result.html.startswith(f'<a href="{url}">x</a>')


def test_html_truncated_or_foreign_key_click_url_is_not_verified() -> None:
    alice = html_for(make_tracker(), HTML, ALICE)
    link = alice.links[0].tracking_url
    stranger = mailtrack.Tracker(secret_keys=["someone-else"], base_url=BASE_URL)
    foreign = stranger.rewrite_html(HTML, issued_at=T0, settings=ALL_ON, **ALICE).links[0].tracking_url
    html = f'<a href="{link[:-3]}">t</a><a href="{foreign}">f</a>'
    result = html_for(make_tracker(), html, {"message_id": "msg-bob", "recipient": "bob@example.com"},
                      settings={"open_tracking": {"enable": False}, "subscription_tracking": {"enable": False}})
    assert [s.reason for s in result.skipped] == ["not-verified", "not-verified"]
    assert result.html == html


def test_html_another_messages_links_past_max_links_lose_its_tracking() -> None:
    tracker = make_tracker()
    alice = html_for(tracker, HTML, ALICE)
    limited = mailtrack.Tracker(secret_keys=["older-key", "newest-key"], base_url=BASE_URL, max_links=1)
    for_bob = html_for(limited, alice.html, {"message_id": "msg-bob", "recipient": "bob@example.com"})
    assert [link.url for link in for_bob.links] == ["https://shop.example/sale?a=1&b=2"]
    assert [(s.reason, s.url) for s in for_bob.skipped if s.reason == "limit"] == [("limit", "https://shop.example/blog")]
    assert 'href="https://shop.example/blog"' in for_bob.html  # the destination, not Alice's click URL


def test_html_with_tracking_off_another_messages_tracking_is_not_kept() -> None:
    tracker = make_tracker()
    alice = html_for(tracker, HTML, ALICE)
    off = {"click_tracking": {"enable": False}, "open_tracking": {"enable": False}, "subscription_tracking": {"enable": False}}
    for_bob = html_for(tracker, alice.html, {"message_id": "msg-bob", "recipient": "bob@example.com"}, settings=off)
    assert 'href="https://shop.example/sale?a=1&amp;b=2"' in for_bob.html  # click tracking off: the destination
    assert {v.message_id for v in our_urls(tracker, for_bob.html)} == {"msg-bob"}  # pixel and footer are Bob's
    assert sorted(v.kind for v in our_urls(tracker, for_bob.html)) == ["open", "unsubscribe"]


def test_html_alices_pixel_in_a_link_destination_is_left_inside_that_link() -> None:
    tracker = make_tracker()
    alice = html_for(tracker, "<body>x</body>", ALICE)
    assert alice.pixel is not None
    pixel_url = alice.pixel.html.split('src="', 1)[1].split('"', 1)[0]
    html = f'<body><a href="https://shop.example/?next={pixel_url}">x</a></body>'
    for_bob = html_for(tracker, html, {"message_id": "msg-bob", "recipient": "bob@example.com"})
    assert [link.url for link in for_bob.links][0] == f"https://shop.example/?next={pixel_url}"
    assert for_bob.html.count("<img") == 1  # Bob's pixel was added


# -- plain text ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bob", BOBS)
def test_text_tracked_for_another_message_is_signed_again_for_this_one(bob: dict[str, Any]) -> None:
    tracker = make_tracker()
    alice = text_for(tracker, TEXT, ALICE)
    for_bob = text_for(tracker, alice.text, bob)
    urls = our_urls(tracker, for_bob.text)
    assert sorted(v.kind for v in urls) == ["click", "click", "unsubscribe"]
    assert all(identity(v) == expected_identity(bob) for v in urls)
    assert [(v.link_index, v.url) for v in urls if v.kind == "click"] == [
        (0, "https://shop.example/sale?a=1&b=2"), (1, "https://shop.example/blog"),
    ]
    assert for_bob.text.count("unsubscribe and stop") == 1
    again = text_for(tracker, for_bob.text, bob)
    assert again.text == for_bob.text and again.links == [] and again.unsubscribe == []


def test_text_second_pass_for_the_same_message_is_a_byte_identical_no_op() -> None:
    tracker = make_tracker()
    first = text_for(tracker, TEXT, ALICE)
    second = text_for(tracker, first.text, ALICE)
    assert second.text == first.text and second.links == [] and second.unsubscribe == []


def test_text_forged_url_of_ours_is_not_verified() -> None:
    text = f"a {BASE_URL}/c/abc.def.ghi b https://ok.example/"
    result = text_for(make_tracker(), text, ALICE, settings={"click_tracking": {"enable": True, "enable_text": True}})
    assert [(s.raw, s.reason) for s in result.skipped] == [(f"{BASE_URL}/c/abc.def.ghi", "not-verified")]
    assert [(link.index, link.url) for link in result.links] == [(0, "https://ok.example/")]


# -- whole messages ------------------------------------------------------------------------------
def build_message(to: str = "alice@example.com", message_id: str = "msg-alice@shop.example") -> bytes:
    message = EmailMessage()
    message["From"] = "shop@shop.example"
    message["To"] = to
    message["Subject"] = "Sale"
    message["Message-ID"] = f"<{message_id}>"
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    return message.as_bytes()


def list_unsubscribe(raw: bytes) -> list[str]:
    return re.findall(rb"List-Unsubscribe: <([^>]*)>", raw)  # type: ignore[return-value]


def test_message_tracked_for_alice_is_signed_again_for_bob() -> None:
    tracker = make_tracker()
    alice = tracker.rewrite_message(build_message(), settings=ALL_ON, issued_at=T0, metadata={"campaign": "spring"})
    assert alice.recipient == "alice@example.com"
    for_bob = tracker.rewrite_message(alice.message, recipient="bob@example.com", message_id="msg-bob", settings=ALL_ON,
                                      issued_at=T0)
    (header,) = list_unsubscribe(for_bob.message)
    verified = tracker.verify(header.decode())
    assert (verified.kind, verified.message_id, verified.recipient) == ("unsubscribe", "msg-bob", "bob@example.com")
    assert for_bob.list_unsubscribe == header.decode()
    assert for_bob.message.count(b"List-Unsubscribe-Post:") == 1
    assert [(link.index, link.url) for link in for_bob.links] == [(link.index, link.url) for link in alice.links]
    assert len(for_bob.links) == 4
    for link in for_bob.links:
        v = tracker.verify(link.tracking_url)
        assert (v.message_id, v.recipient, v.link_index, v.metadata) == ("msg-bob", "bob@example.com", link.index, {})
    html = for_bob.html
    assert html is not None and html.pixel is not None
    assert tracker.verify(html.pixel.replaced).recipient == "alice@example.com"  # Alice's pixel, replaced
    again = tracker.rewrite_message(for_bob.message, recipient="bob@example.com", message_id="msg-bob", settings=ALL_ON,
                                    issued_at=T0 + 60)
    assert again.message == for_bob.message


def test_message_second_pass_for_the_same_message_is_a_byte_identical_no_op() -> None:
    tracker = make_tracker()
    first = tracker.rewrite_message(build_message(), settings=ALL_ON, issued_at=T0)
    second = tracker.rewrite_message(first.message, settings=ALL_ON, issued_at=T0 + 60)
    assert second.message == first.message
    assert second.links == [] and second.list_unsubscribe == first.list_unsubscribe


def test_message_with_unique_args_second_pass_is_a_no_op() -> None:
    tracker = make_tracker()
    raw = build_message().replace(b"Subject: Sale", b'Subject: Sale\nX-SMTPAPI: {"unique_args": {"campaign": "spring"}}')
    first = tracker.rewrite_message(raw, settings=ALL_ON, issued_at=T0)
    assert tracker.verify(first.links[0].tracking_url).metadata == {"campaign": "spring"}
    second = tracker.rewrite_message(first.message, settings=ALL_ON, issued_at=T0 + 60)
    assert second.message == first.message


def test_message_list_unsubscribe_of_ours_that_does_not_verify_is_kept_with_a_warning() -> None:
    raw = build_message().replace(b"Subject: Sale", b"Subject: Sale\nList-Unsubscribe: <" + BASE_URL.encode() + b"/u/a.b.c>")
    result = make_tracker().rewrite_message(raw, settings=ALL_ON, issued_at=T0)
    assert list_unsubscribe(result.message) == [BASE_URL.encode() + b"/u/a.b.c"]
    assert result.list_unsubscribe is None
    assert any("List-Unsubscribe" in w and "not verif" in w for w in result.warnings)


def test_message_list_unsubscribe_with_several_of_another_messages_urls_keeps_none_of_them() -> None:
    """Every one of Alice's URLs in the field is replaced, not just the first match of the first (issue #8 attack)."""
    tracker = make_tracker()
    alice = tracker.rewrite_message(build_message(), settings=ALL_ON, issued_at=T0)
    assert alice.list_unsubscribe is not None
    alices = alice.list_unsubscribe
    # The first URI holds the second as a prefix: a replace of the first match would edit the first twice.
    field = f"List-Unsubscribe: <{alices}?src=footer>, <mailto:u@shop.example>,\n <{alices}>".encode()
    raw = re.sub(rb"List-Unsubscribe: <[^>]*>", field, alice.message)
    for_bob = tracker.rewrite_message(raw, recipient="bob@example.com", message_id="msg-bob", settings=ALL_ON, issued_at=T0)
    header = re.search(rb"List-Unsubscribe:(.*?)\n(?! )", for_bob.message, re.DOTALL)
    assert header is not None
    uris = re.findall(r"<([^>]*)>", header.group(1).decode())
    assert alices not in header.group(1).decode()
    assert "mailto:u@shop.example" in uris
    ours = [uri for uri in uris if uri.startswith(BASE_URL)]
    assert len(ours) == 2
    for uri in ours:
        assert tracker.verify(uri).recipient == "bob@example.com"
    again = tracker.rewrite_message(for_bob.message, recipient="bob@example.com", message_id="msg-bob", settings=ALL_ON,
                                    issued_at=T0 + 60)
    assert again.message == for_bob.message


@pytest.mark.parametrize("subscription", [
    pytest.param({"text": "Unsubscribe: <% %>-now"}, id="text footer"),
    pytest.param({"substitution_tag": "[unsub]"}, id="substitution tag"),
])
def test_text_unsubscribe_url_followed_by_token_characters_still_works_and_is_not_added_twice(
    subscription: dict[str, Any],
) -> None:
    tracker = make_tracker()
    settings = {**ALL_ON, "subscription_tracking": {"enable": True, **subscription}}
    first = text_for(tracker, "Hi [unsub]_x\n", ALICE, settings=settings)
    (url,) = [url for start, end in find_urls(first.text) if (url := first.text[start:end]).startswith(BASE_URL + "/u/")]
    assert tracker.verify(url).recipient == ALICE["recipient"]  # the URL as a reader's client reads it
    assert text_for(tracker, first.text, ALICE, settings=settings).text == first.text
