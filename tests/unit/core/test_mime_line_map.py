"""The line map of a 7bit/8bit/quoted-printable part: only touched lines are encoded again, and exactly.

``transfer._encode_lines`` takes each group of touched lines from the text
spliced once (shifted by what the changes before it added) instead of
splicing every group again; a 7bit/8bit part in a charset whose bytes come
back from its text (UTF-8, ASCII, one-to-one single-byte tables) is encoded
whole when every line fits, else group by group (a line over 998 bytes
here keeps the groups in play, and EUC-JP never leaves them). Such a whole
body, and a base64 one, skip the read-back check (they read back by
construction): the property checks that they do. These properties pin what that must give for any
body: the part reads back as the rewritten text (the same text the str API
gives for the decoded body), no part is refused as unencodable, and every
line without a change keeps its bytes.
"""

from __future__ import annotations

import email
import email.policy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.helpers import make_tracker

IDENTITY = {"message_id": "m-lines", "recipient": "ann@example.com", "issued_at": 1_700_000_000}
TRACKER = make_tracker(settings={"click_tracking": {"enable_text": True},
                                 "subscription_tracking": {"enable": True}})

_WORDS = st.sampled_from([
    "Hello", "wörld", "caf\u00e9", "x" * 90, "y" * 1000, "=", "=3D", "tab\there", "trailing ", "\u20ac", "a.b", "",
    "https://example.com/a", "https://example.com/b?x=1&y=2", "(see https://example.com/c)",
    "http://example.org/\u00e9t\u00e9", "<https://example.com/d>", "mailto:x@example.com",
])
_LINES = st.lists(st.lists(_WORDS, max_size=6).map(" ".join), min_size=1, max_size=25)


def _message(lines: list[str], html: bool, cte: str, charset: str, eol: str) -> bytes:
    if html:
        body = eol.join(f'<p><a href="{w}">{w}</a></p>' if w.startswith("http") else w
                        for line in lines for w in [line])
    else:
        body = eol.join(lines)
    body += eol
    raw_body = body.encode(charset, "xmlcharrefreplace" if html else "replace")
    if cte == "base64":
        import base64

        raw_body = base64.encodebytes(raw_body).replace(b"\n", eol.encode())
    if cte == "quoted-printable":
        import binascii

        raw_body = eol.encode().join(binascii.b2a_qp(line, istext=False) for line in raw_body.split(eol.encode()))
    subtype = "html" if html else "plain"
    head = (f"From: a@example.com{eol}To: ann@example.com{eol}Subject: s{eol}MIME-Version: 1.0{eol}"
            f"Content-Type: text/{subtype}; charset={charset}{eol}Content-Transfer-Encoding: {cte}{eol}{eol}")
    return head.encode("ascii") + raw_body


def _decoded_body(raw: bytes) -> str:
    part = email.message_from_bytes(raw, policy=email.policy.default)
    content = part.get_content()
    assert isinstance(content, str)
    return content


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=_LINES, html=st.booleans(), cte=st.sampled_from(["8bit", "quoted-printable", "base64"]),
       charset=st.sampled_from(["utf-8", "iso-8859-1", "euc-jp", "koi8-r"]), eol=st.sampled_from(["\n", "\r\n"]))
def test_touched_lines_are_encoded_again_exactly_and_the_rest_keep_their_bytes(
        lines: list[str], html: bool, cte: str, charset: str, eol: str) -> None:
    raw = _message(lines, html, cte, charset, eol)
    result = TRACKER.rewrite_message(raw, **IDENTITY)
    assert not result.unencodable, result.warnings
    assert not result.undecodable, result.warnings
    [part] = result.parts
    text_in = _decoded_body(raw)
    expected = TRACKER.rewrite_html(text_in, **IDENTITY).html if html else TRACKER.rewrite_text(text_in, **IDENTITY).text
    out = result.message
    assert isinstance(out, bytes)
    assert _decoded_body(out).replace("\r\n", "\n") == expected.replace("\r\n", "\n")
    same_encoding = f"Content-Transfer-Encoding: {cte}".encode() in out.split((eol + eol).encode(), 1)[0] \
        and cte != "base64"  # (base64 has no lines of text to keep)
    if part.result is not None and same_encoding:  # (a new line over 998 bytes turns an 8bit part quoted-printable)
        body_in = raw.split((eol + eol).encode(), 1)[1]
        body_out = out.split((eol + eol).encode(), 1)[1]
        # (the pixel and the footer go at the end: the last lines are theirs to change)
        kept = [line for line in _logical_lines(body_in, eol)[:-3] if b"http" not in line]
        assert set(kept) <= set(_logical_lines(body_out, eol))  # a line without a link keeps its bytes


def _logical_lines(body: bytes, eol: str) -> list[bytes]:
    """Lines with a quoted-printable soft break (a trailing ``=``) joined to the next, as their raw bytes."""
    lines: list[bytes] = []
    pending = b""
    for line in body.split(eol.encode()):
        if line.endswith(b"="):
            pending += line + eol.encode()
            continue
        lines.append(pending + line)
        pending = b""
    return lines


@settings(max_examples=500, deadline=None)
@given(data=st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"x" * 40]), max_size=12).map(b"".join))
def test_line_break_looks_for_a_cr_first_and_says_what_it_said_before(data: bytes) -> None:
    """line_break checks for a CR with a one-byte search first; the answer is the two-byte search's."""
    from mailtrack.core.mime.tree import line_break

    before = b"\r\n" if b"\r\n" in data else (b"\r" if b"\n" not in data and b"\r" in data else b"\n")
    assert line_break(data) == before
