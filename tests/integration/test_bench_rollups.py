"""Smoke test of benchmarks/bench_rollups.py: a tiny run completes and reports every figure. No timing is asserted."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from mailtrack.events import TrackingEvent
from mailtrack.storage.sqlite import MIGRATIONS, SQLiteStore

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_tiny_run_reports_record_roll_and_every_stats_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("bench_rollups")
    stats_store = tmp_path / "stats.sqlite"
    store = SQLiteStore(stats_store)
    for event in bench.events(200, 30):
        store.record(event)
    store.close()
    assert bench.main(["--record", "120", "--stats-store", str(stats_store), "--repeat", "1"]) == 0
    report = capsys.readouterr().out
    assert "- record(): 120 events one by one" in report
    assert "- roll(): 120 events (500 messages)" in report and "- roll(): 120 events (10,000 messages" in report
    assert f"(200 events, schema v{len(MIGRATIONS)}" in report
    assert report.count("| day |") == len(importlib.import_module("bench_events_api").stats_combinations())
    assert isinstance(bench.events(1, 1)[0], TrackingEvent)
