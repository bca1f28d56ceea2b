"""Tracker(honeypot=True): one invisible link per HTML part, byte-exact elsewhere, the same on both paths (issue 14).

Every test runs on the compiled path and the pure one (``both_paths``), and
one compares the two outputs document by document. Byte-exactness: the output
with the honeypot is the output without it plus exactly one insertion, the
honeypot link, at the place the pixel goes.
"""

from __future__ import annotations

import re
from email import message_from_bytes
from email.message import Message

import pytest
from hypothesis import given, settings
from support.helpers import make_tracker, rewrite
from support.strategies import documents, mutated_documents

import mailtrack
from mailtrack.core import speedups
from mailtrack.core.rewrite.honeypot import HONEYPOT_INDEX, honeypot_html

pytestmark = pytest.mark.usefixtures("both_paths")

DOC = '<html><body><p>Hi <a href="https://example.com/a">a</a> <a href="https://example.com/b">b</a></p></body></html>'
HREF = re.compile(r'<a href="([^"]+)" aria-hidden="true" tabindex="-1" style="display:none!important;[^"]*"></a>')


def honeypots(html: str) -> list[str]:
    return HREF.findall(html)


def test_one_hidden_link_where_the_pixel_goes() -> None:
    tracker = make_tracker(honeypot=True)
    result = rewrite(tracker, DOC)
    [url] = honeypots(result.html)
    assert result.honeypot is not None and result.honeypot.html == honeypot_html(url)
    assert result.html.endswith(result.honeypot.html + "</body></html>")  # after the pixel, before </body>
    assert result.html.index("<img") < result.html.index('aria-hidden="true"')
    claims = tracker.verify(url)
    assert (claims.kind, claims.message_id, claims.recipient, claims.link_index) == ("click", "msg-1", "ann@example.com",
                                                                                      HONEYPOT_INDEX)
    assert [link.index for link in result.links] == [0, 1]  # not a link of the message, not counted
    top = rewrite(tracker, DOC, pixel_position="top")
    assert top.html.startswith("<html><body><img") and honeypots(top.html) == [url]


def test_byte_exact_elsewhere() -> None:
    for html in (DOC, "", "plain words", "<p>no body</p>", "<body><a href='https://e.com'>x</a>", DOC.upper()):
        with_it = rewrite(make_tracker(honeypot=True), html)
        without = rewrite(make_tracker(), html)
        assert with_it.honeypot is not None
        at, inserted = with_it.honeypot.position, with_it.honeypot.html
        assert without.honeypot is None
        # the same document, with one more insertion after what the plain rewrite put at that position
        assert with_it.html.replace(inserted, "", 1) == without.html
        assert (with_it.links, with_it.skipped, with_it.pixels, with_it.warnings) == \
               (without.links, without.skipped, without.pixels, without.warnings)
        assert at <= len(html)


@settings(max_examples=150)
@given(documents() | mutated_documents())
def test_any_document_gets_exactly_one(html: str) -> None:
    with_it = rewrite(make_tracker(honeypot=True), html)
    without = rewrite(make_tracker(), html)
    assert with_it.honeypot is not None
    assert with_it.html.replace(with_it.honeypot.html, "", 1) == without.html
    assert with_it.links == without.links and with_it.skipped == without.skipped


def test_both_paths_give_the_same_output(both_paths: str) -> None:
    from mailtrack.core import _speedups

    if both_paths == "pure":
        pytest.skip("compared once, from the compiled run")
    tracker = make_tracker(honeypot=True)
    for html in (DOC, "<p>x</p>", DOC * 3, '<a href="https://e.com/?a=1&amp;b=2">x</a>'):
        outputs = []
        saved = speedups.compiled
        try:
            for module in (_speedups, None):
                speedups.compiled = module
                result = rewrite(tracker, html)
                outputs.append((result.html, result.links, result.skipped, result.pixels, result.honeypot))
        finally:
            speedups.compiled = saved
        assert outputs[0] == outputs[1]


def test_off_by_default_and_without_click_tracking() -> None:
    assert honeypots(rewrite(make_tracker(), DOC).html) == []
    off = rewrite(make_tracker(honeypot=True), DOC, settings={"click": False})
    assert honeypots(off.html) == [] and off.honeypot is None
    with pytest.raises(mailtrack.ConfigurationError, match="honeypot"):
        make_tracker(honeypot="yes")


def test_a_second_pass_keeps_one_and_another_message_gets_its_own() -> None:
    tracker = make_tracker(honeypot=True)
    first = rewrite(tracker, DOC)
    again = rewrite(tracker, first.html)
    assert again.html == first.html and again.honeypot is None and again.links == []
    assert [s.reason for s in again.skipped] == ["already-tracked", "already-tracked"]  # the two real links only
    other = rewrite(tracker, first.html, message_id="msg-2", recipient="bob@example.com")
    [url] = honeypots(other.html)
    claims = tracker.verify(url)
    assert (claims.message_id, claims.link_index) == ("msg-2", HONEYPOT_INDEX)
    assert [link.index for link in other.links] == [0, 1] and other.honeypot is None


def test_one_per_html_part_of_a_message() -> None:
    raw = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: s\r\nMessage-ID: <m@example.com>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=XX\r\n\r\n"
           b"--XX\r\nContent-Type: text/plain\r\n\r\nsee https://example.com/a\r\n"
           b"--XX\r\nContent-Type: text/html\r\n\r\n" + DOC.encode() + b"\r\n--XX--\r\n")
    tracker = make_tracker(honeypot=True)
    out = tracker.rewrite_message(raw, issued_at=1_700_000_000).message
    parsed: Message = message_from_bytes(out if isinstance(out, bytes) else bytes(out))
    parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in parsed.walk()
             if not part.is_multipart()}
    assert len(honeypots(parts["text/html"])) == 1
    assert "aria-hidden" not in parts["text/plain"]
