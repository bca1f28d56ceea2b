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
import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.helpers import make_tracker
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


# -- stateful and lossy codecs: what is written decodes to the result, or the part is left ------------

# Charsets with state (ISO-2022-*), multi-byte ones whose lead bytes swallow what follows, single-byte
# ones, and ones that are not ASCII-compatible (UTF-7, HZ, UTF-16: reported undecodable).
CODEC_CHARSETS = {
    "iso-2022-jp": "日本語テキスト", "iso-2022-jp-2": "日本語éß", "iso-2022-jp-3": "日本語", "iso-2022-kr": "한국어",
    "shift_jis": "日本語ｶﾀｶﾅ", "cp932": "日本語①", "euc-jp": "日本語", "gb18030": "中文€", "big5": "中文",
    "euc-kr": "한국어", "utf-8": "é€日✓😀", "iso-8859-1": "éßü", "windows-1252": "é€“”", "koi8-r": "Привет",
    "utf-7": "é+-", "hz": "中文~", "utf-16": "é",
}
# Bytes that put a stateful decoder into a state its encoder does not reproduce, and lead bytes without a trail.
STRAY = [b"\x1b", b"\x1b", b"\x1b$B", b"\x1b(B", b"\x1b(J", b"\x1b$)C", b"\x1b$(D", b"\x0e", b"\x0f", b"~{", b"~}", b"+",
         b"\x81", b"\x82\xa0", b"\x8e", b"\xa4\xa2", b"\xff", b"$", b"(", b")", b"@", b"B", b"C", b"J", b"F|K\\", b"a"]
FOOTERS = [
    {"click_tracking": {"enable_text": True}},
    {"click_tracking": {"enable_text": True},
     "subscription_tracking": {"enable": True, "text": "Abbestellen ✓ 日本 <% hier %>", "html": "<p>日本 é ✓ <% hier %></p>"}},
]


@st.composite
def codec_bodies(draw: st.DrawFn, charset: str, subtype: str) -> bytes:
    """Body bytes: text in the charset (its own characters, URLs, anchors) with stray escape/shift/lead bytes."""
    extra = CODEC_CHARSETS[charset]
    pieces = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.integers(-2, 5))
        if kind <= 0:
            pieces.append(draw(st.sampled_from(STRAY)))
            continue
        if kind == 1:
            url = draw(_urls(""))
            text = f'<a href="{url}">x</a>' if subtype == "html" else url
        elif kind == 2:
            text = draw(st.sampled_from(["\n", "\r\n", " ", "<p>", "</p>", "</body>"]))
        else:
            text = draw(_words(extra))
        try:
            pieces.append(text.encode(charset))
        except UnicodeError:
            pieces.append(text.encode("ascii", "ignore"))
    return b"".join(pieces)


@settings(max_examples=300)
@given(st.data(), st.sampled_from(sorted(CODEC_CHARSETS)), st.sampled_from(["base64", "quoted-printable", "7bit", "8bit"]),
       st.sampled_from(["plain", "html"]), st.sampled_from(FOOTERS))
@pytest.mark.timeout(300)
def test_every_rewritten_part_decodes_to_the_result_or_is_left_and_reported(
    data: st.DataObject, charset: str, cte: str, subtype: str, settings_: dict
) -> None:
    """Regression property (issue 8, defect 8): with any codec, a rewritten part decodes (by the stdlib) to
    exactly the rewriter's result text; a part that would not is left byte-identical and reported."""
    body = data.draw(codec_bodies(charset, subtype))
    head = f"To: ann@example.com\nMessage-ID: <{MESSAGE_ID}>\nContent-Type: text/{subtype}; charset={charset}\n"
    raw = (head + f"Content-Transfer-Encoding: {cte}\n\n").encode() + transfer_encode(body, cte, b"\n")
    result = TRACKER.rewrite_message(raw, issued_at=0, settings=settings_)
    [part] = result.parts
    out_body = result.message.split(b"\n\n", 1)[1]
    if part.status == "rewritten":
        assert part.result is not None
        leaf = email.message_from_bytes(result.message, policy=email.policy.compat32)
        payload = leaf.get_payload(decode=True)
        declared = leaf.get_content_charset()
        assert isinstance(payload, bytes) and declared is not None
        expected = part.result.html if isinstance(part.result, mailtrack.HtmlResult) else part.result.text
        assert payload.decode(declared) == expected
        return
    assert out_body == raw.split(b"\n\n", 1)[1], part
    assert part.status in ("unchanged", "undecodable", "unencodable"), part
    if part.status != "unchanged":
        assert part.reason and part.result is None
        assert [p for p in result.parts if p.status == part.status] == getattr(result, part.status)


STATEFUL_ATOMS = [*STRAY, b"\n", b"<p>", b"</body>", b' <a href="https://example.com/">x</a> ', b" https://example.com/t "]


