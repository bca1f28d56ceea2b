"""Tracker.rewrite_message over the shared corpus (../shared/corpus; skipped when absent).

* every ``.eml`` file, as it is and with CRLF line breaks: the output parses,
  tracking off gives the same bytes, a second pass changes nothing, every
  tracked link verifies, every part not rewritten is byte-identical, and the
  HTML body the stdlib's ``get_body`` finds holds the pixel;
* a deterministic sample of the ``.html`` files, each wrapped in a
  multipart/alternative message with a quoted-printable or base64 HTML part:
  the rewritten part decodes to exactly what ``Tracker.rewrite_html`` gives for
  the same document, message ID, recipient and ``issued_at``.

Corpus files are read in place, never copied into the project.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from support.helpers import CORPUS, make_tracker
from support.mimecheck import check_rewrite, split_message, stdlib_text

TRACKER = make_tracker()
RECIPIENT = "ann@example.com"
TEXT_ON = {"click_tracking": {"enable_text": True}}
FOOTER = {
    **TEXT_ON,
    "subscription_tracking": {"enable": True, "text": "Se désabonner : <% %>", "html": "<p>Se désabonner : <% ici %></p>"},
}
OFF = {"click_tracking": {"enable": False}, "open_tracking": {"enable": False}}
HTML_SAMPLE = 40


def _files(suffix: str) -> list[Path]:
    return sorted(CORPUS.rglob(f"*{suffix}")) if CORPUS.is_dir() else []


EML = _files(".eml")
HTML = _files(".html")
HTML_SAMPLED = HTML[:: max(1, len(HTML) // HTML_SAMPLE)][:HTML_SAMPLE]


def _id(path: Path) -> str:
    return str(path.relative_to(CORPUS))


def _skip_if_absent(files: list[Path]) -> None:
    if not files:
        pytest.skip("../shared/corpus is absent")


def _crlf(raw: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", raw)


def test_corpus_is_there_or_skipped() -> None:
    _skip_if_absent(EML)
    assert len(EML) >= 8 and len(HTML) >= 200
    assert len(HTML_SAMPLED) == HTML_SAMPLE


@pytest.mark.parametrize("eol", ["as-is", "crlf"])
@pytest.mark.parametrize("settings", [TEXT_ON, FOOTER], ids=["links", "footer"])
@pytest.mark.parametrize("path", EML or [None], ids=[_id(p) for p in EML] or ["absent"])
def test_eml_rewrite(path: Path | None, settings: dict, eol: str) -> None:
    _skip_if_absent(EML)
    assert path is not None
    raw = path.read_bytes()
    if eol == "crlf":
        raw = _crlf(raw)
    kwargs = {"issued_at": 0, "recipient": RECIPIENT, "settings": settings}
    result = TRACKER.rewrite_message(raw, **kwargs)
    checked = check_rewrite(
        TRACKER, raw, result, kwargs=kwargs, strict_defects=False, expect_pixel=True, charrefs_in_html=settings is FOOTER
    )
    assert result.recipient == RECIPIENT
    assert not result.undecodable
    # The HTML body the stdlib picks holds the pixel (the one we report).
    html_in = email.message_from_bytes(raw, policy=email.policy.default).get_body(("html",))
    html_out = checked.parsed.get_body(("html",))
    assert html_in is not None and html_out is not None
    assert result.html is not None and result.html.pixels
    assert result.html.pixels[0].html in html_out.get_content()
    assert stdlib_text(html_in) in (checked.decoded_in.values())  # the same part we rewrote
    # Every link in an output body that points at us is one we report, and verifies.
    for part in result.parts:
        if part.path in checked.decoded:
            found = re.findall(r"https://t\.example\.com/c/[A-Za-z0-9_.\-]+", checked.decoded[part.path])
            assert sorted(found) == sorted(link.tracking_url for link in part.result.links)
    if settings is FOOTER:
        assert result.list_unsubscribe is not None
        assert "Se d" in checked.decoded[next(p.path for p in result.parts if p.content_type == "text/plain")]


@pytest.mark.parametrize("eol", ["as-is", "crlf"])
@pytest.mark.parametrize("path", EML or [None], ids=[_id(p) for p in EML] or ["absent"])
def test_eml_tracking_off_is_identity(path: Path | None, eol: str) -> None:
    _skip_if_absent(EML)
    assert path is not None
    raw = path.read_bytes()
    if eol == "crlf":
        raw = _crlf(raw)
    result = TRACKER.rewrite_message(raw, issued_at=0, recipient=RECIPIENT, message_id="corpus@example.com", settings=OFF)
    out = result.message
    if split_message(raw).headers.get("message-id") is None:
        # The only change: the Message-ID field it lacked, after the last header field.
        added = re.search(rb"Message-ID: <corpus@example\.com>\r?\n", out)
        assert added is not None
        out = out[: added.start()] + out[added.end() :]
    assert out == raw
    assert all(part.status in ("left", "unchanged") for part in result.parts)


@pytest.mark.parametrize("cte", ["quoted-printable", "base64"])
@pytest.mark.parametrize("path", HTML_SAMPLED or [None], ids=[_id(p) for p in HTML_SAMPLED] or ["absent"])
def test_corpus_html_wrapped_in_a_message(path: Path | None, cte: str) -> None:
    _skip_if_absent(HTML_SAMPLED)
    assert path is not None
    html = path.read_bytes().decode("utf-8")
    msg = EmailMessage()
    msg["From"] = "shop@example.com"
    msg["To"] = f"Ann <{RECIPIENT}>, Bob <bob@example.com>"  # several: the recipient is given
    msg["Subject"] = path.name
    msg["Message-ID"] = "<corpus-html@example.com>"
    msg.set_content("Plain text version: https://example.com/plain\n", cte=cte)
    msg.add_alternative(html, subtype="html", charset="utf-8", cte=cte)
    raw = msg.as_bytes()
    kwargs = {"issued_at": 0, "recipient": RECIPIENT, "metadata": {"campaign": "corpus"}}
    result = TRACKER.rewrite_message(raw, **kwargs)
    checked = check_rewrite(TRACKER, raw, result, kwargs=kwargs, expect_pixel=True)
    text, html_part = result.parts
    assert text.status == "unchanged"  # click_tracking.enable_text is off by default
    assert html_part.status == "rewritten" and html_part.new_transfer_encoding == cte
    decoded_in = checked.decoded_in["2"]
    expected = TRACKER.rewrite_html(
        decoded_in, message_id=result.message_id, recipient=RECIPIENT, metadata={"campaign": "corpus"}, issued_at=0
    )
    assert checked.decoded["2"] == expected.html
    assert [link.tracking_url for link in html_part.result.links] == [link.tracking_url for link in expected.links]
