"""``mailtrack events``, ``stats`` and ``webhooks``: what the event database holds."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from mailtrack.cli._common import UsageError, add_settings, settings
from mailtrack.delivery.webhooks import new_secret
from mailtrack.events import EventType, TrackingEvent
from mailtrack.exceptions import ArgumentError
from mailtrack.http.events_api import (
    DEFAULT_LIMIT,
    FILTERS,
    encode_stats_cursor,
    filters_query,
    parse_parameters,
    stats_cursor,
)
from mailtrack.storage.base import GROUP_BYS, MACHINE_FILTERS, MAX_PAGE, EventQuery, EventStore, GroupBy

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``events``, ``stats`` and ``webhooks`` to the subcommands ``commands``."""
    events = commands.add_parser(
        "events", help="print stored events",
        description="Print the stored events, oldest first; with --limit, the newest LIMIT of them (still oldest first).")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    add_filters(events)
    events.add_argument("--machine", choices=MACHINE_FILTERS,
                        help="only people's events (none), machines' (any), or one machine verdict's")
    events.add_argument("--limit", type=int, default=None, help="only the newest LIMIT matching events (1 to 1000)")
    stats = commands.add_parser(
        "stats", help="opens and clicks per message and link, or per --group-by",
        description="Opens, clicks and unsubscribes per message and per link; with --group-by or a filter, the counts "
                    "per day, campaign, message, link or tag (as GET /v1/stats).")
    stats.add_argument("--json", action="store_true", help="one JSON document")
    add_filters(stats)
    stats.add_argument("--group-by", choices=GROUP_BYS, help="count per day, campaign, message, link or tag")
    stats.add_argument("--campaign-key", default="campaign", help="the metadata key naming a campaign (default campaign)")
    stats.add_argument("--limit", type=int, default=None,
                       help="only the first LIMIT groups in key order (1 to 1000), as one page of GET /v1/stats")
    stats.add_argument("--cursor", default=None, help="continue after the page that printed this next cursor")
    hooks = commands.add_parser("webhooks", help="webhook deliveries per target: pending, delivered, dead",
                                description="Webhook deliveries per target: pending, delivered, dead.")
    hooks.add_argument("--requeue", action="store_true", help="give dead deliveries a fresh start")
    hooks.add_argument("--new-secret", action="store_true",
                       help="print a fresh Standard Webhooks secret (whsec_...) for --webhook-secret, and exit")
    command: argparse.ArgumentParser
    run: Callable[[argparse.Namespace], int]
    for command, run in ((events, print_events), (stats, print_stats), (hooks, print_webhooks)):
        add_settings(command, "db")
        command.set_defaults(func=run)


def add_filters(parser: argparse.ArgumentParser) -> None:
    """The filters of ``GET /v1/events`` and ``/v1/stats``, as options."""
    parser.add_argument("--message-id", help="only this message's events")
    parser.add_argument("--recipient", help="only this recipient's events ('' for messages tracked without one)")
    parser.add_argument("--type", choices=[event_type.value for event_type in EventType], help="only events of this type")
    parser.add_argument("--since", help="only events at or after this time (ISO 8601, UTC if no offset, or Unix seconds)")
    parser.add_argument("--until", help="only events before this time (ISO 8601 or Unix seconds)")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                        help="only events whose metadata KEY is VALUE (repeatable: all must match)")
    parser.add_argument("--tag", help="only events with this tag")


def event_query(args: argparse.Namespace, *extra: tuple[str, str]) -> tuple[EventQuery, str]:
    """The filters of ``args`` as an :class:`EventQuery` (and as a query string), checked as the Events API checks them."""
    pairs: list[tuple[str, str]] = []
    for name in ("message_id", "recipient", "type", "since", "until", "tag"):
        value = getattr(args, name)
        if value is not None:
            pairs.append((name, value))
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes KEY=VALUE, not {item!r}")
        pairs.append((f"metadata.{key}", value))
    query_string = urlencode([*pairs, *extra])
    params, problems = parse_parameters(query_string, (*FILTERS, *(name for name, _ in extra)))
    query = filters_query(params, problems)
    if problems or query is None:
        raise ArgumentError("; ".join(f"--{(field or 'query').replace('_', '-')} {message}" for field, message in problems))
    return query, query_string


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
    query, _ = event_query(args, *((("machine", args.machine),) if args.machine is not None else ()))
    if args.limit is not None and not 1 <= args.limit <= MAX_PAGE:
        raise ArgumentError(f"--limit must be from 1 to {MAX_PAGE}, not {args.limit}")
    with open_store(args) as store:
        if args.limit is None and query == EventQuery():
            events = store.events()  # everything, oldest first, as before
        else:
            events = _all_matching(store, query, args.limit)
    for event in events:
        if args.json:
            print(json.dumps(event.to_dict(), separators=(",", ":")))
        else:
            where = f" {event.url} (link {event.link_index})" if event.url else ""
            first = " first" if event.first else ""
            who = "(no recipient)" if event.recipient is None else event.recipient
            tags = f" tags={','.join(event.tags)}" if event.tags else ""
            account = f" account={event.account}" if event.account is not None else ""
            account += f" machine={event.machine}" if event.machine is not None else ""
            print(f"{event.timestamp:%Y-%m-%d %H:%M:%S}Z {event.event_type:<12} {event.message_id} "
                  f"{who}{where}{first}{tags}{account} ip={event.ip} ua={event.user_agent!r}")
    return 0


