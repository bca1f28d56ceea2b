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

The rules live in :mod:`mailtrack.contrib._mailapi`, shared with the
Flask-Mailman backend (Flask-Mailman ports Django's mail API). Per-message
attributes, as django-anymail spells them: ``track_opens``,
``track_clicks`` (bool), ``metadata`` (dict, signed into the tokens) and
``tracking_settings`` (SendGrid-shaped, highest precedence).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from mailtrack.contrib._mailapi import prepare, send_tracked
from mailtrack.contrib.django.conf import MailtrackSettings, load
from mailtrack.core.tracker import Tracker
from mailtrack.exceptions import ConfigurationError

__all__ = ["TrackingEmailBackend"]

log = logging.getLogger("mailtrack")
_HIDDEN = {"to", "cc", "bcc"}


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

    def __deepcopy__(self, memo: dict[int, Any]) -> TrackingEmailBackend:
        """Itself: a backend is shared, not copied (its tracker's signing state cannot be).

        Django 5.0+'s locmem backend deep-copies each message it keeps, and a
        message sent with ``send()`` or ``send_mail()`` carries this backend as
        its ``connection``, so without this the copy would fail.
        """
        return self

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
        return send_tracked(self.connection, email_messages, self._prepare)

    def _prepare(self, msg: EmailMessage) -> list[EmailMessage]:
        """The copies to send for ``msg``: tracked ones, or ``[msg]`` itself when tracking is not possible."""
        copies: list[EmailMessage] = prepare(
            self.tracker, msg, split_recipients=self.config.split_recipients,
            fail_silently=self.config.fail_silently_tracking,
        )
        return copies
