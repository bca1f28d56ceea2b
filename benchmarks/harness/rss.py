"""Peak memory of a process and everything it starts, read from Linux's /proc while it runs.

Each process's ``VmHWM`` (its peak resident set size, which only grows) is
read every ``interval`` seconds until the command exits; the last reading of
a process is its peak, as long as it lives longer than one interval (a batch's
workers live for the whole run). Linux only: elsewhere :func:`peak_rss`
returns no processes.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessPeak", "peak_rss"]

_PROC = Path("/proc")


@dataclass
class ProcessPeak:
    """One process: its pid, its parent, its command line and its peak RSS in bytes."""

    pid: int
    parent: int
    command: str
    peak: int = 0


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for stat in _PROC.glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_bytes().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return parents


def _tree(root: int, parents: dict[int, int]) -> set[int]:
    found, frontier = {root}, {root}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _hwm(pid: int) -> int | None:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss(command: list[str], *, env: dict[str, str] | None = None, interval: float = 0.1,
             timeout: float | None = None) -> tuple[int, list[ProcessPeak], str]:
    """Run ``command``; its exit status, the peak of each process of its tree (the command first), and its stderr."""
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a chatty command cannot block on it
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        seen = _sample(proc, interval, timeout)
        stderr.seek(0)
        ordered = sorted(seen.values(), key=lambda p: (p.pid != proc.pid, p.pid))
        return proc.returncode, ordered, stderr.read()


def _sample(proc: subprocess.Popen[str], interval: float, timeout: float | None) -> dict[int, ProcessPeak]:
    seen: dict[int, ProcessPeak] = {}
    started = time.monotonic()
    if not _PROC.is_dir():
        proc.wait(timeout=timeout)
        return seen
    while proc.poll() is None:
        parents = _parents()
        for pid in _tree(proc.pid, parents):
            peak = _hwm(pid)
            if peak is None:
                continue
            if pid not in seen:
                try:
                    cmdline = (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                except OSError:
                    cmdline = "?"
                seen[pid] = ProcessPeak(pid, parents.get(pid, 0), cmdline)
            seen[pid].peak = max(seen[pid].peak, peak)
        if timeout is not None and time.monotonic() - started > timeout:
            proc.kill()
        time.sleep(interval)
    return seen