@settings(max_examples=400)
@given(st.sampled_from(["iso-2022-jp", "iso-2022-jp-2", "iso-2022-jp-3", "iso-2022-kr"]),
       st.lists(st.sampled_from(STATEFUL_ATOMS), min_size=2, max_size=10),
       st.sampled_from(["base64", "quoted-printable", "7bit"]), st.sampled_from(["plain", "html"]))
@pytest.mark.timeout(300)
def test_stateful_codecs_with_stray_escapes_decode_to_the_result_or_are_left(
    charset: str, atoms: list[bytes], cte: str, subtype: str
) -> None:
    """The same property, aimed at ISO-2022 bodies made of stray escape and shift bytes around links."""
    body = b"".join(atoms)
    head = f"To: ann@example.com\nMessage-ID: <{MESSAGE_ID}>\nContent-Type: text/{subtype}; charset={charset}\n"
    raw = (head + f"Content-Transfer-Encoding: {cte}\n\n").encode() + transfer_encode(body, cte, b"\n")
    result = TRACKER.rewrite_message(raw, issued_at=0, settings={"click_tracking": {"enable_text": True}})
    [part] = result.parts
    if part.status == "rewritten":
        assert part.result is not None
        leaf = email.message_from_bytes(result.message, policy=email.policy.compat32)
        payload = leaf.get_payload(decode=True)
        assert isinstance(payload, bytes)
        expected = part.result.html if isinstance(part.result, mailtrack.HtmlResult) else part.result.text
        assert payload.decode(leaf.get_content_charset() or "us-ascii") == expected
    else:
        assert result.message == raw and (part.status == "unchanged" or part.reason), part


# -- fuzzing rewrite_message: only MailtrackError escapes, nothing hangs, the input is not changed ---------

_ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())  # surrogates too
_HEADER_CHARS = st.sampled_from(list("abc:;=\"' <>@.,()/\\-_\t\r\n\x00\x1b\x7fé日") + ["\udc80", "\ud800"])
_CTES = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uue", "BASE64", ""]
_CHARSETS = ["utf-8", "us-ascii", "iso-8859-1", "iso-2022-jp", "shift_jis", "utf-7", "utf-16", "x-bogus", "rot13", "idna", '"', ""]
_TYPES = ["text/plain", "text/html"] * 3 + ["multipart/alternative", "multipart/mixed"] * 2 + [
    "multipart/related", "multipart/signed", "multipart/digest", "message/rfc822", "application/octet-stream", "text", "/", ""]


@st.composite
def _fuzz_text(draw: st.DrawFn) -> str:
    return draw(st.one_of(
        st.sampled_from(["https://example.com/a?b=1&c=2", '<a href="https://example.com/x">x</a>', "http://a.co/ b"]),
        st.text(_HEADER_CHARS, max_size=20),
        st.sampled_from(["https://example.com/a?b=1&c=2", '<a href="https://example.com/x">x</a>', "=\n", "=E9", "\x1b$B",
                         "aGVsbG8=", "<html><body>", "</body>", "\r", "From x\n", "=?utf-8?q?x?="]),
    ))


@st.composite
def entities(draw: st.DrawFn, depth: int = 0) -> str:
    """A MIME entity as text: random headers (type, charset, boundary, CTE, disposition) and a body, nested."""
    ctype = draw(st.sampled_from(_TYPES))
    boundary = draw(st.sampled_from(["b", "=_b", "b" * 80, "", "a b", "日", "--"]))
    params = ""
    if draw(st.booleans()):
        params += f"; charset={draw(st.sampled_from(_CHARSETS))}"
    if ctype.startswith("multipart/") or draw(st.integers(0, 5)) == 0:
        params += f'; boundary="{boundary}"' if draw(st.booleans()) else f"; boundary={boundary}"
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = []
    if draw(st.integers(0, 4)):
        lines.append(f"Content-Type: {ctype}{params}")
    if draw(st.booleans()):
        lines.append(f"Content-Transfer-Encoding: {draw(st.sampled_from(_CTES))}")
    if draw(st.integers(0, 5)) == 0:
        lines.append(f"Content-Disposition: {draw(st.sampled_from(['attachment', 'inline', 'inline; filename=a.txt', '']))}")
    for _ in range(draw(st.integers(0, 2))):
        lines.append(f"{draw(st.sampled_from(['X-A', 'Subject', 'From ', ' ', 'Bad Name']))}: {draw(_fuzz_text())}")
    body_parts = [draw(_fuzz_text()) for _ in range(draw(st.integers(0, 4)))]
    if ctype.startswith("multipart/") and depth < 4:
        children = draw(st.lists(entities(depth + 1), max_size=3))
        close = draw(st.sampled_from([f"--{boundary}--", f"--{boundary}", ""]))
        body = "".join(f"--{boundary}{eol}{child}{eol}" for child in children) + close + eol
        body_parts.insert(draw(st.integers(0, len(body_parts))), body)
    elif ctype == "message/rfc822" and depth < 4:
        body_parts.append(draw(entities(depth + 1)))
    return eol.join(lines) + eol + (eol if draw(st.integers(0, 6)) else "") + eol.join(body_parts)


