"""Planning a batch: which files, in which format, where their outputs go, and what is skipped or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailtrack.batch import Complete, Ignored, LayoutError, Problem, Source, plan
from mailtrack.batch.sources import sniff


def tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_the_output_mirrors_the_inputs_like_cp_r(tmp_path: Path) -> None:
    tree(tmp_path, {"camp/b/2.eml": b"Subject: x\n", "camp/a.html": b"<p>", "camp/c.MBOX": b"", "camp/d.ndjson": b"",
                    "camp/README.md": b"notes", "camp/.hidden.eml": b"", "one.jsonl": b""})
    out = tmp_path / "out"
    entries = list(plan([tmp_path / "camp", tmp_path / "one.jsonl"], out))
    sources = [e for e in entries if isinstance(e, Source)]
    assert [(s.output.relative_to(out).as_posix(), s.format) for s in sources] == [
        ("camp/a.html", "html"), ("camp/c.MBOX", "mbox"), ("camp/d.ndjson", "jsonl"), ("camp/b/2.eml", "eml"),
        ("one.jsonl", "jsonl")]
    assert [e.where for e in entries if isinstance(e, Ignored)] == [str(tmp_path / "camp" / "README.md")]
    assert sources[3].where == str(tmp_path / "camp" / "b" / "2.eml") and sources[3].size == 11


def test_an_explicit_format_reads_every_file_of_a_directory(tmp_path: Path) -> None:
    tree(tmp_path, {"in/Inbox": b"From a date\nSubject: s\n", "in/Sent": b""})
    entries = list(plan([tmp_path / "in"], tmp_path / "out", format="mbox"))
    assert [(e.path.name, e.format) for e in entries if isinstance(e, Source)] == [("Inbox", "mbox"), ("Sent", "mbox")]


def test_a_named_file_of_another_name_is_sniffed(tmp_path: Path) -> None:
    tree(tmp_path, {"a.txt": b"From a date\nSubject: s\n", "b.txt": b"Subject: s\n\nbody", "c.txt": b'\n{"html": ""}',
                    "d.txt": b"<!DOCTYPE html>", "e.txt": b"plain words"})
    entries = list(plan(sorted(tmp_path.glob("*.txt")), tmp_path / "out"))
    assert [e.format if isinstance(e, Source) else e.reason for e in entries] == [
        "mbox", "eml", "jsonl", "html", "cannot tell its format from its name or first bytes; give --format"]
    assert sniff(b"\xef\xbb\xbf<html>") == "html"


def test_problems_resume_and_the_output_directory_inside_an_input(tmp_path: Path) -> None:
    tree(tmp_path, {"in/a.eml": b"x", "in/b.eml": b"y", "in/out/old.eml": b"z"})
    out = tmp_path / "in" / "out"
    (out / "in").mkdir()
    (out / "in" / "a.eml").write_bytes(b"done")
    entries = list(plan([tmp_path / "in", tmp_path / "missing.eml"], out, resume=True))
    assert [type(e).__name__ for e in entries] == ["Complete", "Source", "Problem"]  # out/ itself is not walked
    assert isinstance(entries[0], Complete) and entries[0].source.path.name == "a.eml"
    assert entries[2] == Problem(str(tmp_path / "missing.eml"), "no such file or directory")
    same = list(plan([tmp_path / "in" / "a.eml"], tmp_path / "in"))
    assert isinstance(same[0], Problem) and "overwrite" in same[0].reason


def test_inputs_that_would_share_an_output_name_are_refused_up_front(tmp_path: Path) -> None:
    tree(tmp_path, {"x/mail.eml": b"", "y/mail.eml": b""})
    with pytest.raises(LayoutError, match="would both be written to 'mail.eml'"):
        plan([tmp_path / "x" / "mail.eml", tmp_path / "y" / "mail.eml"], tmp_path / "out")
    with pytest.raises(LayoutError, match="unknown format"):
        plan([tmp_path / "x"], tmp_path / "out", format="pdf")  # type: ignore[arg-type]
