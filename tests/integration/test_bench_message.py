"""Smoke test of benchmarks/bench_message.py: a ``--quick`` run completes and writes every row.

No timing is asserted: the machine is shared, and speed is measured in benchmarks/.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
VARIANTS = ("qp", "8bit", "base64")


def test_quick_run_writes_every_table_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench_message = importlib.import_module("bench_message")
    out = tmp_path / "results_message.md"

    assert bench_message.main(["--quick", "--out", str(out)]) == 0

    report = out.read_text(encoding="utf-8")
    for heading in (
        "## Inputs",
        "## Time per message",
        "## Messages per second",
        "## MIME overhead (same run)",
        "## Fidelity: lines changed outside the lines holding links",
    ):
        assert heading in report
    for _, heading in bench_message.CALLS:  # the five timed calls are columns
        assert heading in report
    rows = report.splitlines()
    for variant in VARIANTS:
        # one row in each of Inputs, Time, Messages per second and MIME overhead
        assert sum(row.startswith(f"| {variant} |") for row in rows) == 4, variant
        assert any(row.startswith(f"| {variant}: raw lines") for row in rows), variant
        assert any(row.startswith(f"| {variant}: decoded body lines |") for row in rows), variant
