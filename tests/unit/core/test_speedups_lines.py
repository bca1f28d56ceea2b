"""The compiled line map, QP and base64 writers give exactly what their pure twins give, for every input (issue 13).

``_speedups.split_lines`` is ``transfer._split_lines_pure`` (the ``_LINE`` /
``_QP_LINE`` regular expressions), ``_speedups.line_starts`` is
``transfer._line_starts_pure``, ``qp_encoded_break`` is ``_ENCODED_BREAK`` and ``_speedups.qp_encode_lines`` is
``transfer._encode_lines_pure`` for a quoted-printable part (or None, which
hands the part to it). Inputs: hypothesis's malformed quoted-printable (lone
"=", "=" at the end, bad hex, soft breaks with blanks and CRs, CRLF and LF,
8-bit bytes, long lines), text in all three ``str`` widths, and random
changes over the decoded text (insertions at line starts, at the end,
replacements across lines, replacements ending in a line break); then whole
messages rewritten with ``speedups.compiled`` set and None, which must give
the same bytes. ``b64_lines`` is ``transfer._base64_pure``; ``b64_decode`` is
``base64.b64decode`` wherever it answers (None hands the body to it), over
well-formed bodies, every kind of damage to them and random bytes. Skipped,
saying so, when the extension is not built.
"""

from __future__ import annotations

import base64
import binascii
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.helpers import make_tracker

from mailtrack.core import speedups
from mailtrack.core.mime import transfer
from mailtrack.core.mime.transfer import (
    _base64_pure,
    _encode_lines_pure,
    _line_starts_pure,
    _max_line_length_pure,
    _split_lines_pure,
)

try:
    from mailtrack.core import _speedups
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None  # type: ignore[assignment]

needs_extension = pytest.mark.skipif(
    _speedups is None, reason="the C extension is not built (python setup.py build_ext --inplace, or pip install -e .)"
)
pytestmark = pytest.mark.calls_extension  # the main pass runs these; tasks.py test's pure pass skips them

#: Quoted-printable as it comes, well formed or not.
QP_PIECES = [
    b"a", b"b c", b" ", b"\t", b".", b"=", b"==", b"=3D", b"=3d", b"=C3=A9", b"=E2=80", b"=G1", b"=4", b"=\n",
    b"=\r\n", b"= \n", b"=\t\r\n", b"= \t \r\n", b"=\r", b"=\rx\n", b"\r", b"\n", b"\r\n", b"\x00", b"\xe9", b"\xff",
    b"x" * 80, b"y" * 1200, b"=0A", b"=0D", b"=0D=0A", b"https://example.com/a?b=3Dc", b"\xc3\xa9", b"\xe2\x82\xac",
]
QP_BODIES = st.binary(max_size=300) | st.lists(st.sampled_from(QP_PIECES), max_size=60).map(b"".join)
#: Many short lines (the line map's groups), each ending in LF or CRLF, soft breaks among them.
QP_LINES = st.lists(st.lists(st.sampled_from(QP_PIECES[:12] + [b"=\r", b"\r", b"x" * 80]), max_size=5).map(b"".join),
                    min_size=2, max_size=30).flatmap(
    lambda lines: st.sampled_from([b"\n", b"\r\n"]).map(lambda eol: eol.join(lines)))
TEXT_PIECES = ["a", "\n", "\r\n", "\r", " ", "é", "\u20ac", "\U0001f600", "=", "x" * 90, "\ud800"]


# --------------------------------------------------------------------------
# split_lines
# --------------------------------------------------------------------------


@needs_extension
@settings(max_examples=3000, deadline=None)
@given(body=QP_BODIES | QP_LINES, qp=st.booleans())
def test_split_lines_finds_what_the_regular_expressions_find(body: bytes, qp: bool) -> None:
    expected = _split_lines_pure(body, qp)
    assert _speedups.split_lines(body, qp) == expected
    assert b"".join(expected) == body


@needs_extension
@pytest.mark.parametrize("body", [
    b"", b"\n", b"=", b"=\n", b"=\n=\n", b"a=\nb", b"a=\nb\n", b"a= \t\r\nb\r\n", b"a=\r\r\nb\n", b"a=x\nb",
    b"a\r=\nb", b"=\r", b"\r\n\r\n", b"x" * 5000 + b"=\n" + b"y" * 5000, b"a=\n" * 1000,
])
@pytest.mark.parametrize("qp", [False, True])
def test_split_lines_on_the_edges(body: bytes, qp: bool) -> None:
    assert _speedups.split_lines(body, qp) == _split_lines_pure(body, qp)


