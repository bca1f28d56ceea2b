"""``mailtrack rewrite`` (one HTML file to stdout, or whole campaigns with ``--out``) and ``mailtrack rewrite-message``.

``rewrite FILE --message-id ID --recipient R`` keeps its first meaning: one
HTML document, rewritten to stdout. With ``--out DIR`` it rewrites batches
(.eml, HTML, mbox, JSON lines, directories of them): see :mod:`.batch`.
"""

from __future__ import annotations

import argparse
import os
import sys

from mailtrack.batch.items import FORMATS
from mailtrack.batch.mbox import ENVELOPE, FIELD, split_mbox
from mailtrack.cli import batch
from mailtrack.cli._common import (
    UsageError,
    account_settings,
    add_settings,
    cli_wording,
    describe,
    json_option,
    read_input,
    settings,
)
from mailtrack.core.tracker import Tracker
from mailtrack.exceptions import MailtrackError

__all__ = ["check_one_message", "register"]


def check_one_message(raw: bytes) -> None:
    """Refuse (:class:`UsageError`) input that is not exactly one message.

    * Input that does not start with a header field (after an optional mbox
      ``From `` envelope line) is not a message at all: ``garbage``, an HTML
      file, an empty file.
    * Input that starts with a ``From `` line is read as an mbox, by the rule
      of :mod:`mailtrack.batch.mbox`: each further ``From `` line after a
      blank line and followed by a header field starts another message, and
      more than one message is refused (rewriting only the first and passing
      the rest through untracked would look like success; ``mailtrack rewrite
      --out`` takes every message of an mbox). One message with its ``From ``
      line is taken as that message; the line (and any ``>From`` quoting in
      the body) is kept byte for byte.
    * Input without a ``From `` line is one message (an .eml) whatever its body
      holds: a body line "From the team" is text.
    """
    envelope = ENVELOPE.match(raw)
    start = envelope.end() if envelope else 0
    if not FIELD.match(raw, start):
        raise UsageError("the input is not an email message: it does not start with a header field "
                         "(such as From: or Subject:)")
    if envelope:
        count = sum(1 for _ in split_mbox(raw.splitlines(keepends=True)))
        if count > 1:
            raise UsageError(f"the input holds {count} messages (an mbox); rewrite-message takes one message: "
                             "use mailtrack rewrite --out DIR, which rewrites every message of an mbox")


