"""Flask integration: the tracking endpoints as a blueprint, events as a blinker signal, Flask-Mail tracking.

>>> from mailtrack.contrib.flask import Mailtrack, tracking
>>> ext = Mailtrack(app)                       # or Mailtrack() then ext.init_app(app)
>>> @tracking.connect_via(app)
... def on_event(sender, event): ...          # runs on mailtrack's background thread
>>> ext.track(message)                         # a flask_mail.Message, in place

See :mod:`mailtrack.contrib.flask.extension` for the configuration keys.
"""

from __future__ import annotations

from mailtrack.contrib.flask.extension import Mailtrack, MailtrackState, tracking

__all__ = ["Mailtrack", "MailtrackState", "tracking"]