@needs_extension
def test_split_lines_refuses_what_is_not_bytes() -> None:
    with pytest.raises(TypeError):
        _speedups.split_lines("text", True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.split_lines(b"x")  # type: ignore[call-arg]


# --------------------------------------------------------------------------
# line_starts
# --------------------------------------------------------------------------


@needs_extension
@settings(max_examples=2000, deadline=None)
@given(text=st.lists(st.sampled_from(TEXT_PIECES[:-1]), max_size=50).map("".join))
def test_line_starts_are_the_pure_ones(text: str) -> None:
    for wide in (text, text + "\u0100", text + "\U0001f600"):
        assert _speedups.line_starts(wide) == _line_starts_pure(wide) == [0] + [i + 1 for i, c in enumerate(wide) if c == "\n"]


@needs_extension
def test_line_starts_refuses_what_is_not_a_str() -> None:
    with pytest.raises(TypeError):
        _speedups.line_starts(b"a\nb")  # type: ignore[arg-type]


@needs_extension
@settings(max_examples=2000, deadline=None)
@given(body=QP_BODIES | QP_LINES | st.lists(st.sampled_from([b"=", b"0", b"a", b"A", b"d", b"D", b"=0", b"x"]), max_size=12).map(b"".join))
def test_qp_encoded_break_is_the_regular_expression(body: bytes) -> None:
    assert _speedups.qp_encoded_break(body) is (transfer._ENCODED_BREAK.search(body) is not None)
    with pytest.raises(TypeError):
        _speedups.qp_encoded_break("=0A")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# max_line_length
# --------------------------------------------------------------------------


@needs_extension
@settings(max_examples=2000, deadline=None)
@given(data=QP_BODIES | QP_LINES | st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"x" * 500, b"y"]), max_size=20).map(b"".join))
def test_max_line_length_is_the_pure_one(data: bytes) -> None:
    assert _speedups.max_line_length(data) == _max_line_length_pure(data)


@needs_extension
@pytest.mark.parametrize("data", [
    b"", b"\n", b"\r", b"\r\n", b"abc", b"abc\n", b"a\nbbbb\ncc", b"aaaa\r\nbb\r\n", b"a" * 80 + b"\r" + b"b" * 90 + b"\n",
    b"short\n" + b"x" * 50 + b"\r" + b"y" * 49 + b"\n" + b"z" * 51, b"\r" * 5 + b"q" * 3, b"x" * 1000 + b"\r\n" + b"y" * 999,
    b"\n".join(b"l" * n for n in (3, 10, 10, 2, 11, 11, 0)), b"\r\n".join(b"m" * n for n in (76, 77, 76, 78)) + b"\r",
])
def test_max_line_length_looks_into_a_stretch_between_line_feeds_only_when_it_could_be_longer(data: bytes) -> None:
    """Stretches between LFs are found with memchr; one longer than the longest line so far is cut at its CRs."""
    assert _speedups.max_line_length(data) == _max_line_length_pure(data)


@needs_extension
def test_max_line_length_refuses_what_is_not_bytes() -> None:
    with pytest.raises(TypeError):
        _speedups.max_line_length("x")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# qp_encode_lines
# --------------------------------------------------------------------------


def decoded_qp(body: bytes, codec: str, eol: bytes) -> transfer.DecodedPart | None:
    """``body`` read as a quoted-printable part in ``codec``, as decode_part reads one; None when it does not decode."""
    data = binascii.a2b_qp(body)
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        return None
    return transfer.DecodedPart(text, codec, codec, "quoted-printable", 76, eol, False, body, data)


@st.composite
def changes_for(draw: Any, text: str) -> list[tuple[int, int, str]]:
    """Sorted changes that do not overlap: replacements, insertions (at line starts too), line breaks at the end."""
    points = sorted(set(draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=12))))
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    points = sorted(set(points + draw(st.lists(st.sampled_from(starts), max_size=3)) + draw(st.sampled_from([[], [len(text)]]))))
    replacements = st.lists(st.sampled_from(TEXT_PIECES + ["https://t.example/c/xyz"]), max_size=4).map("".join)
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(points):
        if i + 1 < len(points) and draw(st.booleans()):
            out.append((points[i], points[i + 1], draw(replacements)))
            i += 2
        else:
            out.append((points[i], points[i], draw(replacements)))
            i += 1
    return out


