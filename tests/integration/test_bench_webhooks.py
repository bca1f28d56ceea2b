"""Smoke test of benchmarks/bench_webhooks.py: a tiny run delivers every event exactly once in both contenders. No timing is asserted."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_tiny_run_delivers_every_event_once_in_each_contender(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("bench_webhooks")
    out = tmp_path / "webhooks.md"
    assert bench.main(["--events", "200", "--repetitions", "1", "--out", str(out)]) == 0  # 1: a lost or repeated delivery
    report = out.read_text(encoding="utf-8")
    assert "exactly once (receiver count = events, nothing pending): yes" in report
    for name in bench.CONTENDERS:
        assert f"| {name} |" in report
