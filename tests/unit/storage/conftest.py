"""Fixtures shared by the storage tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailtrack.storage.writer_process import ProcessWriter


@pytest.fixture
def writers() -> Iterator[list[ProcessWriter]]:
    """The ProcessWriters a test makes (append them): each closed, its child ended, after the test."""
    made: list[ProcessWriter] = []
    yield made
    for writer in made:
        writer.close(timeout=5)
