"""System checks for ``manage.py check``: the ``MAILTRACK`` setting and the routing of the tracking URLs.

Registered by :class:`~mailtrack.contrib.django.apps.MailtrackConfig`. Ids:

* ``mailtrack.E001`` no ``MAILTRACK`` setting (or not a dict);
* ``mailtrack.E002`` no ``BASE_URL`` in it;
* ``mailtrack.E003`` ``BACKEND`` is the tracking backend itself (it would wrap itself);
* ``mailtrack.E004`` any other invalid setting, with :func:`~mailtrack.contrib.django.conf.load`'s message;
* ``mailtrack.E005`` ``BASE_URL``'s path does not resolve to the tracking view;
* ``mailtrack.W001`` ``ROOT_URLCONF`` cannot be imported, so the routing could not be checked.

The routing check resolves ``<BASE_URL path>/o/x`` (the shape of a pixel
URL), which is what a mail client will request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from mailtrack.exceptions import ConfigurationError

__all__ = ["check_settings", "check_urls"]

_APP = "mailtrack.contrib.django"
_OURS = "mailtrack.contrib.django"
_EXAMPLE = "MAILTRACK = {'BACKEND': 'django.core.mail.backends.smtp.EmailBackend', 'BASE_URL': 'https://example.com/t'}"


def _raw() -> Any:
    return getattr(settings, "MAILTRACK", None)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001-E004: ``settings.MAILTRACK`` exists, has ``BASE_URL``, wraps a real backend and passes ``conf.load``."""
    if not apps.is_installed(_APP):
        return []
    raw = _raw()
    if not isinstance(raw, Mapping):
        return [Error("settings.MAILTRACK is missing" if raw is None else "settings.MAILTRACK must be a dict",
                      hint=f"Add it to your settings, e.g. {_EXAMPLE}", id="mailtrack.E001")]
    if not raw.get("BASE_URL"):
        return [Error("settings.MAILTRACK has no BASE_URL",
                      hint="Set MAILTRACK['BASE_URL'] to the public URL the tracking URLs are served under, e.g. "
                           "'https://example.com/t', and include mailtrack.contrib.django.urls at that path.",
                      id="mailtrack.E002")]
    backend = raw.get("BACKEND")
    if isinstance(backend, str) and backend.startswith(_OURS):
        return [Error(f"MAILTRACK['BACKEND'] is the tracking backend itself ({backend!r})",
                      hint="Set EMAIL_BACKEND to 'mailtrack.contrib.django.TrackingEmailBackend' and "
                           "MAILTRACK['BACKEND'] to the backend that really sends, e.g. "
                           "'django.core.mail.backends.smtp.EmailBackend'.",
                      id="mailtrack.E003")]
    from mailtrack.contrib.django.conf import load

    try:
        load()
    except ConfigurationError as exc:
        return [Error(f"settings.MAILTRACK is invalid: {exc}", hint="Fix the setting named in the message.",
                      id="mailtrack.E004")]
    return []


def check_urls(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E005/W001: a pixel URL under ``BASE_URL``'s path resolves to the tracking view."""
    if not apps.is_installed(_APP):
        return []
    raw = _raw()
    base_url = raw.get("BASE_URL") if isinstance(raw, Mapping) else None
    if not isinstance(base_url, str) or not base_url:
        return []  # check_settings reports it
    from django.urls import Resolver404, get_resolver, resolve

    from mailtrack.contrib.django.views import TrackingView

    base_path = urlsplit(base_url).path.rstrip("/")
    probe = f"{base_path}/o/x"
    try:
        get_resolver().url_patterns  # noqa: B018 - imports ROOT_URLCONF, which may fail
    except Exception as exc:  # ImportError, AttributeError (no ROOT_URLCONF), errors in the URLconf itself
        return [Warning(f"could not check that {probe!r} reaches the tracking view: ROOT_URLCONF cannot be "
                        f"imported ({type(exc).__name__}: {exc})", hint="Fix ROOT_URLCONF, then run the checks again.",
                        id="mailtrack.W001")]
    hint = (f"Route the tracking URLs at BASE_URL's path: path({base_path.lstrip('/') + '/'!r}, "
            f"include('mailtrack.contrib.django.urls')) in your URLconf, or change MAILTRACK['BASE_URL'].")
    try:
        match = resolve(probe)
    except Resolver404:
        return [Error(f"MAILTRACK['BASE_URL'] path {base_path or '/'!r} is not routed: {probe!r} resolves to no view",
                      hint=hint, id="mailtrack.E005")]
    view_class = getattr(match.func, "view_class", None)
    if not (isinstance(view_class, type) and issubclass(view_class, TrackingView)):
        return [Error(f"MAILTRACK['BASE_URL'] path {base_path or '/'!r} is routed to another view: {probe!r} "
                      f"resolves to {match._func_path}", hint=hint, id="mailtrack.E005")]
    return []
