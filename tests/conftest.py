"""Shared fixtures."""

from __future__ import annotations

import pytest

import mailtrack
from helpers import make_tracker


@pytest.fixture
def tracker() -> mailtrack.Tracker:
    """A tracker with two keys: the newest signs, both verify."""
    return make_tracker()
