"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.smtp import Inbox, smtp_server


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 for one test: its inbox and its port."""
    pytest.importorskip("aiosmtpd")
    with smtp_server() as server:
        yield server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``serve(db, *extra)``: a real ``mailtrack serve`` on ``db`` (test_serve_http's ``Server``), stopped after the
    test. test_serve_http.py has its own ``serve(*args, db=None)`` for its tests."""
    from test_serve_http import Server

    started: list[Server] = []

    def start(db: Path, *extra: str) -> Server:
        server = Server(db, tmp_path / "logs", *extra)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
