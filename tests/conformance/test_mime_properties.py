"""Property tests of Tracker.rewrite_message over generated bodies in generated charset/CTE wrappings.

Bodies are lines of words (ASCII and the charset's own non-ASCII), http(s)
URLs, long runs, and every kind of line break (LF, CRLF, a bare CR), put in a
single-part or multipart/alternative message in a charset and transfer
encoding from the matrix of test_mime_encodings. Properties: nothing but a
MailtrackError escapes; each part decodes to exactly what rewrite_text /
rewrite_html give for the decoded input; lines without a change keep their
bytes; every tracked link verifies; a second pass changes nothing (all in
:func:`mimecheck.check_rewrite`). The profile (conftest.py) is deterministic.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from support.helpers import make_tracker
from hypothesis import given, settings
from hypothesis import strategies as st
from support.mimecheck import check_rewrite

import mailtrack

TRACKER = make_tracker()
RECIPIENT = "ann@example.com"
MESSAGE_ID = "prop@example.com"

# (charset, transfer encoding, characters the body may hold besides ASCII)
MATRIX = [
    ("utf-8", "quoted-printable", "é€ß日本✓😀"),
    ("utf-8", "base64", "é€ß日本✓😀"),
    ("utf-8", "8bit", "é€ß日本✓😀"),
    ("utf-8", "7bit", ""),
    ("iso-8859-1", "quoted-printable", "éßü©½"),
    ("iso-8859-1", "base64", "éßü©½"),
    ("iso-8859-1", "8bit", "éßü©½"),
    ("iso-8859-1", "7bit", ""),
    ("windows-1252", "quoted-printable", "é€ß“”…"),
    ("windows-1252", "base64", "é€ß“”…"),
    ("windows-1252", "8bit", "é€ß“”…"),
    ("windows-1252", "7bit", ""),
    ("iso-2022-jp", "7bit", "日本語テキスト"),
    ("iso-2022-jp", "quoted-printable", "日本語テキスト"),
    ("iso-2022-jp", "base64", "日本語テキスト"),
]
SETTINGS = [
    {"click_tracking": {"enable_text": True}},
    {"click_tracking": {"enable_text": True}, "subscription_tracking": {"enable": True}},
    {"open_tracking": {"enable": False}, "click_tracking": {"enable_text": True}},
    {"click_tracking": {"enable": False}},
]
PROPERTY = settings(max_examples=100)


@dataclass(frozen=True)
class Token:
    text: str
    url: bool = False


def _words(extra: str) -> st.SearchStrategy[str]:
    alphabet = "abcXYZ019 .,;:()=-_\t" + extra
    return st.text(st.sampled_from(list(alphabet)), min_size=1, max_size=12)


@st.composite
def _urls(draw: st.DrawFn, extra: str) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS"]))
    host = draw(st.sampled_from(["example.com", "shop.example.org", "a.co"]))
    path = draw(st.text(st.sampled_from(list("abz09-_./~%") + list(extra[:2])), max_size=10))
    query = draw(st.sampled_from(["", "?a=1", "?a=1&b=2", "?q=x+y#frag"]))
    return f"{scheme}://{host}/{path}{query}"


@st.composite
def bodies(draw: st.DrawFn, extra: str, bare_cr: bool = True) -> list[tuple[list[Token], str]]:
    """Lines: tokens and the line break after them ("" for a last line without one)."""
    count = draw(st.integers(1, 8))
    breaks = ["\r", "\n", "\r\n"] if bare_cr else ["\n", "\r\n"]
    lines = []
    for index in range(count):
        kind = draw(st.integers(0, 7))
        if kind <= 1:  # a long line: over 76 (QP soft breaks), often over 998 (a 7bit/8bit part switches to QP)
            unit = draw(_words(extra))
            length = draw(st.sampled_from([40, 90, 600, 1000, 2000]))
            tokens = [Token((unit * length)[:length])]
            if draw(st.integers(0, 3)):
                tokens.insert(draw(st.integers(0, 1)), Token(draw(_urls(extra)), url=True))
        else:
            tokens = draw(
                st.lists(
                    st.one_of(_urls(extra).map(lambda u: Token(u, url=True)), _words(extra).map(Token)),
                    max_size=5,
                )
            )
        ending = draw(st.sampled_from(breaks)) if index < count - 1 else draw(st.sampled_from(["", "\n", "\r\n"]))
        lines.append((tokens, ending))
    return lines


def render(lines: list[tuple[list[Token], str]], html: bool) -> str:
    out = ["<html><body>\n"] if html else []
    for tokens, ending in lines:
        pieces = []
        for token in tokens:
            if token.url:
                pieces.append(f'<a href="{token.text.replace("&", "&amp;")}">link</a>' if html else token.text)
            else:
                pieces.append(token.text.replace("&", "&amp;").replace("<", "&lt;") if html else token.text)
        out.append(" ".join(pieces) + ending)
    if html:
        out.append("</body></html>\n")
    return "".join(out)


def qp_encode(data: bytes, eol: bytes) -> bytes:
    """Quoted-printable by hand: LF and CRLF kept as hard breaks, a bare CR encoded, soft breaks with ``eol``."""
    out = []
    for line in data.split(b"\n"):
        hard = line.endswith(b"\r")
        content = line[:-1] if hard else line
        encoded = binascii.b2a_qp(content, quotetabs=False, istext=False, header=False)
        out.append(encoded.replace(b"=\n", b"=" + eol) + (b"\r" if hard else b""))
    return b"\n".join(out)


def transfer_encode(data: bytes, cte: str, eol: bytes) -> bytes:
    if cte == "quoted-printable":
        return qp_encode(data, eol)
    if cte == "base64":
        encoded = base64.b64encode(data)
        return b"".join(encoded[i : i + 76] + eol for i in range(0, len(encoded), 76))
    return data


def part_bytes(text: str, subtype: str, charset: str, cte: str, eol: bytes) -> bytes:
    head = f'Content-Type: text/{subtype}; charset="{charset}"'.encode() + eol
    head += f"Content-Transfer-Encoding: {cte}".encode() + eol + eol
    return head + transfer_encode(text.encode(charset), cte, eol)


def message(parts: list[bytes], eol: bytes) -> bytes:
    head = (
        eol.join(
            [
                b"From: shop@example.com",
                b"To: Ann <ann@example.com>",
                f"Message-ID: <{MESSAGE_ID}>".encode(),
                b"MIME-Version: 1.0",
            ]
        )
        + eol
    )
    if len(parts) == 1:
        return head + parts[0]
    head += b'Content-Type: multipart/alternative; boundary="=_b"' + eol + eol
    body = b"".join(b"--=_b" + eol + part + eol for part in parts)
    return head + body + b"--=_b--" + eol


_CLICK_URL = re.compile(r"https://t\.example\.com/c/[A-Za-z0-9_.-]+")


def _clicks_as_destinations(text: str) -> str:
    """``text`` with each click URL replaced by the destination it verifies to."""
    def destination(match: re.Match[str]) -> str:
        url = match.group(0)
        for end in range(len(url), 0, -1):  # a sentence may end right after the URL
            try:
                return f"<click {TRACKER.verify(url[:end]).url}>{url[end:]}"
            except mailtrack.MailtrackError:
                continue
        return url

    return _CLICK_URL.sub(destination, text)


def rewrite_checked(raw: bytes, settings_: dict, texts: dict[str, tuple[str, str]]) -> None:
    """Rewrite ``raw``; check every invariant and that each part equals the single-document rewrite."""
    kwargs = {"issued_at": 0, "recipient": RECIPIENT, "settings": settings_}
    try:
        result = TRACKER.rewrite_message(raw, **kwargs)
    except mailtrack.MailtrackError:
        return  # refused on purpose (SettingsError is one): allowed
    html_on = any(subtype == "html" for subtype, _ in texts.values())
    opens = settings_.get("open_tracking", {}).get("enable", True)
    checked = check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_pixel=html_on and opens)
    for path, (subtype, _) in texts.items():
        part = checked.parts[path]
        assert part.status in ("rewritten", "unchanged"), part
        text_in = checked.decoded_in.get(path)
        if text_in is None:  # unchanged: decode the input ourselves
            assert part.status == "unchanged"
            continue
        if subtype == "html":
            expected = TRACKER.rewrite_html(text_in, message_id=MESSAGE_ID, recipient=RECIPIENT, settings=settings_, issued_at=0)
            assert _clicks_as_destinations(checked.decoded[path]) == _clicks_as_destinations(expected.html)
        else:
            expected_text = TRACKER.rewrite_text(
                text_in, message_id=MESSAGE_ID, recipient=RECIPIENT, settings=settings_, issued_at=0
            )
            written = checked.decoded[path]
            if b"\r\n" in raw and "\r\n" not in text_in:
                # A text with no line break of its own gets the footer with the message's CRLF, not LF.
                written = written.replace("\r\n", "\n")
            # Link indexes continue across a message's parts, so compare what each click URL leads to.
            assert _clicks_as_destinations(written) == _clicks_as_destinations(expected_text.text)


matrix = st.sampled_from(MATRIX)
eols = st.sampled_from([b"\n", b"\r\n"])


@PROPERTY
@given(st.data(), matrix, st.sampled_from(["plain", "html"]), eols, st.sampled_from(SETTINGS))
def test_single_part(data: st.DataObject, combo: tuple[str, str, str], subtype: str, eol: bytes, settings_: dict) -> None:
    charset, cte, extra = combo
    lines = data.draw(bodies(extra, bare_cr=cte != "quoted-printable" and data.draw(st.integers(0, 2)) == 0))
    text = render(lines, html=subtype == "html")
    raw = message([part_bytes(text, subtype, charset, cte, eol)], eol)
    rewrite_checked(raw, settings_, {"1": (subtype, text)})


@PROPERTY
@given(st.data(), matrix, matrix, eols, st.sampled_from(SETTINGS))
def test_alternative(data: st.DataObject, text_combo, html_combo, eol: bytes, settings_: dict) -> None:
    qp = "quoted-printable" in (text_combo[1], html_combo[1])
    lines = data.draw(
        bodies(text_combo[2] if text_combo[2] == html_combo[2] else "", bare_cr=not qp and data.draw(st.integers(0, 2)) == 0)
    )
    plain, html = render(lines, html=False), render(lines, html=True)
    parts = [
        part_bytes(plain, "plain", text_combo[0], text_combo[1], eol),
        part_bytes(html, "html", html_combo[0], html_combo[1], eol),
    ]
    rewrite_checked(message(parts, eol), settings_, {"1": ("plain", plain), "2": ("html", html)})


@settings(max_examples=80)
@given(
    st.binary(max_size=400),
    st.sampled_from(["quoted-printable", "base64", "8bit", "7bit", "binary", "x-unknown"]),
    st.sampled_from(["utf-8", "iso-8859-1", "iso-2022-jp", "x-bogus", "rot13", None]),
    st.sampled_from(["plain", "html"]),
)
def test_arbitrary_body_bytes_never_escape_as_other_errors(body: bytes, cte: str, charset: str | None, subtype: str) -> None:
    """Any bytes as the body of a declared text part: never an exception other than MailtrackError;
    a part we cannot read is left byte-identical."""
    ctype = f"text/{subtype}" + (f"; charset={charset}" if charset else "")
    raw = (
        f"To: ann@example.com\nMessage-ID: <{MESSAGE_ID}>\nContent-Type: {ctype}\nContent-Transfer-Encoding: {cte}\n\n".encode()
        + body
    )
    kwargs = {"issued_at": 0, "settings": {"click_tracking": {"enable_text": True}}}
    try:
        result = TRACKER.rewrite_message(raw, **kwargs)
    except mailtrack.MailtrackError:
        return
    part = result.parts[0]
    if part.status in ("undecodable", "unchanged", "left"):
        assert result.message == raw
    again = TRACKER.rewrite_message(result.message, **kwargs)
    assert again.message == result.message
    for link in result.links:
        assert TRACKER.verify(link.tracking_url).url == link.url
