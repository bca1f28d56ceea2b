"""Whole messages: identity defaults, X-SMTPAPI, DKIM, List-Unsubscribe, input kinds and bad input.

Encodings and charsets are covered in test_mime_encodings.py, the corpus in
test_mime_corpus.py; this file pins what :mod:`mailtrack.message` decides.
"""

from __future__ import annotations

import copy
import email
import email.generator
import email.policy
import io
import json
from email.message import EmailMessage, Message
from pathlib import Path

import dkim
import pytest
from support.helpers import make_tracker

import mailtrack
from mailtrack import MailtrackError, SettingsError, TrackingSettings
from mailtrack.core.smtpapi import parse_smtpapi

HTML = '<html><body><p><a href="https://example.com/a">A</a> <a href="https://example.com/b" clicktracking="off">B</a></p></body></html>\n'
TEXT = "Read https://example.com/a and https://example.com/b.\n"
DATA = Path(__file__).resolve().parents[2] / "support" / "data"
KEY = (DATA / "dkim-test-key.pem").read_bytes()  # a throwaway 1024-bit key made for these tests, nothing else
PUBLIC = (DATA / "dkim-test-key.pub").read_text().strip()  # its SubjectPublicKeyInfo, base64, as DNS would hold it


def build(*, to: str = "Ann <ann@example.com>", message_id: str | None = "<m1@example.com>", extra: dict[str, str] | None = None,
          crlf: bool = True) -> bytes:
    msg = EmailMessage()
    msg["From"] = "news@example.com"
    msg["To"] = to
    msg["Subject"] = "Hello"
    if message_id:
        msg["Message-ID"] = message_id
    for name, value in (extra or {}).items():
        msg[name] = value
    msg.set_content(TEXT)
    msg.add_alternative(HTML, subtype="html")
    return msg.as_bytes(policy=email.policy.SMTP if crlf else email.policy.default)


def headers_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]


@pytest.fixture
def tracker():
    return make_tracker(settings={"click_tracking": {"enable_text": True}})


# -- identity ---------------------------------------------------------------------------


def test_message_id_and_recipient_default_to_the_headers(tracker):
    result = tracker.rewrite_message(build(), issued_at=0)
    assert (result.message_id, result.recipient) == ("m1@example.com", "ann@example.com")
    verified = tracker.verify(result.links[0].tracking_url)
    assert (verified.message_id, verified.recipient) == ("m1@example.com", "ann@example.com")


def test_missing_message_id_is_added_and_signed(tracker):
    result = tracker.rewrite_message(build(message_id=None), issued_at=0)
    parsed = email.message_from_bytes(result.message, policy=email.policy.default)
    assert parsed["Message-ID"] == f"<{result.message_id}>"
    assert result.message_id.endswith("@t.example.com")
    assert tracker.verify(result.links[0].tracking_url).message_id == result.message_id
    # A second pass reads it back and changes nothing.
    assert tracker.rewrite_message(result.message, issued_at=9).message == result.message


def test_an_added_message_id_is_stable_when_issued_at_is_fixed(tracker):
    """A campaign batch run twice (or on several workers) with --issued-at must give the same bytes."""
    raw = build(message_id=None)
    first, again = (tracker.rewrite_message(raw, issued_at=1_700_000_000) for _ in range(2))
    assert first.message == again.message and first.message_id.endswith("@t.example.com")
    others = {
        tracker.rewrite_message(raw, issued_at=1_700_000_001).message_id,  # another signing time
        tracker.rewrite_message(raw, issued_at=1_700_000_000, recipient="bob@example.com").message_id,  # another copy
        tracker.rewrite_message(raw.replace(b"Hello", b"Hallo"), issued_at=1_700_000_000).message_id,  # another message
    }
    assert len(others) == 3 and first.message_id not in others
    # Without issued_at the stdlib draws one at random, as before.
    assert tracker.rewrite_message(raw).message_id != tracker.rewrite_message(raw).message_id


def test_explicit_identity_wins_and_a_valid_id_becomes_the_header(tracker):
    result = tracker.rewrite_message(build(message_id=None), message_id="mine@example.org", recipient="bob@example.org", issued_at=0)
    assert b"\r\nMessage-ID: <mine@example.org>\r\n" in result.message
    assert tracker.verify(result.links[0].tracking_url).recipient == "bob@example.org"
    odd = tracker.rewrite_message(build(message_id=None), message_id="campaign 7 / row 3", issued_at=0)
    assert odd.message_id == "campaign 7 / row 3"
    assert b"Message-ID: <" in headers_of(odd.message) and b"campaign" not in headers_of(odd.message)


