"""Tracker.rewrite_message over stdlib-built messages: every charset x transfer encoding x shape.

Messages are built with ``email.message.EmailMessage`` / ``email.mime.*`` (and by
hand where the stdlib cannot make the shape), rewritten, and checked by
:func:`mimecheck.check_rewrite`, which reads the output with its own splitter
and the stdlib only: each rewritten part decodes to the rewriter's own result,
links verify, the pixel is in the HTML body, everything not rewritten is
byte-identical, untouched lines keep their bytes, line breaks keep their kind,
and a second pass changes nothing.
"""

from __future__ import annotations

import base64
import email
import email.policy
import quopri
import re
from email.message import EmailMessage, Message
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from support.helpers import BASE_URL, make_tracker
from support.mimecheck import check_rewrite, split_message, stdlib_leaves, stdlib_text

import mailtrack

TRACKER = make_tracker()
RECIPIENT = "ann@example.com"
TEXT_ON = {"click_tracking": {"enable_text": True}}
OFF = {"click_tracking": {"enable": False}, "open_tracking": {"enable": False}}
KWARGS = {"issued_at": 0, "settings": TEXT_ON}

# Non-ASCII each charset can hold (é, €, ß for the Latin ones; Japanese for ISO-2022-JP).
SAMPLES = {
    "utf-8": "é € ß — 日本語 ✓",
    "iso-8859-1": "é ß © ü ½",
    "windows-1252": "é € ß “quoted” …",
    "iso-2022-jp": "日本語のテキスト、カタカナ",
}
ASCII_SAMPLE = "plain ASCII only"


def _combos() -> list[tuple[str, str, str]]:
    combos = []
    for charset in ("utf-8", "iso-8859-1", "windows-1252"):
        for cte in ("quoted-printable", "base64", "8bit"):
            combos.append((charset, cte, SAMPLES[charset]))
        combos.append((charset, "7bit", ASCII_SAMPLE))  # 7bit holds a Latin charset only when the text is ASCII
    for cte in ("7bit", "quoted-printable", "base64"):  # ISO-2022-JP is 7bit-safe; 8bit would add nothing
        combos.append(("iso-2022-jp", cte, SAMPLES["iso-2022-jp"]))
    return combos


COMBOS = _combos()
SHAPES = ("html", "plain", "alternative", "mixed", "related", "rfc822")

HTML_URLS = ["https://example.com/shop?a=1&b=2", "https://example.org/deep/path#frag", "http://example.net/x"]
TEXT_URLS = ["https://example.com/shop?a=1&b=2", "https://example.org/deep/path", "http://example.net/x"]
INNER_URL = "https://inner.example.com/forwarded"
ATTACHED_URL = "https://attached.example.com/notes"
PREAMBLE = "This is a multi-part message in MIME format. https://preamble.example.com/"
EPILOGUE = "Epilogue https://epilogue.example.com/ ends here."


def html_body(sample: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        "<html><head><title>Newsletter</title></head>\n"
        "<body>\n"
        f"<p>Bonjour {sample}, nothing to click on this line (a = b).</p>\n"
        f'<p><a href="https://example.com/shop?a=1&amp;b=2">Shop {sample}</a></p>\n'
        f"<p>A quiet line {sample}\twith a tab</p>\n"
        '<p><a href="https://example.org/deep/path#frag">second</a> and <a href=http://example.net/x>third</a></p>\n'
        '<p><a href="mailto:ann@example.com">write to us</a> or <a href="#top">go up</a></p>\n'
        f"<p>{(sample + ' ') * 12}end of a long quiet line</p>\n"
        "</body>\n"
        "</html>\n"
    )


def text_body(sample: str) -> str:
    return (
        f"Hello {sample},\n"
        "nothing to click on this line (a = b).\n"
        "Shop: https://example.com/shop?a=1&b=2\n"
        f"A quiet line {sample}\n"
        "See (https://example.org/deep/path) and http://example.net/x.\n"
        "Write to mailto:ann@example.com\n"
        f"{(sample + ' ') * 12}end of a long quiet line\n"
    )


def _part(content: str, subtype: str, charset: str, cte: str) -> EmailMessage:
    part = EmailMessage()
    part.set_content(content, subtype=subtype, charset=charset, cte=cte)
    del part["MIME-Version"]
    return part


def _pdf() -> bytes:
    return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _inner_message() -> EmailMessage:
    inner = EmailMessage()
    inner["From"] = "Bob <bob@example.org>"
    inner["To"] = "carol@example.org"
    inner["Subject"] = "Forwarded"
    inner["Message-ID"] = "<inner@example.org>"
    inner.set_content(f"Forwarded text {INNER_URL}\n")
    inner.add_alternative(f'<html><body><a href="{INNER_URL}">forwarded</a></body></html>\n', subtype="html")
    return inner


def build(shape: str, charset: str, cte: str, sample: str) -> tuple[EmailMessage, dict[str, list[str]]]:
    """A message of ``shape`` whose text parts use ``charset``/``cte``, and the links each part must track."""
    html = _part(html_body(sample), "html", charset, cte)
    text = _part(text_body(sample), "plain", charset, cte)
    msg = EmailMessage()
    msg["From"] = "Shop <shop@example.com>"
    msg["To"] = f"Ann <{RECIPIENT}>"
    msg["Subject"] = f"Offers {SAMPLES['utf-8']}"
    msg["Date"] = "Tue, 03 Apr 2012 16:58:35 +0400"
    msg["Message-ID"] = "<m1@example.com>"
    msg["X-Custom"] = "kept as written"
    if shape in ("html", "plain"):
        subtype = "html" if shape == "html" else "plain"
        msg.set_content((html_body if shape == "html" else text_body)(sample), subtype=subtype, charset=charset, cte=cte)
        return msg, {"1": HTML_URLS if shape == "html" else TEXT_URLS}
    alternative = EmailMessage()
    alternative.make_alternative()
    alternative.attach(text)
    alternative.attach(html)
    if shape == "related":
        related = EmailMessage()
        related.make_related()
        related.attach(html)
        image = EmailMessage()
        image.set_content(PNG, maintype="image", subtype="png", cid="<logo@example.com>", disposition="inline")
        related.attach(image)
        alternative.set_payload([text, related])
    if shape in ("alternative", "related"):
        top = alternative
        expect = {"1": TEXT_URLS, "2.1" if shape == "related" else "2": HTML_URLS}
    else:
        top = EmailMessage()
        top.make_mixed()
        top.attach(alternative)
        if shape == "mixed":
            pdf = EmailMessage()
            pdf.set_content(_pdf(), maintype="application", subtype="pdf", filename="doc.pdf")
            notes = EmailMessage()
            notes.set_content(f"Notes {ATTACHED_URL}\n", subtype="plain", disposition="attachment", filename="notes.txt")
            top.attach(pdf)
            top.attach(notes)
        else:
            forwarded = EmailMessage()
            forwarded.set_content(_inner_message())
            del forwarded["MIME-Version"]
            top.attach(forwarded)
        expect = {"1.1": TEXT_URLS, "1.2": HTML_URLS}
    msg["MIME-Version"] = "1.0"
    for name, value in top.items():
        if name.lower() != "mime-version":
            msg[name] = value
    msg.set_payload(top.get_payload())
    msg.preamble = PREAMBLE
    msg.epilogue = EPILOGUE
    return msg, expect


