"""Nodes' structure fields are parsed once and shared between messages (mailtrack/core/mime/tree.py).

A campaign's messages carry the same few part headers; the stdlib's header
parser was an eighth of ``rewrite_message``. Only the Content-* fields
MIME structure is read from are parsed (a message's own To, Subject ... are
never kept), and they must be read exactly as the whole block would be.
The cache must never change what a part is read as: a digest's child
defaults to message/rfc822 and the same bytes elsewhere to text/plain; big
blocks are not kept; the cache stays bounded.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrack.core.mime import tree
from mailtrack.core.mime.tree import parse_message

PART = b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n<p>x</p>\n"


def message(*parts: bytes, subtype: str = "alternative", top: bytes = b"Subject: s\n") -> bytes:
    body = b"".join(b"--b\n" + part for part in parts)
    return top + f"MIME-Version: 1.0\nContent-Type: multipart/{subtype}; boundary=b\n\n".encode() + body + b"--b--\n"


def test_the_same_part_headers_are_parsed_once_and_read_the_same() -> None:
    tree._PART_HEADERS.clear()
    first = parse_message(message(PART, top=b"To: a@x.test\n")).children[0]
    second = parse_message(message(PART, top=b"To: b@x.test\n")).children[0]
    assert first.headers is second.headers
    assert second.content_type == "text/html" and second.headers.get_content_charset() == "utf-8"


def test_a_messages_own_headers_are_not_kept() -> None:
    tree._PART_HEADERS.clear()
    parse_message(message(PART, top=b"To: someone@x.test\n"))
    assert all(not key[0].startswith(b"To:") for key in tree._PART_HEADERS)


def test_a_digest_child_and_the_same_bytes_elsewhere_differ() -> None:
    tree._PART_HEADERS.clear()
    bare = b"X-Note: same bytes\n\nbody\n"
    mixed = parse_message(message(bare, subtype="mixed")).children[0]
    digest = parse_message(message(bare, subtype="digest")).children[0]
    mixed_again = parse_message(message(bare, subtype="mixed")).children[0]
    assert mixed.content_type == "text/plain" == mixed_again.content_type
    assert digest.content_type == "message/rfc822"


def test_the_cache_is_bounded_and_big_blocks_are_not_kept() -> None:
    tree._PART_HEADERS.clear()
    for i in range(tree._PART_HEADERS_MAX * 2 + 5):
        parse_message(message(f"X-N: {i}\nContent-Type: text/plain; n={i}\n\nx\n".encode()))
        assert len(tree._PART_HEADERS) <= tree._PART_HEADERS_MAX
    tree._PART_HEADERS.clear()
    big = b"Content-Type: text/plain; x=" + b"y" * (tree._PART_HEADER_BYTES + 10) + b"\n\nx\n"
    node = parse_message(message(big)).children[0]
    assert node.content_type == "text/plain"
    assert [key[0] for key in tree._PART_HEADERS] == [b"Content-Type: multipart/alternative; boundary=b\n"]  # the top's


def test_a_messages_other_fields_are_not_parsed() -> None:
    tree._PART_HEADERS.clear()
    root = parse_message(message(PART, top=b"To: someone@x.test\nSubject: s\n"))
    assert root.headers.get("to") is None and root.content_type == "multipart/alternative" and root.boundary == "b"
    assert all(b"To:" not in key[0] and b"Subject" not in key[0] for key in tree._PART_HEADERS)


FIELD_LINES = st.sampled_from([
    b"Content-Type: text/html; charset=utf-8", b"Content-Type: multipart/related; boundary=b; start=\"<a@x>\"",
    b"content-type: TEXT/Plain; Charset=\"ISO-8859-1\"", b"Content-Type : text/html", b"Content-Type:", b"Content-Type: x",
    b"Content-Type: text/plain; name=\"f.txt\"", b"Content-Disposition: attachment; filename=a.txt",
    b"Content-Disposition: inline", b"Content-Disposition: weird", b"Content-Transfer-Encoding: QUOTED-PRINTABLE",
    b"Content-Transfer-Encoding: \xe9", b"Content-ID: <a@x>", b"Content-Id: <b@x>", b"To: a@x", b"Subject: \xff",
    b"From someone", b"From: a@x", b": no name", b"X-A: 1", b" continued", b"\tcontinued; charset=koi8-r",
    b"Content-Type: text/plain;\n charset=utf-8", b"MIME-Version: 1.0",
])


@settings(max_examples=1000, deadline=None)
@given(lines=st.lists(FIELD_LINES, max_size=8), eol=st.sampled_from([b"\n", b"\r\n", b"\r"]), digest=st.booleans())
def test_the_structure_fields_read_as_the_whole_block(lines: list[bytes], eol: bytes, digest: bool) -> None:
    """Every fact a node reads from its structure fields is what the stdlib reads from its whole header block."""
    block = eol.join(line.replace(b"\n", eol) for line in lines) + eol + eol
    raw = block + b"body" + eol
    node = tree._parse(raw, 0, len(raw), "1", 1, digest=digest)
    whole = BytesHeaderParser(policy=compat32).parsebytes(raw[: node.body_start])
    if digest:
        whole.set_default_type("message/rfc822")
    assert node.content_type == whole.get_content_type()
    assert node.charset == whole.get_content_charset()
    assert node.transfer_encoding == str(whole.get("content-transfer-encoding") or "7bit").strip().lower()
    assert node.boundary == (whole.get_boundary() if whole.get_content_maintype() == "multipart" else None)
    assert node.headers.get_content_disposition() == whole.get_content_disposition()
    assert node.headers.get_filename() == whole.get_filename()
    assert node.headers.get_param("name") == whole.get_param("name")
    assert node.headers.get_param("start") == whole.get_param("start")
    assert node.headers.get("content-id") == whole.get("content-id")
