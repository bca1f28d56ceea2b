"""Atomic files: the target holds the old content or the whole new content, never a part; leftovers are cleaned."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailtrack.batch import atomic
from mailtrack.batch.atomic import TEMP_SUFFIX, AtomicFile, remove_stale


@pytest.fixture(params=["unnamed", "named"])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Both ways of writing aside: an unnamed O_TMPFILE file (where this system can link one) and a hidden temp file."""
    if request.param == "named":
        monkeypatch.setattr(atomic, "_unnamed", lambda directory: None)
    elif not atomic._can_name(tmp_path):
        pytest.skip("this system cannot link an O_TMPFILE file into place (e.g. a sandbox without /proc links)")
    return str(request.param)


def test_nothing_appears_until_commit(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out.eml"
    target.write_bytes(b"old")
    file = AtomicFile(target)
    file.write(b"new ")
    file.write(b"content")
    assert target.read_bytes() == b"old"
    file.commit()
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.eml"]
    assert (target.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_discard_and_context_manager_leave_nothing(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out.jsonl"
    with AtomicFile(target) as file:
        file.write(b"half")
    file.discard()  # again: harmless
    with pytest.raises(ValueError):
        file.commit()
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / f".a.eml.123{TEMP_SUFFIX}").write_bytes(b"half")
    (tmp_path / "a.eml").write_bytes(b"whole")
    (tmp_path / f"visible{TEMP_SUFFIX}").write_bytes(b"not ours: not hidden")
    assert remove_stale(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.eml", f"visible{TEMP_SUFFIX}"]
    assert remove_stale(tmp_path / "missing") == 0