def outcome(call: Any) -> Any:
    try:
        return call()
    except UnicodeError as exc:  # what encode_part reports: the same exception, the same message
        return type(exc), str(exc)


CODECS = ["utf-8", "ascii", "iso8859-1", "utf-8-sig", "cp1252"]


def compiled_lines(decoded: transfer.DecodedPart, changes: list[tuple[int, int, str]], intended: str, html: bool,
                   mode: int | None = None) -> Any:
    codec = decoded.codec
    return _speedups.qp_encode_lines(
        decoded.raw_lines, decoded.offsets, len(decoded.text), changes, intended, codec,
        "utf-8" if codec == "utf-8-sig" else codec, "xmlcharrefreplace" if html else "strict", decoded.eol,
        decoded.body, decoded.data, transfer._CERTIFIABLE.get(codec, 0) if mode is None else mode, decoded.text)


@needs_extension
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(body=QP_BODIES | QP_LINES, codec=st.sampled_from(CODECS), eol=st.sampled_from([b"\n", b"\r\n"]),
       html=st.booleans(), data=st.data())
def test_qp_encode_lines_writes_what_the_pure_loop_writes_and_certifies_only_what_reads_back(
        body: bytes, codec: str, eol: bytes, html: bool, data: Any) -> None:
    decoded = decoded_qp(body, codec, eol)
    if decoded is None or decoded.raw_lines is None:
        return  # no line map: _encode_lines is never called
    changes = data.draw(changes_for(decoded.text))
    intended = transfer.splice(decoded.text, changes)
    expected = outcome(lambda: _encode_lines_pure(decoded, changes, html, intended))
    for mode in (None, 0):
        actual = outcome(partial(compiled_lines, decoded, changes, intended, html, mode))
        if isinstance(actual, tuple) and isinstance(actual[0], bytes):
            body_out, exact = actual
            assert body_out == expected
            if exact:  # the certificate: what the caller's read-back check would say, without it
                assert mode is None and codec in transfer._CERTIFIABLE
                part = transfer.EncodedPart(body_out, "quoted-printable", codec, codec)
                assert transfer._decode_problem(part, intended) is None
        else:
            assert actual is None or actual == expected
    got = outcome(lambda: transfer._encode_lines(decoded, changes, html, intended))
    assert (got[0] if isinstance(got, tuple) and isinstance(got[0], bytes) else got) == expected


@needs_extension
@settings(max_examples=500, deadline=None)
@given(data=st.data(), codec=st.sampled_from(["utf-8", "ascii", "iso8859-1"]))
def test_a_wrong_certificate_is_never_given(data: Any, codec: str) -> None:
    """Lines that read back otherwise (decoded bytes longer or shorter than the body's, a body that is not its
    lines): the body may still be written, but never certified."""
    body = data.draw(QP_LINES)
    decoded = decoded_qp(body, codec, b"\n")
    if decoded is None or decoded.raw_lines is None or not decoded.text:
        return
    changes = data.draw(changes_for(decoded.text))
    intended = transfer.splice(decoded.text, changes)
    other = data.draw(st.sampled_from(["data", "body", "lines", "intended"]))
    if other == "intended":  # a text to encode that is not the text with these changes
        at = data.draw(st.integers(min_value=0, max_value=len(intended)))
        intended = intended[:at] + data.draw(st.sampled_from(["x", "", "\n"])) + intended[at + 1:]
    if other == "data":
        decoded.data = decoded.data + b"x" if data.draw(st.booleans()) else b"x" + (decoded.data or b"")
    elif other == "body":
        decoded.body = decoded.body[:-1]
    else:
        decoded._lines()
        lines = list(decoded.raw_lines or [])
        lines[0] = b"=3D" + lines[0]
        decoded._line_map = (lines, decoded.offsets)
    actual = outcome(lambda: compiled_lines(decoded, changes, intended, False))
    if isinstance(actual, tuple) and isinstance(actual[0], bytes) and actual[1]:
        part = transfer.EncodedPart(actual[0], "quoted-printable", codec, codec)
        assert transfer._decode_problem(part, intended) is None


@needs_extension
@settings(max_examples=3000, deadline=None)
@given(body=QP_BODIES | QP_LINES)
def test_qp_decode_is_binascii(body: bytes) -> None:
    assert _speedups.qp_decode(body) == binascii.a2b_qp(body)


