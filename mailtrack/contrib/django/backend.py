"""``TrackingEmailBackend``: Django's email backend that adds tracking, then hands over to the real one.

``EMAIL_BACKEND = "mailtrack.contrib.django.TrackingEmailBackend"`` with
``settings.MAILTRACK = {"BACKEND": <the real backend>, "BASE_URL": ..., ...}``.
Each message is copied and its HTML (``body`` when ``content_subtype`` is
``"html"``, and every ``text/html`` alternative) and, with
``click_tracking.enable_text``, its plain-text body go through
:meth:`Tracker.rewrite_html` / :meth:`Tracker.rewrite_text`; attachments are
never touched and the caller's message is never changed.

Tokens are signed for one recipient, so with ``SPLIT_RECIPIENTS`` (the
default) each to/cc/bcc address gets its own copy, sent to that address alone
while its To and Cc headers still show the original lists (Bcc stays hidden);
all copies share the message's ``Message-ID``. Tracking fails open: a message
whose tracking raises is sent as it was, and the failure logged to the
``mailtrack`` logger (``FAIL_SILENTLY_TRACKING: False`` raises instead).

Per-message attributes, as django-anymail spells them: ``track_opens``,
``track_clicks`` (bool), ``metadata`` (dict, signed into the tokens) and
``tracking_settings`` (SendGrid-shaped, highest precedence).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from email.utils import make_msgid, parseaddr
from typing import Any

from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from mailtrack.contrib.django.conf import MailtrackSettings, load
from mailtrack.core.tracker import Tracker
from mailtrack.exceptions import ArgumentError, ConfigurationError

__all__ = ["TrackingEmailBackend"]

log = logging.getLogger("mailtrack")
_HIDDEN = {"to", "cc", "bcc"}


def _message_id(msg: EmailMessage) -> str:
    """The message's Message-ID (without angle brackets), set in ``extra_headers`` when it had none."""
    for name, value in msg.extra_headers.items():
        if name.lower() == "message-id" and str(value).strip():
            return str(value).strip().strip("<>")
    domain = str(msg.from_email or "").rpartition("@")[2].strip("> ") or "mailtrack.invalid"
    value = make_msgid(domain=domain)
    msg.extra_headers["Message-ID"] = value
    return value.strip("<>")


def _recipients(msg: EmailMessage) -> list[tuple[str, str]]:
    """Each envelope recipient once, as ``(address as given, bare address for the tokens)``.

    ``"Ann <ann@x>"`` in To and ``ann@x`` in Cc are one person: one copy, and
    the tokens name ``ann@x`` (compared case-insensitively).
    """
    seen: set[str] = set()
    unique = []
    for given in msg.recipients():
        bare = parseaddr(str(given))[1] or str(given)
        if bare.lower() not in seen:
            seen.add(bare.lower())
            unique.append((str(given), bare))
    return unique


def _settings_for(msg: EmailMessage) -> dict[str, Any]:
    """The message's own tracking settings: ``track_opens``/``track_clicks``, under its ``tracking_settings``."""
    merged: dict[str, Any] = {}
    for attribute, section in (("track_opens", "open_tracking"), ("track_clicks", "click_tracking")):
        value = getattr(msg, attribute, None)
        if value is not None:
            merged[section] = {"enable": bool(value)}
    own = getattr(msg, "tracking_settings", None)
    if own is not None:
        if not isinstance(own, Mapping):
            raise ArgumentError(f"tracking_settings must be a dict, not {type(own).__name__}")
        for section, value in own.items():
            if isinstance(value, Mapping) and isinstance(merged.get(section), dict):
                merged[section] = {**merged[section], **value}
            else:
                merged[section] = value
    return merged