def as_raw(msg: Message, eol: str) -> bytes:
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n" if eol == "crlf" else "\n"))


def rewrite(raw, **kwargs):
    for key, value in KWARGS.items():
        kwargs.setdefault(key, value)
    return TRACKER.rewrite_message(raw, **kwargs), kwargs


# -- the matrix ------------------------------------------------------------------------


@pytest.mark.parametrize("eol", ["lf", "crlf"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("charset", "cte", "sample"), COMBOS, ids=[f"{c}-{e}" for c, e, _ in COMBOS])
def test_matrix(shape: str, charset: str, cte: str, sample: str, eol: str) -> None:
    msg, expect = build(shape, charset, cte, sample)
    raw = as_raw(msg, eol)
    # The set-up is what it says: the stdlib reads the parts back as built, without defects.
    parsed_in = email.message_from_bytes(raw, policy=email.policy.default)
    assert all(not part.defects for part in parsed_in.walk())
    for path in expect:
        part = stdlib_leaves(parsed_in)[path]
        assert part.get_content_charset() == charset and part["content-transfer-encoding"] == cte

    result, kwargs = rewrite(raw, recipient=RECIPIENT)
    checked = check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_links=expect, expect_pixel=shape != "plain")

    assert result.message_id == "m1@example.com" and result.recipient == RECIPIENT
    for path in expect:
        part = checked.parts[path]
        assert part.status == "rewritten" and part.body
        assert part.new_transfer_encoding == cte and part.new_charset == charset, part.warnings
        # Non-ASCII content survives exactly.
        built = (text_body if part.content_type == "text/plain" else html_body)(sample)
        assert checked.decoded[path].count(sample) == checked.decoded_in[path].count(sample) == built.count(sample)
    if cte != "base64":
        assert checked.lines_checked >= 5 * len(expect)
    others = [p for p in result.parts if p.path not in expect]
    assert all(p.status == "left" and p.result is None for p in others), others
    out = result.message
    if shape not in ("html", "plain"):
        assert out.count(PREAMBLE.encode()) == 1 and out.count(EPILOGUE.encode()) == 1
    if shape == "rfc822":
        forwarded = next(p for p in result.parts if p.content_type == "message/rfc822")
        assert forwarded.reason == "not a text body"
        body = split_message(out).children[1].body(out)
        assert body.count(INNER_URL.encode()) == 2 and BASE_URL.encode() not in body
    if shape == "mixed":
        reasons = {p.content_type: p.reason for p in others}
        assert reasons == {"application/pdf": "not a text body", "text/plain": "attachment"}
        assert out.count(ATTACHED_URL.encode()) == 1
        assert stdlib_leaves(checked.parsed)["3"].get_content() == f"Notes {ATTACHED_URL}{chr(13) if eol == 'crlf' else ''}\n"
        assert stdlib_leaves(checked.parsed)["2"].get_content() == _pdf()
    if shape == "related":
        assert stdlib_leaves(checked.parsed)["2.2"].get_content() == PNG

    # Tracking off: the very same bytes.
    off = TRACKER.rewrite_message(raw, issued_at=0, settings=OFF)
    assert off.message == raw
    assert all(p.status in ("left", "unchanged") for p in off.parts)


def test_matrix_via_email_mime_compat32() -> None:
    """The legacy email.mime classes (compat32): their default encodings; each part comes back as its own class."""
    outer = MIMEMultipart("mixed")
    outer["To"] = RECIPIENT
    outer["Message-ID"] = "<legacy@example.com>"
    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText(text_body(SAMPLES["iso-8859-1"]), "plain", "iso-8859-1"))  # quoted-printable
    alternative.attach(MIMEText(html_body(SAMPLES["utf-8"]), "html", "utf-8"))  # base64
    outer.attach(alternative)
    outer.attach(MIMEApplication(_pdf(), "pdf", Name="doc.pdf"))
    outer.attach(MIMEImage(PNG, "png"))
    outer.attach(MIMEMessage(_inner_message()))
    raw = outer.as_bytes()
    result = TRACKER.rewrite_message(outer, **KWARGS)
    assert type(result.message) is MIMEMultipart
    assert [type(part) for part in result.message.walk()] == [type(part) for part in outer.walk()]
    out = result.message.as_bytes()
    bytes_result, kwargs = rewrite(raw)
    assert bytes_result.message == out
    check_rewrite(TRACKER, raw, bytes_result, kwargs=kwargs, expect_links={"1.1": TEXT_URLS, "1.2": HTML_URLS})
    assert [p.transfer_encoding for p in bytes_result.parts[:2]] == ["quoted-printable", "base64"]


# -- switching the transfer encoding or the charset ---------------------------------------------


def _single(content_type: str, cte: str | None, body: bytes, eol: bytes = b"\n") -> bytes:
    headers = [b"From: shop@example.com", b"To: ann@example.com", b"Message-ID: <s1@example.com>", b"MIME-Version: 1.0"]
    headers.append(b"Content-Type: " + content_type.encode())
    if cte is not None:
        headers.append(b"Content-Transfer-Encoding: " + cte.encode())
    return eol.join(headers) + eol + eol + body


def _minified(count: int) -> str:
    links = "".join(f'<a href="https://example.com/p/{i}">link {i}</a> ' for i in range(count))
    return f"<html><body><p>{links}</p></body></html>"


@pytest.mark.parametrize("declared", ["7bit", None])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_7bit_line_over_998_switches_to_quoted_printable(declared: str | None, eol: bytes) -> None:
    html = _minified(12)
    assert len(html) < 998
    body = b"<!-- first line kept -->" + eol + html.encode() + eol + b"<!-- last line kept -->" + eol
    raw = _single('text/html; charset="us-ascii"', declared, body, eol)
    result, kwargs = rewrite(raw)
    checked = check_rewrite(
        TRACKER, raw, result, kwargs=kwargs, expect_links={"1": [f"https://example.com/p/{i}" for i in range(12)]}
    )
    part = result.parts[0]
    assert part.transfer_encoding == "7bit" and part.new_transfer_encoding == "quoted-printable"
    assert any("Content-Transfer-Encoding changed from 7bit to quoted-printable" in w for w in part.warnings)
    headers = split_message(result.message)
    ctes = [f.raw for f in headers.fields if f.name == "content-transfer-encoding"]
    assert ctes == [b"Content-Transfer-Encoding: quoted-printable" + eol]
    assert checked.parsed["content-transfer-encoding"] == "quoted-printable"
    assert all(len(line) <= 76 for line in headers.body(result.message).splitlines())


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_8bit_line_over_998_switches_to_quoted_printable(eol: bytes) -> None:
    html = "<p>Grüße € " + _minified(12) + "</p>"
    body = "é first line".encode() + eol + html.encode() + eol + b"last" + eol
    raw = _single('text/html; charset="utf-8"', "8bit", body, eol)
    result, kwargs = rewrite(raw)
    checked = check_rewrite(
        TRACKER, raw, result, kwargs=kwargs, expect_links={"1": [f"https://example.com/p/{i}" for i in range(12)]}
    )
    assert result.parts[0].new_transfer_encoding == "quoted-printable"
    assert "Grüße €" in checked.decoded["1"] and "é first line" in checked.decoded["1"]
    assert checked.parsed["content-transfer-encoding"] == "quoted-printable"


