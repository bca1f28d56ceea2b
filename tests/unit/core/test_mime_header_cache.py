"""Body parts' header blocks are parsed once and shared between messages (mailtrack/core/mime/tree.py).

A campaign's messages carry the same few part headers; the stdlib's header
parser was an eighth of ``rewrite_message``. The cache must never change
what a part is read as: a digest's child defaults to message/rfc822 and the
same bytes elsewhere to text/plain; a message's own headers are not kept;
big blocks are not kept; the cache stays bounded.
"""

from __future__ import annotations

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
        parse_message(message(f"X-N: {i}\nContent-Type: text/plain\n\nx\n".encode()))
        assert len(tree._PART_HEADERS) <= tree._PART_HEADERS_MAX
    tree._PART_HEADERS.clear()
    big = b"X-Big: " + b"y" * (tree._PART_HEADER_BYTES + 10) + b"\nContent-Type: text/plain\n\nx\n"
    node = parse_message(message(big)).children[0]
    assert node.content_type == "text/plain"
    assert tree._PART_HEADERS == {}