#: ``--honeypot``'s help (``rewrite`` and ``rewrite-message``).
HONEYPOT_HELP = ("add one invisible link to each HTML part that no person follows: its click marks a link scanner "
                 "(answered 204, recorded as machine=honeypot)")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rewrite`` and ``rewrite-message`` to the subcommands ``commands``."""
    rewrite = commands.add_parser(
        "rewrite", help="rewrite one HTML file to stdout, or campaigns (.eml, HTML, mbox, JSON lines) into --out",
        description="Without --out: track the links of one HTML document to stdout (a report goes to stderr). "
                    "With --out DIR: rewrite every message of the inputs (.eml, .html, .mbox, .jsonl files and "
                    "directories of them) into DIR, mirroring their layout, on every core.")
    rewrite.add_argument("inputs", nargs="+", metavar="INPUT", help="HTML file (or - for stdin) without --out; "
                         "with --out: .eml, .html, .mbox, .jsonl files and directories")
    rewrite.add_argument("--out", metavar="DIR", help="write the rewritten inputs here, mirroring their layout")
    rewrite.add_argument("--message-id", help="the message's id, signed into every URL (with --out: for HTML inputs and "
                         "JSON lines records without one; default: the HTML file's name)")
    rewrite.add_argument("--recipient", help="the recipient, signed into every URL (with --out: for HTML inputs and "
                         "JSON lines records without one)")
    rewrite.add_argument("--metadata", metavar="JSON", help="JSON object signed into every URL")
    rewrite.add_argument("--settings", metavar="JSON|FILE", help="tracking_settings for every message: a JSON object, "
                         "or a file holding one (messages' own settings are laid over it)")
    rewrite.add_argument("--encoding", default="utf-8", help=describe("the HTML files' encoding, kept on output",
                                                                      default="utf-8"))
    rewrite.add_argument("--issued-at", metavar="ISO", help=describe(
        "signing time of every token (ISO 8601 with a timezone, or seconds since the epoch): the same inputs then "
        "give the same bytes", default="now"))
    rewrite.add_argument("--format", choices=("auto", *FORMATS), default="auto", help=describe(
        "how to read the inputs; auto: by extension (.eml .html .htm .mbox .jsonl .ndjson), and a named file of "
        "another name by its first bytes", default="auto"))
    rewrite.add_argument("--workers", type=int, metavar="N", help=describe("worker processes", default="the number "
                         f"of cores, {os.cpu_count() or 1} here"))
    rewrite.add_argument("--resume", action="store_true", help="skip inputs whose output exists (outputs appear whole "
                         "or not at all)")
    rewrite.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    rewrite.add_argument("--force", action="store_true", help="rewrite messages that carry a DKIM-Signature or are "
                         "multipart/signed (which breaks the signature)")
    rewrite.add_argument("--honeypot", action="store_true", help=HONEYPOT_HELP)
    rewrite.add_argument("--dask", metavar="ADDRESS", help="run on the Dask cluster whose scheduler is at ADDRESS "
                         "(needs mailtrack[dask])")
    add_settings(rewrite, "secret_key", "secret_key_file", "base_url", "account", "db", "token_format")
    rewrite.set_defaults(func=run_rewrite)

    message = commands.add_parser(
        "rewrite-message", help="rewrite one MIME message (.eml) to stdout",
        description="Track the links of one message, bytes in, bytes out; a report per part goes to stderr. "
                    "An mbox of several messages is refused; one message with an mbox 'From ' line is taken, "
                    "the line kept as it is.")
    message.add_argument("file", help=".eml file, or - for stdin")
    message.add_argument("--message-id", help=describe("the message's id, signed into every URL",
                                                       default="the Message-ID header, added when missing"))
    message.add_argument("--recipient", help=describe("the recipient, signed into every URL; one copy per recipient",
                                                      default="the single To address"))
    message.add_argument("--settings", metavar="JSON", help="JSON tracking_settings for this message")
    message.add_argument("--metadata", metavar="JSON", help="JSON object signed into every URL")
    message.add_argument("--honeypot", action="store_true", help=HONEYPOT_HELP)
    message.add_argument("--force", action="store_true", help="rewrite even if the message carries a DKIM-Signature or is multipart/signed (which breaks the signature)")
    add_settings(message, "secret_key", "secret_key_file", "base_url", "account", "db", "token_format")
    message.set_defaults(func=rewrite_message)


def _tracker(args: argparse.Namespace) -> Tracker:
    """The Tracker for ``rewrite``/``rewrite-message``: ``--account``'s stored settings resolved once into its settings,
    and the account signed into every token (so that the message's events are that account's)."""
    config = settings(args, "secret_keys", "base_url")
    assert config.base_url is not None  # required above
    resolved = account_settings(config)
    honeypot = bool(getattr(args, "honeypot", False))
    if config.account is None:
        return Tracker(secret_keys=list(config.secret_keys), base_url=config.base_url, settings=resolved,
                       honeypot=honeypot, token_format=config.token_format)
    return Tracker(secret_keys=list(config.secret_keys), base_url=config.base_url, settings=resolved,
                   account=config.account, account_settings=_already_resolved, honeypot=honeypot,
                   token_format=config.token_format)


def _already_resolved(account: str) -> dict[str, object]:
    """The account's stored settings are in the Tracker's settings already (read once from --db): nothing more."""
    return {}


#: Options that only mean something with --out (flag, argparse dest, value when not given).
_BATCH_ONLY = (("--workers", "workers", None), ("--resume", "resume", False), ("--json", "json", False),
               ("--format", "format", "auto"), ("--force", "force", False), ("--dask", "dask", None))


def run_rewrite(args: argparse.Namespace) -> int:
    """``mailtrack rewrite``: one HTML file to stdout, or a batch with ``--out``."""
    if args.out is not None:
        return batch.run(args)
    if len(args.inputs) != 1:
        raise UsageError("several inputs need --out DIR (without it, one HTML file is rewritten to stdout)")
    if args.inputs[0] != "-" and os.path.isdir(args.inputs[0]):
        raise UsageError(f"{args.inputs[0]} is a directory: give --out DIR to rewrite what it holds")
    given = [flag for flag, dest, unset in _BATCH_ONLY if getattr(args, dest) != unset]
    if given:
        raise UsageError(f"{', '.join(given)} only apply with --out DIR")
    missing = [flag for flag, value in (("--message-id", args.message_id), ("--recipient", args.recipient)) if not value]
    if missing:
        raise UsageError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required to rewrite one "
                         "HTML file to stdout (or give --out DIR)")
    return rewrite_html(args)


def rewrite_html(args: argparse.Namespace) -> int:
    """``mailtrack rewrite FILE`` without ``--out``: one HTML document to stdout."""
    tracker = _tracker(args)
    metadata = json_option(args.metadata, "--metadata")
    message_settings = batch.settings_option(args.settings)
    issued_at = batch.issued_at_option(args.issued_at)
    raw = read_input(args.inputs[0])
    try:
        html = raw.decode(args.encoding)
    except LookupError:
        raise UsageError(f"--encoding: unknown encoding {args.encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise MailtrackError(f"{args.inputs[0]} is not {args.encoding} (--encoding): {exc.reason} at byte {exc.start}") from None
    result = tracker.rewrite_html(html, message_id=args.message_id, recipient=args.recipient, metadata=metadata,
                                  settings=message_settings, issued_at=issued_at)
    try:
        output = result.html.encode(args.encoding)
    except UnicodeEncodeError as exc:
        raise MailtrackError(f"the rewritten document cannot be written as {args.encoding}: {exc.reason}") from None
    sys.stdout.buffer.write(output)
    sys.stdout.buffer.flush()
    for warning in result.warnings:
        print(f"warning: {cli_wording(warning)}", file=sys.stderr)
    for skip in result.skipped:
        print(f"skipped {skip.raw!r}: {skip.reason}", file=sys.stderr)
    print(f"tracked {len(result.links)} links, skipped {len(result.skipped)}", file=sys.stderr)
    return 0


def rewrite_message(args: argparse.Namespace) -> int:
    """``mailtrack rewrite-message``."""
    tracker = _tracker(args)
    metadata = json_option(args.metadata, "--metadata")
    message_settings = json_option(args.settings, "--settings")
    raw = read_input(args.file)
    check_one_message(raw)
    result = tracker.rewrite_message(raw, message_id=args.message_id, recipient=args.recipient,
                                     settings=message_settings, metadata=metadata, force=args.force)
    sys.stdout.buffer.write(result.message)
    sys.stdout.buffer.flush()
    for part in result.parts:
        changed = f" ({part.transfer_encoding} -> {part.new_transfer_encoding})" if part.new_transfer_encoding not in (
            None, part.transfer_encoding) else ""
        detail = f": {part.reason}" if part.reason else ""
        print(f"part {part.path} {part.content_type}: {part.status}{detail}{changed}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {cli_wording(warning)}", file=sys.stderr)
    print(f"message {result.message_id} for {result.recipient}: tracked {len(result.links)} links, "
          f"skipped {len(result.skipped)}, {len(result.undecodable)} undecodable part(s), "
          f"{len(result.unencodable)} unencodable part(s)", file=sys.stderr)
    return 0
