"""Tracking settings in SendGrid's shapes.

:class:`TrackingSettings` is immutable and validated on construction. It holds
the four parts of mail/send's ``tracking_settings`` (``click_tracking``,
``open_tracking``, ``subscription_tracking``, ``ganalytics``) and loads and
writes two shapes:

* the **message** shape of mail/send (``{"click_tracking": {"enable": ...}}``),
  plus the per-message shorthand ``{"open": bool, "click": bool}``;
* the **account** shape of the v3 tracking-settings API (``{"click": {"enabled":
  ...}}``, ``subscription.html_content``, ``google_analytics`` ...), with
  :meth:`TrackingSettings.patch` answering like ``PATCH /v3/tracking_settings/{x}``.

Precedence is defaults < account < message: :meth:`TrackingSettings.merged`
lays a message's settings over an account's, field by field, so a message that
says nothing about a field keeps the account's value. Every wrong type, unknown
key or bad value raises :class:`~mailtrack.SettingsError` naming the field path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Union

from mailtrack.exceptions import SettingsError

__all__ = [
    "ClickTracking",
    "GoogleAnalytics",
    "OpenTracking",
    "SettingsInput",
    "SubscriptionTracking",
    "TrackingSettings",
    "UTM_FIELDS",
]


class _Section:
    """Shared behaviour of the four parts: validation and the two dict shapes.

    Each part names its keys in both shapes: ``MESSAGE`` and ``ACCOUNT`` map a
    field to its key there (a field missing from a map does not exist in that
    shape). Fields are booleans (listed in ``BOOLEANS``) or optional strings.
    """

    MESSAGE_KEY: ClassVar[str]
    ACCOUNT_KEY: ClassVar[str]
    MESSAGE: ClassVar[dict[str, str]]
    ACCOUNT: ClassVar[dict[str, str]]
    BOOLEANS: ClassVar[frozenset[str]] = frozenset({"enable"})

    def __post_init__(self) -> None:
        for item in fields(self):  # type: ignore[arg-type]
            self._check(item.name, getattr(self, item.name), f"{self.MESSAGE_KEY}.{self.MESSAGE.get(item.name, item.name)}")

    @classmethod
    def _check(cls, name: str, value: object, where: str) -> None:
        """The one type check of a field value: a boolean for ``BOOLEANS``, else a string or None."""
        if name in cls.BOOLEANS:
            if not isinstance(value, bool):
                raise SettingsError(where, "must be a boolean")
        elif value is not None and not isinstance(value, str):
            raise SettingsError(where, "must be a string")
        elif isinstance(value, str) and not _encodable(value):  # a lone surrogate: no bytes write it (pages, URLs)
            raise SettingsError(where, "must be text that UTF-8 can encode (it holds a lone surrogate)")

    @classmethod
    def _values(cls, data: Any, path: str, keys: dict[str, str]) -> dict[str, Any]:
        """Field values found in ``data`` (a dict in the shape ``keys`` describes), checked."""
        if not isinstance(data, Mapping):
            raise SettingsError(path, f"must be an object, not {type(data).__name__}")
        by_key = {key: name for name, key in keys.items()}
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = by_key.get(key)
            if name is None:
                raise SettingsError(f"{path}.{key}", f"is not a known setting (expected one of: {', '.join(keys.values())})")
            cls._check(name, value, f"{path}.{key}")
            values[name] = value
        return values

    def _dump(self, keys: dict[str, str]) -> dict[str, Any]:
        return {key: getattr(self, name) for name, key in keys.items() if getattr(self, name) is not None}


@dataclass(frozen=True)
class ClickTracking(_Section):
    """``click_tracking``: rewrite links into signed click URLs (``enable_text``: in plain-text parts too)."""

    enable: bool = True
    enable_text: bool = False

    MESSAGE_KEY = "click_tracking"
    ACCOUNT_KEY = "click"
    MESSAGE = {"enable": "enable", "enable_text": "enable_text"}
    ACCOUNT = {"enable": "enabled", "enable_text": "enable_text"}
    BOOLEANS = frozenset({"enable", "enable_text"})


@dataclass(frozen=True)
class OpenTracking(_Section):
    """``open_tracking``: add a 1x1 pixel, or put it where ``substitution_tag`` stands."""

    enable: bool = True
    substitution_tag: str | None = None

    MESSAGE_KEY = "open_tracking"
    ACCOUNT_KEY = "open"
    MESSAGE = {"enable": "enable", "substitution_tag": "substitution_tag"}
    ACCOUNT = {"enable": "enabled"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.substitution_tag is not None and not self.substitution_tag.strip():
            raise SettingsError("open_tracking.substitution_tag", "must be a non-empty string")


@dataclass(frozen=True)
class SubscriptionTracking(_Section):
    """``subscription_tracking``: an unsubscribe footer (``text``/``html``) or a tag replaced by the URL.

    ``url`` and ``landing`` exist in the account shape only (SendGrid's
    ``url`` and ``landing`` page); ``substitution_tag`` is the account's ``replace``.
    """

    enable: bool = False
    text: str | None = None
    html: str | None = None
    substitution_tag: str | None = None
    url: str | None = None
    landing: str | None = None

    MESSAGE_KEY = "subscription_tracking"
    ACCOUNT_KEY = "subscription"
    MESSAGE = {"enable": "enable", "text": "text", "html": "html", "substitution_tag": "substitution_tag"}
    ACCOUNT = {
        "enable": "enabled",
        "html": "html_content",
        "text": "plain_content",
        "substitution_tag": "replace",
        "url": "url",
        "landing": "landing",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.substitution_tag and not self.substitution_tag.strip():
            raise SettingsError("subscription_tracking.substitution_tag", "must not be blank")


#: Google Analytics' campaign parameters, in SendGrid's order: the one list every shape and the signer use.
UTM_FIELDS = ("utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign")


@dataclass(frozen=True)
class GoogleAnalytics(_Section):
    """``ganalytics``: add these ``utm_*`` parameters to tracked destinations."""

    enable: bool = False
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    utm_campaign: str | None = None

    MESSAGE_KEY = "ganalytics"
    ACCOUNT_KEY = "google_analytics"
    MESSAGE = {"enable": "enable", **{name: name for name in UTM_FIELDS}}
    ACCOUNT = {**MESSAGE, "enable": "enabled"}

    def parameters(self) -> tuple[tuple[str, str], ...]:
        """The ``utm_*`` parameters to add to tracked destinations: the set ones, none when disabled."""
        if not self.enable:
            return ()
        return tuple((name, value) for name in UTM_FIELDS if (value := getattr(self, name)))


_PARTS: dict[str, type[_Section]] = {
    "click_tracking": ClickTracking,
    "open_tracking": OpenTracking,
    "subscription_tracking": SubscriptionTracking,
    "ganalytics": GoogleAnalytics,
}
_BY_ACCOUNT_KEY = {part.ACCOUNT_KEY: attribute for attribute, part in _PARTS.items()}
# What each PATCH /v3/tracking_settings/{x} request body may hold (click and open: only "enabled").
_PATCHABLE = {"click": {"enable": "enabled"}, "open": {"enable": "enabled"}}


@dataclass(frozen=True)
class TrackingSettings:
    """What to track in one message (or, loaded from the account shape, by default)."""

    click_tracking: ClickTracking = field(default_factory=ClickTracking)
    open_tracking: OpenTracking = field(default_factory=OpenTracking)
    subscription_tracking: SubscriptionTracking = field(default_factory=SubscriptionTracking)
    ganalytics: GoogleAnalytics = field(default_factory=GoogleAnalytics)

    def __post_init__(self) -> None:
        for attribute, part in _PARTS.items():
            value = getattr(self, attribute)
            if not isinstance(value, part):
                raise SettingsError(attribute, f"must be a {part.__name__}, not {type(value).__name__}")
        tag = self.open_tracking.substitution_tag
        if tag and tag == self.subscription_tracking.substitution_tag:
            raise SettingsError(
                "subscription_tracking.substitution_tag", "must differ from open_tracking.substitution_tag (one place each)"
            )

    # -- the message shape (mail/send tracking_settings) ---------------------------
    @classmethod
    def from_dict(cls, data: SettingsInput) -> TrackingSettings:
        """Load SendGrid's mail/send ``tracking_settings`` (or any ``settings=`` value); missing fields take the defaults.

        Also accepts None, a :class:`TrackingSettings` and the shorthand
        ``{"open": bool, "click": bool}``: what every ``settings=`` argument takes.
        """
        return DEFAULT_SETTINGS.merged(data)

    #: The same as :meth:`from_dict` (the name the rest of the code used first).
    coerce = from_dict

    def to_dict(self) -> dict[str, Any]:
        """The mail/send ``tracking_settings`` object, every part (fields that are None are left out).

        ``from_dict(s.to_dict()) == s`` always; a complete dict also comes back equal.
        """
        return {attribute: getattr(self, attribute)._dump(part.MESSAGE) for attribute, part in _PARTS.items()}

    # -- the account shape (v3 tracking settings API) ------------------------------
    @classmethod
    def from_account(cls, data: Mapping[str, Any]) -> TrackingSettings:
        """Load account settings in the v3 API shapes (``open``, ``click``, ``subscription``, ``google_analytics``)."""
        return DEFAULT_SETTINGS._overlay(data, "", account=True)

    def with_account(self, data: Mapping[str, Any] | None) -> TrackingSettings:
        """These settings with an account's stored fields (v3 account shape, any subset) laid over them.

        ``None`` or ``{}`` changes nothing. This is the middle step of
        defaults < account < message: a field the account never set keeps
        this object's value.
        """
        return self if not data else self._overlay(data, "", account=True)

    def to_account_dict(self) -> dict[str, Any]:
        """The account settings in the v3 API shapes, one object per endpoint."""
        return {part.ACCOUNT_KEY: getattr(self, attribute)._dump(part.ACCOUNT) for attribute, part in _PARTS.items()}

    def patch(
        self, section: str, body: Mapping[str, Any], *, every_field: bool = False
    ) -> tuple[TrackingSettings, dict[str, Any]]:
        """Apply ``PATCH /v3/tracking_settings/{section}`` with ``body``.

        Returns the new settings and the endpoint's response body (the whole
        section after the change), as SendGrid answers. v3's PATCH of ``click``
        and ``open`` takes only ``enabled``; ``every_field=True`` accepts every
        account field of the section (v2's ``customer.apps`` ``setup`` sets
        ``click.enable_text``, which only v3's GET shows).
        """
        attribute = _BY_ACCOUNT_KEY.get(section) if isinstance(section, str) else None
        if attribute is None:
            raise SettingsError(section, f"is not a tracking setting (expected one of: {', '.join(_BY_ACCOUNT_KEY)})")
        part = _PARTS[attribute]
        keys = part.ACCOUNT if every_field else _PATCHABLE.get(section, part.ACCOUNT)
        values = part._values(body, section, keys)
        if values.get("url"):  # subscription.url: SendGrid's schema says format "uri"; "" or None unsets it
            _check_web_uri(values["url"], f"{section}.url")
        updated = replace(self, **{attribute: replace(getattr(self, attribute), **values)})
        return updated, getattr(updated, attribute)._dump(part.ACCOUNT)

    # -- precedence ----------------------------------------------------------------
    def merged(self, overrides: SettingsInput) -> TrackingSettings:
        """These settings with a message's ``overrides`` laid over them, field by field.

        ``overrides`` may be None (no change), a :class:`TrackingSettings` (taken
        whole: an object states every field, so nothing of ``self`` remains), a
        mail/send ``tracking_settings`` dict (only the fields it names change), or
        the shorthand ``{"open": bool, "click": bool}``.
        """
        if overrides is None:
            return self
        if isinstance(overrides, TrackingSettings):
            return overrides
        if not isinstance(overrides, Mapping):
            raise SettingsError(
                "settings", f"must be a TrackingSettings, a dict or None, not {type(overrides).__name__}"
            )
        if overrides and set(overrides) <= {"open", "click"}:
            return self._shorthand(overrides)
        if {"open", "click"} & set(overrides) and set(overrides) & set(_PARTS):
            raise SettingsError("settings", "mixes the shorthand (open, click) with tracking_settings keys; use one shape")
        return self._overlay(overrides, "", account=False)

    def _shorthand(self, data: Mapping[str, Any]) -> TrackingSettings:
        changes = {}
        for key, attribute in (("open", "open_tracking"), ("click", "click_tracking")):
            if key in data:
                if not isinstance(data[key], bool):
                    raise SettingsError(
                        key, "must be a boolean (per-message shorthand; load account settings with from_account)"
                    )
                changes[attribute] = replace(getattr(self, attribute), enable=data[key])
        return replace(self, **changes)

    def _overlay(self, data: Any, path: str, *, account: bool) -> TrackingSettings:
        if not isinstance(data, Mapping):
            raise SettingsError(path or "settings", f"must be an object, not {type(data).__name__}")
        keys = {(part.ACCOUNT_KEY if account else attribute): attribute for attribute, part in _PARTS.items()}
        changes = {}
        for key, value in data.items():
            attribute = keys.get(key)
            if attribute is None:
                raise SettingsError(str(key), f"is not a known setting (expected one of: {', '.join(keys)})")
            part = _PARTS[attribute]
            values = part._values(value, key, part.ACCOUNT if account else part.MESSAGE)
            changes[attribute] = replace(getattr(self, attribute), **values)
        return replace(self, **changes)


#: An absolute http(s) URI in RFC 3986's characters (no spaces, no raw non-ASCII, escapes well formed).
_WEB_URI = re.compile(r"(?i:https?)://[A-Za-z0-9\-._~%!$&'()*+,;=:@\[\]]+(?:[/?#][A-Za-z0-9\-._~%!$&'()*+,;=:@/?#\[\]]*)?")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _check_web_uri(value: str, where: str) -> None:
    """Refuse a ``url`` that is not an absolute http(s) URI (written as SendGrid's ``format: uri`` demands)."""
    if not _WEB_URI.fullmatch(value) or _BAD_ESCAPE.search(value):
        raise SettingsError(where, "must be an absolute http(s) URI (RFC 3986: percent-encode spaces and non-ASCII)"
                                   ", or \"\" to unset it")


DEFAULT_SETTINGS = TrackingSettings()
#: What every ``settings=`` argument accepts.
SettingsInput = Union[TrackingSettings, Mapping[str, Any], None]  # noqa: UP007 - a runtime alias; `|` needs 3.10 types


def _encodable(text: str) -> bool:
    """Whether ``text`` has UTF-8 bytes (no lone surrogate): what every page, URL and header it ends up in needs."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
