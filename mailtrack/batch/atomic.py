"""Files that appear whole or not at all: written aside, then renamed into place.

An :class:`AtomicFile` is written where no one sees it and put in place with
``os.replace`` (atomic within a directory) on :meth:`~AtomicFile.commit`. On
Linux the file has no name at all until then (``O_TMPFILE``), so a process
killed with SIGKILL leaves nothing behind; elsewhere it is a hidden
``.NAME.*.mailtrack-tmp`` file next to the target, which
:func:`remove_stale` clears on the next run. Either way a reader never finds
a half-written file under the target's name.

This protects against an interrupted or killed process, not against a power
failure: nothing is fsynced (a campaign of a hundred thousand files would
pay a disk flush each).
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["TEMP_SUFFIX", "AtomicFile", "remove_stale"]

#: The suffix of the hidden temporary files (where O_TMPFILE is not available, and for an instant when it is).
TEMP_SUFFIX = ".mailtrack-tmp"
_PROC_FD = Path("/proc/self/fd")


@functools.cache
def _mode() -> int:
    """The permissions a new file gets (0o666 less the umask), as ``open()`` would create it; read once."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _unnamed(directory: Path) -> int | None:
    """An unnamed file opened for writing in ``directory``, or None (no ``O_TMPFILE`` here)."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not _PROC_FD.is_dir():
        return None
    try:
        return os.open(directory, flag | os.O_WRONLY, _mode())
    except OSError:  # a file system without O_TMPFILE support (EOPNOTSUPP, EISDIR on old kernels)
        return None


_NAMEABLE: dict[int, bool] = {}


def _can_name(directory: Path) -> bool:
    """Whether an unnamed file can be linked into ``directory`` through /proc (not in every sandbox); once per device."""
    device = os.stat(directory).st_dev
    if device not in _NAMEABLE:
        fd = _unnamed(directory)
        probe = os.path.join(directory, f".probe.{os.getpid()}{TEMP_SUFFIX}")
        try:
            if fd is None:
                raise OSError("no O_TMPFILE")
            os.link(_PROC_FD / str(fd), probe, follow_symlinks=True)
            os.unlink(probe)
            _NAMEABLE[device] = True
        except OSError:
            _NAMEABLE[device] = False
        finally:
            if fd is not None:
                os.close(fd)
    return _NAMEABLE[device]


class AtomicFile:
    """A binary file written aside and renamed to ``path`` on :meth:`commit`; :meth:`discard` drops it.

    Used as a context manager, it is discarded unless committed.
    """

    def __init__(self, path: Path, *, buffering: int = 1 << 20) -> None:
        self.path = path
        self._named: str | None = None
        fd = self._anonymous(path.parent)
        if fd is None:
            fd, self._named = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
            os.chmod(fd, _mode())
        self._file = os.fdopen(fd, "wb", buffering=buffering)
        self._done = False

    @staticmethod
    def _anonymous(directory: Path) -> int | None:
        """An unnamed file in ``directory`` (Linux ``O_TMPFILE``), or None where that cannot be named later."""
        fd = _unnamed(directory)
        if fd is None:
            return None
        if _can_name(directory):
            return fd
        os.close(fd)
        return None

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        self._file.write(data)

    def commit(self) -> None:
        """Put the file in place at ``path`` (replacing what was there), whole."""
        if self._done:
            raise ValueError("this file was committed or discarded already")
        self._file.flush()
        if self._named is None:
            # Give the unnamed file a hidden name, then rename that over the target: link() cannot replace a file.
            self._named = os.path.join(self.path.parent, f".{self.path.name}.{os.getpid()}.{id(self)}{TEMP_SUFFIX}")
            os.link(_PROC_FD / str(self._file.fileno()), self._named, follow_symlinks=True)
        self._file.close()
        os.replace(self._named, self.path)
        self._done = True

    def discard(self) -> None:
        """Drop what was written; nothing appears at ``path``. Safe to call more than once."""
        if self._done:
            return
        self._done = True
        self._file.close()
        if self._named is not None:
            try:
                os.unlink(self._named)
            except FileNotFoundError:
                pass

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.discard()


def remove_stale(directory: Path) -> int:
    """Remove the hidden temporary files a killed run left in ``directory``; how many there were.

    Only files named ``.*.mailtrack-tmp`` are touched. Do not run two batches
    into the same directory at once: one would remove the other's.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
    return removed
