"""SendGrid's v3 tracking-settings endpoints, sans-IO: :class:`SettingsApi` answers a Request with a Response.

``GET /v3/tracking_settings`` lists the four settings (name, title,
description, enabled); ``GET`` and ``PATCH`` ``/v3/tracking_settings/{open,
click,subscription,google_analytics}`` read and change one, in the shapes of
SendGrid's OpenAPI document (string fields never set answer ``""``, as
SendGrid's examples show). PATCH is partial (absent fields keep their value),
atomic (one store transaction) and answers the section's whole new state.

Reads need the ``tracking_settings.read`` scope, PATCH
``tracking_settings.update`` (see :func:`mailtrack.http.auth.authorize`).
Every answer under ``/v3/`` is JSON: 400 for invalid JSON, wrong types and
unknown fields (``field`` names the field), 404 for an unknown path, 405 with
``Allow`` for a wrong method, 413 for a body over
:data:`~mailtrack.http.messages.MAX_BODY`, 503 when the store is unavailable;
never a 500 or an HTML page.
"""

from __future__ import annotations

import json
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

__all__ = ["PREFIX", "SettingsApi", "section_body"]

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
        try:
            body = json.loads(request.body.decode("utf-8")) if request.body.strip() else {}
        except (UnicodeDecodeError, ValueError):
            return error(400, "invalid JSON in the request body")
        if not isinstance(body, dict):
            return error(400, f"the request body must be a JSON object, not {type(body).__name__}")
        try:
            settings, _ = self.store.patch_tracking_settings(principal.account, section, body)
        except SettingsError as exc:
            field = exc.path.split(".", 1)[1] if "." in exc.path else (exc.path or None)
            return error(400, str(exc), field=field)
        return json_response(200, section_body(settings, section))