def _all_matching(store: EventStore, query: EventQuery, limit: int | None) -> list[TrackingEvent]:
    """The events matching ``query`` (only the newest ``limit`` with one), oldest first."""
    found: list[TrackingEvent] = []
    before = None
    while limit is None or len(found) < limit:
        page = store.find(query, before=before, limit=MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(found)))
        found += page.events
        if page.next_before is None:
            break
        before = page.next_before
    return found[::-1]


def print_stats(args: argparse.Namespace) -> int:
    """``mailtrack stats``: per message and link as before; with --group-by or a filter, as GET /v1/stats."""
    query, _ = event_query(args)
    if args.group_by is not None or query != EventQuery() or args.limit is not None or args.cursor is not None:
        return _print_grouped(args, query)
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
              f"click-to-open {cto}{_machines(message)}")
        for link in message["links"]:
            print(f"  link {link['link_index']}: {link['clicks']} click(s), {link['unique']} unique  {link['url']}")
    return 0


def _machines(message: dict[str, Any]) -> str:
    """The machines' events of a message of :meth:`EventStore.stats`, for its line ("" when none)."""
    counts = [(kind.value, message.get(f"machine_{kind.value}", 0)) for kind in EventType]
    if not any(count for _, count in counts):
        return ""
    return "; machines: " + ", ".join(f"{name} {count}" for name, count in counts)


def _print_grouped(args: argparse.Namespace, query: EventQuery) -> int:
    group_by: GroupBy = args.group_by or "day"  # argparse checked it against GROUP_BYS
    if not args.campaign_key:
        raise ArgumentError("--campaign-key must not be empty")
    paged = args.limit is not None or args.cursor is not None
    limit = DEFAULT_LIMIT if args.limit is None else args.limit
    if not 1 <= limit <= MAX_PAGE:
        raise ArgumentError(f"--limit must be from 1 to {MAX_PAGE}, not {args.limit}")
    problems: list[tuple[str | None, str]] = []
    after = stats_cursor(args.cursor, group_by, problems)
    if problems:
        raise ArgumentError(f"--cursor {problems[0][1]}")
    next_cursor = None
    with open_store(args) as store:
        if paged:
            page = store.stats_page(query, group_by, campaign_key=args.campaign_key, after=after, limit=limit)
            rows = page.rows
            next_cursor = None if page.next_after is None else encode_stats_cursor(group_by, page.next_after)
        else:
            rows = store.grouped_stats(query, group_by, campaign_key=args.campaign_key)
    if args.json:
        document: dict[str, object] = {"group_by": group_by, "data": [row.to_dict() for row in rows]}
        if paged:
            document["next_cursor"] = next_cursor
        print(json.dumps(document, indent=2))
        return 0
    if next_cursor is not None:
        print(f"more groups follow: --cursor {next_cursor}", file=sys.stderr)
    for row in rows:
        cto = "-" if row.click_to_open is None else f"{row.click_to_open:.1%}"
        if row.opens is None:
            machines = f"; machine clicks {row.machine_clicks}" if row.machine_clicks else ""
            print(f"{row.key}: clicks {row.clicks} ({row.unique_clicks} unique){machines}")
        else:
            machines = (f"; machines: opens {row.machine_opens}, clicks {row.machine_clicks}, unsubscribes "
                        f"{row.machine_unsubscribes}") if row.machine_opens or row.machine_clicks \
                or row.machine_unsubscribes else ""
            print(f"{row.key}: opens {row.opens} ({row.unique_opens} unique), clicks {row.clicks} "
                  f"({row.unique_clicks} unique), unsubscribes {row.unsubscribes}; click-to-open {cto}{machines}")
    return 0


def print_webhooks(args: argparse.Namespace) -> int:
    """``mailtrack webhooks``."""
    if args.new_secret:
        print(new_secret())
        return 0
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
