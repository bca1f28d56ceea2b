"""Shared fixtures."""

from __future__ import annotations

import pytest
import support.flask_mail_charsets  # noqa: F401  (both charset states, before any test imports Flask-Mail)
from hypothesis import HealthCheck, settings
from support.helpers import make_tracker

import mailtrack

# Property tests are deterministic (same examples on every run and in CI) and
# untimed: this machine is shared, and speed is measured in benchmarks/.
settings.register_profile(
    "mailtrack",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("mailtrack")


@pytest.fixture
def tracker() -> mailtrack.Tracker:
    """A tracker with two keys: the newest signs, both verify."""
    return make_tracker()
