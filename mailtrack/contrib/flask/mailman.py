"""``MailmanBackend``: a Flask-Mailman email backend that adds tracking, then hands over to the real one.

Flask-Mailman looks up ``MAIL_BACKEND`` its own way: a dotted name that does
not end in ``EmailBackend`` is taken as a *module* holding a class named
``EmailBackend``. So configure it as the module, or give the class itself::

    app.config["MAIL_BACKEND"] = "mailtrack.contrib.flask.mailman"   # this module's EmailBackend
    app.config["MAIL_BACKEND"] = MailmanBackend                      # or the class
    app.config["MAILTRACK_MAILMAN_BACKEND"] = "smtp"                 # the real backend (default "smtp")

The real backend is named as Flask-Mailman names backends (``"smtp"``,
``"console"``, ``"locmem"``, a dotted path, or a class) and gets every other
keyword argument. The tracker is the one :class:`~mailtrack.contrib.flask.Mailtrack`
set up for the current app, so ``init_app`` must have run.

Each message goes through :func:`mailtrack.contrib._mailapi.prepare`, the
rules the Django backend follows: one copy per recipient (sent to that address
alone, To and Cc headers as they were, Bcc hidden, one shared Message-ID),
HTML body and ``text/html`` alternatives tracked, the plain body too with
``click_tracking.enable_text``, the caller's message unchanged. Tracking fails
open: a message whose tracking raises is sent untracked and the failure
logged, unless ``MAILTRACK_FAIL_SILENTLY_TRACKING`` is false.
``MAILTRACK_SPLIT_RECIPIENTS`` (default true) turns the splitting off: then a
message to several people is one copy tracked without a recipient.
"""

from __future__ import annotations

import threading
from typing import Any

import flask
from flask_mailman.backends.base import BaseEmailBackend

from mailtrack.contrib._mailapi import TrackingConnection, prepare
from mailtrack.contrib.flask.extension import MailtrackState, config_flag
from mailtrack.exceptions import ConfigurationError

__all__ = ["EmailBackend", "MailmanBackend"]


class MailmanBackend(TrackingConnection, BaseEmailBackend):  # type: ignore[misc]  # Flask-Mailman ships no type hints
    """Adds tracking to each message, then sends it through ``MAILTRACK_MAILMAN_BACKEND``.

    Built by Flask-Mailman's ``get_connection()`` in an app context; the
    configuration is checked here, so a mistake raises a
    :class:`~mailtrack.ConfigurationError` naming the key when the connection
    is made, never while sending.
    """

    def __init__(self, mailman: Any = None, fail_silently: bool = False, **kwargs: Any) -> None:
        super().__init__(mailman=mailman, fail_silently=fail_silently)
        # One batch at a time, as Flask-Mailman's SMTP backend locks: a batch opens and closes the wrapped connection.
        self._lock = threading.RLock()
        app = flask.current_app
        state = app.extensions.get("mailtrack")
        if not isinstance(state, MailtrackState):
            raise ConfigurationError("MAIL_BACKEND is mailtrack's MailmanBackend but this app has no Mailtrack: "
                                     "call Mailtrack(app) or init_app(app) first")
        self.state = state
        self.split_recipients = config_flag(app.config, "MAILTRACK_SPLIT_RECIPIENTS", True)
        self.fail_silently_tracking = config_flag(app.config, "MAILTRACK_FAIL_SILENTLY_TRACKING", True)
        backend = app.config.get("MAILTRACK_MAILMAN_BACKEND", "smtp")
        if backend in (MailmanBackend, __name__, f"{__name__}.EmailBackend", f"{__name__}.MailmanBackend",
                       "mailtrack.contrib.flask.MailmanBackend") or (isinstance(backend, type) and
                                                                     issubclass(backend, MailmanBackend)):
            raise ConfigurationError("MAILTRACK_MAILMAN_BACKEND names mailtrack's own backend: "
                                     "name the one that really sends, e.g. 'smtp'")
        try:
            self.connection: Any = self.mailman.get_connection(backend, fail_silently=fail_silently, **kwargs)
        except (ImportError, RuntimeError, AttributeError) as exc:
            raise ConfigurationError(f"MAILTRACK_MAILMAN_BACKEND {backend!r} cannot be loaded: {exc}") from None

    def copies_of(self, msg: Any) -> list[Any]:
        """The copies to send for ``msg``: tracked ones, or ``[msg]`` itself when tracking is not possible."""
        return prepare(self.state.tracker, msg, split_recipients=self.split_recipients,
                       fail_silently=self.fail_silently_tracking)


#: Flask-Mailman's lookup name: ``MAIL_BACKEND = "mailtrack.contrib.flask.mailman"`` finds this.
EmailBackend = MailmanBackend
