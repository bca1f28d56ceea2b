"""``settings.MAILTRACK`` read and checked once: every mistake is a :class:`ConfigurationError` up front.

The backend and the tracking views both build their :class:`~mailtrack.Tracker`
here, so a URL written at send time is one the views verify. On Django 6.1+
a tracking mailer's ``OPTIONS`` (:data:`MAILER_OPTIONS`) may set the sending
keys for its own messages, and :func:`wrapped_mailer` checks the mailer it
names; the keys and ``BASE_URL`` stay in ``MAILTRACK``, which the views read.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from mailtrack.core.tokens import TOKEN_FORMATS
from mailtrack.core.tracker import Tracker
from mailtrack.delivery.privacy import Privacy
from mailtrack.exceptions import ConfigurationError, MailtrackError, SettingsError
from mailtrack.http.endpoints import check_max_age, trusted_networks
from mailtrack.machine import Classifier, classifier_for, default_classifier
from mailtrack.storage.settings_source import StoredSettings

__all__ = ["DEFAULT_BACKEND", "MAILER_OPTIONS", "MailtrackSettings", "is_tracking_backend", "load", "mailer_problem",
           "mailers_in_use", "wrapped_mailer"]

DEFAULT_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
#: What a tracking mailer's ``OPTIONS`` may set besides ``mailer``: the ``MAILTRACK`` key each one overrides for the
#: messages of that mailer (keyword arguments win over settings, as Django asks of a backend's options).
MAILER_OPTIONS = {"tracking_settings": "TRACKING_SETTINGS", "split_recipients": "SPLIT_RECIPIENTS",
                  "fail_silently_tracking": "FAIL_SILENTLY_TRACKING"}
_OURS = "mailtrack.contrib.django"
_KEYS = frozenset(
    {"BACKEND", "BASE_URL", "SECRET_KEYS", "TRACKING_SETTINGS", "SPLIT_RECIPIENTS", "FAIL_SILENTLY_TRACKING", "DB",
     "TRUSTED_PROXIES", "MAX_AGE", "ACCOUNT", "PRIVACY_IP", "PRIVACY_USER_AGENT", "MACHINE_RANGES", "HONEYPOT",
     "TOKEN_FORMAT"}
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
    privacy: Privacy = Privacy()
    classifier: Classifier | None = field(default_factory=default_classifier)  # MACHINE_RANGES (mailtrack.machine)


def is_tracking_backend(path: object) -> bool:
    """Whether the dotted ``path`` names a backend of this package (which must never be the one that sends)."""
    return isinstance(path, str) and path.startswith(_OURS)


def mailers_in_use() -> bool:
    """Whether Django builds backends from ``settings.MAILERS`` (Django 6.1+ with that setting defined)."""
    from django.core import mail

    return hasattr(mail, "mailers") and hasattr(settings, "MAILERS")


def mailer_problem(alias: str, mailer: object) -> tuple[str, str] | None:
    """What is wrong with ``mailer``, the ``OPTIONS["mailer"]`` of the tracking mailer ``MAILERS[alias]``, if anything.

    ``(kind, message)``, kind ``"missing"`` (not a name), ``"unknown"`` (not in
    ``MAILERS``) or ``"loop"`` (this mailer, or another tracking mailer:
    tracking twice would sign every link twice, and a mailer that wraps
    itself would never finish being built); None when it names a mailer that sends.
    """
    if not isinstance(mailer, str) or not mailer:
        return "missing", (f"MAILERS[{alias!r}]: OPTIONS must name the mailer that really sends, e.g. "
                           f"{{'mailer': 'smtp'}} with MAILERS['smtp'] the SMTP backend; not {mailer!r}")
    configured = getattr(settings, "MAILERS", None)
    if not isinstance(configured, Mapping) or mailer not in configured:
        return "unknown", f"MAILERS[{alias!r}]: OPTIONS['mailer'] is {mailer!r}, which is not in MAILERS"
    entry = configured[mailer]
    backend = entry.get("BACKEND", DEFAULT_BACKEND) if isinstance(entry, Mapping) else None
    if mailer == alias or is_tracking_backend(backend):
        what = "itself" if mailer == alias else f"another tracking mailer ({backend})"
        return "loop", (f"MAILERS[{alias!r}]: OPTIONS['mailer'] is {mailer!r}, {what}; it must name the mailer that "
                        "really sends")
    return None


def wrapped_mailer(alias: str, mailer: object) -> str:
    """``mailer`` once :func:`mailer_problem` finds nothing wrong with it; else :class:`ConfigurationError`."""
    problem = mailer_problem(alias, mailer)
    if problem is not None:
        raise ConfigurationError(problem[1])
    assert isinstance(mailer, str)  # mailer_problem said so
    return mailer


def _flag(raw: Mapping[str, Any], name: str, default: bool, label: str) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise ConfigurationError(f"{label} must be True or False, not {value!r}")
    return value


def _token_format(value: object) -> str:
    """``MAILTRACK["TOKEN_FORMAT"]``: "opaque" (the default: encrypted tokens) or "signed" (readable ones)."""
    if value not in TOKEN_FORMATS:
        raise ConfigurationError(f"MAILTRACK['TOKEN_FORMAT'] must be one of {', '.join(TOKEN_FORMATS)}, not {value!r}")
    return str(value)


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


_SOURCES: dict[str, StoredSettings] = {}
_SOURCES_LOCK = threading.Lock()


def _account_source(db: str, account: str) -> StoredSettings:
    """The stored-settings source for ``db`` (one store per file for the process), checked to hold ``account``."""
    from mailtrack.service import open_account_store

    with _SOURCES_LOCK:
        source = _SOURCES.get(db)
        if source is None:
            source = _SOURCES[db] = StoredSettings(open_account_store(db))
    if source.store.account(account) is None:
        raise ConfigurationError(f"MAILTRACK['ACCOUNT']: no account called {account!r} in {db!r} "
                                 f"(mailtrack subuser create {account} --db {db})")
    return source


def load(options: Mapping[str, Any] | None = None, *, alias: str | None = None) -> MailtrackSettings:
    """Read ``settings.MAILTRACK`` now; raises :class:`ConfigurationError` naming what is wrong.

    ``options`` (keys of :data:`MAILER_OPTIONS`) replace the ``MAILTRACK`` keys
    they name. ``alias`` is the ``MAILERS`` entry being built (Django 6.1+):
    there the wrapped mailer comes from ``OPTIONS["mailer"]``, so a
    ``MAILTRACK["BACKEND"]`` would be a second, unused answer and is refused.
    """
    raw = getattr(settings, "MAILTRACK", None)
    if not isinstance(raw, Mapping):
        raise ConfigurationError("settings.MAILTRACK must be a dict with at least BASE_URL")
    unknown = sorted(str(key) for key in raw if key not in _KEYS)
    if unknown:
        raise ConfigurationError(f"settings.MAILTRACK has unknown keys: {', '.join(unknown)}")
    where = f"MAILERS[{alias!r}]" if alias is not None else "the tracking backend"
    if alias is not None and "BACKEND" in raw:
        raise ConfigurationError(f"{where}: MAILTRACK['BACKEND'] is only for EMAIL_BACKEND; with MAILERS the tracking "
                                 "mailer's OPTIONS['mailer'] names the mailer that sends, so remove MAILTRACK['BACKEND']")
    options = dict(options or {})
    strange = sorted(str(name) for name in options if name not in MAILER_OPTIONS)
    if strange:
        raise ConfigurationError(f"{where}: unknown OPTIONS {', '.join(strange)}; a tracking mailer takes 'mailer' and "
                                 f"{', '.join(repr(name) for name in MAILER_OPTIONS)} (BASE_URL and the keys stay in "
                                 "settings.MAILTRACK, which the tracking views read too)")
    labels = {key: f"MAILTRACK[{key!r}]" for key in _KEYS}
    if options:
        raw = {**raw, **{MAILER_OPTIONS[name]: value for name, value in options.items()}}
        labels.update({MAILER_OPTIONS[name]: f"{where} OPTIONS[{name!r}]" if alias is not None
                       else f"TrackingEmailBackend({name}=...)" for name in options})
    backend = raw.get("BACKEND", DEFAULT_BACKEND)
    if not isinstance(backend, str) or not backend or is_tracking_backend(backend):
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
    try:  # privacy mode: what the events keep of the reader's address and user agent (mailtrack.delivery.privacy)
        privacy = Privacy(ip=raw.get("PRIVACY_IP", "full"), user_agent=raw.get("PRIVACY_USER_AGENT", "full"))
    except ConfigurationError as exc:
        raise ConfigurationError(f"MAILTRACK['PRIVACY_IP'] / MAILTRACK['PRIVACY_USER_AGENT']: {exc}") from None
    try:  # the machine-event classifier's ranges file (serve --machine-ranges), or "off"
        classifier = classifier_for(raw.get("MACHINE_RANGES"))
    except ConfigurationError as exc:
        raise ConfigurationError(f"MAILTRACK['MACHINE_RANGES']: {exc}") from None
    account = raw.get("ACCOUNT")
    source = None
    if account is not None:
        if not isinstance(account, str) or not account:
            raise ConfigurationError(f"MAILTRACK['ACCOUNT'] must name an account (the parent or a subuser), not {account!r}")
        if db is None:
            raise ConfigurationError("MAILTRACK['ACCOUNT'] needs MAILTRACK['DB']: the database holding its settings")
        source = _account_source(db, account)
    try:
        tracker = Tracker(_secret_keys(raw), base_url, settings=raw.get("TRACKING_SETTINGS"), account_settings=source,
                          account=account, honeypot=_flag(raw, "HONEYPOT", False, labels["HONEYPOT"]),
                          token_format=_token_format(raw.get("TOKEN_FORMAT", "opaque")))
    except ConfigurationError:
        raise
    except SettingsError as exc:  # a bad TRACKING_SETTINGS
        raise ConfigurationError(f"{labels['TRACKING_SETTINGS']}: {exc}") from None
    except MailtrackError as exc:  # ArgumentError for odd values
        raise ConfigurationError(f"settings.MAILTRACK: {exc}") from None
    return MailtrackSettings(
        tracker=tracker,
        backend=backend,
        split_recipients=_flag(raw, "SPLIT_RECIPIENTS", True, labels["SPLIT_RECIPIENTS"]),
        fail_silently_tracking=_flag(raw, "FAIL_SILENTLY_TRACKING", True, labels["FAIL_SILENTLY_TRACKING"]),
        db=db,
        trusted_proxies=tuple(proxies),
        max_age=max_age,
        privacy=privacy,
        classifier=classifier,
    )
