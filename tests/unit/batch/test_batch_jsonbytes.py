"""JSON lines records whose message stays bytes: the compiled helpers equal their pure references, and a record
rewritten that way is written byte for byte as the stdlib way (json.loads, str message, json.dumps) writes it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailtrack.batch import Item, Job, Rewriter
from mailtrack.batch import jsonl as jsonl_module
from mailtrack.batch.jsonbytes import LONG, escape_pure, long_values_pure, read_record, unescape_pure, write_record
from mailtrack.batch.jsonl import dumps
from mailtrack.batch.summary import Summary
from mailtrack.core import speedups

compiled = speedups.compiled
needs_compiled = pytest.mark.skipif(compiled is None, reason="the compiled module is not built")

JOB = Job(secret_keys=("old", "new"), base_url="https://t.example.com", issued_at=1_767_225_600,
          settings={"click_tracking": {"enable": True, "enable_text": True}})
HTML = "".join(f'<p>Line {n} — “quoted” <a href="https://shop.example.com/p/{n}?a=1&amp;b=2">item {n} 👟</a></p>\n'
               for n in range(40))
TEXT = "".join(f"Line {n}\ttab — https://shop.example.com/p/{n}\n" for n in range(40))


def message(to: str = "Ann <ann@x.example>", html: str = HTML, text: str = TEXT, charset: str = "utf-8") -> str:
    return ("From: Shop <news@shop.example.com>\r\nTo: " + to + "\r\nSubject: Nouveautés\r\n"
            "Message-ID: <m1@shop.example.com>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
            f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text +
            f"\r\n--b\r\nContent-Type: text/html; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + html +
            "\r\n--b--\r\n")


def bytes_way(data: bytes, job: Job = JOB) -> tuple[bytes | None, str | None, Summary]:
    """What the batch writes for the record ``data`` (its output line, or its error line, and the error)."""
    counts = Summary()
    result = Rewriter(job).rewrite(Item("jsonl", data, "in.jsonl line 1", end=b"\n"), counts)
    return result.output, result.error, counts


def stdlib_way(data: bytes, job: Job = JOB) -> tuple[bytes | None, str | None, Summary]:
    """What the batch writes without the bytes way (json.loads, a str message, json.dumps)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsonl_module, "read_record", lambda line: None)
        return bytes_way(data, job)


def same_either_way(data: bytes) -> bytes:
    expected = stdlib_way(data)
    actual = bytes_way(data)
    assert actual == expected
    assert actual[0] is not None
    return actual[0]


# -- the compiled helpers are their references --------------------------------------------------------------