def test_7bit_change_that_fits_stays_7bit_and_keeps_other_lines() -> None:
    body = b"<html><body>\n<p>" + b"x" * 1200 + b'</p>\n<a href="https://example.com/">a</a>\n</body></html>\n'
    raw = _single("text/html", "7bit", body)  # a long line already there, not ours: left as it is
    result, kwargs = rewrite(raw)
    check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_links={"1": ["https://example.com/"]})
    part = result.parts[0]
    assert part.status == "rewritten" and part.new_transfer_encoding == "7bit"
    assert b"<p>" + b"x" * 1200 + b"</p>\n" in result.message


FOOTER = {"subscription_tracking": {"enable": True, "text": "Se désabonner : <% %>", "html": "<p>Se désabonner : <% ici %></p>"}}


@pytest.mark.parametrize("eol", ["lf", "crlf"])
def test_non_ascii_footer_switches_us_ascii_text_to_utf8_and_html_gets_a_charref(eol: str) -> None:
    msg = EmailMessage()
    msg["To"] = RECIPIENT
    msg["Message-ID"] = "<footer@example.com>"
    msg.set_content("Hello,\nvisit https://example.com/a\nBye\n", charset="us-ascii", cte="7bit")
    msg.add_alternative(
        '<html><body><a href="https://example.com/b">b</a>\n</body></html>\n', subtype="html", charset="us-ascii", cte="7bit"
    )
    raw = as_raw(msg, eol)
    assert b'charset="us-ascii"' in raw
    result, kwargs = rewrite(raw, settings={**TEXT_ON, **FOOTER})
    checked = check_rewrite(TRACKER, raw, result, kwargs=kwargs, charrefs_in_html=True)  # see the regression test below
    text, html = result.parts
    assert text.new_charset == "utf-8" and text.new_transfer_encoding == "quoted-printable"
    assert any("charset set from us-ascii to utf-8" in w for w in text.warnings)
    assert "Se désabonner : https://t.example.com/u/" in checked.decoded["1"]
    leaf = stdlib_leaves(checked.parsed)["1"]
    assert leaf.get_content_charset() == "utf-8" and leaf["content-transfer-encoding"] == "quoted-printable"
    assert leaf["content-type"].params["charset"] == "utf-8"
    # HTML keeps its charset: the é becomes a character reference.
    assert html.new_charset == "us-ascii" and html.new_transfer_encoding == "7bit"
    assert "Se d&#233;sabonner : <a href=" in checked.decoded["2"]
    assert "désabonner" not in checked.decoded["2"]
    assert result.list_unsubscribe is not None
    assert [f.name for f in split_message(result.message).fields][-2:] == ["list-unsubscribe", "list-unsubscribe-post"]
    unsubscribe = re.findall(r"https://t\.example\.com/u/[A-Za-z0-9_.\-]+", checked.decoded["1"])
    assert unsubscribe and all(TRACKER.verify(url).kind == "unsubscribe" for url in unsubscribe)


def test_non_ascii_footer_adds_charset_when_none_declared() -> None:
    raw = _single("text/plain", None, b"Hello https://example.com/a\n")
    result, kwargs = rewrite(raw, settings={**TEXT_ON, **FOOTER})
    checked = check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_pixel=False)
    assert result.parts[0].new_charset == "utf-8"
    assert b"Content-Type: text/plain; charset=utf-8\n" in result.message
    assert "Se désabonner" in checked.decoded["1"]


@pytest.mark.parametrize("cte", ["quoted-printable", "8bit", "base64"])
def test_latin1_footer_in_charset_keeps_charset_and_outside_switches(cte: str) -> None:
    for footer, expected in (("Se désabonner : <% %>", "iso-8859-1"), ("Abmelden € : <% %>", "utf-8")):
        msg = EmailMessage()
        msg["To"] = RECIPIENT
        msg["Message-ID"] = "<latin@example.com>"
        msg.set_content("Grüße https://example.com/a\nquiet line é\n", charset="iso-8859-1", cte=cte)
        raw = msg.as_bytes()
        result, kwargs = rewrite(raw, settings={**TEXT_ON, "subscription_tracking": {"enable": True, "text": footer}})
        checked = check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_pixel=False)
        part = result.parts[0]
        assert part.new_charset == expected, (footer, part)
        assert footer.split(":")[0] in checked.decoded["1"] and "Grüße" in checked.decoded["1"]


# -- undecodable parts ----------------------------------------------------------------------


def _alternative(text_headers: bytes, text_body: bytes, eol: bytes = b"\n") -> bytes:
    lines = [
        b"To: ann@example.com",
        b"Message-ID: <u1@example.com>",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/alternative; boundary="BOUNDARY"',
        b"",
        b"--BOUNDARY",
        *text_headers.split(b"\n"),
        b"",
        text_body,
        b"--BOUNDARY",
        b'Content-Type: text/html; charset="utf-8"',
        b"Content-Transfer-Encoding: quoted-printable",
        b"",
        b'<html><body><a href=3D"https://example.com/html">caf=C3=A9</a></body></html>',
        b"--BOUNDARY--",
        b"",
    ]
    return eol.join(lines)


