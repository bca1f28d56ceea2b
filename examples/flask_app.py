"""A small Flask app that sends tracked email with Flask-Mail and serves the tracking links.

Run it::

    pip install "mailtrack[flask]" flask-mail
    python examples/flask_app.py            # http://127.0.0.1:5000/

then send yourself a message from the form, open it (the pixel) and click its
links: each open and click is printed by the ``tracking`` receiver below (and
stored when ``MAILTRACK_DB`` is set).

Configuration comes from the environment, with defaults that work on one machine:

``SECRET_KEY``          signs the tracking URLs (default: a development-only key)
``MAILTRACK_BASE_URL``  where the tracking links point (default ``http://127.0.0.1:5000/t``)
``MAILTRACK_DB``        an SQLite file to store the events in (default: none, events are only printed)
``MAIL_SERVER``         an SMTP server, e.g. ``127.0.0.1`` with ``python -m aiosmtpd -n -l 127.0.0.1:1025``;
                        unset, nothing is sent and each message is printed instead (the console)
``MAIL_PORT``           its port (default 1025)
``MAIL_DEFAULT_SENDER`` the From address (default ``shop@example.com``)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import flask
from flask_mail import Mail, Message, email_dispatched
from markupsafe import escape

from mailtrack.contrib.flask import Mailtrack, tracking
from mailtrack.events import TrackingEvent

FORM = """<!doctype html><title>mailtrack example</title>
<form method="post" action="/send"><input name="to" placeholder="you@example.com"> <button>Send</button></form>"""

HTML = """<html><body><p>Hello from the mailtrack example.</p>
<p><a href="https://github.com/">A tracked link</a> and <a href="https://www.python.org/">another</a>.</p>
</body></html>"""

TEXT = "Hello from the mailtrack example: https://github.com/\n"


def create_app(config: Mapping[str, Any] | None = None) -> flask.Flask:
    """The app, configured from the environment and then from ``config`` (for tests)."""
    env = os.environ
    app = flask.Flask(__name__)
    app.config.update(
        SECRET_KEY=env.get("SECRET_KEY", "dev-only-secret-change-me"),
        MAILTRACK_BASE_URL=env.get("MAILTRACK_BASE_URL", "http://127.0.0.1:5000/t"),
        MAILTRACK_DB=env.get("MAILTRACK_DB") or None,
        MAILTRACK_TRACK_FLASK_MAIL=True,  # every mail.send is tracked, one copy per recipient
        MAIL_SERVER=env.get("MAIL_SERVER", ""),
        MAIL_PORT=int(env.get("MAIL_PORT", "1025")),
        MAIL_USE_TLS=False,
        MAIL_USE_SSL=False,
        MAIL_DEFAULT_SENDER=env.get("MAIL_DEFAULT_SENDER", "shop@example.com"),
    )
    app.config.update(config or {})
    if not app.config["MAIL_SERVER"]:
        app.config["MAIL_SUPPRESS_SEND"] = True  # no SMTP server: print each message instead (below)

    mail = Mail(app)
    Mailtrack(app, mail=mail)

    @email_dispatched.connect_via(app)
    def print_message(sender: flask.Flask, message: Message) -> None:
        if sender.config.get("MAIL_SUPPRESS_SEND"):
            print(message.as_string(), flush=True)

    @tracking.connect_via(app)
    def print_event(sender: flask.Flask, event: TrackingEvent) -> None:
        # Runs on mailtrack's background thread, outside the request.
        print(f"mailtrack: {event.event_type} by {event.recipient} of {event.message_id} {event.url or ''}", flush=True)

    @app.get("/")
    def index() -> str:
        return FORM

    @app.post("/send")
    def send() -> tuple[str, int]:
        to = flask.request.form.get("to", "").strip()
        if not to:
            return "Say who to send to.", 400
        mail.send(Message("Hello from mailtrack", recipients=[to], body=TEXT, html=HTML))
        return f"Sent to {escape(to)}.", 200

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
