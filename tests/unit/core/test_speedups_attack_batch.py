"""Adversarial regression cases (an attacker helper, stop 25) for the compiled speedups the batch worker now uses (json_escape / json_unescape
block copies, utf8_encode, max_line_length, header_block, b64url's pair table, plain_authority's class table).

Each case compares the compiled function against its pure reference. Self-contained; skipped on the pure path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import random

import pytest

from mailtrack.batch.jsonbytes import escape_pure, unescape_pure
from mailtrack.core import speedups
from mailtrack.core.mime.transfer import _max_line_length_pure, _strict_encode
from mailtrack.core.mime.tree import _header_block, _header_block_pure, line_break
from mailtrack.core.urls import plain_destination

try:
    from mailtrack.core import _speedups as S
except ImportError:  # pragma: no cover - depends on the build
    S = None  # type: ignore[assignment]
pytestmark = pytest.mark.skipif(speedups.compiled is None, reason="the compiled speedups are not built (or MAILTRACK_PURE)")

SPECIAL = [0x00, 0x01, 0x1F, 0x20, 0x22, 0x2F, 0x5C, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0,
           0xF4, 0xF5, 0xFF]


def _escape_both(data: bytes, head: bytes = b"", tail: bytes = b"") -> None:
    assert S.json_escape(data, head, tail) == escape_pure(data, head, tail), (data, head, tail)


def _unescape_both(data: bytes, start: int, end: int) -> None:
    assert S.json_unescape(data, start, end) == unescape_pure(data, start, end), (data, start, end)


# --- json_escape / json_unescape -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65])
def test_json_every_special_byte_at_every_offset(n: int) -> None:
    _escape_both(b"x" * n)
    _unescape_both(b"x" * n, 0, n)
    for off, byte in itertools.product(range(n), SPECIAL):
        data = bytearray(b"x" * n)
        data[off] = byte
        data = bytes(data)
        _escape_both(data)
        _unescape_both(data, 0, n)
        _unescape_both(data, off, n)
        _unescape_both(data, 0, off)
    for off in range(n + 1):
        for piece in (b"\\u00e9", b"\\ud83d\\ude00", b"\\ud800", b"\\udc00x", "\U0001f600".encode(), b"\xc3\xa9",
                      b"\xed\xa0\x80", b"\\"):
            data = b"x" * off + piece + b"x" * (n - off)
            _escape_both(data)
            _unescape_both(data, 0, len(data))
            _unescape_both(data, 0, len(data) - 1)  # a sequence or escape cut at the end


def test_json_escape_output_capacity_after_partial_blocks() -> None:
    # k plain bytes then one byte written as 6 (or a 4-byte sequence), repeated: every partial-block length, with
    # heads and tails of many sizes so each growth of the output lands somewhere else.
    for k in range(0, 18):
        for reps in (1, 2, 3, 7, 8, 9, 16, 17, 33):
            for special in (b"\x01", b'"', "\U0001f600".encode()):
                data = (b"a" * k + special) * reps
                for tail_size in (0, 1, 6, 22, 23, 40):
                    _escape_both(data, b"H" * (k % 3) * 7, b"T" * tail_size)
    _escape_both(b"\x00" * 4096, b"", b"t" * 1000)  # 6x growth, many resizes
    _escape_both(b"a" * 15 + b"\x1f" * 2000)


def test_json_unescape_spans_inside_a_larger_buffer() -> None:
    # The span's end is not the buffer's: a block must not be read (or a CRLF, a pair) past end.
    data = b'ab"cd' + b"y" * 40 + b"\\u00e9\\ud83d\\ude00" + b"z" * 40 + b'\\"'
    for start in range(0, 12):
        for end in range(start, len(data) + 1):
            _unescape_both(data, start, end)
    # a plain block followed by a high surrogate whose low half lies past end
    d = b"q" * 16 + b"\\ud83d\\ude00"
    _unescape_both(d, 0, 22)
    _unescape_both(d, 0, len(d))


def test_json_random_differential() -> None:
    rng = random.Random(16)
    pieces = [b"\\u00e9", b"\\ud83d\\ude00", b"\\uD83D\\uDE00", b"\\ud800", b"\\u", b"\\uzzzz", b"\\", b"\\n", b"\\/",
              b"\\x", "\xe9".encode(), "\u20ac".encode(), "\U0001f600".encode(), b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
              b"\xe0\x80\x80", b"\xc0\xaf", b'"', b"\x00", b"\x7f", b"a" * 15, b"a" * 16, b"a" * 17, b"a" * 31]
    for _ in range(3000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 14)))
        _escape_both(data, b"h" * rng.randrange(0, 5), b"t" * rng.randrange(0, 30))
        start = rng.randrange(0, len(data) + 1)
        _unescape_both(data, 0, len(data))
        _unescape_both(data, start, rng.randrange(start, len(data) + 1))
    for _ in range(1000):
        text = "".join(chr(rng.choice([rng.randrange(0, 0x80), rng.randrange(0x80, 0xD800), rng.randrange(0x10000, 0x110000)]))
                       for _ in range(rng.randrange(0, 50)))
        encoded = json.dumps(text, ensure_ascii=rng.random() < 0.5).encode()[1:-1]
        _unescape_both(encoded, 0, len(encoded))
        assert S.json_unescape(encoded, 0, len(encoded)) == text.encode()
        _escape_both(text.encode())


def test_json_megabytes() -> None:
    big = b"abcdefghij" * 200_000
    for data in (big, big + b'"', b"\\" + big, big[:-1] + b"\xc3\xa9", big[:-1] + b"\xc3"):
        _escape_both(data, b"[", b"]")
        _unescape_both(data, 0, len(data))


# --- utf8_encode ---------------------------------------------------------------------------------------------


def _utf8_both(text: str) -> None:
    try:
        expected: bytes | None = text.encode("utf-8")
    except UnicodeEncodeError:
        expected = None
    assert S.utf8_encode(text) == expected, text
    assert _strict_encode(text, "utf-8") == expected


@pytest.mark.parametrize("widen", ["", "\xe9", "\u20ac", "\U0001f600"])  # UCS1 ASCII, UCS1, UCS2, UCS4
def test_utf8_encode_every_character_class_at_every_offset(widen: str) -> None:
    odd = ["\x00", "\x7f", "\x80", "\xff", "\u0100", "\u07ff", "\u0800", "\ud7ff", "\ud800", "\udbff", "\udc00",
           "\udfff", "\ue000", "\uffff", "\U00010000", "\U0010ffff"]
    for n in (0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65):
        _utf8_both("a" * n + widen)
        _utf8_both(widen + "a" * n)
        for off in range(n):
            for ch in odd:
                text = "a" * off + ch + "a" * (n - off - 1)
                _utf8_both(text + widen)
                _utf8_both(widen + text)


def test_utf8_encode_random_and_large() -> None:
    rng = random.Random(16)
    for _ in range(2000):
        top = rng.choice([0x7F, 0xFF, 0xFFFF, 0x10FFFF])
        text = "".join(chr(rng.randrange(0, 0x80)) if rng.random() < 0.8 else chr(rng.randrange(0, top + 1))
                       for _ in range(rng.randrange(0, 120)))
        _utf8_both(text)
    _utf8_both("a" * 1_000_001 + "\U0001f600")
    _utf8_both("a" * 1_000_001 + "\U0001f600" + "\ud800")
    _utf8_both("\xe9" * 500_001)
    _utf8_both("\u20ac" * 300_001 + "x")
    assert S.utf8_encode("") == b""


# --- max_line_length -----------------------------------------------------------------------------------------


def test_max_line_length_breaks_at_every_offset() -> None:
    for n in range(0, 40):
        for off in range(n + 1):
            for eol in (b"\r", b"\n", b"\r\n", b"\n\r", b"\r\r", b"\n\n"):
                data = b"a" * off + eol + b"b" * (n - off)
                assert S.max_line_length(data) == _max_line_length_pure(data), data
    rng = random.Random(16)
    for _ in range(3000):
        data = b"".join(rng.choice([b"\r", b"\n", b"\r\n", b"a", b"x" * rng.randrange(0, 90)]) for _ in range(rng.randrange(0, 20)))
        assert S.max_line_length(data) == _max_line_length_pure(data), data
    for data in (b"", b"x" * 2_000_000 + b"\r" + b"y" * 2_000_001, b"\r\n" * 500_000, b"\r" * 10 + b"z" * 99):
        assert S.max_line_length(data) == _max_line_length_pure(data)


# --- header_block --------------------------------------------------------------------------------------------


def _header_both(raw: bytes, start: int, end: int) -> None:
    fields, header_end, body_start = _header_block_pure(raw, start, end)
    expected = ([(f.name, f.start, f.end) for f in fields], header_end, body_start)
    assert S.header_block(raw, start, end) == expected, (raw, start, end)
    got_fields, got_end, got_body = _header_block(raw, start, end)
    assert (got_fields, got_end, got_body) == (fields, header_end, body_start)


def test_header_block_odd_lines() -> None:
    cases = [b"", b"\r", b"\n", b"\r\n", b"\n\r", b"A: b", b"A: b\r", b"A: b\r\n", b"A: b\r\n\r\nbody",
             b"A: b\r\n\rbody", b"A: b\n\nbody", b" lead\r\nA: b\r\n\r\n", b"\tlead\nA: b\n", b"From x\r\nA: b\r\n\r\n",
             b"From \r\n", b"From", b"From:x\n", b"from x\n", b":v\r\n\r\n", b"A :b\n", b"A\x7f:b\n", b"A\x80:b\n",
             b"\xff:b\n", b"\x00:b\n", b"~!:\n", b"A:b:c\n", b"ABC\n", b"ABC", b"A: b\r\n c\r\n\td\r\nB: e\r\n\r\n",
             b"A: b\r\r\n", b"A: b\r\n\r", b"X-Y-Z: 1\n\tcont\n cont\nbody line\n", b"Subject: x" + b"y" * 5000 + b"\r\n\r\n"]
    for raw in cases:
        for start in range(0, min(len(raw), 6) + 1):
            for end in range(start, len(raw) + 1):
                _header_both(raw, start, end)


def test_header_block_random_and_large() -> None:
    rng = random.Random(16)
    pieces = [b"Subject: x", b"From x", b"From ", b"From:", b"X-A:b", b":v", b"A :b", b"A\x80:b", b" cont", b"\tcont",
              b"", b"body", b"a:b:c"]
    eols = [b"\r\n", b"\n", b"\r", b"\n\r", b""]
    for _ in range(2000):
        raw = b"".join(rng.choice(pieces) + rng.choice(eols) for _ in range(rng.randrange(0, 10)))
        start = rng.randrange(0, len(raw) + 1)
        _header_both(raw, 0, len(raw))
        _header_both(raw, start, rng.randrange(start, len(raw) + 1))
    for _ in range(1000):
        raw = bytes(rng.choice(b"\r\n :\tFrom a\x7f\x80") for _ in range(rng.randrange(0, 40)))
        _header_both(raw, 0, len(raw))
    raw = b"A: b\r\n" * 100_000 + b"\r\nbody"
    _header_both(raw, 0, len(raw))
    raw = b"A: " + b"x" * 1_000_000 + b"\n\tc\n\n"
    _header_both(raw, 0, len(raw))


def test_header_block_refuses_bad_spans() -> None:
    for args in ((b"x", 0, 2), (b"x", -1, 0), (b"x", 1, 0)):
        with pytest.raises(ValueError):
            S.header_block(*args)
    with pytest.raises(TypeError):
        S.header_block("x", 0, 0)
    with pytest.raises(OverflowError):
        S.header_block(b"x", 0, 2**70)


def test_line_break_matches_its_old_rule() -> None:
    def old(data: bytes) -> bytes:
        if b"\r\n" in data:
            return b"\r\n"
        if b"\n" not in data and b"\r" in data:
            return b"\r"
        return b"\n"

    for n in range(0, 6):
        for data in map(bytes, itertools.product(b"\r\na", repeat=n)):
            assert line_break(data) == old(data), data


# --- b64url pair table (ClickSigner / SivKey / sign_value) ------------------------------------------------------


def test_sign_value_base64_every_length() -> None:
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")  # noqa: E731
    rng = random.Random(16)
    for n in range(0, 100):
        data = bytes(rng.randrange(256) for _ in range(n))
        key = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 100)))
        for size in (10, 16, 32):
            signed = b64(data) + b".x1"
            expected = (signed + b"." + b64(hmac.new(key, signed, hashlib.sha256).digest()[:size])).decode()
            assert S.sign_value(key, data, b".x1", size) == expected
    # every 12-bit pair of the table: 3-byte groups covering all 4096 values in both halves
    data = b"".join(bytes([v >> 4, ((v & 15) << 4) | (v >> 8), v & 255]) for v in range(4096))
    assert S.sign_value(b"k", data, b"", 16).split(".")[0] == b64(data).decode()


def test_siv_seal_base64_every_length() -> None:
    aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    if not hasattr(S, "SivKey"):
        pytest.skip("no SivKey in this build")
    rng = random.Random(16)
    key = bytes(rng.randrange(256) for _ in range(64))
    siv, reference = S.SivKey(key), aead.AESSIV(key)
    for n in list(range(1, 70)) + [1000, 4097]:
        plaintext = bytes(rng.randrange(256) for _ in range(n))
        sealed = reference.encrypt(plaintext, None)
        assert siv.seal(plaintext) == base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")
        assert siv.open(sealed) == plaintext


# --- plain_authority's class table ---------------------------------------------------------------------------


def test_plain_destination_every_byte_in_every_place() -> None:
    pure = plain_destination("{%|<[$")
    for code in range(256):
        c = chr(code)
        for url in ("https://" + c, "https://a" + c, "https://a" + c + ".example/x", "https://a.example/" + c,
                    "https://a.example:" + c, "https://a.example?" + c, c + "https://a.example/", "http" + c + "://a.b"):
            assert S.plain_destination(url) is pure(url), url
    for url in ("https://a.example/%41", "https://a%41.example/", "https://a.example/\u0100", "https://\u00e9.example"):
        assert S.plain_destination(url) is pure(url), url
