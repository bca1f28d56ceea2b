"""Smoke test of benchmarks/bench_serve.py: a short run against a real `mailtrack serve` completes cleanly.

Asserted: zero errors and events stored == successful responses, on SQLite and (when PostgreSQL is installed) on
PostgreSQL. No timing is asserted: the machine is shared, and speed is measured in benchmarks/.
"""

from __future__ import annotations

import importlib
import re
import shutil
import socket
from pathlib import Path

import pytest

pytest.importorskip("waitress")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench_serve(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("bench_serve")


def _figures_row(report: str, generator: str, store: str = "sqlite") -> list[str]:
    """The Figures table's row of one run on ``store``, without its store cell (the column indices of the
    generator-only table, which the tests below use)."""
    rows = [[cell.strip() for cell in row.strip("|").split("|")] for row in report.splitlines()
            if row.startswith(f"| {generator}") and "**" in row]
    rows = [cells for cells in rows if cells[1] == store]
    assert len(rows) == 1, rows
    return rows[0][:1] + rows[0][2:]  # the columns as they were before the store column: indices below unchanged


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


def test_quick_run_with_both_contenders(bench_serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The static GIF, serve-without-its-store and the verify-only floor each answer under the same load; the report
    gives the three ratios, and the floor's beside the static GIF (its answers all right: it raises otherwise)."""
    out = tmp_path / "results_serve.md"

    assert bench_serve.main(["--quick", "--duration", "2", "--generator", "python", "--static-contender",
                             "--no-store-contender", "--verify-contender", "--out", str(out)]) == 0

    report = out.read_text(encoding="utf-8")
    row = next(line for line in report.split("## Against the contenders", 1)[1].splitlines()
               if line.startswith("| python |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    static, no_store, ours = (float(cell.replace(",", "")) for cell in cells[2:5])
    assert static > 0 and no_store > 0 and ours > 0
    # The report divides the rates it measured; the cells show them rounded to whole requests per second, so a
    # ratio recomputed from the cells may round the other way in its last digit (0.295 shown as 0.30 or 0.29).
    assert _ratio(cells[5]) == pytest.approx(ours / static, abs=0.011)
    assert _ratio(cells[6]) == pytest.approx(no_store / static, abs=0.011)
    assert _ratio(cells[7]) == pytest.approx(ours / no_store, abs=0.011)
    floor_row = next(line for line in report.split("Verify-only floor", 1)[1].splitlines()
                     if line.startswith("| python |"))
    floor_cells = [cell.strip() for cell in floor_row.strip("|").split("|")]
    assert float(floor_cells[1].replace(",", "")) == static
    floor = float(floor_cells[2].replace(",", ""))
    assert floor > 0 and _ratio(floor_cells[3]) == pytest.approx(floor / static, abs=0.011)


def _ratio(cell: str) -> float:
    """A report's ratio cell ("0.61x") as a number; anything else fails the test."""
    assert cell.endswith("x"), cell
    return float(cell[:-1])


@pytest.mark.timeout(300)
def test_quick_run_on_both_stores(bench_serve, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """``--store both``: a throwaway PostgreSQL cluster, durable as shipped, passes the same checks as SQLite, and is
    gone when the run ends."""
    reason = bench_serve.unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "results_serve.md"

    assert bench_serve.main(["--quick", "--duration", "2", "--generator", "python", "--store", "both",
                             "--out", str(out)]) == 0

    report = out.read_text(encoding="utf-8")
    for store in ("sqlite", "postgres"):
        cells = _figures_row(report, "python", store)
        errors, stored, successful, difference, result = cells[9], cells[10], cells[11], cells[12], cells[13]
        assert errors == "0", store
        assert int(successful.replace(",", "")) > 0, store
        assert stored == successful and difference == "0", store
        assert result.startswith("**PASS**"), store
    assert re.search(r"- server \(postgres\): `python -m mailtrack serve --db postgresql://[^`]+`", report)
    assert re.search(r"PostgreSQL \d+\.\d+", report)
    assert "fsync=on, synchronous_commit=on" in report  # measured durable, as a production server runs
    per_type = [row for row in report.splitlines() if row.startswith("| python | postgres | opened |")]
    assert len(per_type) == 1
    first, firsts = per_type[0].strip("|").split("|")[-2:]
    assert first.strip() == firsts.strip() != "0"
    server_rows = [row for row in report.splitlines() if row.startswith("| python | postgres |") and "SIGINT" in row]
    assert len(server_rows) == 1 and "| n/a |" in server_rows[0]  # no SQLite WAL file
    port = re.search(r"postgres: PostgreSQL .* on 127\.0\.0\.1:(\d+)", capsys.readouterr().err)
    assert port
    with pytest.raises(OSError):  # the cluster was stopped
        socket.create_connection(("127.0.0.1", int(port.group(1))), timeout=5).close()
