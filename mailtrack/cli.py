"""The ``mailtrack`` command line: ``demo``, ``rewrite`` (one HTML file) and ``rewrite-message`` (one .eml)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .exc import MailtrackError
from .tracker import Tracker


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
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(show_diff=not args.no_diff)
    if args.command == "rewrite-message":
        return _rewrite_message(args)
    return _rewrite(args)


if __name__ == "__main__":
    sys.exit(main())
