"""mbox splitting: every message found by the one rule, and the bytes given back exactly when joined."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtrack.batch.mbox import MboxMessage, NotAnMbox, split_mbox, starts_like_mbox


def split(data: bytes) -> list[MboxMessage]:
    return list(split_mbox(data.splitlines(keepends=True)))


def joined(messages: list[MboxMessage]) -> bytes:
    return b"".join(m.envelope + m.message + m.end for m in messages)


MBOX = (b"From a@x Mon Jan  1 00:00:00 2024\nFrom: a@x\nSubject: one\n\nFrom the team,\nAnn\n\n"
        b"From b@x Mon Jan  1 00:00:00 2024\nFrom: b@x\nSubject: two\n\n>From quoted\nFrom here\n\n"
        b"From c@x Mon Jan  1 00:00:00 2024\nSubject: three\n\nlast\n")


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_messages_envelopes_and_separators(eol: bytes) -> None:
    data = MBOX.replace(b"\n", eol)
    messages = split(data)
    assert [m.envelope.split(b" ")[1] for m in messages] == [b"a@x", b"b@x", b"c@x"]
    assert messages[0].message == b"From: a@x\nSubject: one\n\nFrom the team,\nAnn\n".replace(b"\n", eol)
    assert [m.end for m in messages] == [eol, eol, b""]
    assert b">From quoted" in messages[1].message and b"From here" in messages[1].message  # body text, not separators
    assert joined(messages) == data


def test_the_stdlib_reads_the_same_messages_where_no_body_line_starts_with_from(tmp_path: Path) -> None:
    data = MBOX.replace(b"From the team", b"Regards").replace(b"From here", b"Here")  # the stdlib splits at those
    assert [m.message.split(b"Subject: ")[1].split(b"\n")[0] for m in split(data)] == [b"one", b"two", b"three"]
    (tmp_path / "box.mbox").write_bytes(data)
    assert [m["Subject"] for m in mailbox.mbox(tmp_path / "box.mbox")] == ["one", "two", "three"]


def test_a_from_line_without_a_header_after_it_is_body_text() -> None:
    data = b"From a@x date\nSubject: s\n\nhello\n\nFrom x y\nnot a header line\n"
    messages = split(data)
    assert len(messages) == 1 and joined(messages) == data
    assert messages[0].message.endswith(b"From x y\nnot a header line\n")


def test_empty_input_is_an_empty_mbox_and_other_input_is_refused() -> None:
    assert split(b"") == []
    for data in (b"Subject: not an mbox\n\nbody\n", b"From a@x\n\nno header\n", b"<html>"):
        with pytest.raises(NotAnMbox):
            split(data)
    assert starts_like_mbox(b"From a@x date\nSubject: s\n") and not starts_like_mbox(b"Subject: s\n")


_LINES = st.sampled_from([b"From a@x date\n", b"From b@x date\r\n", b"Subject: s\n", b"X-A: b\r\n", b"\n", b"\r\n",
                          b"body\n", b">From quoted\n", b"From text\n", b"From ", b"tail"])


@given(st.lists(_LINES, max_size=30))
def test_joining_the_messages_gives_the_input_back(lines: list[bytes]) -> None:
    data = b"From first@x date\nSubject: s\n" + b"".join(lines)
    messages = split(data)
    assert joined(messages) == data
    assert all(starts_like_mbox(m.envelope + m.message) for m in messages)
