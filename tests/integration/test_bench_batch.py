"""Smoke test of benchmarks/bench_batch.py: a tiny ``--quick`` run completes and writes every row.

No timing is asserted: the machine is shared, and speed is measured in benchmarks/.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.timeout(300)
def test_quick_run_writes_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_batch = importlib.import_module("bench_batch")
    out = tmp_path / "batch.md"

    assert bench_batch.main(["--quick", "--messages", "40", "--workdir", str(tmp_path), "--out", str(out)]) == 0

    report = out.read_text(encoding="utf-8")
    rows = report.splitlines()
    for contender in bench_batch.CONTENDERS:
        assert sum(row.startswith(f"| {contender} |") for row in rows) == 1, contender
    assert "every contender wrote the same bytes: yes" in report
    assert any(row.startswith("| 10 |") for row in rows) and any(row.startswith("| 40 |") for row in rows)
    assert list(tmp_path.iterdir()) == [out]  # the generated campaign is removed
