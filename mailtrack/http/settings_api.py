"""SendGrid's v3 tracking-settings endpoints, sans-IO: :class:`SettingsApi` answers a Request with a Response.

``GET /v3/tracking_settings`` lists the four settings (name, title,
description, enabled); ``GET`` and ``PATCH`` ``/v3/tracking_settings/{open,
click,subscription,google_analytics}`` read and change one, in the shapes of
SendGrid's OpenAPI document (string fields never set answer ``""``, as
SendGrid's examples show). PATCH is partial (absent fields keep their value),
atomic (one store transaction) and answers the section's whole new state.

Reads need the ``tracking_settings.read`` scope, PATCH
``tracking_settings.update`` (see :func:`mailtrack.http.auth.authorize`).
Every answer under ``/v3/`` is JSON: 400 for invalid JSON (duplicate keys,
``NaN``, numbers beyond a double and bodies that are not UTF-8 included), wrong
types and unknown fields (``field`` names the field), 415 for a body that is
not ``application/json``, 404 for an unknown path, 405 with ``Allow`` for a
wrong method, 413 for a body over
:data:`~mailtrack.http.messages.MAX_BODY`, 503 when the store is unavailable;
never a 500 or an HTML page.
"""

from __future__ import annotations

import json
import math
from typing import Any

from mailtrack.core.settings import (
    ClickTracking,
    GoogleAnalytics,
    OpenTracking,
    SubscriptionTracking,
    TrackingSettings,
)
from mailtrack.exceptions import SettingsError
from mailtrack.http.auth import authorize, error, json_response
from mailtrack.http.messages import MAX_BODY, Request, Response
from mailtrack.storage.base import AccountStore, StoreError

__all__ = ["PREFIX", "SettingsApi", "json_object", "section_body"]

PREFIX = "/v3/tracking_settings"
#: Each section: its part of TrackingSettings, the attribute, title and description the list shows.
_SECTIONS: dict[str, tuple[Any, str, str, str]] = {
    "click": (ClickTracking, "click_tracking", "Click Tracking",
              "Click tracking replaces every link with a tracked one, to count clicks."),
    "google_analytics": (GoogleAnalytics, "ganalytics", "Google Analytics",
                         "Google Analytics adds utm_* campaign parameters to every tracked link."),
    "open": (OpenTracking, "open_tracking", "Open Tracking",
             "Open tracking adds an invisible image to each HTML message, to count opens."),
    "subscription": (SubscriptionTracking, "subscription_tracking", "Subscription Tracking",
                     "Subscription tracking adds an unsubscribe link to every message."),
}


def section_body(settings: TrackingSettings, section: str) -> dict[str, Any]:
    """The ``GET /v3/tracking_settings/{section}`` body: every field of the section, unset strings as ``""``."""
    part, attribute, _, _ = _SECTIONS[section]
    value = getattr(settings, attribute)
    return {key: ("" if getattr(value, name) is None else getattr(value, name)) for name, key in part.ACCOUNT.items()}


