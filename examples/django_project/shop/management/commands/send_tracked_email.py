"""``manage.py send_tracked_email [--to ADDRESS ...]``: send one HTML newsletter, tracked, through EMAIL_BACKEND."""

from __future__ import annotations

from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.core.management.base import BaseCommand, CommandParser

HTML = ('<html><body><p>Hello! Our <a href="https://example.com/sale">sale</a> starts today.</p>'
        '<p><a href="https://example.com/unsubscribe">Unsubscribe</a></p></body></html>')
TEXT = "Hello! Our sale starts today: https://example.com/sale\n"


class Command(BaseCommand):
    help = "Send one tracked HTML email (one copy per recipient, each with its own tracking URLs)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to", action="append", default=None, help="a recipient (repeatable)")

    def handle(self, *args: Any, **options: Any) -> None:
        recipients = options["to"] or ["ann@example.com", "bob@example.com"]
        msg = EmailMultiAlternatives("Our sale", TEXT, to=recipients)
        msg.attach_alternative(HTML, "text/html")
        msg.metadata = {"campaign": "sale"}  # signed into the tracking URLs
        sent = msg.send()
        self.stdout.write(f"sent {sent} message(s) to {len(recipients)} recipient(s)")
