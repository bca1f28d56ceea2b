"""Real filesystem faults for tests: a small tmpfs that really fills up, a directory made read-only and back.

Both need ``mount`` (root, or a sandbox that allows it); a test that uses
them is skipped, with the reason, where mounting is not allowed. Every mount
is undone by the context manager that made it, whatever the test did.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["ReadOnly", "SmallVolume", "fill", "small_volume"]


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)


class SmallVolume:
    """A tmpfs of ``size`` bytes mounted at ``path``: writes past it fail with ``ENOSPC``, as on a full disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fillers: list[Path] = []

    def fill(self) -> Path:
        """Take every free byte with a new file; returns it (delete it to free the space again)."""
        filler = self.path / f"filler-{len(self._fillers)}"
        self._fillers.append(filler)
        fill(filler)
        return filler

    def free(self) -> None:
        """Remove every filler :meth:`fill` made."""
        while self._fillers:
            self._fillers.pop().unlink(missing_ok=True)

    def available(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the volume says it is full (``ENOSPC``)."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        while True:  # the last partial page
            try:
                out.write(b"\0" * 512)
            except OSError:
                break


@contextlib.contextmanager
def small_volume(path: Path, size: int) -> Iterator[SmallVolume]:
    """Mount a ``size``-byte tmpfs at ``path`` (created) for the ``with`` block; skip the test when not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc}): the full-disk test needs root or a mount-capable sandbox")
    try:
        yield SmallVolume(path)
    finally:
        _umount(path)


class ReadOnly:
    """``path`` (a file or directory) made read-only by a read-only bind mount of itself, even for root.

    A database *file* mounted so is what a ``chmod 444`` is to a non-root
    server: SQLite opens it read-only without a word (its directory stays
    writable for the ``-wal`` and ``-shm`` files). Undone by :meth:`off`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mounted = False

    def on(self) -> None:
        try:
            _mount("--bind", str(self.path), str(self.path))
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot bind-mount here ({exc}): the read-only database test needs root or a mount-capable "
                        "sandbox")
        self.mounted = True
        _mount("-o", "remount,ro,bind", str(self.path))

    def writable(self) -> None:
        """Make it writable again in place (what an operator fixing permissions or a remount does)."""
        _mount("-o", "remount,rw,bind", str(self.path))

    def off(self) -> None:
        if self.mounted:
            _umount(self.path)
            self.mounted = False

    def __enter__(self) -> ReadOnly:  # noqa: PYI034
        self.on()
        return self

    def __exit__(self, *exc: object) -> None:
        self.off()
