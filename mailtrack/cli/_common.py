"""What the subcommands share: settings options on a parser, reading input, and errors in the command line's words."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from mailtrack.config import OPTIONS, Config
from mailtrack.core.settings import TrackingSettings
from mailtrack.exceptions import MailtrackError

__all__ = ["UsageError", "account_settings", "add_settings", "cli_wording", "describe", "json_option", "read_input", "settings"]


class UsageError(MailtrackError):
    """The command was called wrongly, or given input it does not take: exit status 2, like argparse's errors."""


def describe(text: str, *, default: object = None, env: str | None = None) -> str:
    """Help text ending in ``(default: X; env VAR)``, the parts that apply."""
    notes = ([f"default: {default}"] if default is not None else []) + ([f"env {env}"] if env else [])
    text = text.replace("%", "%%")  # argparse formats help with %
    return f"{text} ({'; '.join(notes)})" if notes else text


def add_settings(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add the :data:`mailtrack.config.OPTIONS` called ``names`` to ``parser``.

    Their argparse default is None ("not given"), so :meth:`Config.from_sources`
    can fall back to the variable and then to the default the help shows.
    """
    for name in names:
        option = OPTIONS[name]
        if option.switch:
            parser.add_argument(option.flag, dest=option.name, default=None, action="store_const", const=True,
                                help=describe(option.help, default=None, env=option.env))
            continue
        parser.add_argument(option.flag, dest=option.name, metavar=option.metavar, default=None,
                            action="append" if option.many else "store",
                            help=describe(option.help, default=option.default, env=option.env))


def settings(args: argparse.Namespace, *required: str) -> Config:
    """The settings for this run: ``args`` over the environment; ``required`` fields must be set."""
    return Config.from_sources(args).require(*required)


def account_settings(config: Config) -> TrackingSettings:
    """The defaults with ``--account``'s stored settings over them (the defaults alone without ``--account``).

    Read once, before any message, and handed to the Tracker as its settings,
    so a batch's workers (processes, a Dask cluster) need no database. An
    account needs ``--db``; an unknown one is an error, not the defaults.
    """
    if config.account is None:
        return TrackingSettings()
    if config.db is None:
        raise UsageError("--account needs --db (or MAILTRACK_DB): the database that holds the account's settings")
    from mailtrack.service import open_store

    store = open_store(config.db, create=False)
    try:
        stored = store.account_settings(config.account)  # type: ignore[attr-defined]
    finally:
        store.close()
    return TrackingSettings().with_account(stored)


def read_input(name: str) -> bytes:
    """The bytes of file ``name`` (``-``: stdin). No newline translation, so CRLF stays CRLF."""
    return Path(name).read_bytes() if name != "-" else sys.stdin.buffer.read()


def json_option(text: str | None, flag: str) -> Any:
    """``text`` parsed as JSON (None stays None); a clear error naming ``flag`` otherwise."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MailtrackError(f"{flag} is not valid JSON: {exc}") from None


#: Keyword arguments the library names in its messages ("pass recipient=") -> the option a CLI user passes.
_KEYWORDS = {"recipient": "--recipient", "message_id": "--message-id", "metadata": "--metadata",
             "settings": "--settings", "force": "--force"}
_KEYWORD = re.compile(r"(?<![\w?&=/.-])(" + "|".join(_KEYWORDS) + r")=(?:True\b)?")


def cli_wording(message: str) -> str:
    """A library message as one line in the command line's words: ``recipient=`` becomes ``--recipient``."""
    return " ".join(_KEYWORD.sub(lambda match: _KEYWORDS[match[1]], message).split())
