"""The ``mailtrack`` command line: one parser, one module per group of subcommands.

``demo`` (:mod:`.demo`); ``rewrite`` and ``rewrite-message`` (:mod:`.rewrite`,
campaign batches with ``--out`` in :mod:`.batch`); ``verify`` (:mod:`.verify`);
``serve`` (:mod:`.serve`); ``events``, ``stats`` and ``webhooks``
(:mod:`.events`); ``purge`` and ``forget`` (:mod:`.privacy`); ``apikey`` and ``subuser`` (:mod:`.accounts`). Each module's ``register`` adds its subcommands and binds
each to its function with ``set_defaults(func=...)``; settings (keys, base
URL, database, ...) come from :mod:`mailtrack.config`, arguments over
``MAILTRACK_*`` variables.

Every error is one line on stderr, ``mailtrack <command>: <what>``, never a
traceback. Exit status: 0 done; 1 something failed or was refused (an
invalid value, an unreadable file, the store, a message the library will not
rewrite); 2 a usage error (argparse's, a missing setting, input the command
does not take).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mailtrack.cli import accounts, demo, events, privacy, rewrite, serve, verify
from mailtrack.cli._common import UsageError, cli_wording
from mailtrack.config import MissingSetting
from mailtrack.exceptions import MailtrackError
from mailtrack.storage.base import StoreUnavailable

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``mailtrack`` parser with every subcommand; ``args.func(args)`` runs the chosen one."""
    from mailtrack import __version__

    parser = argparse.ArgumentParser(prog="mailtrack", description="Make outbound email trackable without breaking it.")
    parser.add_argument("--version", action="version", version=f"mailtrack {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, rewrite, verify, serve, events, privacy, accounts):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except BrokenPipeError:  # e.g. `mailtrack demo | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UsageError, MissingSetting) as exc:
        return _fail(args.command, exc, 2)
    except (StoreUnavailable, MailtrackError, OSError) as exc:
        return _fail(args.command, exc, 1)


def _fail(command: str, exc: BaseException, status: int) -> int:
    if isinstance(exc, OSError) and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        message = str(exc) or type(exc).__name__
    print(f"mailtrack {command}: {cli_wording(message)}", file=sys.stderr)
    return status
