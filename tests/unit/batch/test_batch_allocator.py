"""A batch process keeps the memory it frees (glibc's mallopt), so a message does not fault in fresh pages."""

from __future__ import annotations

import ctypes
import platform
import resource
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from mailtrack.batch import Job
from mailtrack.batch.allocator import keep_freed_memory
from mailtrack.batch.engines import process_pool

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Allocate, fill and free a few 300 KB buffers, as a rewrite does with its messages.
CHURN = textwrap.dedent("""
    import resource, sys
    if sys.argv[1] == "keep":
        from mailtrack.batch.allocator import keep_freed_memory
        assert keep_freed_memory()
    def churn():
        for _ in range(200):
            kept = [b"x" * 300_000 for _ in range(3)]  # written, so every page is touched
            del kept
    churn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    churn()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_freed_memory_is_kept_for_the_next_allocations() -> None:
    assert faults("default") > 10_000  # each buffer's pages given back to the kernel and faulted in again
    assert faults("keep") < 1000


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_mallopt_takes_the_values() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent


def test_elsewhere_it_says_false_and_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False

    def no_library(name: object) -> ctypes.CDLL:
        raise OSError("no C library")

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    assert keep_freed_memory() is False


def _churn_faults(_: object) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):
        kept = [b"x" * 300_000 for _ in range(3)]
        del kept
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_pool_workers_keep_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailtrack.batch import engines

    job = Job(secret_keys=("k",), base_url="https://t.example.com", issued_at=0)
    monkeypatch.setattr(engines, "_rewrite_in_worker", _churn_faults)
    counts: list[Any] = list(process_pool(1)(job, [[object()], [object()]]))  # type: ignore[list-item]
    assert counts[1] < 100, counts  # the second round reuses the first's pages