@needs_extension
@pytest.mark.parametrize("body", [b"", b"=", b"==", b"=\r", b"=\rabc", b"=\r\n", b"=4", b"=4g", b"=4F", b"=f4x", b"a=",
                                  b"=\n=", b"= \n", b"=\x00", b"\xff=FF"])
def test_qp_decode_on_the_edges(body: bytes) -> None:
    assert _speedups.qp_decode(body) == binascii.a2b_qp(body)


@needs_extension
def test_qp_encode_lines_gives_none_for_what_it_does_not_take() -> None:
    lines, offsets = [b"a\n", b"b\n"], [0, 2]
    good = (lines, offsets, 4, [(0, 1, "x")], "x\nb\n", "utf-8", "utf-8", "strict", b"\n", b"a\nb\n", b"a\nb\n", 1, "a\nb\n")
    assert _speedups.qp_encode_lines(*good) == (b"x\nb\n", True)
    for i, bad in [(0, (b"a\n",)), (1, [0]), (1, [0, "2"]), (3, [(0, 1)]), (3, [(-1, 1, "x")]), (3, [(0, 99, "x")]),
                   (3, [(0, 1, b"x")]), (0, [b"a\n", "b\n"]), (2, 2**70), (8, "\n"), (11, "1")]:
        args: list[Any] = list(good)
        args[i] = bad
        assert _speedups.qp_encode_lines(*args) is None, (i, bad)
    for i, bad in [(9, b"a\nc\n"), (10, b"a\nb\nc"), (10, None), (11, 0), (11, 7), (12, "a\nc\n"), (12, "a\nb\u0100"),
                   (12, None), (4, "x\nc\n"), (4, "x\nb\nc")]:
        args = list(good)
        args[i] = bad
        assert _speedups.qp_encode_lines(*args) == (b"x\nb\n", False), (i, bad)
    assert _speedups.qp_encode_lines(*good[:12]) is None  # type: ignore[call-arg]
    with pytest.raises(UnicodeEncodeError):
        _speedups.qp_encode_lines(lines, offsets, 4, [(0, 1, "é")], "é\nb\n", "ascii", "ascii", "strict", b"\n",
                                  b"a\nb\n", b"a\nb\n", 2, "a\nb\n")
    with pytest.raises(LookupError):
        _speedups.qp_encode_lines(lines, offsets, 4, [(0, 1, "x")], "x\nb\n", "no-such-codec", "x", "strict", b"\n",
                                  b"a\nb\n", b"a\nb\n", 0, "a\nb\n")
    # A character the charset lacks, written as a reference by the pure loop's handler: written, not certified.
    assert _speedups.qp_encode_lines(lines, offsets, 4, [(0, 1, "é")], "é\nb\n", "ascii", "ascii", "xmlcharrefreplace",
                                     b"\n", b"a\nb\n", b"a\nb\n", 2, "a\nb\n") == (b"&#233;\nb\n", False)


@needs_extension
def test_qp_encode_lines_leaves_sizes_and_line_starts_past_any_text_to_the_pure_function() -> None:
    """A size or a line start no text has (near PY_SSIZE_T_MAX) made a group's start plus the growth before it
    overflow (undefined behaviour: UBSan stops the sanitizer job); such arguments are not the line map's, so None."""
    top = 2**63 - 1
    assert _speedups.qp_encode_lines([b"a\n"], [0], top, [(0, 0, "xy"), (top, top, "")], "xya\n", "utf-8", "utf-8",
                                     "strict", b"\n", b"a\n", b"a\n", 1, "a\n") is None
    assert _speedups.qp_encode_lines([b"a\n", b"b\n"], [0, top], 4, [(0, 0, "xy"), (3, 3, "")], "xya\nb\n", "utf-8",
                                     "utf-8", "strict", b"\n", b"a\nb\n", b"a\nb\n", 1, "a\nb\n") is None
    assert _speedups.qp_encode_lines([b"a\n", b"b\n"], [0, -1], 4, [(0, 1, "x")], "x\nb\n", "utf-8", "utf-8", "strict",
                                     b"\n", b"a\nb\n", b"a\nb\n", 1, "a\nb\n") is None


