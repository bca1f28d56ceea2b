"""mailtrack: make outbound email trackable without breaking it.

Rewrites the links of an HTML body into signed click URLs and adds an open
pixel, changing nothing else in the document; verifies those URLs again.

>>> import mailtrack
>>> tracker = mailtrack.Tracker(secret_keys=["newest-key"], base_url="https://t.example.com")
>>> result = tracker.rewrite_html('<a href="https://example.com/?a=1&amp;b=2">Hi</a>',
...                               message_id="msg-1", recipient="ann@example.com", issued_at=0)
>>> tracker.verify(result.links[0].tracking_url).url
'https://example.com/?a=1&b=2'

``import mailtrack`` and a rewrite load only the pure core (``mailtrack.core``).
Adapter names (the store, the recorder, webhooks, the HTTP endpoints) resolve
on first use through the module ``__getattr__`` below, so a program that only
rewrites never imports sqlite3 or an HTTP server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mailtrack import _legacy
from mailtrack.core.results import (
    GMAIL_CLIP_BYTES,
    HtmlResult,
    MessagePart,
    MessageResult,
    PixelInsertion,
    SkippedLink,
    TextResult,
    TrackedLink,
    Verified,
)
from mailtrack.core.rewrite.rules import DEFAULT_OPT_OUTS, DEFAULT_PLACEHOLDERS
from mailtrack.core.settings import (
    ClickTracking,
    GoogleAnalytics,
    OpenTracking,
    SettingsInput,
    SubscriptionTracking,
    TrackingSettings,
)
from mailtrack.core.speedups import speedups_enabled
from mailtrack.core.tracker import DEFAULT_MAX_LINKS, Tracker
from mailtrack.exceptions import (
    ArgumentError,
    ConfigurationError,
    ExpiredToken,
    InvalidToken,
    MailtrackError,
    MessageError,
    MessageRefused,
    SettingsError,
    WebhookSignatureError,
)

if TYPE_CHECKING:
    from mailtrack.delivery.recorder import Recorder
    from mailtrack.delivery.webhooks import WebhookDelivery, verify_signature
    from mailtrack.events import CallbackSink, EventSink, EventType, InvalidEvent, TrackingEvent
    from mailtrack.http.endpoints import Endpoints
    from mailtrack.storage.base import EventStore, StoreError, StoreUnavailable
    from mailtrack.storage.sqlite import SQLiteStore

__version__ = "0.1.0"

#: Public names that live in adapters, imported on first access.
_LAZY = {
    "CallbackSink": "mailtrack.events",
    "EventSink": "mailtrack.events",
    "EventType": "mailtrack.events",
    "InvalidEvent": "mailtrack.events",
    "TrackingEvent": "mailtrack.events",
    "Recorder": "mailtrack.delivery.recorder",
    "WebhookDelivery": "mailtrack.delivery.webhooks",
    "verify_signature": "mailtrack.delivery.webhooks",
    "Endpoints": "mailtrack.http.endpoints",
    "EventStore": "mailtrack.storage.base",
    "StoreUnavailable": "mailtrack.storage.base",
    "StoreError": "mailtrack.storage.base",
    "SQLiteStore": "mailtrack.storage.sqlite",
}

_legacy.install()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mailtrack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFAULT_MAX_LINKS",
    "DEFAULT_OPT_OUTS",
    "DEFAULT_PLACEHOLDERS",
    "GMAIL_CLIP_BYTES",
    "ArgumentError",
    "CallbackSink",
    "ClickTracking",
    "ConfigurationError",
    "Endpoints",
    "EventSink",
    "EventStore",
    "EventType",
    "ExpiredToken",
    "GoogleAnalytics",
    "HtmlResult",
    "InvalidEvent",
    "InvalidToken",
    "MailtrackError",
    "MessageError",
    "MessagePart",
    "MessageRefused",
    "MessageResult",
    "OpenTracking",
    "PixelInsertion",
    "Recorder",
    "SQLiteStore",
    "SettingsError",
    "SettingsInput",
    "SkippedLink",
    "StoreError",
    "StoreUnavailable",
    "SubscriptionTracking",
    "TextResult",
    "TrackedLink",
    "Tracker",
    "TrackingEvent",
    "TrackingSettings",
    "Verified",
    "WebhookDelivery",
    "WebhookSignatureError",
    "speedups_enabled",
    "verify_signature",
]
