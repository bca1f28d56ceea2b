"""The package is mypy-clean in strict mode (it ships py.typed, so users' type checkers read it)."""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")


def test_mypy_strict() -> None:
    root = Path(__file__).resolve().parents[1]
    stdout, stderr, status = api.run(["--config-file", str(root / "pyproject.toml"), str(root / "mailtrack")])
    assert status == 0, stdout + stderr