UNDECODABLE = {
    "unknown-charset": (b'Content-Type: text/plain; charset="x-bogus"', b"Hi https://example.com/t", "unknown charset 'x-bogus'"),
    "invalid-utf8": (
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit",
        b"Hi \xff\xfe https://example.com/t",
        "bytes not valid in the declared charset utf-8",
    ),
    "broken-base64": (
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
        b"aGVsbG8gaHR0cHM6Ly9leGFtcGxlLmNvbS90a",  # 37 characters: one more than a multiple of 4
        "invalid base64",
    ),
    "unknown-cte": (
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: x-uuencode",
        b"begin 644 x\n#86)C\n`\nend",
        "unknown Content-Transfer-Encoding 'x-uuencode'",
    ),
    "charset-base64": (
        b"Content-Type: text/plain; charset=base64",
        b"aGVsbG8= https://example.com/t",
        "unknown charset 'base64'",
    ),
    "charset-rot13": (
        b"Content-Type: text/plain; charset=rot13",
        b"uggcf://rknzcyr.pbz/g https://example.com/t",
        "unknown charset 'rot13'",
    ),
    "qp-invalid-utf8": (
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable",
        b"Hi =FF=FE https://example.com/t",
        "bytes not valid in the declared charset utf-8",
    ),
}


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
@pytest.mark.parametrize("case", sorted(UNDECODABLE))
def test_undecodable_part_is_left_byte_identical(case: str, eol: bytes) -> None:
    headers, body, reason = UNDECODABLE[case]
    raw = _alternative(headers, body.replace(b"\n", eol), eol)
    result, kwargs = rewrite(raw)
    checked = check_rewrite(
        TRACKER, raw, result, kwargs=kwargs, expect_links={"2": ["https://example.com/html"]}, strict_defects=False
    )
    text, html = result.parts
    assert text.status == "undecodable" and text.reason.startswith(reason), text.reason
    assert text.result is None
    assert result.undecodable == [text]
    assert html.status == "rewritten" and "café" in checked.decoded["2"]
    assert body.replace(b"\n", eol) in result.message


def test_undecodable_html_part_leaves_the_text_part_rewritten() -> None:
    raw = (
        b"To: ann@example.com\nMessage-ID: <u2@example.com>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/alternative; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain; charset=utf-8\n\nGo https://example.com/t\n"
        b'--b\nContent-Type: text/html; charset=x-bogus\n\n<a href="https://example.com/h">h</a>\n--b--\n'
    )
    result, kwargs = rewrite(raw)
    check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_links={"1": ["https://example.com/t"]}, expect_pixel=False)
    assert [p.status for p in result.parts] == ["rewritten", "undecodable"]
    assert result.html is None


# -- input kinds ------------------------------------------------------------------------------


def _kinds_message() -> EmailMessage:
    msg, _ = build("mixed", "iso-8859-1", "8bit", SAMPLES["iso-8859-1"])
    return msg


def test_bytes_in_bytes_out() -> None:
    raw = as_raw(_kinds_message(), "lf")
    copy = bytes(raw)
    result = TRACKER.rewrite_message(raw, **KWARGS)
    assert type(result.message) is bytes and raw == copy
    bytearray_result = TRACKER.rewrite_message(bytearray(raw), **KWARGS)
    assert bytearray_result.message == result.message


def test_str_in_str_out() -> None:
    # An ASCII message (quoted-printable and base64 parts) as str.
    ascii_raw = as_raw(build("alternative", "utf-8", "quoted-printable", SAMPLES["utf-8"])[0], "lf")
    result = TRACKER.rewrite_message(ascii_raw.decode("ascii"), **KWARGS)
    assert type(result.message) is str and result.message.isascii()
    assert result.message.encode("ascii") == TRACKER.rewrite_message(ascii_raw, **KWARGS).message
    # 8bit Latin-1 read the stdlib's way (undecodable bytes as surrogates): the same bytes come back.
    latin_raw = as_raw(build("alternative", "iso-8859-1", "8bit", SAMPLES["iso-8859-1"])[0], "crlf")
    result = TRACKER.rewrite_message(latin_raw.decode("ascii", "surrogateescape"), **KWARGS)
    assert type(result.message) is str
    assert result.message.encode("ascii", "surrogateescape") == TRACKER.rewrite_message(latin_raw, **KWARGS).message
    # 8bit UTF-8 as real characters: written back as real characters.
    utf8_raw = as_raw(build("mixed", "utf-8", "8bit", SAMPLES["utf-8"])[0], "lf")
    result = TRACKER.rewrite_message(utf8_raw.decode("utf-8"), **KWARGS)
    assert type(result.message) is str
    assert result.message.encode("utf-8") == TRACKER.rewrite_message(utf8_raw, **KWARGS).message
    parsed = email.message_from_string(result.message, policy=email.policy.default)
    assert parsed.get_body(("html",)) is not None


def test_str_read_the_stdlib_way_keeps_its_surrogates() -> None:
    """Regression (found in review; fixed): a str holding 8-bit bytes as surrogates (how the stdlib holds bytes it read as
    text) comes back with those bytes decoded as UTF-8 characters when they happen to be valid UTF-8.
    The untouched bytes change representation: ``out.encode("ascii", "surrogateescape")`` raises, and
    ``email.message_from_string(out)`` reads "Café" as "Caf\ufffd\ufffd" (get_payload falls back to
    raw-unicode-escape for non-surrogate non-ASCII). message.py ``_as_bytes`` decodes the output with
    utf-8/surrogateescape whenever the input was not ASCII, whatever form the input had."""
    raw = (
        b"To: ann@example.com\nMessage-ID: <s@example.com>\nContent-Type: text/html; charset=utf-8\n"
        b'Content-Transfer-Encoding: 8bit\n\n<p>Caf\xc3\xa9 <a href="https://example.com/b">b</a></p>\n'
    )
    text = raw.decode("ascii", "surrogateescape")
    assert email.message_from_string(text, policy=email.policy.default).get_content().startswith("<p>Café")
    out = TRACKER.rewrite_message(text, issued_at=0).message
    assert email.message_from_string(out, policy=email.policy.default).get_content().startswith("<p>Café")
    assert out.encode("ascii", "surrogateescape") == TRACKER.rewrite_message(raw, issued_at=0).message


@pytest.mark.parametrize("policy", [email.policy.compat32, email.policy.default, email.policy.SMTP])
def test_message_objects_are_not_mutated(policy) -> None:
    raw = as_raw(_kinds_message(), "lf")
    factory = EmailMessage if policy is not email.policy.compat32 else Message
    msg = email.message_from_bytes(raw, _class=factory, policy=policy)
    before = msg.as_bytes()
    result = TRACKER.rewrite_message(msg, **KWARGS)
    assert msg.as_bytes() == before
    assert result.message is not msg and type(result.message) is factory
    assert result.message.policy is policy
    out = result.message.as_bytes()
    assert out != before
    expected = TRACKER.rewrite_message(before, **KWARGS).message
    assert out == expected
    again = TRACKER.rewrite_message(result.message, **KWARGS)
    assert again.message.as_bytes() == out


def test_email_message_built_in_memory() -> None:
    msg, _ = build("related", "windows-1252", "quoted-printable", SAMPLES["windows-1252"])
    before = msg.as_bytes()
    result = TRACKER.rewrite_message(msg, recipient=RECIPIENT, **KWARGS)
    assert isinstance(result.message, EmailMessage) and msg.as_bytes() == before
    html = result.message.get_body(("html",))
    assert html is not None and "€" in html.get_content() and 'src="https://t.example.com/o/' in html.get_content()