JSON_BYTES = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=40).map(lambda s: json.dumps(s, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")),
    st.text(max_size=40).map(lambda s: json.dumps(s)[1:-1].encode("ascii")),
    st.lists(st.sampled_from([b"\\", b'"', b"\\u", b"d83d", b"D83D", b"dc5f", b"DC5F", b"00e9", b"n", b"x", b"\xed\xa0\x80",
                              b"\xf0\x9f\x91\x9f", b"\xc3", b"\xa9", b"\x00", b"\x1f", b"\x7f", b"\xff", b"\\/",
                              b"\\b", b"\\t"]), max_size=12).map(b"".join),
    # runs of plain bytes between the special ones: the compiled loops take eight plain bytes at a time
    st.lists(st.sampled_from([b"plain te", b"xt ", b"0123456789abcdef", b"\\n", b"\\\"", b"\\\\", b"\xc3\xa9",
                              b"\xf0\x9f\x91\x9f", b"\\ud83d\\udc5f", b"\x7f", b"\x1f", b"\xed\xa0\x80", b"\xc3"]),
             max_size=30).map(b"".join),
)


@needs_compiled
@given(JSON_BYTES)
@example(b"\\ud83d\\udc5f")
@example(b"\\ud83d")
@example(b"\\udc5f\\ud83d")
@example(b"\\ud83d\\u0041")
@example(b"\xed\xa0\x80")
@example(b"abc\\")
@example(b'a"b')
@example(b"\\u00e9\\u00E9\\/")
@settings(max_examples=500)
def test_unescape_is_json_loads_then_utf8(data: bytes) -> None:
    assert compiled is not None
    assert compiled.json_unescape(data, 0, len(data)) == unescape_pure(data, 0, len(data))
    if len(data) > 2:
        assert compiled.json_unescape(data, 1, len(data) - 1) == unescape_pure(data, 1, len(data) - 1)


def test_unescape_refuses_what_json_loads_would_not_give_as_utf8() -> None:
    for content in (b"\\ud83d", b"\\udc5f", b"\\ud83d\\u0041", b"\xed\xa0\x80", b"\xc3", b"\xff", b"a\x00", b"a\tb",
                    b'a"b', b"a\\", b"\\x", b"\\u12", b"\\u12g4"):
        assert unescape_pure(content, 0, len(content)) is None, content
        if compiled is not None:
            assert compiled.json_unescape(content, 0, len(content)) is None, content
    assert unescape_pure(b"\\ud83d\\udc5f\\u00e9\\n\\/", 0, 22) == "👟é\n/".encode()


@needs_compiled
@given(st.one_of(st.binary(max_size=80), st.text(max_size=60).map(lambda s: s.encode("utf-8", "surrogatepass")),
                 JSON_BYTES))
@example(bytes(range(128)))
@example("é👟\u2028\x7f".encode())
@example(b"\xed\xa0\x80")
@settings(max_examples=500)
def test_escape_is_json_dumps_of_the_utf8_text(data: bytes) -> None:
    assert compiled is not None
    assert compiled.json_escape(data) == escape_pure(data)
    assert compiled.json_escape(data, b"{", b"}") == escape_pure(data, b"{", b"}")


@needs_compiled
@pytest.mark.parametrize("data", [b"\x01" * 1000, b'"' * 999 + b"\n", b"\x1f\\" * 777, b"x" * 1000 + b"\x00" * 1000])
def test_escape_grows_its_buffer_when_escapes_are_dense(data: bytes) -> None:
    assert compiled is not None
    assert compiled.json_escape(data, b"h" * 100, b"t" * 100) == escape_pure(data, b"h" * 100, b"t" * 100)


@needs_compiled
@pytest.mark.parametrize("special", [b'"', b"\\", b"\n", b"\x00", b"\x1f", b"\x7f", b"\xc3\xa9", b"\xf0\x9f\x91\x9f",
                                     b"\xc3", b"\xed\xa0\x80"])
def test_escape_and_unescape_find_a_special_byte_at_every_offset_of_a_block(special: bytes) -> None:
    """Plain runs are copied a block (8 or 16 bytes) at a time up to the first special byte: one at each offset
    of a block, after and before runs of every length up to two blocks, is handled exactly once."""
    assert compiled is not None
    for before in range(40):
        for after in (0, 1, 7, 8, 15, 16, 17, 33):
            data = b"a" * before + special + b"b" * after + special
            assert compiled.json_escape(data) == escape_pure(data), (before, after)
            assert compiled.json_escape(data, b"{", b"}") == escape_pure(data, b"{", b"}"), (before, after)
            escaped = escape_pure(data)
            if escaped is not None:
                content = escaped[1:-1]
                assert compiled.json_unescape(content, 0, len(content)) == data
            assert compiled.json_unescape(data, 0, len(data)) == unescape_pure(data, 0, len(data)), (before, after)


def test_escape_writes_every_ascii_byte_as_json_dumps_does() -> None:
    data = bytes(range(128))
    assert escape_pure(data) == json.dumps(data.decode(), ensure_ascii=False).encode()
    if compiled is not None:
        assert compiled.json_escape(data) == escape_pure(data)


RECORD_PIECES = st.lists(st.sampled_from([
    b"{", b"}", b"[", b"]", b":", b",", b" ", b'"', b"\\", b'"raw"', b'"k"', b"1", b"NaN", b"Infinity", b"true",
    b'"' + b"x" * 30 + b'"', b'"' + b"\\n" * 20 + b'"', b'"\\""', b"\n", b"\xc3\xa9",
]), max_size=25).map(b"".join)


@needs_compiled
@given(RECORD_PIECES)
@example(b'{"raw": "' + b"x" * 40 + b'", "k": ["' + b"y" * 40 + b'"]}')
@example(b'{"a": {"b": "' + b"x" * 40 + b'"}, "raw":"' + b"\\\\" * 20 + b'"}')
@example(b'{"raw": "unterminated')
@settings(max_examples=500)
def test_long_values_are_their_reference(data: bytes) -> None:
    assert compiled is not None
    for min_length in (0, 1, 20, 40):
        assert compiled.json_long_values(data, min_length) == long_values_pure(data, min_length)


def test_long_values_finds_the_top_level_members_only() -> None:
    long = "x" * 30
    data = json.dumps({"a": long, "b": {"c": long}, "d": [long], "e": "short", long: 1, "raw": long}).encode()
    spans = long_values_pure(data, 30)
    assert spans is not None and [data[start:end] for start, end in spans] == [long.encode()] * 2
    assert long_values_pure(b'{"raw": NaN}', 1) is None and long_values_pure(b'{"raw": "', 1) is None
    if compiled is not None:
        assert compiled.json_long_values(data, 30) == spans


def test_the_compiled_helpers_refuse_wrong_arguments() -> None:
    if compiled is None:
        pytest.skip("the compiled module is not built")
    with pytest.raises(TypeError):
        compiled.json_escape("text")
    with pytest.raises(TypeError):
        compiled.json_escape(b"text", b"", "tail")
    with pytest.raises(TypeError):
        compiled.json_escape(b"text", b"", b"", b"")
    with pytest.raises(TypeError):
        compiled.json_long_values("text", 1)
    with pytest.raises(ValueError):
        compiled.json_unescape(b"abc", 2, 9)
    with pytest.raises(ValueError):
        unescape_pure(b"abc", 2, 9)


# -- whole records: the bytes way writes what the stdlib way writes -----------------------------------------


def line(record: dict[str, Any], ensure_ascii: bool = False) -> bytes:
    return json.dumps(record, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


@needs_compiled
def test_a_raw_record_takes_the_bytes_way_and_writes_what_the_stdlib_way_writes() -> None:
    data = line({"id": 7, "raw": message(), "metadata": {"campaign": "spring"}, "tags": ["a"]})
    assert read_record(data) is not None
    output = same_either_way(data)
    record = json.loads(output)
    assert list(record) == ["id", "raw", "metadata", "tags", "message_id", "recipient"]
    assert record["recipient"] == "ann@x.example" and "https://t.example.com/" in record["raw"]


@pytest.mark.parametrize("record", [
    {"raw": message(), "message_id": "given@x.example", "recipient": "bob@x.example"},  # theirs kept, in place
    {"metadata": {"k": "v"}, "raw": message(), "extra": "é" * 2000},  # another long value, decoded the stdlib way
    {"raw": message(html=HTML + '<p>"\\ \x7f \u2028</p>')},
    {"raw": message(charset="iso-8859-1")},  # text encoded again as latin-1: the output is not UTF-8
    {"raw": "x" * 2000},  # no headers: an error, written the same
    {"raw": message(), "html": "<p>both</p>"},  # an error
    {"raw": message(), "raw2": "y" * 2000},
    {"raw": message().replace("Nouveautés", "\udced")},  # a lone surrogate: json.loads lets it through
    {"raw": message(), "tracking_settings": {"click_tracking": {"enable": False}}},
    {"raw": message(), "note": "\x00mailtrack:raw\x00"},  # the mark itself, elsewhere in the record
    {"raw": message(), "metadata": {"x": float("nan")}},  # a NaN of its own
])
@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_records_are_written_the_same_either_way(record: dict[str, Any], ensure_ascii: bool) -> None:
    same_either_way(line(record, ensure_ascii))


@pytest.mark.parametrize("data", [
    b'{"raw": "' + message().encode().replace(b"\r\n", b"\\r\\n") + b'"',  # not closed
    b'{"raw": "' + b"\\q" * 800 + b'"}',  # a bad escape
    b'{"raw": "' + b"\xff" * 1500 + b'"}',  # not UTF-8
    b'{"raw": "' + b"a\tb" * 500 + b'"}',  # a raw control character
    b'{"raw": "' + b"x" * 1500 + b'", "raw": "' + b"\\q" * 800 + b'"}',  # a bad duplicate
    b'{"raw": "' + b"\\q" * 800 + b'", "raw": "' + b"x" * 1500 + b'"}',  # a bad duplicate, overwritten
    b'{"raw": "' + b"x" * 1500 + b'"} trailing',
    b'{\x00"raw": "' + b"x" * 1500 + b'"}',
])
def test_bad_lines_fail_with_the_stdlib_way_s_reason(data: bytes) -> None:
    assert read_record(data) is None
    rewriter = Rewriter(JOB)
    summary = Summary()
    result = rewriter.rewrite(Item("jsonl", data, "in.jsonl line 1", end=b"\n"), summary)
    with pytest.raises(Exception) as stdlib:  # noqa: PT011 - whichever json.loads raises
        json.loads(data)
    assert result.error is not None and str(stdlib.value) in result.error


@needs_compiled
def test_a_duplicate_raw_key_keeps_the_last_and_its_first_place() -> None:
    data = b'{"raw": "' + b"x" * 1500 + b'", "id": 1, "raw": ' + json.dumps(message()).encode() + b"}"
    output = same_either_way(data)
    assert list(json.loads(output)) == ["raw", "id", "message_id", "recipient"]


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30),
       st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_generated_messages_are_written_the_same_either_way(extra: str, eol: str, ensure_ascii: bool) -> None:
    html = HTML + "<p>" + extra.replace("\r", "").replace("\n", " ") + "</p>"
    same_either_way(line({"raw": message(html=html).replace("\r\n", eol)}, ensure_ascii))


def test_write_record_writes_dumps_of_the_decoded_message() -> None:
    record = {"a": 1, "raw": None, "b": "é"}
    for raw in (message().encode(), b"\xff\xfe latin \xe9", b"plain"):
        expected = dumps({**record, "raw": raw.decode("utf-8", "surrogateescape")})
        assert write_record(record, raw, dumps) == expected


def test_without_the_compiled_module_records_take_the_stdlib_way(monkeypatch: pytest.MonkeyPatch) -> None:
    data = line({"raw": message()})
    assert LONG <= len(data)
    monkeypatch.setattr(speedups, "compiled", None)
    assert read_record(data) is None
    monkeypatch.setattr(speedups, "compiled", compiled)
    same_either_way(data)
