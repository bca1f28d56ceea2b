"""``mailtrack purge`` (retention) and ``mailtrack forget`` (erasure, GDPR article 17): deleting stored events.

Both work on SQLite files and PostgreSQL databases alike (``--db``,
``MAILTRACK_DB``) through the store's :meth:`~mailtrack.storage.base.EventStore.purge`
and :meth:`~mailtrack.storage.base.EventStore.forget`, print what they deleted
(``--json``: one JSON object) and keep the stats rollups, which are
aggregates without a recipient. They reach the store only: events waiting in
a running server's spool (while the store was unavailable) are stored
later, and webhooks already delivered are the receiver's to delete.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone

from mailtrack.cli._common import UsageError, add_settings
from mailtrack.cli.events import open_store
from mailtrack.delivery.privacy import parse_duration
from mailtrack.exceptions import ArgumentError
from mailtrack.storage.base import Erased, check_recipient

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``purge`` and ``forget`` to the subcommands ``commands``."""
    purge = commands.add_parser(
        "purge", help="delete events older than a duration (retention)",
        description="Delete the stored events older than --older-than, with their webhook deliveries and the "
                    "first-event keys no remaining event uses. The stats rollups (counts, no recipients) keep "
                    "counting them. `mailtrack serve --purge-after` does the same once an hour.")
    purge.add_argument("--older-than", required=True, metavar="DURATION",
                       help="a number and a unit: s, m, h, d or w (90d, 30d, 12h)")
    forget = commands.add_parser(
        "forget", help="delete one recipient's events and webhook deliveries (GDPR art. 17)",
        description="Delete every stored event of a recipient (the address in any letter case), their webhook "
                    "deliveries and the recipient's first-event keys. The stats rollups keep their counts "
                    "(they hold no recipient).")
    forget.add_argument("--recipient", required=True, metavar="ADDRESS", help="the recipient's email address")
    for command, run in ((purge, run_purge), (forget, run_forget)):
        command.add_argument("--json", action="store_true", help="print one JSON object")
        add_settings(command, "db")
        command.set_defaults(func=run)


def run_purge(args: argparse.Namespace) -> int:
    """``mailtrack purge --older-than DURATION``."""
    try:
        seconds = parse_duration(args.older_than)
    except ArgumentError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    before = time.time() - seconds
    with open_store(args) as store:
        erased = store.purge(before)
    cutoff = datetime.fromtimestamp(before, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    if args.json:
        print(json.dumps({**erased.to_dict(), "before": cutoff}))
    else:
        print(f"purged {_counts(erased)} older than {cutoff}")
    return 0


def run_forget(args: argparse.Namespace) -> int:
    """``mailtrack forget --recipient ADDRESS``."""
    try:
        recipient = check_recipient(args.recipient)
    except ArgumentError as exc:
        raise UsageError(f"--recipient: {exc}") from None
    with open_store(args) as store:
        erased = store.forget(recipient)
    if args.json:
        print(json.dumps({**erased.to_dict(), "recipient": recipient}))
    else:
        print(f"forgot {recipient}: deleted {_counts(erased)}")
    return 0


def _counts(erased: Erased) -> str:
    def many(count: int, one: str, more: str) -> str:
        return f"{count} {one if count == 1 else more}"

    return (f"{many(erased.events, 'event', 'events')}, {many(erased.outbox, 'webhook delivery', 'webhook deliveries')}"
            f" and {many(erased.firsts, 'first-event key', 'first-event keys')}")