@needs_extension
def test_qp_encode_lines_reads_no_further_than_intended_for_changes_out_of_order() -> None:
    """A later group's growth before it can exceed the growth of the whole (changes out of order, never given by
    the pure loop, but taken): the text between the groups is then looked for past the end of intended, which the
    certificate's comparison must not read (AddressSanitizer: heap-buffer-overflow in the sanitizer job)."""
    lines = [b"a" * 99 + b"\n", b"b" * 99 + b"\n", b"c" * 100]
    body = b"".join(lines)
    text = body.decode()
    # group 0: line 0, growth +50; group 1: line 2, then (0, 300) merged into it: growth -300, intended 50 chars
    changes = [(0, 0, "y" * 50), (250, 250, ""), (0, 300, "")]
    result = _speedups.qp_encode_lines(lines, [0, 100, 200], len(text), changes, "z" * 49 + "\n", "utf-8", "utf-8",
                                       "strict", b"\n", body, body, 1, text)
    assert result == (b"z" * 49 + b"\n" + lines[1], False)


# --------------------------------------------------------------------------
# base64
# --------------------------------------------------------------------------


@needs_extension
@settings(max_examples=2000, deadline=None)
@given(data=st.binary(max_size=400), eol=st.sampled_from([b"\n", b"\r\n", b"", b"\r"]),
       width=st.integers(min_value=-2, max_value=90))
def test_b64_lines_writes_what_the_pure_function_writes(data: bytes, eol: bytes, width: int) -> None:
    written = _speedups.b64_lines(data, eol, width)
    if width < 1:
        assert written is None
    else:
        assert written == _base64_pure(data, eol, width)


def pure_b64decode(body: bytes) -> Any:
    try:
        return base64.b64decode(body)
    except (binascii.Error, ValueError) as exc:
        return type(exc)


@st.composite
def b64_bodies(draw: Any) -> bytes:
    """Base64 bodies as senders write them, then perhaps damaged: a byte changed, dropped or added."""
    data = draw(st.binary(max_size=300))
    body = _base64_pure(data, draw(st.sampled_from([b"\n", b"\r\n"])), draw(st.sampled_from([76, 64, 4, 8])))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        if not body:
            break
        at = draw(st.integers(min_value=0, max_value=len(body) - 1))
        what = draw(st.sampled_from([b"", b"=", b"==", b"\n", b"\r", b" ", b"A", b"-", b"_", b"\xff", b"\x00"]))
        body = body[:at] + what + body[at + draw(st.integers(min_value=0, max_value=2)):]
    return body


@needs_extension
@settings(max_examples=3000, deadline=None)
@given(body=b64_bodies() | st.binary(max_size=80) | st.lists(st.sampled_from([b"QUJD", b"QQ", b"QUI", b"=", b"\n", b"\r\n",
                                                                           b" ", b"Q", b"+/", b"\t"]), max_size=12).map(b"".join))
def test_b64_decode_reads_what_base64_reads(body: bytes) -> None:
    decoded = _speedups.b64_decode(body)
    if decoded is not None:
        assert decoded == pure_b64decode(body)


@needs_extension
@pytest.mark.parametrize("width", [2**63 - 1, 2**63 - 4, 2**62])
def test_b64_lines_takes_the_widest_width(width: int) -> None:
    """One line however wide: the line count is rounded up without adding width - 1 to the size (a signed overflow,
    undefined behaviour: UBSan stops the sanitizer job on it)."""
    for data in (b"", b"a", b"abcd"):
        assert _speedups.b64_lines(data, b"\r\n", width) == _base64_pure(data, b"\r\n", width)


@needs_extension
@pytest.mark.parametrize("body", [b"", b"\n", b"QUJD", b"QUJD\n", b"QQ==", b"QQ==\n", b"QUI=", b"QUI=\r\n", b"QQ=\n=",
                                  b"QR==", b"QUJ=", b"Q===", b"QQ=", b"QQ===", b"QUJD=", b"=", b"Q", b"QU\nJD", b"QUJD QUJD",
                                  b"QQ==QUJD", b"QUJD\x00", b"Q-_D"])
def test_b64_decode_on_the_edges(body: bytes) -> None:
    decoded = _speedups.b64_decode(body)
    assert decoded is None or decoded == pure_b64decode(body)
    if body in (b"QUJD\n", b"QQ==\n", b"QUI=\r\n", b"QQ=\n=", b"QR==", b"QU\nJD"):
        assert decoded == base64.b64decode(body)  # the usual shapes are read here, not handed on