@st.composite
def message_texts(draw: st.DrawFn) -> str:
    """A whole message: identity headers (sometimes missing, doubled, empty or odd), X-SMTPAPI, DKIM, then an entity."""
    top = []
    for name, values in (
        ("To", ["ann@example.com"] * 4 + ["Ann <ann@example.com>", "a@x, b@x", "", "<>", "日本 <j@x>", "\ud800@x"]),
        ("Message-ID", ["<m1@example.com>"] * 4 + ["<>", "", "m1", "<a@b> (c)", "\udc80"]),
        ("X-SMTPAPI", ['{"filters": {"clicktrack": {"settings": {"enable": 1}}}}', '{"to": ["a@x", "b@x"]}', "{", "[]",
                       '{"unique_args": {"k": "v"}}', '{"filters": {"bogus": 1}}']),
        ("X-Mailtrack-Settings", ['{"open_tracking": {"enable": false}}', "{"]),
        ("DKIM-Signature", ["v=1; a=rsa-sha256"]),
        ("List-Unsubscribe", ["<https://example.com/u>"]),
    ):
        for _ in range(draw(st.sampled_from([0] + [1] * 8 + [2] if name in ("To", "Message-ID") else [0] * 9 + [1]))):
            top.append(f"{name}: {draw(st.sampled_from(values))}\n")
    return "".join(top) + draw(entities())


def _snapshot(message: Message) -> list[tuple[object, ...]]:
    """Everything a rewrite could change in a Message object, part by part (not via as_bytes, which may raise)."""
    out = []
    stack = [message]
    while stack:
        part = stack.pop()
        payload = part._payload  # type: ignore[attr-defined]
        out.append((type(part), list(part._headers), None if isinstance(payload, list) else payload,  # type: ignore[attr-defined]
                    part.preamble, part.epilogue, part.get_unixfrom(), part.get_default_type(), part.policy,
                    part._charset, id(payload)))  # type: ignore[attr-defined]
        if isinstance(payload, list):
            stack.extend(p for p in payload if isinstance(p, Message))
    return out


FUZZ_SETTINGS = [None, {"click_tracking": {"enable_text": True}, "subscription_tracking": {"enable": True}}]
POLICIES = [email.policy.compat32, email.policy.default, email.policy.SMTP, email.policy.strict, email.policy.HTTP]


def _rewrite_fuzzed(message: object, settings_: dict | None) -> mailtrack.MessageResult | None:
    """Rewrite; a MailtrackError is a fine answer, any other exception fails the test (pytest shows it)."""
    try:
        return TRACKER.rewrite_message(message, issued_at=0, settings=settings_)  # type: ignore[call-overload]
    except mailtrack.MailtrackError as exc:
        assert str(exc), "an error without a message"
        return None


@settings(max_examples=300)
@given(st.one_of(st.text(_ANY_CHAR, max_size=300), message_texts()), st.sampled_from(FUZZ_SETTINGS))
@pytest.mark.timeout(300)
def test_fuzz_str_messages(text: str, settings_: dict | None) -> None:
    result = _rewrite_fuzzed(text, settings_)
    if result is not None:
        assert isinstance(result.message, str)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=300), message_texts().map(lambda t: t.encode("utf-8", "surrogateescape")
                                                                if "\ud800" not in t else t.encode("utf-8", "replace"))),
       st.sampled_from(FUZZ_SETTINGS))
@pytest.mark.timeout(300)
def test_fuzz_bytes_messages(raw: bytes, settings_: dict | None) -> None:
    copy_ = bytes(raw)
    result = _rewrite_fuzzed(bytearray(raw), settings_)
    assert raw == copy_
    if result is not None:
        assert isinstance(result.message, bytes)
        for link in result.links:
            assert TRACKER.verify(link.tracking_url).url == link.url
        for part in result.parts:
            if part.status in ("undecodable", "unencodable"):
                assert part.reason


@settings(max_examples=200)
@given(message_texts(), st.sampled_from(POLICIES), st.booleans(), st.sampled_from(FUZZ_SETTINGS))
@pytest.mark.timeout(300)
def test_fuzz_message_objects(text: str, policy: email.policy.Policy, from_bytes: bool, settings_: dict | None) -> None:
    try:
        if from_bytes:
            message = email.message_from_bytes(text.encode("utf-8", "replace"), policy=policy)
        else:
            message = email.message_from_string(text, policy=policy)
    except Exception:  # the stdlib's strict policy refuses defects while parsing: not our input then
        return
    before = _snapshot(message)
    result = _rewrite_fuzzed(message, settings_)
    assert _snapshot(message) == before, "the input message object was changed"
    if result is not None:
        assert type(result.message) is type(message) and result.message is not message