def test_unixfrom_is_kept_for_message_objects() -> None:
    msg = email.message_from_bytes(as_raw(_kinds_message(), "lf"))
    msg.set_unixfrom("From ann@example.com Thu Jan  1 00:00:00 1970")
    result = TRACKER.rewrite_message(msg, **KWARGS)
    assert result.message.get_unixfrom() == msg.get_unixfrom()
    assert msg.get_unixfrom() is not None


# -- malformed structure -------------------------------------------------------------------------

MALFORMED = {
    "missing-close-boundary": (
        b'To: ann@example.com\nContent-Type: multipart/alternative; boundary="b"\n\n'
        b'--b\nContent-Type: text/html\n\n<a href="https://example.com/x">x</a>\n'
    ),
    "no-boundary-param": (
        b'To: ann@example.com\nContent-Type: multipart/mixed\n\n--b\nContent-Type: text/html\n\n<a href="https://example.com/x">x</a>\n--b--\n'
    ),
    "boundary-never-found": (
        b'To: ann@example.com\nContent-Type: multipart/mixed; boundary="zzz"\n\n--b\nContent-Type: text/html\n\n<a href="https://example.com/x">x</a>\n'
    ),
    "headers-without-blank-line": b'To: ann@example.com\nContent-Type: text/html\n<a href="https://example.com/x">x</a>\n',
    "empty": b"",
    "only-headers": b"To: ann@example.com\nContent-Type: text/html\n",
    "only-headers-crlf": b"To: ann@example.com\r\nContent-Type: text/html\r\n\r\n",
    "part-with-only-headers": (
        b'To: ann@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/html\n--b\n'
        b"Content-Type: text/plain\n\n--b--\n"
    ),
    "empty-part": b'To: ann@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n--b--\n',
    "non-ascii-boundary": 'To: ann@example.com\nContent-Type: multipart/mixed; boundary="bé"\n\n--bé\n\nhi\n--bé--\n'.encode(),
    "garbage": bytes(range(256)) * 4,
    "nul-byte": b'To: ann@example.com\nContent-Type: text/html\n\n<a href="https://example.com/x">\x00</a>\n',
    "from-envelope-line": b'From ann@example.com Thu Jan  1 00:00:00 1970\nTo: ann@example.com\nContent-Type: text/html\n\n<a href="https://example.com/x">x</a>\n',
    "digest": (
        b'To: ann@example.com\nContent-Type: multipart/digest; boundary="d"\n\n--d\n\n'
        b'Content-Type: text/html\n\n<a href="https://example.com/x">x</a>\n--d--\n'
    ),
}


def _nested(depth: int) -> bytes:
    head = b"To: ann@example.com\nMessage-ID: <deep@example.com>\n"
    parts = [head]
    for level in range(depth):
        parts.append(f'Content-Type: multipart/mixed; boundary="b{level}"\n\n--b{level}\n'.encode())
    parts.append(b'Content-Type: text/html\n\n<a href="https://example.com/deep">deep</a>\n')
    for level in reversed(range(depth)):
        parts.append(f"--b{level}--\n".encode())
    return b"".join(parts)


MALFORMED["nested-100"] = _nested(100)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_structure_never_crashes(case: str) -> None:
    raw = MALFORMED[case]
    result = TRACKER.rewrite_message(raw, recipient=RECIPIENT, message_id="m@example.com", **KWARGS)
    out = result.message
    assert isinstance(out, bytes)
    email.message_from_bytes(out, policy=email.policy.default)  # the stdlib still reads it
    again = TRACKER.rewrite_message(out, recipient=RECIPIENT, message_id="m@example.com", **KWARGS)
    assert again.message == out, "not idempotent"
    for link in result.links:
        assert TRACKER.verify(link.tracking_url).url == link.url
    off = TRACKER.rewrite_message(raw, recipient=RECIPIENT, message_id="m@example.com", issued_at=0, settings=OFF)
    # Tracking off: the input, plus at most the Message-ID field it lacked.
    assert off.message == raw or re.sub(rb"Message-ID: <m@example\.com>\r?\n", b"", off.message, count=1) == raw
    if case == "digest":  # a digest's parts default to message/rfc822: not ours to rewrite
        assert result.links == [] and [p.content_type for p in result.parts] == ["message/rfc822"]


def test_nested_100_levels_tracks_within_the_depth_limit() -> None:
    shallow = TRACKER.rewrite_message(_nested(10), **KWARGS)
    assert [link.url for link in shallow.links] == ["https://example.com/deep"]
    assert shallow.parts[0].path == ".".join(["1"] * 10)
    deep = TRACKER.rewrite_message(_nested(100), **KWARGS)
    assert len(deep.parts) == 1 and deep.parts[0].status == "left"


# -- misc ------------------------------------------------------------------------------------


def test_tracking_off_is_identity_for_every_shape_and_kind() -> None:
    for shape in SHAPES:
        msg, _ = build(shape, "utf-8", "quoted-printable", SAMPLES["utf-8"])
        for eol in ("lf", "crlf"):
            raw = as_raw(msg, eol)
            assert TRACKER.rewrite_message(raw, issued_at=0, settings=OFF).message == raw
        text = raw.decode("ascii")
        assert TRACKER.rewrite_message(text, issued_at=0, settings=OFF).message == text


def test_unchanged_part_reports_its_result() -> None:
    msg = EmailMessage()
    msg["To"] = RECIPIENT
    msg["Message-ID"] = "<plain@example.com>"
    msg.set_content("No links here.\n", charset="utf-8", cte="quoted-printable")
    raw = msg.as_bytes()
    result, kwargs = rewrite(raw)
    check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_links={}, expect_pixel=False)
    assert result.parts[0].status == "unchanged" and result.message == raw


def test_decoded_text_of_stdlib_helper_matches_get_content() -> None:
    msg, _ = build("alternative", "windows-1252", "quoted-printable", SAMPLES["windows-1252"])
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert stdlib_text(stdlib_leaves(parsed)["2"]) == parsed.get_body(("html",)).get_content()


def test_rewrite_message_output_parses_back_to_same_tracked_links() -> None:
    """Links found again in the output are exactly the tracking URLs reported."""
    msg, _ = build("mixed", "utf-8", "8bit", SAMPLES["utf-8"])
    result = TRACKER.rewrite_message(as_raw(msg, "crlf"), **KWARGS)
    parsed = email.message_from_bytes(result.message, policy=email.policy.default)
    html = parsed.get_body(("html",)).get_content()
    found = re.findall(r"https://t\.example\.com/c/[A-Za-z0-9_.\-]+", html)
    assert found == [link.tracking_url for link in result.html.links]
    assert isinstance(result, mailtrack.MessageResult)


# -- more shapes --------------------------------------------------------------------------------