class _Refused(ValueError):
    """A JSON text we read but refuse (a duplicate key, NaN, a number too big for a double); ``field`` if known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:  # json.loads would keep the last silently: which one the client meant is unknown
            raise _Refused("is given more than once", key)
        found[key] = value
    return found


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is out of range")
    return value


def json_object(request: Request) -> dict[str, Any] | Response:
    """The request body as a JSON object (an empty body is ``{}``), or the 400/415 answer to send.

    Strict where ``json.loads`` is lenient: UTF-8 only; ``Content-Type``
    ``application/json`` (or ``+json``, or none); no duplicate keys, no
    ``NaN``/``Infinity``, no number beyond a double; nesting deep enough to
    exhaust the parser is a 400 like any invalid JSON, never a 500.
    """
    if not request.body.strip():
        return {}
    media, _, parameters = request.headers.get("content-type", "").partition(";")
    media = media.strip().lower()
    charset = next((value.strip().strip('"').lower() for name, _, value in
                    (part.partition("=") for part in parameters.split(";")) if name.strip().lower() == "charset"),
                   "utf-8")
    if (media and media != "application/json" and not media.endswith("+json")) or charset not in ("utf-8", "utf8"):
        return error(415, "the request body must be application/json (UTF-8)")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return error(400, "the request body is not UTF-8")
    try:
        body = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)
    except _Refused as refused:
        return error(400, str(refused), field=refused.field)
    except RecursionError:
        return error(400, "invalid JSON in the request body: nested too deeply")
    except ValueError:  # invalid JSON, or an integer with more digits than Python converts
        return error(400, "invalid JSON in the request body")
    if not isinstance(body, dict):
        kind = "array" if isinstance(body, list) else "string" if isinstance(body, str) else "null" if body is None \
            else "boolean" if isinstance(body, bool) else "number"
        return error(400, f"the request body must be a JSON object, not {kind}")
    return body


class SettingsApi:
    """The v3 tracking-settings endpoints over ``store``; :meth:`handle` answers ``/v3/...`` paths, None for others."""

    def __init__(self, store: AccountStore) -> None:
        self.store = store

    def handle(self, request: Request) -> Response | None:
        """The answer for an API path (``/v3/...``), or None when the path is not the API's (tracking URLs)."""
        if request.path != "/v3" and not request.path.startswith("/v3/"):
            return None
        try:
            return self._route(request)
        except StoreError:
            return error(503, "the store is unavailable; try again", headers={"Retry-After": "1"})
        except Exception:  # never a 500 page on an API path: a bug is still a JSON answer
            return error(500, "internal error")

    def _route(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if len(request.body) > MAX_BODY:
            return error(413, f"the request body is larger than {MAX_BODY} bytes")
        if path == PREFIX:
            if request.method not in ("GET", "HEAD"):
                return error(405, "method not allowed", headers={"Allow": "GET, HEAD"})
            return self._list(request)
        section = path[len(PREFIX) + 1:] if path.startswith(PREFIX + "/") else None
        if section not in _SECTIONS:
            return error(404, "resource not found")
        if request.method in ("GET", "HEAD"):
            return self._get(request, section)
        if request.method == "PATCH":
            return self._patch(request, section)
        return error(405, "method not allowed", headers={"Allow": "GET, HEAD, PATCH"})

    def _list(self, request: Request) -> Response:
        principal = authorize(request, "tracking_settings.read", store=self.store)
        if isinstance(principal, Response):
            return principal
        settings = self.store.tracking_settings(principal.account)
        result = [
            {"name": name, "title": title, "description": description, "enabled": getattr(settings, attribute).enable}
            for name, (_, attribute, title, description) in _SECTIONS.items()
        ]
        return json_response(200, {"result": result})

    def _get(self, request: Request, section: str) -> Response:
        principal = authorize(request, "tracking_settings.read", store=self.store)
        if isinstance(principal, Response):
            return principal
        return json_response(200, section_body(self.store.tracking_settings(principal.account), section))

    def _patch(self, request: Request, section: str) -> Response:
        principal = authorize(request, "tracking_settings.update", store=self.store)
        if isinstance(principal, Response):
            return principal
        body = json_object(request)
        if isinstance(body, Response):
            return body
        if not body:  # nothing to change: the state as it is, without a write
            return json_response(200, section_body(self.store.tracking_settings(principal.account), section))
        nulls = sorted(key for key, value in body.items() if value is None)
        if nulls:  # SendGrid's schema types every field (string or boolean): null is a wrong type, not "unset"
            return error(400, f"{nulls[0]} must not be null (a string, or \"\" for none; enabled: a boolean)",
                         field=nulls[0])
        try:
            settings, _ = self.store.patch_tracking_settings(principal.account, section, body)
        except SettingsError as exc:
            field = exc.path.split(".", 1)[1] if "." in exc.path else (exc.path or None)
            return error(400, str(exc), field=field)
        return json_response(200, section_body(settings, section))
