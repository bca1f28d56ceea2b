"""The ``mailtrack`` command line.

``demo``; ``rewrite`` (one HTML file) and ``rewrite-message`` (one .eml);
``serve`` (the tracking endpoints on waitress), ``events``, ``stats`` and
``webhooks`` (what the store holds).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from mailtrack.core.tracker import Tracker
from mailtrack.exceptions import MailtrackError

# What opening or reading the event database can raise: reported as one line, never a traceback.
_STORE_ERRORS = (MailtrackError, OSError, RuntimeError, sqlite3.Error)


def _keys(args: argparse.Namespace) -> tuple[str, str] | None:
    key = args.secret_key or os.environ.get("MAILTRACK_SECRET_KEY")
    base = args.base_url or os.environ.get("MAILTRACK_BASE_URL")
    if not key or not base:
        print(f"mailtrack {args.command}: --secret-key and --base-url (or MAILTRACK_SECRET_KEY, MAILTRACK_BASE_URL) "
              "are required", file=sys.stderr)
        return None
    return key, base


def _read(name: str) -> bytes:
    # Bytes in, bytes out: no newline translation, so CRLF stays CRLF.
    return Path(name).read_bytes() if name != "-" else sys.stdin.buffer.read()


def _rewrite(args: argparse.Namespace) -> int:
    keys = _keys(args)
    if keys is None:
        return 2
    try:
        html = _read(args.file).decode(args.encoding)
        tracker = Tracker(secret_keys=[keys[0]], base_url=keys[1])
        metadata = json.loads(args.metadata) if args.metadata else None
        result = tracker.rewrite_html(html, message_id=args.message_id, recipient=args.recipient, metadata=metadata)
        output = result.html.encode(args.encoding)
    except (OSError, LookupError, MailtrackError, ValueError, TypeError) as exc:  # decoding errors are ValueErrors
        print(f"mailtrack rewrite: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(output)
    sys.stdout.buffer.flush()
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for skip in result.skipped:
        print(f"skipped {skip.raw!r}: {skip.reason}", file=sys.stderr)
    print(f"tracked {len(result.links)} links, skipped {len(result.skipped)}", file=sys.stderr)
    return 0


def _rewrite_message(args: argparse.Namespace) -> int:
    keys = _keys(args)
    if keys is None:
        return 2
    try:
        raw = _read(args.file)
        tracker = Tracker(secret_keys=[keys[0]], base_url=keys[1])
        metadata = json.loads(args.metadata) if args.metadata else None
        settings = json.loads(args.settings) if args.settings else None
        result = tracker.rewrite_message(raw, message_id=args.message_id, recipient=args.recipient, settings=settings,
                                         metadata=metadata, force=args.force)
    except (OSError, MailtrackError, ValueError, TypeError) as exc:
        print(f"mailtrack rewrite-message: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(result.message)
    sys.stdout.buffer.flush()
    for part in result.parts:
        changed = f" ({part.transfer_encoding} -> {part.new_transfer_encoding})" if part.new_transfer_encoding not in (
            None, part.transfer_encoding) else ""
        detail = f": {part.reason}" if part.reason else ""
        print(f"part {part.path} {part.content_type}: {part.status}{detail}{changed}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"message {result.message_id} for {result.recipient}: tracked {len(result.links)} links, "
          f"skipped {len(result.skipped)}, {len(result.undecodable)} undecodable part(s)", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    keys = _keys(args)
    db = args.db or os.environ.get("MAILTRACK_DB")
    if keys is None or not db:
        if not db:
            print("mailtrack serve: --db (or MAILTRACK_DB) is required", file=sys.stderr)
        return 2
    try:
        import waitress  # type: ignore[import-untyped]
    except ImportError:
        print("mailtrack serve needs waitress: pip install 'mailtrack[serve]'", file=sys.stderr)
        return 2
    from mailtrack.http.wsgi import MAX_BODY, build_service

    try:
        service = build_service(
            keys[0].split(","),
            keys[1],
            db,
            trusted_proxies=args.trusted_proxy,
            max_age=args.max_age,
            landing_html=Path(args.landing).read_text(encoding="utf-8") if args.landing else None,
            webhooks=args.webhook,
            webhook_secret=args.webhook_secret or os.environ.get("MAILTRACK_WEBHOOK_SECRET"),
        )
    except (*_STORE_ERRORS, ValueError) as exc:
        print(f"mailtrack serve: {exc}", file=sys.stderr)
        return 1
    try:
        # X-Forwarded-For is judged by Endpoints (--trusted-proxy); waitress must pass it through untouched.
        server = waitress.create_server(service.app, host=args.host, port=args.port, threads=args.threads,
                                        ident="mailtrack", clear_untrusted_proxy_headers=False,
                                        max_request_body_size=MAX_BODY)  # refuse big bodies before reading them
    except (OSError, ValueError) as exc:
        service.close()
        print(f"mailtrack serve: {exc}", file=sys.stderr)
        return 1
    port = getattr(server, "effective_port", args.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" on every busy request

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (systemd, docker) shuts down like Ctrl-C: the recorder is closed

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background, where it is ignored
    base_url = service.app.endpoints.tracker.base_url
    print(f"mailtrack: serving {base_url} on http://{args.host}:{port} (events in {db})", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
    return 0


def _store(args: argparse.Namespace) -> object:
    from mailtrack.storage.sqlite import SQLiteStore

    db = args.db or os.environ.get("MAILTRACK_DB")
    if not db or not Path(db).is_file():
        raise MailtrackError(f"no event database at {db!r}; pass --db (or MAILTRACK_DB)")
    return SQLiteStore(db)


def _events(args: argparse.Namespace) -> int:
    try:
        store = _store(args)
        events = store.events(message_id=args.message_id, event_type=args.type)  # type: ignore[attr-defined]
    except _STORE_ERRORS as exc:
        print(f"mailtrack events: {exc}", file=sys.stderr)
        return 1
    for event in events:
        if args.json:
            print(json.dumps(event.to_dict(), separators=(",", ":")))
        else:
            where = f" {event.url} (link {event.link_index})" if event.url else ""
            first = " first" if event.first else ""
            print(f"{event.timestamp:%Y-%m-%d %H:%M:%S}Z {event.event_type:<12} {event.message_id} "
                  f"{event.recipient}{where}{first} ip={event.ip} ua={event.user_agent!r}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    try:
        stats = _store(args).stats()  # type: ignore[attr-defined]
    except _STORE_ERRORS as exc:
        print(f"mailtrack stats: {exc}", file=sys.stderr)
        return 1
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


def _webhooks(args: argparse.Namespace) -> int:
    import time
    from collections import Counter

    try:
        store = _store(args)
        requeued = store.outbox_requeue(time.time()) if args.requeue else None  # type: ignore[attr-defined]
        rows = store.outbox_rows()  # type: ignore[attr-defined]
    except _STORE_ERRORS as exc:
        print(f"mailtrack webhooks: {exc}", file=sys.stderr)
        return 1
    if requeued is not None:
        print(f"requeued {requeued} dead deliver{'y' if requeued == 1 else 'ies'}")
    counts: Counter[tuple[str, str]] = Counter()
    for row in rows:
        state = "delivered" if row["delivered"] is not None else "dead" if row["dead"] else "pending"
        counts[(row["target"], state)] += 1
    for target in sorted({target for target, _ in counts}):
        print(f"{target}: " + ", ".join(f"{counts[(target, state)]} {state}" for state in ("pending", "delivered", "dead")))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = argparse.ArgumentParser(prog="mailtrack", description="Make outbound email trackable without breaking it.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="track a sample campaign mail and check every URL (no setup needed)")
    demo.add_argument("--no-diff", action="store_true", help="do not print the changed lines")
    rewrite = sub.add_parser("rewrite", help="rewrite one HTML file to stdout")
    rewrite.add_argument("file", help="HTML file, or - for stdin")
    rewrite.add_argument("--message-id", required=True)
    rewrite.add_argument("--recipient", required=True)
    rewrite.add_argument("--metadata", help="JSON object signed into every URL")
    rewrite.add_argument("--secret-key")
    rewrite.add_argument("--base-url")
    rewrite.add_argument("--encoding", default="utf-8")
    message = sub.add_parser("rewrite-message", help="rewrite one MIME message (.eml) to stdout")
    message.add_argument("file", help=".eml file, or - for stdin")
    message.add_argument("--message-id", help="default: the Message-ID header (added when missing)")
    message.add_argument("--recipient", help="default: the single To address")
    message.add_argument("--settings", help="JSON tracking_settings for this message")
    message.add_argument("--metadata", help="JSON object signed into every URL")
    message.add_argument("--force", action="store_true", help="rewrite even if the message carries a DKIM-Signature")
    message.add_argument("--secret-key")
    message.add_argument("--base-url")
    serve = sub.add_parser("serve", help="serve the tracking endpoints (pixel, click, unsubscribe) on waitress")
    serve.add_argument("--db", help="SQLite event database (MAILTRACK_DB); created if missing")
    serve.add_argument("--secret-key", help="comma-separated keys, newest last (MAILTRACK_SECRET_KEY)")
    serve.add_argument("--base-url", help="the public URL the tracking links use (MAILTRACK_BASE_URL)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8025)
    serve.add_argument("--threads", type=int, default=8)
    serve.add_argument("--trusted-proxy", action="append", default=[], help="believe X-Forwarded-For from this address/network")
    serve.add_argument("--max-age", type=float, help="refuse click links older than this many seconds")
    serve.add_argument("--landing", help="HTML file for the unsubscribe confirmation page (a button is added)")
    serve.add_argument("--webhook", action="append", default=[], help="POST each event to this URL (repeatable)")
    serve.add_argument("--webhook-secret", help="HMAC key for the webhook signature (MAILTRACK_WEBHOOK_SECRET)")
    for name, helptext in (("events", "print stored events"), ("stats", "opens and clicks per message and link")):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("--db", help="SQLite event database (MAILTRACK_DB)")
        command.add_argument("--json", action="store_true", help="JSON lines (events) or a JSON document (stats)")
        if name == "events":
            command.add_argument("--message-id")
            command.add_argument("--type", choices=["opened", "clicked", "unsubscribed"])
    hooks = sub.add_parser("webhooks", help="webhook deliveries per target: pending, delivered, dead")
    hooks.add_argument("--db", help="SQLite event database (MAILTRACK_DB)")
    hooks.add_argument("--requeue", action="store_true", help="give dead deliveries a fresh start")
    args = parser.parse_args(argv)
    if args.command in ("serve", "events", "stats", "webhooks"):
        return {"serve": _serve, "events": _events, "stats": _stats, "webhooks": _webhooks}[args.command](args)
    if args.command == "demo":
        from mailtrack.cli.demo import run_demo

        return run_demo(show_diff=not args.no_diff)
    if args.command == "rewrite-message":
        return _rewrite_message(args)
    return _rewrite(args)


if __name__ == "__main__":
    sys.exit(main())
