"""Smoke test of benchmarks/bench_events_api.py: a tiny run completes and reports every query. No timing is asserted."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_tiny_run_reports_every_query(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("bench_events_api")
    out = tmp_path / "events_api.md"
    assert bench.main(["--quick", "--events", "3000", "--repeat", "1", "--out", str(out)]) == 0
    report = out.read_text(encoding="utf-8")
    for name, _ in bench.queries():
        assert f"| {name} |" in report
    assert report.count("| day |") == len(bench.stats_combinations())