@pytest.mark.parametrize("to", ["ann@example.com, bob@example.com", "Team: ann@example.com, bob@example.com;"])
def test_several_recipients_need_an_explicit_one(tracker, to):
    with pytest.raises(MailtrackError, match="2 To addresses"):
        tracker.rewrite_message(build(to=to))
    assert tracker.rewrite_message(build(to=to), recipient="ann@example.com").recipient == "ann@example.com"


def test_no_recipient_is_a_clear_error(tracker):
    raw = build().replace(b"To: Ann <ann@example.com>\r\n", b"")
    with pytest.raises(MailtrackError, match="no To address"):
        tracker.rewrite_message(raw)


def test_empty_message_id_header_is_a_clear_error(tracker):
    raw = build(message_id=None).replace(b"Subject: Hello\r\n", b"Subject: Hello\r\nMessage-ID: <>\r\n")
    with pytest.raises(MailtrackError, match="Message-ID header is empty"):
        tracker.rewrite_message(raw)


def test_bad_identity_types(tracker):
    with pytest.raises(TypeError, match="message_id"):
        tracker.rewrite_message(build(), message_id=7)
    with pytest.raises(TypeError, match="rewrite_message takes"):
        tracker.rewrite_message(["not", "a", "message"])


# -- input kinds ------------------------------------------------------------------------


def test_each_kind_comes_back_as_itself_and_the_input_is_not_mutated(tracker):
    raw = build()
    as_bytes = tracker.rewrite_message(raw, issued_at=0).message
    assert isinstance(as_bytes, bytes)
    as_str = tracker.rewrite_message(raw.decode("ascii"), issued_at=0).message
    assert isinstance(as_str, str) and as_str.encode("ascii") == as_bytes
    for policy, kind in ((email.policy.compat32, Message), (email.policy.SMTP, EmailMessage)):
        msg = email.message_from_bytes(raw, policy=policy)
        before = msg.as_bytes()
        out = tracker.rewrite_message(msg, issued_at=0).message
        assert type(out) is kind and out is not msg
        assert msg.as_bytes() == before
        assert out.as_bytes() == tracker.rewrite_message(msg.as_bytes(), issued_at=0).message


def test_str_with_8bit_content_round_trips():
    tracker = make_tracker()
    msg = EmailMessage()
    msg["To"], msg["Message-ID"] = "ann@example.com", "<x@y>"
    msg.set_content("<p>Grüße <a href='https://example.com/'>x</a></p>", subtype="html", cte="8bit")
    text = msg.as_string()
    out = tracker.rewrite_message(text, issued_at=0).message
    assert isinstance(out, str)
    body = email.message_from_string(out, policy=email.policy.default).get_content()
    assert "Grüße" in body and "/c/" in body
    raw8 = msg.as_bytes().decode("utf-8")  # a str holding real non-ASCII characters (8bit body)
    out8 = tracker.rewrite_message(raw8, issued_at=0).message
    assert "<p>Grüße <a href='https://t.example.com/c/" in out8


def test_message_object_the_generator_cannot_write_is_a_clear_error(tracker):
    msg = Message()
    msg["To"] = "ann@example.com"
    msg.set_payload("caf\u00e9 https://example.com/", charset=None)
    msg["Content-Transfer-Encoding"] = "7bit"
    try:
        msg.as_bytes()
    except Exception:
        with pytest.raises(MailtrackError, match="cannot serialize"):
            tracker.rewrite_message(msg)
    else:
        tracker.rewrite_message(msg)  # this Python writes it: then it must simply work


# -- X-SMTPAPI --------------------------------------------------------------------------


def smtpapi(filters: dict, **more) -> str:
    return json.dumps({"filters": filters, **more})


def test_smtpapi_filters_apply_and_the_header_is_removed(tracker):
    header = smtpapi({
        "clicktrack": {"settings": {"enable": 0}},
        "opentrack": {"settings": {"enable": 1}},
    })
    result = tracker.rewrite_message(build(extra={"X-SMTPAPI": header}), issued_at=0)
    assert b"X-SMTPAPI" not in result.message
    assert result.links == [] and result.html.pixel is not None