def test_iso_2022_jp_footer_outside_the_charset() -> None:
    """A footer character ISO-2022-JP lacks: the text part becomes UTF-8, the HTML part gets a reference."""
    msg, _ = build("alternative", "iso-2022-jp", "7bit", SAMPLES["iso-2022-jp"])
    raw = as_raw(msg, "crlf")
    footer = {"subscription_tracking": {"enable": True, "text": "Café – désinscription : <% %>", "html": "<p>Café <% ici %></p>"}}
    result, kwargs = rewrite(raw, settings={**TEXT_ON, **footer})
    checked = check_rewrite(TRACKER, raw, result, kwargs=kwargs, charrefs_in_html=True)
    text, html = result.parts
    assert (text.new_charset, text.new_transfer_encoding) == ("utf-8", "quoted-printable")
    assert (html.new_charset, html.new_transfer_encoding) == ("iso-2022-jp", "7bit")
    assert SAMPLES["iso-2022-jp"] in checked.decoded["1"] and "Café – désinscription" in checked.decoded["1"]
    assert "Caf&#233; <a href=" in checked.decoded["2"] and SAMPLES["iso-2022-jp"] in checked.decoded["2"]


@pytest.mark.parametrize(
    "content_type",
    [
        b"Content-Type: text/plain;\n charset=us-ascii;\n format=flowed",
        b'Content-Type: text/plain; charset="US-ASCII"',
        b"Content-Type: text/plain; format=flowed",
        None,
    ],
    ids=["folded", "quoted-upper", "no-charset", "no-content-type"],
)
def test_charset_patch_keeps_the_rest_of_the_field(content_type: bytes | None) -> None:
    head = b"To: ann@example.com\nMessage-ID: <cp@example.com>\n" + (content_type + b"\n" if content_type else b"")
    raw = head + b"X-After: kept\n\nHello https://example.com/a\n"
    result, kwargs = rewrite(raw, settings={**TEXT_ON, **FOOTER})
    checked = check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_pixel=False)
    assert result.parts[0].new_charset == "utf-8"
    assert checked.parsed.get_content_charset() == "utf-8" and checked.parsed.get_content_type() == "text/plain"
    if content_type is None:
        assert b"Content-Type: text/plain; charset=utf-8\n" in result.message
    elif b"format" in content_type:
        assert checked.parsed["content-type"].params["format"] == "flowed"


def test_second_inline_html_part_gets_links_but_no_pixel() -> None:
    msg = EmailMessage()
    msg["To"] = RECIPIENT
    msg["Message-ID"] = "<two@example.com>"
    msg.make_mixed()
    for name in ("first", "second"):
        part = EmailMessage()
        part.set_content(f'<html><body><a href="https://example.com/{name}">{name}</a>\n</body></html>\n', subtype="html")
        del part["MIME-Version"]
        msg.attach(part)
    raw = msg.as_bytes()
    result, kwargs = rewrite(raw)
    check_rewrite(
        TRACKER,
        raw,
        result,
        kwargs=kwargs,
        expect_links={"1": ["https://example.com/first"], "2": ["https://example.com/second"]},
    )
    first, second = result.parts
    assert first.body and not second.body
    assert len(first.result.pixels) == 1 and second.result.pixels == []


def test_x_smtpapi_header_is_the_only_field_removed() -> None:
    msg, expect = build("alternative", "utf-8", "quoted-printable", SAMPLES["utf-8"])
    msg["X-SMTPAPI"] = '{"filters": {"clicktrack": {"settings": {"enable_text": 1}}}, "unique_args": {"campaign": "spring"}}'
    raw = as_raw(msg, "crlf")
    result = TRACKER.rewrite_message(raw, issued_at=0)
    check_rewrite(TRACKER, raw, result, kwargs={"issued_at": 0}, expect_links=expect)
    assert b"X-SMTPAPI" not in result.message
    assert b"\r\nX-Mailtrack-Settings: {\"click_tracking\": {\"enable_text\": true}}\r\n" in result.message
    assert all(TRACKER.verify(link.tracking_url).metadata == {"campaign": "spring"} for link in result.links)


def test_message_without_message_id_gets_one_and_stays_idempotent() -> None:
    msg, expect = build("mixed", "windows-1252", "8bit", SAMPLES["windows-1252"])
    del msg["Message-ID"]
    raw = as_raw(msg, "crlf")
    result, kwargs = rewrite(raw)
    check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_links=expect)
    assert f"Message-ID: <{result.message_id}>\r\n".encode() in result.message


def test_the_checker_catches_tampering() -> None:
    """check_rewrite is not vacuous: each kind of damage to a correct output is caught."""
    msg, expect = build("mixed", "iso-8859-1", "quoted-printable", SAMPLES["iso-8859-1"])
    raw = as_raw(msg, "lf")
    result, kwargs = rewrite(raw)
    check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_links=expect)
    out = result.message
    pdf_line = base64.encodebytes(_pdf())[:76]
    quiet = b"A quiet line =E9 =DF =A9 =FC =BD"
    first_link = result.links[0].tracking_url.encode()
    damages = {
        "body changed": out.replace(pdf_line, pdf_line[:-1] + (b"A" if pdf_line[-1:] != b"A" else b"B"), 1),
        "epilogue changed": out.replace(EPILOGUE.encode(), EPILOGUE.encode() + b" ", 1),
        "multipart header changed": out.replace(b"X-Custom: kept", b"X-Custom:  kept", 1),
        "untouched": out.replace(quiet, quiet.replace(b"=E9", b"=e9"), 1),
        "does not decode to the rewriter's result": out.replace(first_link[:40], first_link[:39] + b"X", 1),
    }
    for message, damaged in damages.items():
        assert damaged != out, message
        damaged_result = mailtrack.MessageResult(damaged, result.message_id, result.recipient, result.parts)
        with pytest.raises(AssertionError, match=re.escape(message)):
            check_rewrite(TRACKER, raw, damaged_result, kwargs=kwargs, expect_links=expect, check_idempotent=False)


# -- regressions: bugs found in review, each fixed in mailtrack/ ----------------------------


def test_html_result_is_what_was_written_when_the_footer_needs_character_references() -> None:
    """Regression (found in review; fixed): an HTML part whose charset lacks a footer character is written with a character
    reference (&#233;), but MessagePart.result.html (and MessageResult.html.html) still holds the raw
    character, so the reported result is not the part's content. mime.py ``_encode`` applies
    ``xmlcharrefreplace`` to the bytes only."""
    raw = (
        b"To: ann@example.com\nMessage-ID: <f@example.com>\nContent-Type: text/html; charset=us-ascii\n\n"
        b'<html><body><a href="https://example.com/b">b</a>\n</body></html>\n'
    )
    result = TRACKER.rewrite_message(
        raw, issued_at=0, settings={"subscription_tracking": {"enable": True, "html": "<p>Se désabonner <% ici %></p>"}}
    )
    written = email.message_from_bytes(result.message, policy=email.policy.default).get_content()
    assert "Se d&#233;sabonner" in written
    assert result.parts[0].result.html == written


