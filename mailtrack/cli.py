"""The ``mailtrack`` command line: ``demo`` and ``rewrite``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .exc import MailtrackError
from .tracker import Tracker


def _rewrite(args: argparse.Namespace) -> int:
    key = args.secret_key or os.environ.get("MAILTRACK_SECRET_KEY")
    base = args.base_url or os.environ.get("MAILTRACK_BASE_URL")
    if not key or not base:
        print("mailtrack rewrite: --secret-key and --base-url (or MAILTRACK_SECRET_KEY, MAILTRACK_BASE_URL) are required",
              file=sys.stderr)
        return 2
    try:
        # Bytes in, bytes out, in the given encoding: no newline translation, so CRLF stays CRLF.
        raw = Path(args.file).read_bytes() if args.file != "-" else sys.stdin.buffer.read()
        html = raw.decode(args.encoding)
        tracker = Tracker(secret_keys=[key], base_url=base)
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
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(show_diff=not args.no_diff)
    return _rewrite(args)


if __name__ == "__main__":
    sys.exit(main())