def test_smtpapi_every_filter_in_sendgrid_value_shapes():
    api = parse_smtpapi(smtpapi({
        "clicktrack": {"settings": {"enable": 1, "enable_text": True}},
        "opentrack": {"settings": {"enable": "1", "replace": "%open%"}},
        "subscriptiontrack": {"settings": {"enable": 1, "text/html": "Bye <% here %>", "text/plain": "Bye: <% %>",
                                           "replace": "[unsub]"}},
        "ganalytics": {"settings": {"enable": True, "utm_source": "news", "utm_medium": "email", "utm_campaign": "c7",
                                    "utm_term": "t", "utm_content": "x"}},
        "bcc": {"settings": {"enable": 1, "email": "x@example.com"}},
    }, unique_args={"campaign": "c7"}, category=["news"]))
    settings = TrackingSettings.from_dict(api.settings)
    assert settings.click_tracking.enable_text and settings.open_tracking.substitution_tag == "%open%"
    sub = settings.subscription_tracking
    assert (sub.enable, sub.html, sub.text, sub.substitution_tag) == (True, "Bye <% here %>", "Bye: <% %>", "[unsub]")
    assert settings.ganalytics.utm_source == "news" and settings.ganalytics.utm_content == "x"
    assert api.metadata == {"campaign": "c7"}
    assert api.ignored == ["category", "filters.bcc"]


def test_smtpapi_unique_args_become_metadata_and_ignored_keys_are_reported(tracker):
    header = smtpapi({"ganalytics": {"settings": {"enable": 1, "utm_source": "news"}}}, unique_args={"row": "3"}, category="x")
    result = tracker.rewrite_message(build(extra={"X-SMTPAPI": header}), metadata={"row": "4", "list": "a"}, issued_at=0)
    verified = tracker.verify(result.links[0].tracking_url)
    assert verified.metadata == {"row": "4", "list": "a"}  # explicit metadata wins over unique_args
    assert verified.url == "https://example.com/a?utm_source=news"
    assert any("category" in w for w in result.warnings)


def test_smtpapi_is_below_explicit_settings_and_above_the_account():
    tracker = make_tracker(settings=TrackingSettings.from_account({"click": {"enabled": False}}))
    raw = build(extra={"X-SMTPAPI": smtpapi({"clicktrack": {"settings": {"enable": 1}}})})
    assert tracker.rewrite_message(raw, issued_at=0).links  # header over account
    assert not tracker.rewrite_message(raw, settings={"click": False}, issued_at=0).links  # argument over header


def test_smtpapi_folded_header_is_read(tracker):
    raw = build().replace(b"Subject: Hello\r\n", b'Subject: Hello\r\nX-SMTPAPI: {"filters":\r\n {"clicktrack": {"settings": {"enable": 0}}}}\r\n')
    result = tracker.rewrite_message(raw, issued_at=0)
    assert not result.links and b"X-SMTPAPI" not in result.message and b'{"filters"' not in result.message


@pytest.mark.parametrize("value, path", [
    ("{not json", "X-SMTPAPI"),
    ("[1, 2]", "X-SMTPAPI"),
    ('{"filters": []}', "X-SMTPAPI.filters"),
    ('{"filters": {"clicktrack": {"enable": 1}}}', "X-SMTPAPI.filters.clicktrack"),
    ('{"filters": {"clicktrack": {"settings": {"enable": 2}}}}', "X-SMTPAPI.filters.clicktrack.settings.enable"),
    ('{"filters": {"clicktrack": {"settings": {"enable": 1.0}}}}', "X-SMTPAPI.filters.clicktrack.settings.enable"),
    ('{"filters": {"opentrack": {"settings": {"replace": 5}}}}', "X-SMTPAPI.filters.opentrack.settings.replace"),
    ('{"filters": {"ganalytics": {"settings": {"utm_nope": "x"}}}}', "X-SMTPAPI.filters.ganalytics.settings.utm_nope"),
    ('{"unique_args": {"n": 1}}', "X-SMTPAPI.unique_args.n"),
])
def test_bad_smtpapi_is_a_settings_error_naming_the_field(tracker, value, path):
    raw = build().replace(b"Subject: Hello\r\n", b"Subject: Hello\r\nX-SMTPAPI: " + value.encode() + b"\r\n")
    with pytest.raises(SettingsError) as caught:
        tracker.rewrite_message(raw)
    assert str(caught.value).startswith(path + " ")