def test_undeclared_utf8_part_switched_to_quoted_printable_declares_its_charset() -> None:
    """Regression (found in review; fixed): a text part with no charset parameter and raw UTF-8 bytes is read as UTF-8
    (with a warning); when its new line no longer fits 7bit, it is re-encoded as quoted-printable but the
    charset stays undeclared (us-ascii by default), so a reader decodes "Café" as "Caf\\ufffd\\ufffd".
    The raw 8-bit bytes were at least sniffable; the QP ones are declared ASCII. When the guessed UTF-8
    is re-encoded, ``charset=utf-8`` should be set too."""
    raw = (
        b"To: ann@example.com\nMessage-ID: <g@example.com>\nContent-Type: text/html\n\n"
        b'<p>Caf\xc3\xa9 <a href="https://example.com/b">b</a></p>\n'
    )
    result = TRACKER.rewrite_message(raw, issued_at=0)
    part = result.parts[0]
    assert part.new_transfer_encoding == "quoted-printable"
    parsed = email.message_from_bytes(result.message, policy=email.policy.default)
    assert stdlib_text(parsed) == part.result.html  # what the helper reads: bytes decoded as UTF-8 when undeclared
    assert parsed.get_content_charset() == "utf-8", "QP-encoded UTF-8 with no charset: readers see mojibake"


@pytest.mark.parametrize(
    "raw",
    [
        b"To: ann@example.com\nMessage-ID: <h@example.com>\nContent-Type: text/html",
        b"To: ann@example.com\nMessage-ID: <h@example.com>\nContent-Type: text/html\n",
        (
            b'To: ann@example.com\nMessage-ID: <h@example.com>\nContent-Type: multipart/mixed; boundary="b"\n\n'
            b"--b\nContent-Type: text/html\n--b--\n"
        ),
    ],
    ids=["top-no-newline", "top-newline", "multipart-part"],
)
def test_text_part_without_a_body_is_left_and_headers_stay_headers(raw: bytes) -> None:
    """A text part with nothing after its headers (no blank line) has no body to track: it is left as
    it is (status unchanged, reason "no body"), nothing is glued onto its last header line, and fields
    added to the message (an unterminated last header is ended first) stay header fields."""
    result = TRACKER.rewrite_message(raw, issued_at=0, settings={"subscription_tracking": {"enable": True}})
    parsed = email.message_from_bytes(result.message, policy=email.policy.default)
    leaf = next(iter(stdlib_leaves(parsed).values()))
    assert leaf.get_content_type() == "text/html", leaf["content-type"]
    assert not leaf.defects and not parsed.defects
    assert parsed["List-Unsubscribe"] is not None, "List-Unsubscribe is not a header field"
    html_part = [p for p in result.parts if p.content_type == "text/html"][0]
    assert html_part.status == "unchanged" and "no body" in html_part.reason
    again = TRACKER.rewrite_message(result.message, issued_at=5, settings={"subscription_tracking": {"enable": True}})
    assert again.message == result.message


def test_bare_cr_line_breaks_are_read_like_the_stdlib() -> None:
    """Regression (found in review; fixed): with bare-CR line breaks the stdlib (which mime.py says it follows)
    ends the header at "\\r\\r"; mime.py splits lines on LF only, so it sees one header line and no body:
    the link in the body is not tracked, Message-ID is appended after the body (the stdlib reads it as
    body text) and a second pass appends another one (not idempotent)."""
    raw = b'To: ann@example.com\rContent-Type: text/html\r\r<a href="https://example.com/x">x</a>\r'
    result = TRACKER.rewrite_message(raw, message_id="m@example.com", issued_at=0)
    again = TRACKER.rewrite_message(result.message, message_id="m@example.com", issued_at=0)
    assert again.message == result.message, "not idempotent"
    parsed = email.message_from_bytes(result.message, policy=email.policy.default)
    assert parsed["Message-ID"] == "<m@example.com>"
    assert [link.url for link in result.links] == ["https://example.com/x"]


def test_base64_body_keeps_its_line_length() -> None:
    """Regression (found in review; fixed): mime.py's docstring says a base64 body "is encoded whole, with its
    original line length", but ``_base64`` always writes 76-character lines: a body written in 64-character
    lines (as PEM-style encoders do) comes back in 76-character lines."""
    html = "<p>" + "x" * 200 + '<a href="https://example.com/b">b</a></p>\n'
    encoded = base64.b64encode(html.encode())
    body = b"".join(encoded[i : i + 64] + b"\n" for i in range(0, len(encoded), 64))
    raw = (
        b"To: ann@example.com\nMessage-ID: <b@example.com>\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        + body
    )
    result = TRACKER.rewrite_message(raw, issued_at=0)
    lines = split_message(result.message).body(result.message).splitlines()
    assert {len(line) for line in lines[:-1]} == {64}


@pytest.mark.parametrize(
    "body, cte",
    [
        (b"see https://example.com/a=0Dnext\n", "quoted-printable"),  # an encoded CR on a line with a link
        (b"first\rsecond\r" + " ".join(f"https://example.com/{i}" for i in range(40)).encode() + b"\r", "7bit"),
    ],
    ids=["qp-encoded-cr", "7bit-switched-to-qp"],
)
def test_bare_cr_stays_a_cr_when_encoded_as_quoted_printable(body: bytes, cte: str) -> None:
    """Regression (found in review; fixed): ``_qp_lines`` splits on every line break including a bare CR and
    writes a bare CR as ``eol`` ("a bare CR becomes eol"). A CR the text holds (QP "=0D", or the bare-CR
    lines of a 7bit part switched to QP for a >998 line) decodes as LF afterwards, so the part no longer
    decodes to ``result.text`` (which still has "\\r"), and untouched lines change."""
    raw = (
        b"To: ann@example.com\nMessage-ID: <cr@example.com>\nContent-Type: text/plain; charset=us-ascii\n"
        b"Content-Transfer-Encoding: " + cte.encode() + b"\n\n" + body
    )
    result = TRACKER.rewrite_message(raw, issued_at=0, settings=TEXT_ON)
    part = result.parts[0]
    assert part.status == "rewritten" and part.new_transfer_encoding == "quoted-printable"
    parsed = email.message_from_bytes(result.message, policy=email.policy.default)
    assert stdlib_text(parsed) == part.result.text


@pytest.mark.parametrize("content_type", [b"text/plain", b"text/plain; charset=utf-8"])
def test_text_footer_separator_uses_the_message_line_breaks(content_type: bytes) -> None:
    """Regression (found in review; fixed): in a CRLF message, a text body with no line break of its own ("Hello") gets the
    footer after a bare-LF separator ("Hello\\n\\nIf you would like...\\n"): ``_unsubscribe_edits`` picks the
    separator from the text alone, while mime.py ``_with_newline`` fixes only the footer template. The
    same happens for a quoted-printable body that is a single soft-broken line."""
    raw = b"To: ann@example.com\r\nMessage-ID: <p@example.com>\r\nContent-Type: " + content_type + b"\r\n\r\nHello"
    result = TRACKER.rewrite_message(raw, issued_at=0, settings={"subscription_tracking": {"enable": True}})
    assert b"Hello\r\n\r\nIf you would like" in result.message
    assert re.search(rb"(?<!\r)\n", result.message) is None, "a bare LF in a CRLF message"


