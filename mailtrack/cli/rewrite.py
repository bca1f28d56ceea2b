"""``mailtrack rewrite`` (one HTML file) and ``mailtrack rewrite-message`` (one MIME message), to stdout."""

from __future__ import annotations

import argparse
import re
import sys

from mailtrack.cli._common import UsageError, add_settings, cli_wording, describe, json_option, read_input, settings
from mailtrack.core.tracker import Tracker
from mailtrack.exceptions import MailtrackError

__all__ = ["check_one_message", "register"]

#: A header field line: a name of printable ASCII but ":" and a colon (RFC 5322 ftext; the stdlib's rule).
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
#: mbox's envelope line, "From sender date", at the start of the input.
_ENVELOPE = re.compile(rb"From [^\r\n]*(?:\r\n|\n|\r)")
#: Where a further message of an mbox starts: a blank line, a From_ line, and a header field right after it.
_SEPARATOR = re.compile(rb"(?:\r\n|\n|\r)(?:\r\n|\n|\r)From [^\r\n]*(?:\r\n|\n|\r)(?=[\x21-\x39\x3b-\x7e]+:)")


def check_one_message(raw: bytes) -> None:
    """Refuse (:class:`UsageError`) input that is not exactly one message.

    * Input that does not start with a header field (after an optional mbox
      ``From `` envelope line) is not a message at all: ``garbage``, an HTML
      file, an empty file.
    * Input that starts with a ``From `` line is read as an mbox: each further
      ``From `` line after a blank line and followed by a header field starts
      another message, and more than one message is refused (rewriting only the
      first and passing the rest through untracked would look like success).
      One message with its ``From `` line is taken as that message; the line
      (and any ``>From`` quoting in the body) is kept byte for byte.
    * Input without a ``From `` line is one message (an .eml) whatever its body
      holds: a body line "From the team" is text.
    """
    envelope = _ENVELOPE.match(raw)
    start = envelope.end() if envelope else 0
    if not _FIELD.match(raw, start):
        raise UsageError("the input is not an email message: it does not start with a header field "
                         "(such as From: or Subject:)")
    if envelope:
        count = 1 + sum(1 for _ in _SEPARATOR.finditer(raw, start))
        if count > 1:
            raise UsageError(f"the input holds {count} messages (an mbox); rewrite-message takes one message: "
                             "split the mbox into one file per message")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rewrite`` and ``rewrite-message`` to the subcommands ``commands``."""
    rewrite = commands.add_parser("rewrite", help="rewrite one HTML file to stdout",
                                  description="Track the links of one HTML document; a report goes to stderr.")
    rewrite.add_argument("file", help="HTML file, or - for stdin")
    rewrite.add_argument("--message-id", required=True, help="the message's id, signed into every URL")
    rewrite.add_argument("--recipient", required=True, help="the recipient, signed into every URL")
    rewrite.add_argument("--metadata", metavar="JSON", help="JSON object signed into every URL")
    rewrite.add_argument("--encoding", default="utf-8", help=describe("the file's encoding, kept on output", default="utf-8"))
    add_settings(rewrite, "secret_key", "secret_key_file", "base_url")
    rewrite.set_defaults(func=rewrite_html)

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
    message.add_argument("--force", action="store_true", help="rewrite even if the message carries a DKIM-Signature or is multipart/signed (which breaks the signature)")
    add_settings(message, "secret_key", "secret_key_file", "base_url")
    message.set_defaults(func=rewrite_message)


def _tracker(args: argparse.Namespace) -> Tracker:
    config = settings(args, "secret_keys", "base_url")
    assert config.base_url is not None  # required above
    return Tracker(secret_keys=list(config.secret_keys), base_url=config.base_url)


def rewrite_html(args: argparse.Namespace) -> int:
    """``mailtrack rewrite``."""
    tracker = _tracker(args)
    metadata = json_option(args.metadata, "--metadata")
    raw = read_input(args.file)
    try:
        html = raw.decode(args.encoding)
    except LookupError:
        raise UsageError(f"--encoding: unknown encoding {args.encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise MailtrackError(f"{args.file} is not {args.encoding} (--encoding): {exc.reason} at byte {exc.start}") from None
    result = tracker.rewrite_html(html, message_id=args.message_id, recipient=args.recipient, metadata=metadata)
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