def test_two_smtpapi_headers_are_refused(tracker):
    raw = build().replace(b"Subject: Hello\r\n", b"Subject: Hello\r\nX-SMTPAPI: {}\r\nX-SMTPAPI: {}\r\n")
    with pytest.raises(SettingsError, match="more than once"):
        tracker.rewrite_message(raw)


# -- DKIM -------------------------------------------------------------------------------


def dns(name, timeout=5):
    assert name == b"test._domainkey.example.com."
    return f"v=DKIM1; k=rsa; p={PUBLIC}".encode()


def sign(raw: bytes) -> bytes:
    signature = dkim.sign(raw, b"test", b"example.com", KEY, include_headers=[b"from", b"to", b"subject", b"message-id"])
    return signature + raw


def test_a_message_signed_after_rewriting_verifies(tracker):
    result = tracker.rewrite_message(build(), settings={"subscription_tracking": {"enable": True}}, issued_at=0)
    assert dkim.verify(sign(result.message), dnsfunc=dns)


def test_a_signed_message_is_refused_unless_forced(tracker):
    signed = sign(build())
    assert dkim.verify(signed, dnsfunc=dns)
    with pytest.raises(MailtrackError, match="DKIM-Signature"):
        tracker.rewrite_message(signed)
    forced = tracker.rewrite_message(signed, force=True, issued_at=0)
    assert forced.links and any("DKIM" in w for w in forced.warnings)
    assert not dkim.verify(forced.message, dnsfunc=dns)  # exactly why it is refused by default


# -- List-Unsubscribe -------------------------------------------------------------------


def test_one_click_unsubscribe_headers(tracker):
    result = tracker.rewrite_message(build(), settings={"subscription_tracking": {"enable": True}}, issued_at=0)
    parsed = email.message_from_bytes(result.message, policy=email.policy.default)
    assert parsed["List-Unsubscribe"] == f"<{result.list_unsubscribe}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    verified = tracker.verify(result.list_unsubscribe)
    assert (verified.kind, verified.message_id, verified.recipient) == ("unsubscribe", "m1@example.com", "ann@example.com")
    assert result.list_unsubscribe in result.html.html and result.list_unsubscribe in result.text.text
    again = tracker.rewrite_message(result.message, settings={"subscription_tracking": {"enable": True}}, issued_at=5)
    assert again.message == result.message and again.list_unsubscribe == result.list_unsubscribe
    assert not any("List-Unsubscribe" in w for w in again.warnings)


def test_no_unsubscribe_headers_without_subscription_tracking(tracker):
    assert b"List-Unsubscribe" not in tracker.rewrite_message(build(), issued_at=0).message


def test_the_senders_own_list_unsubscribe_is_kept(tracker):
    raw = build(extra={"List-Unsubscribe": "<mailto:leave@example.com>"})
    result = tracker.rewrite_message(raw, settings={"subscription_tracking": {"enable": True}}, issued_at=0)
    assert headers_of(result.message).count(b"List-Unsubscribe") == 1
    assert b"List-Unsubscribe: <mailto:leave@example.com>" in result.message
    assert result.list_unsubscribe is None and any("own List-Unsubscribe" in w for w in result.warnings)


def test_unsubscribe_headers_with_a_substitution_tag(tracker):
    msg = EmailMessage()
    msg["To"], msg["Message-ID"] = "ann@example.com", "<q@example.com>"
    msg.set_content('<p>Leave: <a href="[unsub]">here</a></p><p>[unsub]</p>', subtype="html")
    settings = {"subscription_tracking": {"enable": True, "substitution_tag": "[unsub]"}}
    result = tracker.rewrite_message(msg.as_bytes(), settings=settings, issued_at=0)
    assert result.list_unsubscribe and result.html.html.count(result.list_unsubscribe) == 2


# -- parts and bodies -------------------------------------------------------------------


def test_html_opt_outs_are_left_alone_in_the_text_part(tracker):
    result = tracker.rewrite_message(build(), issued_at=0)
    assert [link.url for link in result.html.links] == ["https://example.com/a"]
    assert [link.url for link in result.text.links] == ["https://example.com/a"]
    assert [(s.url, s.reason) for s in result.text.skipped] == [("https://example.com/b", "opt-out")]


def test_text_links_untracked_without_enable_text():
    result = make_tracker().rewrite_message(build(), issued_at=0)
    assert result.text is None or not result.text.links
    assert TEXT.replace("\n", "\r\n").encode() in result.message


