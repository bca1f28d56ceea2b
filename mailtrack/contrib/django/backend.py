"""``TrackingEmailBackend``: Django's email backend that adds tracking, then hands over to the real one.

Configured one of two ways; both read ``settings.MAILTRACK`` (``BASE_URL``,
the keys, ...), which the tracking views read too:

* ``EMAIL_BACKEND = "mailtrack.contrib.django.TrackingEmailBackend"`` with
  ``MAILTRACK["BACKEND"]`` naming the real backend (every Django; Django 6.1
  deprecates ``EMAIL_BACKEND`` and warns about it);
* on Django 6.1+, a ``MAILERS`` entry whose ``BACKEND`` is this class and
  whose ``OPTIONS["mailer"]`` names another entry, the mailer that really
  sends, which is taken from ``django.core.mail.mailers``. No deprecated API
  is used that way, so nothing warns::

      MAILERS = {
          "default": {"BACKEND": "mailtrack.contrib.django.TrackingEmailBackend", "OPTIONS": {"mailer": "smtp"}},
          "smtp": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": {"host": "mail.example.com"}},
      }
      MAILTRACK = {"BASE_URL": "https://example.com/t"}   # no BACKEND: OPTIONS["mailer"] says it

Either way the options (or keyword arguments) ``tracking_settings``,
``split_recipients`` and ``fail_silently_tracking`` replace the ``MAILTRACK``
keys of those names for this backend's messages, so one mailer can track
clicks and another only opens.

Each message is copied and its HTML (``body`` when ``content_subtype`` is
``"html"``, and every ``text/html`` alternative) and, with
``click_tracking.enable_text``, its plain-text body go through
:meth:`Tracker.rewrite_html` / :meth:`Tracker.rewrite_text`; attachments are
never touched and the caller's message is never changed.

Tokens are signed for one recipient, so with ``SPLIT_RECIPIENTS`` (the
default) each to/cc/bcc address gets its own copy, sent to that address alone
while its To and Cc headers still show the original lists (Bcc stays hidden);
all copies share the message's ``Message-ID``. Behind django-anymail (whose
ESPs refuse a To header that differs from the recipients) each copy is
addressed To its recipient alone instead. Tracking fails open: a message
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
import threading
from typing import Any

from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from mailtrack.contrib._mailapi import TrackingConnection, prepare
from mailtrack.contrib.django.conf import MAILER_OPTIONS, MailtrackSettings, load, mailers_in_use, wrapped_mailer
from mailtrack.core.tracker import Tracker
from mailtrack.exceptions import ConfigurationError

__all__ = ["TrackingEmailBackend"]

log = logging.getLogger("mailtrack")
_HIDDEN = {"to", "cc", "bcc"}


class TrackingEmailBackend(TrackingConnection, BaseEmailBackend):  # type: ignore[misc]  # Django ships no type hints
    """Adds tracking to each message, then sends it through the wrapped backend (``self.connection``).

    That is ``MAILERS[OPTIONS["mailer"]]`` when Django builds this backend from
    a ``MAILERS`` entry (it then passes ``alias``), else ``MAILTRACK["BACKEND"]``,
    given ``fail_silently`` and the other keyword arguments. The configuration
    is read and checked here, so a mistake raises
    :class:`~mailtrack.ConfigurationError` when Django builds the backend
    (``mailers[...]``, ``get_connection()``), never while sending.
    """

    def __init__(self, fail_silently: bool | None = None, *, mailer: str | None = None, **kwargs: Any) -> None:
        # One batch at a time, as Django's SMTP backend locks: a batch opens and closes the wrapped connection.
        self._lock = threading.RLock()
        options = {name: kwargs.pop(name) for name in MAILER_OPTIONS if name in kwargs}
        alias = kwargs.pop("alias", None)
        if alias is not None:  # built by django.core.mail.mailers from MAILERS[alias] (Django 6.1+)
            if fail_silently is not None:  # Django drops it when the deprecated get_connection() passed it, else refuses it
                kwargs["fail_silently"] = fail_silently
            try:
                super().__init__(alias=alias, **kwargs)
            except ImproperlyConfigured as exc:  # InvalidMailer: OPTIONS this backend does not take
                raise ConfigurationError(f"{exc} The tracking backend takes 'mailer', 'tracking_settings', "
                                         "'split_recipients' and 'fail_silently_tracking'; the other OPTIONS belong "
                                         "to the mailer that sends.") from None
            self.config: MailtrackSettings = load(options, alias=alias)
            name = wrapped_mailer(alias, mailer)
            try:
                self.connection: Any = mail.mailers[name]
            except ImproperlyConfigured as exc:  # InvalidMailer: the wrapped mailer's own configuration
                raise ConfigurationError(f"MAILERS[{alias!r}] wraps {name!r}, which cannot be built: {exc}") from None
            if fail_silently:  # get_connection(fail_silently=True), send_mail(..., fail_silently=True): deprecated, honoured
                self.connection.fail_silently = True  # the attribute Django's backends (and anymail's) read
            return
        if mailer is not None:
            raise ConfigurationError("'mailer' is an OPTION of a MAILERS entry (Django 6.1+); with EMAIL_BACKEND, "
                                     "MAILTRACK['BACKEND'] names the backend that sends")
        if mailers_in_use():
            raise ConfigurationError("settings.MAILERS is defined: get the tracking backend from "
                                     "django.core.mail.mailers (a MAILERS entry whose OPTIONS name the 'mailer' that "
                                     "sends), not by building it directly")
        super().__init__()
        self.fail_silently = bool(fail_silently)
        self.config = load(options)
        try:
            self.connection = get_connection(self.config.backend, fail_silently=self.fail_silently, **kwargs)
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

    def copies_of(self, msg: EmailMessage) -> list[EmailMessage]:
        """The copies to send for ``msg``: tracked ones, or ``[msg]`` itself when tracking is not possible."""
        copies: list[EmailMessage] = prepare(
            self.tracker, msg, split_recipients=self.config.split_recipients,
            fail_silently=self.config.fail_silently_tracking,
            # django-anymail's ESPs refuse a To header other than the recipients: each copy is To its recipient alone
            show_all=getattr(self.connection, "esp_name", None) is None,
        )
        return copies
