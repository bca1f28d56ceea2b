"""Flask integration: the tracking endpoints as a blueprint, events as a blinker signal, Flask-Mail tracking.

>>> from mailtrack.contrib.flask import Mailtrack, tracking
>>> ext = Mailtrack(app)                       # or Mailtrack() then ext.init_app(app)
>>> @tracking.connect_via(app)
... def on_event(sender, event): ...          # runs on mailtrack's background thread
>>> ext.track(message)                         # a flask_mail.Message, in place

See :mod:`mailtrack.contrib.flask.extension` for the configuration keys.
With Flask-Mailman, :class:`MailmanBackend` (``MAIL_BACKEND = "mailtrack.contrib.flask.mailman"``)
tracks every message sent; see :mod:`mailtrack.contrib.flask.mailman`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailtrack.contrib.flask.extension import Mailtrack, MailtrackState, tracking

if TYPE_CHECKING:
    from mailtrack.contrib.flask.mailman import MailmanBackend

__all__ = ["Mailtrack", "MailmanBackend", "MailtrackState", "tracking"]


def __getattr__(name: str) -> Any:
    """``MailmanBackend`` on first use, so Flask-Mailman stays optional for everyone else."""
    if name == "MailmanBackend":
        from mailtrack.contrib.flask.mailman import MailmanBackend

        return MailmanBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
