"""``settings.MAILTRACK`` read and checked once: every mistake is a :class:`ConfigurationError` up front.

The backend and the tracking views both build their :class:`~mailtrack.Tracker`
here, so a URL written at send time is one the views verify.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from mailtrack.core.tracker import Tracker
from mailtrack.exceptions import ConfigurationError, MailtrackError
from mailtrack.http.endpoints import check_max_age, trusted_networks

__all__ = ["DEFAULT_BACKEND", "MailtrackSettings", "load"]

DEFAULT_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
_OURS = "mailtrack.contrib.django"
_KEYS = frozenset(
    {"BACKEND", "BASE_URL", "SECRET_KEYS", "TRACKING_SETTINGS", "SPLIT_RECIPIENTS", "FAIL_SILENTLY_TRACKING", "DB",
     "TRUSTED_PROXIES", "MAX_AGE"}
)


@dataclass(frozen=True)
class MailtrackSettings:
    """The checked ``MAILTRACK`` setting."""

    tracker: Tracker
    backend: str
    split_recipients: bool
    fail_silently_tracking: bool
    db: str | None
    trusted_proxies: tuple[str, ...]
    max_age: float | None


def _flag(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise ConfigurationError(f"MAILTRACK[{name!r}] must be True or False, not {value!r}")
    return value


def _secret_keys(raw: Mapping[str, Any]) -> list[str | bytes]:
    """``SECRET_KEYS``, or Django's ``SECRET_KEY_FALLBACKS`` (oldest first) then ``SECRET_KEY``: the last one signs."""
    keys = raw.get("SECRET_KEYS")
    if keys is None:
        try:
            fallbacks = list(getattr(settings, "SECRET_KEY_FALLBACKS", []) or [])
            keys = [*fallbacks, settings.SECRET_KEY]
        except ImproperlyConfigured as exc:
            raise ConfigurationError(f"MAILTRACK has no SECRET_KEYS and Django's SECRET_KEY is unusable: {exc}") from None
    if isinstance(keys, (str, bytes)) or not isinstance(keys, (list, tuple)):
        raise ConfigurationError("MAILTRACK['SECRET_KEYS'] must be a list of keys, oldest first (the last one signs)")
    if not keys or not all(isinstance(key, (str, bytes)) and key for key in keys):
        raise ConfigurationError("MAILTRACK['SECRET_KEYS'] must hold at least one key, each a non-empty str")
    return list(keys)


def load() -> MailtrackSettings:
    """Read ``settings.MAILTRACK`` now; raises :class:`ConfigurationError` naming what is wrong."""
    raw = getattr(settings, "MAILTRACK", None)
    if not isinstance(raw, Mapping):
        raise ConfigurationError("settings.MAILTRACK must be a dict with at least BASE_URL")
    unknown = sorted(str(key) for key in raw if key not in _KEYS)
    if unknown:
        raise ConfigurationError(f"settings.MAILTRACK has unknown keys: {', '.join(unknown)}")
    backend = raw.get("BACKEND", DEFAULT_BACKEND)
    if not isinstance(backend, str) or not backend or backend.startswith(_OURS):
        raise ConfigurationError(f"MAILTRACK['BACKEND'] must name the real email backend (a dotted path), not {backend!r}")
    base_url = raw.get("BASE_URL")
    if not isinstance(base_url, str) or not base_url:
        raise ConfigurationError("MAILTRACK['BASE_URL'] must be the public URL of the tracking views, e.g. "
                                 "'https://example.com/t'")
    db = raw.get("DB")
    if db is not None and (not isinstance(db, str) or not db):
        raise ConfigurationError(f"MAILTRACK['DB'] must be a file path, not {db!r}")
    proxies = raw.get("TRUSTED_PROXIES", ())
    if isinstance(proxies, str) or not isinstance(proxies, (list, tuple)):
        raise ConfigurationError("MAILTRACK['TRUSTED_PROXIES'] must be a list of addresses or networks")
    trusted_networks(proxies)
    max_age = check_max_age(raw.get("MAX_AGE"))
    try:
        tracker = Tracker(_secret_keys(raw), base_url, settings=raw.get("TRACKING_SETTINGS"))
    except ConfigurationError:
        raise
    except MailtrackError as exc:  # SettingsError for bad TRACKING_SETTINGS, ArgumentError for odd values
        raise ConfigurationError(f"settings.MAILTRACK: {exc}") from None
    return MailtrackSettings(
        tracker=tracker,
        backend=backend,
        split_recipients=_flag(raw, "SPLIT_RECIPIENTS", True),
        fail_silently_tracking=_flag(raw, "FAIL_SILENTLY_TRACKING", True),
        db=db,
        trusted_proxies=tuple(proxies),
        max_age=max_age,
    )
