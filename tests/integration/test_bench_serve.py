"""Smoke test of benchmarks/bench_serve.py: a short run against a real `mailtrack serve` completes cleanly.

Asserted: zero errors and events stored == successful responses. No timing is asserted: the machine is shared, and
speed is measured in benchmarks/.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

pytest.importorskip("waitress")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench_serve(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("bench_serve")


def _figures_row(report: str, generator: str) -> list[str]:
    rows = [row for row in report.splitlines() if row.startswith(f"| {generator}") and "**" in row]
    assert len(rows) == 1, rows
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_quick_run_python_generator(bench_serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "results_serve.md"

    assert bench_serve.main(["--quick", "--duration", "2", "--generator", "python", "--out", str(out)]) == 0

    cells = _figures_row(out.read_text(encoding="utf-8"), "python")
    errors, stored, successful, difference, result = cells[9], cells[10], cells[11], cells[12], cells[13]
    assert errors == "0"
    assert int(successful.replace(",", "")) > 0
    assert stored == successful and difference == "0"
    assert result.startswith("**PASS**")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not on PATH")
def test_quick_run_wrk(bench_serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "results_serve.md"

    assert bench_serve.main(["--quick", "--duration", "2", "--generator", "wrk", "--out", str(out)]) == 0

    cells = _figures_row(out.read_text(encoding="utf-8"), "wrk")
    assert cells[9] == "0"  # errors
    assert int(cells[11].replace(",", "")) > 0  # successful responses
    assert cells[13].startswith("**PASS**")  # 0 <= stored - successful <= requests in flight when wrk stopped
