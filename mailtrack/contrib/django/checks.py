"""System checks for ``manage.py check``: the ``MAILTRACK`` setting and the routing of the tracking URLs.

Registered by :class:`~mailtrack.contrib.django.apps.MailtrackConfig`. Ids:

* ``mailtrack.E001`` no ``MAILTRACK`` setting (or not a dict);
* ``mailtrack.E002`` no ``BASE_URL`` in it;
* ``mailtrack.E003`` the tracking backend would wrap itself: ``MAILTRACK["BACKEND"]``, or a tracking
  mailer's ``OPTIONS["mailer"]``, names the tracking backend or that very mailer;
* ``mailtrack.E004`` any other invalid setting, with :func:`~mailtrack.contrib.django.conf.load`'s message
  (for a tracking mailer, its other ``OPTIONS`` too);
* ``mailtrack.E005`` ``BASE_URL``'s path does not resolve to the tracking view;
* ``mailtrack.E006`` a tracking mailer's ``OPTIONS`` do not name the ``mailer`` that sends;
* ``mailtrack.E007`` a tracking mailer's ``OPTIONS["mailer"]`` is not an alias in ``MAILERS``;
* ``mailtrack.E008`` ``MAILTRACK["BACKEND"]`` is set while ``MAILERS`` is in use (it would be ignored);
* ``mailtrack.W001`` ``ROOT_URLCONF`` cannot be imported, so the routing could not be checked.

E006-E008 and the mailer form of E003 concern Django 6.1+ with ``MAILERS``
defined: a tracking mailer is an entry whose ``BACKEND`` is the tracking backend.

The routing check resolves ``<BASE_URL path>/o/x`` (the shape of a pixel
URL), which is what a mail client will request, less ``FORCE_SCRIPT_NAME``
(the part of the path Django's URLconf does not see).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from mailtrack.contrib.django.conf import is_tracking_backend, load, mailer_problem, mailers_in_use
from mailtrack.exceptions import ConfigurationError

__all__ = ["check_settings", "check_urls"]

_APP = "mailtrack.contrib.django"
_EXAMPLE = "MAILTRACK = {'BACKEND': 'django.core.mail.backends.smtp.EmailBackend', 'BASE_URL': 'https://example.com/t'}"
_MAILERS_HINT = ("e.g. MAILERS = {'default': {'BACKEND': 'mailtrack.contrib.django.TrackingEmailBackend', "
                 "'OPTIONS': {'mailer': 'smtp'}}, 'smtp': {'BACKEND': 'django.core.mail.backends.smtp.EmailBackend', "
                 "'OPTIONS': {'host': ...}}}")


def _raw() -> Any:
    return getattr(settings, "MAILTRACK", None)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001-E004, E006-E008: ``settings.MAILTRACK`` exists, has ``BASE_URL``, wraps a real backend (or each
    tracking mailer names a real mailer) and passes ``conf.load``."""
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
    if mailers_in_use():
        return _check_mailers(raw)
    backend = raw.get("BACKEND")
    if is_tracking_backend(backend):
        return [Error(f"MAILTRACK['BACKEND'] is the tracking backend itself ({backend!r})",
                      hint="Set EMAIL_BACKEND to 'mailtrack.contrib.django.TrackingEmailBackend' and "
                           "MAILTRACK['BACKEND'] to the backend that really sends, e.g. "
                           "'django.core.mail.backends.smtp.EmailBackend'.",
                      id="mailtrack.E003")]
    return _check_load()


def _check_load(options: Mapping[str, Any] | None = None, alias: str | None = None) -> list[CheckMessage]:
    try:
        load(options, alias=alias)
    except ConfigurationError as exc:
        message = f"settings.MAILTRACK is invalid: {exc}" if alias is None else str(exc)
        return [Error(message, hint="Fix the setting named in the message.", id="mailtrack.E004")]
    return []


def _check_mailers(raw: Mapping[str, Any]) -> list[CheckMessage]:
    """E008, then E006/E007/E003/E004 for each ``MAILERS`` entry whose ``BACKEND`` is the tracking backend."""
    if "BACKEND" in raw:
        return [Error("MAILTRACK['BACKEND'] is set, but MAILERS is in use and it would be ignored",
                      hint="Remove MAILTRACK['BACKEND']: the tracking mailer's OPTIONS['mailer'] names the mailer "
                           f"that sends, {_MAILERS_HINT}.", id="mailtrack.E008")]
    found = _check_load()
    if found:
        return found
    mailers = settings.MAILERS if isinstance(settings.MAILERS, Mapping) else {}
    for alias, entry in mailers.items():
        if not isinstance(entry, Mapping) or not is_tracking_backend(entry.get("BACKEND")):
            continue
        options = entry.get("OPTIONS") or {}
        options = options if isinstance(options, Mapping) else {}
        others = ", ".join(repr(name) for name in mailers if name != alias) or "none"
        hints = {
            "missing": ("mailtrack.E006", f"Add OPTIONS {{'mailer': <the alias of the mailer that sends>}}, {_MAILERS_HINT}."),
            "unknown": ("mailtrack.E007", f"Name another entry of MAILERS (there are: {others}), or add the mailer "
                                          "that sends under that alias."),
            "loop": ("mailtrack.E003", "Name a mailer whose BACKEND really sends, e.g. the SMTP backend: each "
                                       "message is tracked once."),
        }
        problem = mailer_problem(alias, options.get("mailer"))
        if problem is not None:
            check_id, hint = hints[problem[0]]
            found.append(Error(problem[1], hint=hint, id=check_id))
        else:
            found += _check_load({name: value for name, value in options.items() if name != "mailer"}, alias)
    return found


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
    # Under FORCE_SCRIPT_NAME the URLconf sees the path below it (the view still matches the full path).
    script = str(getattr(settings, "FORCE_SCRIPT_NAME", None) or "").rstrip("/")
    if script and base_path.startswith(script + "/"):
        base_path = base_path[len(script):]
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
