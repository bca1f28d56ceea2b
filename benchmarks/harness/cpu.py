"""How much of the machine a timed run had: CPU used by this process tree and by everything else, from /proc.

On a shared machine a parallel run can only go as fast as the cores the
others leave it. :class:`CpuWatch` samples ``/proc/stat`` (all CPU time) and
the ``utime + stime`` of this process and its descendants (pool workers
included, sampled every ``interval`` seconds while they live, so up to one
interval of a process that exits during the run is missed) around a run,
so a report can say how many cores other processes took meanwhile. Linux
only; elsewhere every figure is None.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType

from harness.rss import _parents, _tree

__all__ = ["CpuWatch"]

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine so far."""
    try:
        values = [int(v) for v in (_PROC / "stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _ticks(pid: int) -> int | None:
    try:
        fields = (_PROC / str(pid) / "stat").read_bytes().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


class CpuWatch:
    """``with CpuWatch() as watch: run()`` then ``watch.ours`` and ``watch.others``: cores used on average."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.ours: float | None = None
        self.others: float | None = None
        self._seen: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            for pid in _tree(os.getpid(), _parents()):
                ticks = _ticks(pid)
                if ticks is not None:
                    self._seen[pid] = max(self._seen.get(pid, 0), ticks)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> CpuWatch:
        self._start_machine = _machine()
        self._sample_once()
        self._start = dict(self._seen)
        self._wall = time.perf_counter()
        self._thread.start()
        return self

    def _sample_once(self) -> None:
        for pid in _tree(os.getpid(), _parents()):
            ticks = _ticks(pid)
            if ticks is not None:
                self._seen[pid] = ticks

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sample_once()
        wall = time.perf_counter() - self._wall
        end = _machine()
        if self._start_machine is None or end is None or wall <= 0:
            return
        ours = sum(ticks - self._start.get(pid, 0) for pid, ticks in self._seen.items()) / _TICKS
        busy = (end[0] - self._start_machine[0]) / _TICKS
        self.ours = ours / wall
        self.others = max(0.0, busy - ours) / wall