@needs_extension
def test_base64_helpers_refuse_what_they_do_not_take() -> None:
    with pytest.raises(TypeError):
        _speedups.b64_decode("QUJD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.b64_lines("x", b"\n", 76)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.b64_lines(b"x", b"\n", "76")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Whole messages: the compiled and the pure path write the same bytes
# --------------------------------------------------------------------------

TRACKER = make_tracker(settings={"click_tracking": {"enable_text": True}, "subscription_tracking": {"enable": True}})
IDENTITY = {"message_id": "m-lines", "recipient": "ann@example.com", "issued_at": 1_700_000_000}
LINKS = [b"https://example.com/a", b"<a href=3D\"https://example.com/b?x=3D1\">b</a>", b"http://example.org/=C3=A9",
         b"https://exa=\nmple.com/c", b"<a href=\"https://example.com/d\">d</a>"]


@needs_extension
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(QP_PIECES + LINKS), max_size=40), html=st.booleans(),
       cte=st.sampled_from([b"quoted-printable", b"8bit", b"7bit", b"base64"]),
       charset=st.sampled_from([b"utf-8", b"iso-8859-1", b"us-ascii", b"utf-8-sig"]), eol=st.sampled_from([b"\n", b"\r\n"]))
def test_messages_rewrite_the_same_on_both_paths(pieces: list[bytes], html: bool, cte: bytes, charset: bytes,
                                                 eol: bytes) -> None:
    body = b"".join(pieces)
    if cte == b"base64":
        body = _base64_pure(body.replace(b"=3D", b"="), eol, 76)
    raw = (b"To: ann@example.com" + eol + b"Content-Type: text/" + (b"html" if html else b"plain") + b"; charset=" +
           charset + eol + b"Content-Transfer-Encoding: " + cte + eol + eol + body)
    results = []
    saved = speedups.compiled
    try:
        for module in (_speedups, None):
            speedups.compiled = module
            result = TRACKER.rewrite_message(raw, **IDENTITY)
            results.append((result.message, [(p.status, p.reason) for p in result.parts], result.warnings))
    finally:
        speedups.compiled = saved
    assert results[0] == results[1]


# --------------------------------------------------------------------------
# A pure shortcut: the replacements tried in one call where the codec refuses character by character
# --------------------------------------------------------------------------


@settings(max_examples=1000, deadline=None)
@given(replacements=st.lists(st.text(alphabet=st.sampled_from(["a", "é", "\u20ac", "\ud83d", "\ude00", "\U0001f600", "\n"]),
                                     max_size=4), max_size=6),
       codec=st.sampled_from(list(transfer._PER_CHARACTER)))
def test_joined_replacements_encode_as_each_does(replacements: list[str], codec: str) -> None:
    changes = [(0, 0, r) for r in replacements]
    assert transfer._encodable(changes, codec, False) == all(transfer.can_encode(r, codec) for r in replacements)


# --------------------------------------------------------------------------
# header_block
# --------------------------------------------------------------------------

HEADER_PIECES = st.lists(st.sampled_from([
    b"From: a\r\n", b"From x\n", b"From ", b"To: b\n", b"Subject: \xc3\xa9\n", b" folded\r\n", b"\tfolded\n", b"  \n",
    b"\r\n", b"\n", b"\r", b"X-Y:", b":", b"no colon\n", b"A:b\r", b"\xff:\n", b"\x7f:\n", b"N", b"Content-TYPE: text/html\n",
]), max_size=14).map(b"".join)


@needs_extension
@settings(max_examples=3000, deadline=None)
@given(raw=HEADER_PIECES | st.binary(max_size=60), bounds=st.tuples(st.integers(0, 200), st.integers(0, 200)))
def test_header_block_is_the_pure_one(raw: bytes, bounds: tuple[int, int]) -> None:
    from mailtrack.core.mime.tree import _header_block_pure

    start = min(bounds[0], len(raw))
    end = min(max(bounds[1], start), len(raw))
    fields, header_end, body_start = _header_block_pure(raw, start, end)
    expected = ([(f.name, f.start, f.end) for f in fields], header_end, body_start)
    assert _speedups.header_block(raw, start, end) == expected


@needs_extension
def test_header_block_refuses_what_it_is_not_given() -> None:
    assert _speedups.header_block(b"A: b\n\nbody", 0, 10) == ([("a", 0, 5)], 5, 6)
    for args in ((b"A: b", -1, 2), (b"A: b", 3, 2), (b"A: b", 0, 5)):
        with pytest.raises(ValueError):
            _speedups.header_block(*args)
    with pytest.raises(TypeError):
        _speedups.header_block("A: b", 0, 4)  # type: ignore[arg-type]
