"""Tracker(account_settings=..., account=...): stored per-account settings under the message's (defaults < account < message)."""

from __future__ import annotations

from typing import Any

import pytest

from mailtrack import Tracker
from mailtrack.exceptions import ConfigurationError, SettingsError

HTML = '<p><a href="https://example.com/x">x</a></p>'
STORED: dict[str, dict[str, Any]] = {
    "sub1": {"open": {"enabled": False}, "google_analytics": {"enabled": True, "utm_source": "news"}},
    "sub2": {},
    "bad": {"open": {"enabled": "no"}},
}


def tracker(**kwargs: Any) -> Tracker:
    return Tracker(["k"], "https://t.example.com", account_settings=STORED.__getitem__, **kwargs)


def test_an_account_s_stored_fields_apply_and_the_rest_stays_default() -> None:
    result = tracker().rewrite_html(HTML, message_id="m", recipient="a@x", account="sub1")
    assert result.pixel is None  # open tracking off for sub1
    assert "utm_source=news" in result.links[0].url
    plain = tracker().rewrite_html(HTML, message_id="m", recipient="a@x")
    assert plain.pixel is not None and "utm_source" not in plain.links[0].url
    assert tracker().rewrite_html(HTML, message_id="m", recipient="a@x", account="sub2").pixel is not None


def test_the_message_wins_over_the_account_and_the_account_over_the_defaults() -> None:
    t = Tracker(["k"], "https://t.example.com", settings={"ganalytics": {"enable": True, "utm_medium": "email"}},
                account_settings=STORED.__getitem__, account="sub1")
    assert t.account == "sub1"
    result = t.rewrite_html(HTML, message_id="m", recipient="a@x", settings={"open": True})
    assert result.pixel is not None  # the message turned open tracking back on
    url = result.links[0].url
    assert "utm_source=news" in url and "utm_medium=email" in url  # account field over default, default field kept


def test_rewrite_message_and_text_take_the_account_too() -> None:
    raw = b"To: a@x\r\nSubject: s\r\nMessage-ID: <m@x>\r\nContent-Type: text/html\r\n\r\n" + HTML.encode()
    out = tracker().rewrite_message(raw, account="sub1").message
    assert b"/o/" not in out and b"/c/" in out
    text = tracker().rewrite_text("see https://example.com/x", message_id="m", account="sub1",
                                  settings={"click_tracking": {"enable_text": True}})
    assert "utm_source=news" in text.links[0].url


def test_mistakes_are_errors_not_silent_defaults() -> None:
    with pytest.raises(ConfigurationError, match="account_settings="):
        Tracker(["k"], "https://t.example.com").rewrite_html(HTML, message_id="m", account="sub1")
    with pytest.raises(KeyError):  # whatever the source raises for an unknown account goes through
        tracker().rewrite_html(HTML, message_id="m", account="nobody")
    with pytest.raises(SettingsError, match="open.enabled"):
        tracker().rewrite_html(HTML, message_id="m", account="bad")
    with pytest.raises(ConfigurationError):
        Tracker(["k"], "https://t.example.com", account_settings="not callable")  # type: ignore[arg-type]