def _track(tracker: Tracker, msg: EmailMessage, message_id: str, recipient: str) -> EmailMessage:
    """A copy of ``msg`` whose HTML (and text, if enabled) carries tracking for ``recipient``."""
    tracked = copy.copy(msg)
    tracked.extra_headers = dict(msg.extra_headers)
    own = _settings_for(msg)
    metadata = getattr(msg, "metadata", None)
    common: dict[str, Any] = {"message_id": message_id, "recipient": recipient, "settings": own or None,
                              "metadata": dict(metadata) if metadata else None}
    opted_out: list[str] = []
    if msg.content_subtype == "html":
        result = tracker.rewrite_html(msg.body, **common)
        tracked.body = result.html
        opted_out += [link.url for link in result.skipped if link.reason == "opt-out"]
    alternatives = getattr(msg, "alternatives", None)
    if alternatives:
        rewritten: list[Any] = []
        for alternative in alternatives:
            content, mimetype = alternative[0], alternative[1]
            if isinstance(content, str) and str(mimetype).split(";")[0].strip().lower() == "text/html":
                result = tracker.rewrite_html(content, **common)
                opted_out += [link.url for link in result.skipped if link.reason == "opt-out"]
                content = result.html
                alternative = alternative._replace(content=content) if hasattr(alternative, "_replace") \
                    else (content, mimetype)
            rewritten.append(alternative)
        tracked.alternatives = rewritten
    if msg.content_subtype != "html" and isinstance(msg.body, str) and msg.body:
        tracked.body = tracker.rewrite_text(msg.body, exclude=opted_out, **common).text
    return tracked


def _addressed_to(msg: EmailMessage, recipient: str) -> EmailMessage:
    """``msg`` sent to ``recipient`` alone, its To and Cc headers still showing the original lists."""
    single = copy.copy(msg)
    headers = {name: value for name, value in msg.extra_headers.items() if name.lower() not in _HIDDEN}
    for header, values in (("To", msg.to), ("Cc", msg.cc)):
        given = [value for name, value in msg.extra_headers.items() if name.lower() == header.lower()]
        if given:
            headers[header] = given[0]
        elif values:
            headers[header] = ", ".join(str(value) for value in values)
    single.extra_headers = headers
    # Django builds the envelope from recipients() = to + cc + bcc, and the To/Cc headers from extra_headers first.
    single.to, single.cc, single.bcc = [], [], [recipient]
    return single


class TrackingEmailBackend(BaseEmailBackend):  # type: ignore[misc]  # Django ships no type hints
    """Adds tracking to each message, then sends it through ``MAILTRACK["BACKEND"]``.

    The configuration is read and checked here, so a mistake raises
    :class:`~mailtrack.ConfigurationError` when Django builds the backend
    (``get_connection()``), never while sending. Other keyword arguments go
    to the wrapped backend.
    """

    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        super().__init__(fail_silently=fail_silently)
        self.config: MailtrackSettings = load()
        try:
            self.connection: Any = get_connection(self.config.backend, fail_silently=fail_silently, **kwargs)
        except ImportError as exc:
            raise ConfigurationError(f"MAILTRACK['BACKEND'] cannot be imported: {exc}") from None

    @property
    def tracker(self) -> Tracker:
        """The tracker every message is signed with."""
        return self.config.tracker

    def open(self) -> Any:
        """Open the wrapped backend's connection (its return value: True when it opened one)."""
        return self.connection.open()

    def close(self) -> None:
        """Close the wrapped backend's connection."""
        self.connection.close()

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send each message, tracked; the number of the caller's messages the wrapped backend sent (every copy)."""
        if not email_messages:
            return 0
        opened = self.connection.open()
        try:
            sent = 0
            for msg in email_messages:
                copies = self._prepare(msg)
                if copies and self.connection.send_messages(copies) == len(copies):
                    sent += 1
            return sent
        finally:
            if opened:
                self.connection.close()

    def _prepare(self, msg: EmailMessage) -> list[EmailMessage]:
        """The copies to send for ``msg``: tracked ones, or ``[msg]`` itself when tracking is not possible."""
        recipients = _recipients(msg)
        if not recipients:
            return []
        try:
            original = copy.copy(msg)
            original.extra_headers = dict(msg.extra_headers)
            message_id = _message_id(original)
            if self.config.split_recipients:
                return [_track(self.tracker, _addressed_to(original, given), message_id, bare) for given, bare in recipients]
            if len(recipients) == 1:
                return [_track(self.tracker, original, message_id, recipients[0][1])]
            log.warning("mailtrack: message %s has %d recipients and SPLIT_RECIPIENTS is off: sent untracked",
                        message_id, len(recipients))
            return [msg]
        except Exception:
            if not self.config.fail_silently_tracking:
                raise
            log.exception("mailtrack: tracking failed; the message is sent untracked")
            return [msg]