def test_pixel_and_footer_go_in_the_body_only(tracker):
    msg = EmailMessage()
    msg["To"], msg["Message-ID"] = "ann@example.com", "<p@example.com>"
    msg.set_content("<p>main <a href='https://example.com/1'>1</a></p>", subtype="html")
    msg.add_attachment("<p>inline extra <a href='https://example.com/2'>2</a></p>", subtype="html", disposition="inline")
    msg.add_attachment("<p>attached <a href='https://example.com/3'>3</a></p>", subtype="html", filename="a.html")
    result = tracker.rewrite_message(msg.as_bytes(), settings={"subscription_tracking": {"enable": True}}, issued_at=0)
    by_path = {p.path: p for p in result.parts}
    assert by_path["1"].body and by_path["1"].result.pixel is not None and by_path["1"].result.unsubscribe
    assert not by_path["2"].body and by_path["2"].status == "rewritten"
    assert by_path["2"].result.pixel is None and not by_path["2"].result.unsubscribe
    assert by_path["3"].status == "left" and by_path["3"].reason == "attachment"
    assert b"https://example.com/3" in result.message


def test_multipart_related_start_parameter_picks_the_body(tracker):
    raw = (
        b'To: ann@example.com\r\nMessage-ID: <r@x>\r\nContent-Type: multipart/related; boundary="B"; start="<two>"\r\n\r\n'
        b"--B\r\nContent-Type: text/html\r\nContent-ID: <one>\r\n\r\n<p>one</p>\r\n"
        b"--B\r\nContent-Type: text/html\r\nContent-ID: <two>\r\n\r\n<p>two</p>\r\n--B--\r\n"
    )
    result = tracker.rewrite_message(raw, issued_at=0)
    assert [p.path for p in result.parts if p.body] == ["2"]
    assert b"<p>one</p>\r\n--B" in result.message and b"<p>two</p><img" in result.message


def test_lf_messages_stay_lf(tracker):
    result = tracker.rewrite_message(build(crlf=False), settings={"subscription_tracking": {"enable": True}}, issued_at=0)
    assert b"\r" not in result.message


def test_crlf_messages_get_no_bare_lf_even_from_a_footer_template(tracker):
    settings = {"subscription_tracking": {"enable": True, "html": "<p>a\nb <% x %></p>", "text": "a\nb <% %>"}}
    result = tracker.rewrite_message(build(), settings=settings, issued_at=0)
    assert b"\n" not in result.message.replace(b"\r\n", b"")


# -- review findings, each pinned ---------------------------------------------------------


def m(headers: str, body: str = "Hi https://example.com/a\n") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


def test_multipart_signed_is_refused_unless_forced(tracker):
    raw = m('To: b@y.example\nMessage-ID: <m@x>\nContent-Type: multipart/signed; protocol="application/pkcs7-signature"; '
            "micalg=sha-256; boundary=S",
            "--S\nContent-Type: text/plain\n\nHi https://example.com/a\n--S\nContent-Type: application/pkcs7-signature\n\nMIAG\n--S--\n")
    with pytest.raises(MailtrackError, match="multipart/signed"):
        tracker.rewrite_message(raw)
    forced = tracker.rewrite_message(raw, force=True, issued_at=0)
    assert forced.links and any("signature" in w for w in forced.warnings)


@pytest.mark.parametrize("charset", ["idna", "punycode", "undefined", "utf-16", "utf-7", "base64", "rot13", "x-bogus"])
def test_charsets_that_are_not_ascii_compatible_leave_the_part_undecodable(tracker, charset):
    raw = m(f"To: b@y.example\nMessage-ID: <m@x>\nContent-Type: text/plain; charset={charset}")
    result = tracker.rewrite_message(raw, issued_at=0)
    assert result.message == raw and [p.status for p in result.parts] == ["undecodable"]


def test_deeply_nested_or_huge_smtpapi_is_a_settings_error(tracker):
    for value in ('{"a":' * 3000 + "1" + "}" * 3000, '{"x": "' + "a" * 300_000 + '"}'):
        with pytest.raises(SettingsError, match="X-SMTPAPI"):
            tracker.rewrite_message(m(f"To: b@y.example\nMessage-ID: <m@x>\nX-SMTPAPI: {value}"))


def test_utf8_headers_give_the_right_identity(tracker):
    result = tracker.rewrite_message(m("To: Jörg <jörg@y.de>\nMessage-ID: <jörg@x.de>"), issued_at=0)
    assert (result.recipient, result.message_id) == ("jörg@y.de", "jörg@x.de")
    assert tracker.verify(result.links[0].tracking_url).recipient == "jörg@y.de" if result.links else True


