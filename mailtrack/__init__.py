"""mailtrack: make outbound email trackable without breaking it.

Rewrites the links of an HTML body into signed click URLs and adds an open
pixel, changing nothing else in the document; verifies those URLs again.

>>> import mailtrack
>>> tracker = mailtrack.Tracker(secret_keys=["newest-key"], base_url="https://t.example.com")
>>> result = tracker.rewrite_html('<a href="https://example.com/?a=1&amp;b=2">Hi</a>',
...                               message_id="msg-1", recipient="ann@example.com", issued_at=0)
>>> tracker.verify(result.links[0].tracking_url).url
'https://example.com/?a=1&b=2'
"""

from .events import CallbackSink, EventSink, TrackingEvent
from .exc import ExpiredToken, InvalidToken, MailtrackError, SettingsError
from .recorder import Recorder
from .results import (
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
from .rules import DEFAULT_OPT_OUTS, DEFAULT_PLACEHOLDERS
from .settings import (
    ClickTracking,
    GoogleAnalytics,
    OpenTracking,
    SettingsInput,
    SubscriptionTracking,
    TrackingSettings,
)
from .store import SQLiteStore
from .tracker import DEFAULT_MAX_LINKS, Tracker

__version__ = "0.1.0"

__all__ = [
    "CallbackSink",
    "ClickTracking",
    "DEFAULT_MAX_LINKS",
    "DEFAULT_OPT_OUTS",
    "DEFAULT_PLACEHOLDERS",
    "EventSink",
    "ExpiredToken",
    "GMAIL_CLIP_BYTES",
    "GoogleAnalytics",
    "HtmlResult",
    "InvalidToken",
    "MailtrackError",
    "MessagePart",
    "MessageResult",
    "OpenTracking",
    "PixelInsertion",
    "Recorder",
    "SQLiteStore",
    "SettingsError",
    "SettingsInput",
    "SkippedLink",
    "SubscriptionTracking",
    "TextResult",
    "TrackedLink",
    "TrackingEvent",
    "Tracker",
    "TrackingSettings",
    "Verified",
]
