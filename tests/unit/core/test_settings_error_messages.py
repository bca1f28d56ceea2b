"""Settings errors, word for word: the field path, what was expected, and what was given.

A SendGrid-style settings error is read by whoever wrote the JSON, so its
``path`` and message are the interface. Written against mutation testing
(``python3 tasks.py mutate``); the messages are compared whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import mailtrack
from mailtrack import SettingsError, TrackingSettings

PARTS = "click_tracking, open_tracking, subscription_tracking, ganalytics"


@pytest.mark.parametrize(
    "call, path, message",
    [
        (lambda: TrackingSettings.from_account("x"), "settings", "settings must be an object, not str"),
        (lambda: TrackingSettings.from_account([("click", {})]), "settings", "settings must be an object, not list"),
        (lambda: TrackingSettings().patch("nope", {}), "nope",
         "nope is not a tracking setting (expected one of: click, open, subscription, google_analytics)"),
        (lambda: TrackingSettings().patch("open", ["enabled"]), "open", "open must be an object, not list"),
        (lambda: TrackingSettings.from_dict({"click_tracking": {"x": 1}}), "click_tracking.x",
         "click_tracking.x is not a known setting (expected one of: enable, enable_text)"),
        (lambda: TrackingSettings.from_dict({"bogus": 1}), "bogus", f"bogus is not a known setting (expected one of: {PARTS})"),
        (lambda: TrackingSettings.from_account({"bogus": 1}), "bogus",
         "bogus is not a known setting (expected one of: click, open, subscription, google_analytics)"),
        (lambda: TrackingSettings.coerce(5), "settings", "settings must be a TrackingSettings, a dict or None, not int"),
        (lambda: TrackingSettings(click_tracking={"enable": True}), "click_tracking",  # type: ignore[arg-type]
         "click_tracking must be a ClickTracking, not dict"),
        # account-only fields are named by their own name
        (lambda: mailtrack.SubscriptionTracking(url=5), "subscription_tracking.url",  # type: ignore[arg-type]
         "subscription_tracking.url must be a string"),
        (lambda: mailtrack.SubscriptionTracking(landing=b"x"), "subscription_tracking.landing",  # type: ignore[arg-type]
         "subscription_tracking.landing must be a string"),
        (lambda: mailtrack.SubscriptionTracking(substitution_tag=" \t"), "subscription_tracking.substitution_tag",
         "subscription_tracking.substitution_tag must not be blank"),
        (lambda: TrackingSettings.from_dict({"open_tracking": {"substitution_tag": "[x]"},
                                             "subscription_tracking": {"substitution_tag": "[x]"}}),
         "subscription_tracking.substitution_tag",
         "subscription_tracking.substitution_tag must differ from open_tracking.substitution_tag (one place each)"),
    ],
)
def test_settings_errors_name_the_field_and_say_what_was_wrong(call: Callable[[], Any], path: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        call()
    assert (info.value.path, str(info.value)) == (path, message)


def test_shorthand_may_name_open_and_click_together() -> None:
    settings = TrackingSettings().merged({"open": False, "click": False})
    assert (settings.open_tracking.enable, settings.click_tracking.enable) == (False, False)


@pytest.mark.parametrize("shorthand", ["open", "click"])
def test_shorthand_mixed_with_tracking_settings_keys_is_refused(shorthand: str) -> None:
    with pytest.raises(SettingsError) as info:
        TrackingSettings().merged({shorthand: True, "ganalytics": {"enable": True}})
    assert (info.value.path, str(info.value)) == (
        "settings", "settings mixes the shorthand (open, click) with tracking_settings keys; use one shape")


def test_shorthand_key_next_to_an_unknown_key_is_an_unknown_setting() -> None:
    """Not a mix of two shapes: the unknown key is named (the shorthand key is unknown to the full shape)."""
    with pytest.raises(SettingsError) as info:
        TrackingSettings().merged({"open": True, "bogus": 1})
    assert str(info.value) == f"open is not a known setting (expected one of: {PARTS})"