@pytest.mark.parametrize("header", ["<m1@x> (sent by foo)", "(c) <m1@x>", " <m1@x> "])
def test_message_id_comments_are_ignored(tracker, header):
    assert tracker.rewrite_message(m(f"To: b@y.example\nMessage-ID: {header}")).message_id == "m1@x"


def test_an_email_message_built_in_memory_is_not_mutated(tracker):
    msg = EmailMessage()
    msg["To"], msg["Message-ID"] = "b@y.example", "<m@x>"
    msg.set_content("hi https://example.com/a\n")
    msg.add_alternative("<a href='https://example.com/a'>x</a>", subtype="html")
    before = [(k, str(v)) for k, v in msg.items()]
    tracker.rewrite_message(msg, issued_at=0)
    assert [(k, str(v)) for k, v in msg.items()] == before


def test_smtpapi_written_by_the_stdlib_as_encoded_words_is_read(tracker):
    msg = EmailMessage()
    msg["To"], msg["Message-ID"] = "b@y.example", "<m@x>"
    msg["X-SMTPAPI"] = json.dumps({"filters": {"clicktrack": {"settings": {"enable": 0}}},
                                   "unique_args": {"c": "x" * 80}}, separators=(",", ":"))
    msg.set_content("<a href='https://example.com/a'>x</a>", subtype="html")
    raw = msg.as_bytes()
    assert b"=?utf-8?" in raw  # the generator encoded the long value
    result = tracker.rewrite_message(raw, issued_at=0)
    assert not result.links and b"X-SMTPAPI" not in result.message


def test_smtpapi_settings_survive_a_second_pass(tracker):
    body = "<html><body><a href='https://example.com/a'>A</a></body></html>"
    raw = m('To: b@y.example\nMessage-ID: <m@x>\nContent-Type: text/html\nX-SMTPAPI: {"filters":{"opentrack":{"settings":{"enable":0}}}}', body)
    first = tracker.rewrite_message(raw, issued_at=0)
    assert first.html.pixel is None and b"X-Mailtrack-Settings: {\"open_tracking\": {\"enable\": false}}\r\n" in first.message
    second = tracker.rewrite_message(first.message, issued_at=5)
    assert second.message == first.message


def test_long_applied_settings_are_folded_and_read_back(tracker):
    footer = "Vous ne voulez plus de nos nouvelles, de nos offres, de nos conseils ? <% Cliquez ici %>, merci."
    header = json.dumps({"filters": {"subscriptiontrack": {"settings": {"enable": 1, "text/html": footer, "text/plain": footer}}}})
    raw = m(f"To: b@y.example\nMessage-ID: <m@x>\nContent-Type: text/html\nX-SMTPAPI: {header}",
            "<html><body><p>x</p></body></html>")
    first = tracker.rewrite_message(raw, issued_at=0)
    head = headers_of(first.message)
    assert all(len(line) <= 998 for line in head.split(b"\r\n")) and b"\r\n " in head.split(b"X-Mailtrack-Settings")[1]
    assert tracker.rewrite_message(first.message, issued_at=9).message == first.message


def test_smtpapi_fan_out_is_refused_and_a_single_to_is_the_recipient(tracker):
    with pytest.raises(MailtrackError, match="fans this message out to 2"):
        tracker.rewrite_message(m('To: b@y.example\nMessage-ID: <m@x>\nX-SMTPAPI: {"to": ["a@x.example", "c@z.example"]}'))
    single = tracker.rewrite_message(m('To: list@y.example, x@y.example\nMessage-ID: <m@x>\nX-SMTPAPI: {"to": ["a@x.example"]}'))
    assert single.recipient == "a@x.example"


def test_a_text_part_with_a_file_name_is_an_attachment(tracker):
    raw = m("To: b@y.example\nMessage-ID: <m@x>\nContent-Type: multipart/mixed; boundary=B",
            '--B\nContent-Type: text/plain\n\nbody https://example.com/b\n--B\nContent-Type: text/plain; name="server.log"\n\n'
            "log https://internal.example.com/x\n--B--\n")
    parts = tracker.rewrite_message(raw, issued_at=0).parts
    assert [(p.status, p.reason) for p in parts] == [("rewritten", ""), ("left", "attachment")]


