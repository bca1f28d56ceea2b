"""``mailtrack events``, ``stats`` and ``webhooks``: what the event database holds."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mailtrack.cli._common import add_settings, settings
from mailtrack.events import EventType
from mailtrack.storage.base import EventStore

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``events``, ``stats`` and ``webhooks`` to the subcommands ``commands``."""
    events = commands.add_parser("events", help="print stored events", description="Print the stored events, oldest first.")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.add_argument("--message-id", help="only this message's events")
    events.add_argument("--type", choices=[event_type.value for event_type in EventType], help="only events of this type")
    stats = commands.add_parser("stats", help="opens and clicks per message and link",
                                description="Opens, clicks and unsubscribes per message and per link.")
    stats.add_argument("--json", action="store_true", help="one JSON document")
    hooks = commands.add_parser("webhooks", help="webhook deliveries per target: pending, delivered, dead",
                                description="Webhook deliveries per target: pending, delivered, dead.")
    hooks.add_argument("--requeue", action="store_true", help="give dead deliveries a fresh start")
    command: argparse.ArgumentParser
    run: Callable[[argparse.Namespace], int]
    for command, run in ((events, print_events), (stats, print_stats), (hooks, print_webhooks)):
        add_settings(command, "db")
        command.set_defaults(func=run)


@contextmanager
def open_store(args: argparse.Namespace) -> Iterator[EventStore]:
    """The event database named by ``--db`` / ``MAILTRACK_DB``, which must exist (reading never creates one)."""
    from mailtrack.service import open_store as open_event_store

    db = settings(args, "db").db
    assert db is not None  # required above
    store = open_event_store(db, create=False)
    try:
        yield store
    finally:
        store.close()


def print_events(args: argparse.Namespace) -> int:
    """``mailtrack events``."""
    with open_store(args) as store:
        events = store.events(message_id=args.message_id, event_type=args.type)
    for event in events:
        if args.json:
            print(json.dumps(event.to_dict(), separators=(",", ":")))
        else:
            where = f" {event.url} (link {event.link_index})" if event.url else ""
            first = " first" if event.first else ""
            who = "(no recipient)" if event.recipient is None else event.recipient
            tags = f" tags={','.join(event.tags)}" if event.tags else ""
            print(f"{event.timestamp:%Y-%m-%d %H:%M:%S}Z {event.event_type:<12} {event.message_id} "
                  f"{who}{where}{first}{tags} ip={event.ip} ua={event.user_agent!r}")
    return 0


def print_stats(args: argparse.Namespace) -> int:
    """``mailtrack stats``."""
    with open_store(args) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    for message in stats["messages"]:
        cto = "-" if message["click_to_open"] is None else f"{message['click_to_open']:.1%}"
        print(f"{message['message_id']}: {message['recipients']} recipient(s) seen; "
              f"opens {message['opened_total']} ({message['opened_unique']} unique), "
              f"clicks {message['clicked_total']} ({message['clicked_unique']} unique), "
              f"unsubscribes {message['unsubscribed_unique']}; CTR {message['ctr']:.1%} (of recipients seen), "
              f"click-to-open {cto}")
        for link in message["links"]:
            print(f"  link {link['link_index']}: {link['clicks']} click(s), {link['unique']} unique  {link['url']}")
    return 0


def print_webhooks(args: argparse.Namespace) -> int:
    """``mailtrack webhooks``."""
    with open_store(args) as store:
        requeued = store.outbox_requeue(time.time()) if args.requeue else None
        rows = store.outbox_rows()
    if requeued is not None:
        print(f"requeued {requeued} dead deliver{'y' if requeued == 1 else 'ies'}")
    counts: Counter[tuple[str, str]] = Counter()
    for row in rows:
        state = "delivered" if row["delivered"] is not None else "dead" if row["dead"] else "pending"
        counts[(row["target"], state)] += 1
    for target in sorted({target for target, _ in counts}):
        print(f"{target}: " + ", ".join(f"{counts[(target, state)]} {state}" for state in ("pending", "delivered", "dead")))
    return 0
