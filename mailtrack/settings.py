"""Tracking settings in the shape of SendGrid's mail/send ``tracking_settings``.

:class:`TrackingSettings` is immutable and validated on construction. It accepts
the object itself, SendGrid's ``tracking_settings`` dict, or None (defaults:
open tracking on, click tracking on). This version supports click and open
tracking; ``subscription_tracking`` and ``ganalytics`` are recognised and
accepted while disabled, and refused with a clear error when enabled, because
silently ignoring a feature a caller switched on would lose data.
``click_tracking.enable_text`` is kept for plain-text parts, which HTML
rewriting does not touch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from .exc import SettingsError

__all__ = ["ClickTracking", "OpenTracking", "TrackingSettings", "SettingsInput"]


def _check_keys(value: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SettingsError(path, f"must be an object, not {type(value).__name__}")
    for key in value:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise SettingsError(where, f"is not a known setting (expected one of: {', '.join(allowed)})")
    return value


def _bool(section: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise SettingsError(f"{path}.{key}", "must be a boolean")
    return value


@dataclass(frozen=True)
class ClickTracking:
    """``click_tracking``: rewrite links into signed click URLs."""

    enable: bool = True
    enable_text: bool = False

    def __post_init__(self) -> None:
        for name in ("enable", "enable_text"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(f"click_tracking.{name}", "must be a boolean")


@dataclass(frozen=True)
class OpenTracking:
    """``open_tracking``: add a 1x1 pixel, or put it where ``substitution_tag`` stands."""

    enable: bool = True
    substitution_tag: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.enable, bool):
            raise SettingsError("open_tracking.enable", "must be a boolean")
        tag = self.substitution_tag
        if tag is not None and (not isinstance(tag, str) or not tag.strip()):
            raise SettingsError("open_tracking.substitution_tag", "must be a non-empty string")


_SECTIONS = ("click_tracking", "open_tracking", "subscription_tracking", "ganalytics")
_NOT_YET = {
    "subscription_tracking": ("enable", "text", "html", "substitution_tag"),
    "ganalytics": ("enable", "utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign"),
}


@dataclass(frozen=True)
class TrackingSettings:
    """What to track in one message."""

    click_tracking: ClickTracking = field(default_factory=ClickTracking)
    open_tracking: OpenTracking = field(default_factory=OpenTracking)

    def __post_init__(self) -> None:
        if not isinstance(self.click_tracking, ClickTracking):
            raise SettingsError("click_tracking", f"must be a ClickTracking, not {type(self.click_tracking).__name__}")
        if not isinstance(self.open_tracking, OpenTracking):
            raise SettingsError("open_tracking", f"must be an OpenTracking, not {type(self.open_tracking).__name__}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackingSettings:
        """Load SendGrid's ``tracking_settings`` object; missing fields take defaults."""
        _check_keys(data, "", _SECTIONS)
        click = _check_keys(data.get("click_tracking", {}), "click_tracking", ("enable", "enable_text"))
        opened = _check_keys(data.get("open_tracking", {}), "open_tracking", ("enable", "substitution_tag"))
        for section, keys in _NOT_YET.items():
            if section in data:
                values = _check_keys(data[section], section, keys)
                if _bool(values, "enable", section, False):
                    raise SettingsError(f"{section}.enable", "is not supported by this version of mailtrack")
        tag = opened.get("substitution_tag")
        if tag is not None and not isinstance(tag, str):
            raise SettingsError("open_tracking.substitution_tag", "must be a string")
        return cls(
            ClickTracking(_bool(click, "enable", "click_tracking", True), _bool(click, "enable_text", "click_tracking", False)),
            OpenTracking(_bool(opened, "enable", "open_tracking", True), tag),
        )

    def to_dict(self) -> dict[str, Any]:
        """The SendGrid ``tracking_settings`` object for these settings."""
        opened: dict[str, Any] = {"enable": self.open_tracking.enable}
        if self.open_tracking.substitution_tag is not None:
            opened["substitution_tag"] = self.open_tracking.substitution_tag
        return {
            "click_tracking": {"enable": self.click_tracking.enable, "enable_text": self.click_tracking.enable_text},
            "open_tracking": opened,
        }

    @classmethod
    def coerce(cls, value: SettingsInput) -> TrackingSettings:
        """Accept None, a :class:`TrackingSettings` or a ``tracking_settings`` dict."""
        if value is None:
            return DEFAULT_SETTINGS
        if isinstance(value, TrackingSettings):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raise SettingsError("settings", f"must be a TrackingSettings, a dict or None, not {type(value).__name__}")


DEFAULT_SETTINGS = TrackingSettings()
#: What every ``settings=`` argument accepts.
SettingsInput = Union[TrackingSettings, Mapping[str, Any], None]