def test_ascii_str_with_a_utf8_footer_comes_back_as_real_text(tracker):
    text = "To: b@y.example\nMessage-ID: <m@x>\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nHi\n"
    out = tracker.rewrite_message(text, settings={"subscription_tracking": {"enable": True, "text": "Abmelden für: <% %>"}},
                                  issued_at=0).message
    assert "Abmelden für: https://" in out and out.encode("utf-8")


def test_max_links_holds_for_the_whole_message_and_indexes_continue():
    tracker = make_tracker(max_links=10, settings={"click_tracking": {"enable_text": True}})
    raw = m("To: b@y.example\nMessage-ID: <m@x>\nContent-Type: multipart/alternative; boundary=b",
            "--b\nContent-Type: text/plain\n\n" + " ".join(f"https://example.com/{i}" for i in range(8)) +
            "\n--b\nContent-Type: text/html\n\n" + "".join(f"<a href='https://example.com/{i}'>x</a>" for i in range(8)) + "\n--b--\n")
    result = tracker.rewrite_message(raw, issued_at=0)
    by_part = {p.content_type: [link.index for link in p.result.links] for p in result.parts}
    assert by_part == {"text/html": list(range(8)), "text/plain": [8, 9]}  # HTML first, the text part continues
    assert sum(s.reason == "limit" for s in result.skipped) == 6


@pytest.mark.parametrize("given", ["jörg@x.de", "a@b\x00", "a b@c"])
def test_a_message_id_unfit_for_a_header_is_not_written(tracker, given):
    result = tracker.rewrite_message(m("To: b@y.example"), message_id=given, issued_at=0)
    assert result.message_id == given
    added = headers_of(result.message).split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0]
    assert added.isascii() and b"\x00" not in added and given.encode("utf-8") not in added


def test_empty_identity_is_refused(tracker):
    for kwargs in ({"message_id": " "}, {"recipient": ""}):
        with pytest.raises(MailtrackError, match="must not be empty"):
            tracker.rewrite_message(m("To: b@y.example\nMessage-ID: <m@x>"), **kwargs)


def test_no_one_click_post_header_for_an_http_base_url():
    tracker = mailtrack.Tracker(["k"], "http://t.example.com")
    result = tracker.rewrite_message(m("To: b@y.example\nMessage-ID: <m@x>"), settings={"subscription_tracking": {"enable": True}})
    assert b"List-Unsubscribe: <http://" in result.message and b"List-Unsubscribe-Post" not in result.message
    assert any("RFC 8058" in w for w in result.warnings)


def test_footer_that_found_no_readable_body_is_reported(tracker):
    raw = m("To: b@y.example\nMessage-ID: <m@x>\nContent-Type: text/plain; charset=x-bogus")
    result = tracker.rewrite_message(raw, settings={"subscription_tracking": {"enable": True}})
    assert any("no footer" in w for w in result.warnings)


# -- bad input: every error is a MailtrackError subclass that says what is wrong -------------


@pytest.mark.parametrize("text", ["To: a@x\nMessage-ID: <m@x>\n\n\ud800", "To: a@x\nSubject: \udfff\nMessage-ID: <m@x>\n\nHi",
                                  "To: a@x\nMessage-ID: <m@x>\n\ncaf\u00e9 \udc80 \ud83d"])
def test_str_with_a_lone_surrogate_is_a_message_error(tracker, text):
    """Regression (issue 8, defect 7): a str holding a surrogate no byte sequence encodes raised UnicodeEncodeError."""
    with pytest.raises(mailtrack.MessageError, match=r"lone surrogate U\+D[89A-F][0-9A-F]{2} at index \d+"):
        tracker.rewrite_message(text)


def test_str_with_escaped_bytes_as_surrogates_still_round_trips(tracker):
    raw = b"To: a@x\nMessage-ID: <m@x>\nContent-Type: text/plain; charset=latin-1\n\nCaf\xe9 https://example.com/a\n"
    out = tracker.rewrite_message(raw.decode("ascii", "surrogateescape"), issued_at=0).message
    assert out.encode("ascii", "surrogateescape") == tracker.rewrite_message(raw, issued_at=0).message


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"Message-ID: <m@x>\n\nHi", "no To address"),
        (b"To: a@x, b@x\nMessage-ID: <m@x>\n\nHi", "2 To addresses"),
        (b"To: a@x\nMessage-ID: <>\n\nHi", "Message-ID header is empty"),
    ],
)
def test_bad_messages_raise_message_error(tracker, raw, match):
    with pytest.raises(mailtrack.MessageError, match=match) as caught:
        tracker.rewrite_message(raw)
    assert isinstance(caught.value, MailtrackError) and isinstance(caught.value, ValueError)


