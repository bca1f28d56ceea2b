"""The demo's forged click is always a forgery (its old "AA" ending sometimes left a valid signature)."""

from __future__ import annotations

import pytest

import mailtrack
from mailtrack.cli.demo import _forged


def test_the_demo_s_forged_url_never_verifies() -> None:
    tracker = mailtrack.Tracker(["demo-key-0123456789"], "https://t.example.com")
    for n in range(300):  # signatures vary with the message id: endings like the ones that once stayed valid
        url = tracker.tracking_url("click", message_id=f"<m{n}@example.com>", recipient="ann@example.com",
                                   url="https://shop.example.com/sale?src=mail&id=42")
        forged = _forged(url)
        assert forged != url and tracker.verify(url)
        with pytest.raises(mailtrack.MailtrackError):
            tracker.verify(forged)