def test_line_before_a_text_footer_keeps_its_bytes() -> None:
    """Regression (found in review; fixed): a text footer is inserted after the body's last line break, but ``_encode_lines``
    attributes an edit at ``len(text)`` to the last line and re-encodes it: a quoted-printable line
    without any link, soft-broken early by its encoder, comes back re-broken by ``b2a_qp`` (and with
    the part's ``eol`` in its soft breaks), against the line-preservation design."""
    quiet = b"A quiet line, soft-broken early by its encoder: caf=C3=A9 =\nand the rest of it.\n"
    raw = (
        b"To: ann@example.com\nMessage-ID: <q@example.com>\nContent-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: quoted-printable\n\nVisit https://example.com/a\n" + quiet
    )
    result = TRACKER.rewrite_message(raw, issued_at=0, settings={**TEXT_ON, "subscription_tracking": {"enable": True}})
    assert result.parts[0].status == "rewritten"
    assert quiet in result.message


# -- parts a stateful codec cannot write back ------------------------------------------------

JA = "日本語".encode("iso-2022-jp")
STRAY = b'<p>' + JA + b' \x1b <a href="https://example.com/ja">x</a> \x1b(</p>\n'  # two ESC bytes starting nothing
# (charset, transfer encoding, subtype, body bytes): each decodes, but its rewritten text, encoded again, does not
# decode back to that text (the decoder's state after a stray ESC, SO or SI differs from the encoder's).
UNENCODABLE = {
    "iso-2022-jp-base64-html": (
        "iso-2022-jp", "base64", "html",
        b"<html><body><p>" + JA + b' <a href="https://example.com/ja">\x1b$B\x1b\xff\x0e</a></p></body></html>\n',
    ),
    "iso-2022-jp-base64-html-stray-esc": ("iso-2022-jp", "base64", "html", STRAY),
    "iso-2022-jp-7bit-html-stray-esc": ("iso-2022-jp", "7bit", "html", STRAY),
    "iso-2022-jp-qp-html-stray-esc": ("iso-2022-jp", "quoted-printable", "html", STRAY),
    "iso-2022-jp-2-qp-html": ("iso-2022-jp-2", "quoted-printable", "html", b'<p>)B~}\x1b\x81 <a href="https://example.com/j2">x</a></p>\n'),
    "iso-2022-jp-3-base64-plain": ("iso-2022-jp-3", "base64", "plain", b"a\x1b+\xff\x0f\xe9\x0e+ https://example.com/j3\n"),
    "iso-2022-kr-base64-plain": ("iso-2022-kr", "base64", "plain", b"\x0e\x1b https://example.com/kr \x1b$)C)+@~}\n"),
    "iso-2022-kr-8bit-html": ("iso-2022-kr", "8bit", "html", b'<p>+\x1b~{\x82\xa0\x8eBa <a href="https://example.com/kr">x</a></p>\n'),
}


def _stateful_part(charset: str, cte: str, subtype: str, data: bytes) -> bytes:
    body = base64.encodebytes(data) if cte == "base64" else quopri.encodestring(data) if cte == "quoted-printable" else data
    head = f"To: ann@example.com\nMessage-ID: <s1@example.com>\nContent-Type: text/{subtype}; charset={charset}\n"
    return (head + f"Content-Transfer-Encoding: {cte}\n\n").encode() + body


@pytest.mark.parametrize("case", sorted(UNENCODABLE))
def test_part_a_stateful_codec_cannot_write_back_is_left_byte_identical_and_reported(case: str) -> None:
    """Regression (issue 8, defect 8): the part was rewritten into bytes that no longer decode (or decode to other text)."""
    charset, cte, subtype, data = UNENCODABLE[case]
    data.decode(charset)  # the input decodes
    raw = _stateful_part(charset, cte, subtype, data)
    result = TRACKER.rewrite_message(raw, **KWARGS)
    [part] = result.parts
    assert result.message == raw
    assert part.status == "unencodable", part
    assert part.reason.startswith(f"the rewritten text does not come back from {charset} in {cte}"), part.reason
    assert part.result is None and part.new_charset is None and part.new_transfer_encoding is None
    assert result.unencodable == [part] and result.links == [] and result.html is None


def test_an_unencodable_html_part_leaves_the_text_part_rewritten() -> None:
    text = b"Content-Type: text/plain; charset=utf-8"
    raw = _alternative(text, b"Go https://example.com/t").replace(
        b'Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'
        b'<html><body><a href=3D"https://example.com/html">caf=C3=A9</a></body></html>',
        b"Content-Type: text/html; charset=iso-2022-jp\nContent-Transfer-Encoding: 7bit\n\n" + STRAY.rstrip(b"\n"),
    )
    result, kwargs = rewrite(raw)
    checked = check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_links={"1": ["https://example.com/t"]}, expect_pixel=False)
    assert [p.status for p in result.parts] == ["rewritten", "unencodable"]
    assert STRAY.rstrip(b"\n") in checked.output


@pytest.mark.parametrize("value", [b"\x80", b"b\xc3\xa4se64", b"=?utf-8?q?base64?="])
def test_non_ascii_transfer_encoding_is_reported_not_raised(value: bytes) -> None:
    """Regression (found by the fuzzer): a Content-Transfer-Encoding with non-ASCII bytes (read by the stdlib as a
    Header object, not a str) raised AttributeError."""
    raw = b"To: ann@example.com\nMessage-ID: <c@example.com>\nContent-Transfer-Encoding: " + value + b"\n\nGo https://example.com/\n"
    result = TRACKER.rewrite_message(raw, **KWARGS)
    assert result.message == raw
    assert [p.status for p in result.parts] == ["undecodable"]
    assert result.parts[0].reason.startswith("unknown Content-Transfer-Encoding")


def test_html_footer_in_a_codec_that_fails_to_encode_is_reported_not_raised() -> None:
    """Regression (found by the fuzzer): the idna codec raises a bare UnicodeError (not UnicodeEncodeError) when
    asked whether it can write the footer, and it escaped. IDNA is no charset: the part is now undecodable."""
    raw = b"To: ann@example.com\nMessage-ID: <i@example.com>\nContent-Type: text/html;charset=idna\n\n<p>x</p>\n"
    result = TRACKER.rewrite_message(raw, issued_at=0, settings={"subscription_tracking": {"enable": True}})
    [part] = result.parts
    assert part.status == "undecodable" and "not ASCII-compatible" in part.reason
    assert result.message.endswith(b"\n\n<p>x</p>\n")