def test_empty_identity_arguments_raise_message_error(tracker):
    for name in ("message_id", "recipient"):
        with pytest.raises(mailtrack.MessageError, match=f"{name} must not be empty"):
            tracker.rewrite_message(build(), **{name: " "})


def test_refusals_are_message_refused_and_still_mailtrack_errors(tracker):
    fan_out = m(f"To: b@y.example\nMessage-ID: <m@x>\nX-SMTPAPI: {json.dumps({'to': ['a@x', 'b@x']})}")
    signed = m('To: b@y.example\nMessage-ID: <m@x>\nContent-Type: multipart/signed; boundary=S',
               "--S\nContent-Type: text/plain\n\nHi\n--S--\n")
    for raw, reason in ((sign(build()), "dkim"), (signed, "signed"), (fan_out, "fan-out")):
        with pytest.raises(mailtrack.MessageRefused) as caught:
            tracker.rewrite_message(raw)
        assert caught.value.reason == reason and isinstance(caught.value, MailtrackError)


# -- every email.message.Message subclass comes back as itself ------------------------------


class Tagged(Message):
    """A subclass with its own constructor arguments and state, as frameworks write them."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def as_bytes(self, unixfrom=False):  # type: ignore[override]  # no policy argument, like Django's
        return super().as_bytes(unixfrom)


def _mime_multipart():
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    msg = MIMEMultipart("mixed")
    msg["To"], msg["Message-ID"], msg["Subject"] = "ann@example.com", "<mm@example.com>", "Hi"
    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText(TEXT, "plain", "utf-8"))
    alternative.attach(MIMEText(HTML.replace("A</a>", "Grüße</a>"), "html", "utf-8"))
    msg.attach(alternative)
    msg.attach(MIMEApplication(b"\x00\x01 https://example.com/in-a-file", Name="f.bin"))
    return msg


def _mime_text():
    from email.mime.text import MIMEText

    msg = MIMEText(HTML, "html", "iso-8859-1")
    msg["To"], msg["Message-ID"] = "ann@example.com", "<mt@example.com>"
    return msg


def _tagged():
    msg = email.message_from_bytes(build(), _class=lambda: Tagged("t1"))
    assert type(msg) is Tagged
    return msg


def _email_message(policy):
    def make():
        return email.message_from_bytes(build(), _class=EmailMessage, policy=policy)
    return make


POLICIES = {
    "default": email.policy.default,
    "SMTP": email.policy.SMTP,
    "SMTPUTF8": email.policy.SMTPUTF8,
    "HTTP": email.policy.HTTP,
    "strict": email.policy.strict,
    "narrow-crlf": email.policy.default.clone(linesep="\r\n", max_line_length=40),
    "7bit": email.policy.default.clone(cte_type="7bit"),
}
MAKERS = {"MIMEMultipart": _mime_multipart, "MIMEText": _mime_text, "Tagged": _tagged,
          **{f"EmailMessage-{name}": _email_message(policy) for name, policy in POLICIES.items()}}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_every_message_subclass_comes_back_as_a_new_object_of_its_class(tracker, kind):
    msg = MAKERS[kind]()
    generated = email.generator.BytesGenerator

    def serialized(message):
        out = io.BytesIO()
        generated(out, mangle_from_=False, policy=message.policy).flatten(message)
        return out.getvalue()

    raw_before = serialized(msg)  # sets the boundaries of a multipart built in memory
    before = copy.deepcopy(msg)
    result = tracker.rewrite_message(msg, issued_at=0)
    out = result.message
    assert type(out) is type(msg) and out is not msg and out.policy is msg.policy
    assert serialized(msg) == raw_before and msg.as_string() == before.as_string(), "the input was changed"
    assert [type(p) for p in out.walk()] == [type(p) for p in msg.walk()]
    expected = tracker.rewrite_message(raw_before, issued_at=0).message
    if kind.endswith("narrow-crlf"):  # this policy refolds long header lines whenever it writes a message
        expected = serialized(email.message_from_bytes(expected, _class=EmailMessage, policy=msg.policy))
    assert result.links and serialized(out) == expected
    assert isinstance(out.as_bytes(), bytes) and isinstance(out.as_string(), str)
    if kind == "Tagged":
        assert out.tag == "t1"
