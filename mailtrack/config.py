"""The one place mailtrack's settings are read: command-line arguments first, then ``MAILTRACK_*`` variables.

``mailtrack serve``, ``rewrite``, ``rewrite-message``, ``events``/``stats``/
``webhooks``, the WSGI entry point (``mailtrack.wsgi:application``) and the
demo all build a :class:`Config` with :meth:`Config.from_sources`, so a value
means the same everywhere. Before there was one reader, ``rewrite`` took
``MAILTRACK_SECRET_KEY="old,new"`` as one key while ``serve`` split it, and
the server refused every URL the command line wrote.

Signing keys, one rule everywhere (itsdangerous' order, as :class:`~mailtrack.Tracker` takes them):

* ``--secret-key`` / ``MAILTRACK_SECRET_KEY``: a comma-separated list,
  **newest last**: the last key signs, every key verifies. Rotate by appending
  a new key; drop the oldest once its links no longer matter.
* ``--secret-key-file`` / ``MAILTRACK_SECRET_KEY_FILE``: a file with one key
  per line, in the same order (newest last); blank lines and lines starting
  with ``#`` are ignored. A key in a file may hold commas.

Each key is stripped of surrounding whitespace. Give a key or a key file, not
both (from the same source: an argument still wins over the environment).

An argument that is given (not None, not an empty list) wins over the
variable; an empty variable counts as unset. Every invalid value raises
:class:`~mailtrack.exceptions.ConfigurationError` naming the option and its
variable; a missing one (:meth:`Config.require`) raises
:class:`MissingSetting`, which the command line reports as a usage error.
Secrets never appear in a :class:`Config`'s ``repr`` or in any error message.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mailtrack.core.tokens import TOKEN_FORMATS
from mailtrack.core.urls import UrlLayout
from mailtrack.delivery.privacy import IP_MODES, USER_AGENT_MODES, Privacy, parse_duration
from mailtrack.delivery.recorder import DEFAULT_SPOOL_MAX_BYTES
from mailtrack.delivery.webhooks import check_url, secret_keys
from mailtrack.exceptions import ArgumentError, ConfigurationError, MailtrackError
from mailtrack.http.endpoints import check_max_age, trusted_networks
from mailtrack.machine import Classifier, classifier_for
from mailtrack.storage.accounts import check_account_name
from mailtrack.storage.dsn import masked

__all__ = ["OPTIONS", "Config", "MissingSetting", "Option"]


class MissingSetting(ConfigurationError):
    """A setting the command needs was given neither as an argument nor in the environment.

    ``options`` names the :data:`OPTIONS` that are missing.
    """

    def __init__(self, message: str, *, options: Sequence[str]) -> None:
        super().__init__(message)
        self.options = tuple(options)


@dataclass(frozen=True)
class Option:
    """One setting as a user spells it: ``--flag``, ``MAILTRACK_*`` variable, default and help.

    ``name`` is the argparse ``dest`` (and the key of a mapping given to
    :meth:`Config.from_sources`); ``field`` the :class:`Config` attribute it
    fills. ``many``: the flag repeats and the variable is comma-separated.
    """

    name: str
    flag: str
    env: str
    help: str
    field: str = ""
    default: Any = None
    metavar: str | None = None
    many: bool = False
    secret: bool = False
    switch: bool = False  #: on or off: ``--flag`` alone; the variable is 1/true/yes/on or 0/false/no/off

    @property
    def where(self) -> str:
        """How the user sets it, for messages: ``--max-age, MAILTRACK_MAX_AGE``."""
        return f"{self.flag}, {self.env}"


def _options(*options: Option) -> dict[str, Option]:
    return {o.name: o if o.field else replace(o, field=o.name) for o in options}


#: The HTTP servers ``mailtrack serve`` can run (:mod:`mailtrack.http.loop_server`, :mod:`mailtrack.http.server`).
SERVERS = ("uvicorn", "waitress")
#: Who writes a SQLite store's events (``--writer``): see :mod:`mailtrack.storage.writer_process`.
WRITERS = ("process", "thread")

#: Every setting mailtrack reads, by argparse ``dest``.
OPTIONS: dict[str, Option] = _options(
    Option("secret_key", "--secret-key", "MAILTRACK_SECRET_KEY", "signing keys, comma-separated, newest last: "
           "the last signs, every one verifies", field="secret_keys", metavar="KEYS", secret=True),
    Option("secret_key_file", "--secret-key-file", "MAILTRACK_SECRET_KEY_FILE", "file with one signing key per line, "
           "newest last; blank lines and # comments are ignored", field="secret_keys", metavar="FILE"),
    Option("base_url", "--base-url", "MAILTRACK_BASE_URL", "the public URL the tracking links use, "
           "e.g. https://t.example.com", metavar="URL"),
    Option("db", "--db", "MAILTRACK_DB", "event database: a SQLite file, or postgresql://user:password@host/db "
           "for a PostgreSQL database several servers share (pip install 'mailtrack[postgres]')", metavar="FILE|URL"),
    Option("host", "--host", "MAILTRACK_HOST", "address to listen on", default="127.0.0.1"),
    Option("port", "--port", "MAILTRACK_PORT", "port to listen on, 0 for any free port", default=8025),
    Option("server", "--server", "MAILTRACK_SERVER", "HTTP server: uvicorn (one event loop; the default) or "
           "waitress (a thread per request)", default="uvicorn", metavar="uvicorn|waitress"),
    # named serve_workers: `rewrite --workers` (a batch's process pool) is another option with the same flag
    Option("serve_workers", "--workers", "MAILTRACK_WORKERS", "processes answering requests, each its own event loop "
           "and event writer (uvicorn; POSIX); the first also sends webhooks and rolls stats", field="workers",
           default=1),
    Option("writer", "--writer", "MAILTRACK_WRITER", "who writes a SQLite store's events: process (a child "
           "process, beside the server; the default) or thread (a thread of the server); PostgreSQL always writes "
           "from the server", default="process", metavar="process|thread"),
    Option("threads", "--threads", "MAILTRACK_THREADS", "threads for requests that read the store (uvicorn), "
           "or for every request (waitress)", default=8),
    Option("access_log", "--access-log", "MAILTRACK_ACCESS_LOG", "log a line per request (tokens shortened, "
           "no query strings or credentials)", default=False, switch=True),
    Option("trusted_proxy", "--trusted-proxy", "MAILTRACK_TRUSTED_PROXIES", "believe X-Forwarded-For from this "
           "address or network; repeatable, comma-separated in the variable", field="trusted_proxies",
           metavar="ADDRESS", many=True),
    Option("max_age", "--max-age", "MAILTRACK_MAX_AGE", "refuse click links older than this many seconds; "
           "unsubscribe links never expire", metavar="SECONDS"),
    Option("landing", "--landing", "MAILTRACK_LANDING", "HTML file for the unsubscribe confirmation page; "
           "mailtrack adds its button", field="landing_html", metavar="FILE"),
    Option("webhook", "--webhook", "MAILTRACK_WEBHOOK", "POST each event to this URL; repeatable, "
           "comma-separated in the variable", field="webhooks", metavar="URL", many=True),
    Option("webhook_skip_machine", "--webhook-skip-machine", "MAILTRACK_WEBHOOK_SKIP_MACHINE", "send this --webhook "
           "URL people's events only, none whose machine verdict is set (Apple MPP opens, scanner clicks, ...); "
           "repeatable, comma-separated in the variable", field="webhooks_skip_machine", metavar="URL", many=True),
    Option("webhook_secret", "--webhook-secret", "MAILTRACK_WEBHOOK_SECRET", "Standard Webhooks signing secret "
           "(whsec_..., from mailtrack webhooks --new-secret); several separated by spaces while rotating",
           metavar="SECRET", secret=True),
    Option("spool_dir", "--spool-dir", "MAILTRACK_SPOOL_DIR", "where events wait while the database cannot take "
           "them (default: the database's name + .spool); on another volume it still works when the database's disk "
           "is full", metavar="DIR"),
    Option("spool_max_bytes", "--spool-max-bytes", "MAILTRACK_SPOOL_MAX_BYTES", "cap on the spool's size, in bytes "
           "or with a K, M or G suffix; past it, events the database cannot take are lost and counted",
           default=DEFAULT_SPOOL_MAX_BYTES, metavar="BYTES"),
    Option("account_name", "--account-name", "MAILTRACK_ACCOUNT_NAME", "the parent account's name (subusers belong "
           "to it)", default="parent", metavar="NAME"),
    Option("account", "--account", "MAILTRACK_ACCOUNT", "apply this account's stored tracking settings "
           "(the parent's name or a subuser; needs --db)", metavar="NAME"),
    Option("privacy_ip", "--privacy-ip", "MAILTRACK_PRIVACY_IP", "what events keep of the reader's IP address: "
           "full (the default), truncate (IPv4 /24, IPv6 /48) or none", default="full", metavar="full|truncate|none"),
    Option("privacy_user_agent", "--privacy-user-agent", "MAILTRACK_PRIVACY_USER_AGENT", "what events keep of the "
           "reader's user agent: full (the default), family (Chrome, Outlook, Apple Mail, ...; pip install "
           "'mailtrack[privacy]') or none", default="full", metavar="full|family|none"),
    Option("token_format", "--token-format", "MAILTRACK_TOKEN_FORMAT", "the format of the tokens written into "
           "tracking URLs: opaque (encrypted: a URL reveals nothing but its length) or signed (readable base64 JSON, "
           "as before issue 14); both verify either way", default="opaque", metavar="opaque|signed"),
    Option("purge_after", "--purge-after", "MAILTRACK_PURGE_AFTER", "delete events older than this, once an hour "
           "(90d, 12h, 30m; see mailtrack purge); default: keep them", metavar="DURATION"),
    Option("machine_ranges", "--machine-ranges", "MAILTRACK_MACHINE_RANGES", "the IP ranges file the machine-event "
           "classifier reads (CSV: network,label,source,retrieved) instead of the shipped one; off: no machine "
           "verdicts", metavar="FILE|off"),
)

_BY_FIELD: dict[str, list[Option]] = {}
for _option in OPTIONS.values():
    _BY_FIELD.setdefault(_option.field, []).append(_option)


def _where(field_name: str) -> str:
    """``(--flag, MAILTRACK_VAR)`` for the option(s) behind a :class:`Config` field."""
    options = _BY_FIELD[field_name]
    return "(" + ", ".join([o.flag for o in options] + [o.env for o in options]) + ")"


def _invalid(field_name: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"{problem} {_where(field_name)}")


def _checked(field_name: str, check: Callable[[Any], object], value: object) -> None:
    """Run an adapter's own check on ``value``; its error, if any, names the option and variable too."""
    try:
        check(value)
    except ConfigurationError as exc:
        message = str(exc).split(" (--", 1)[0]  # the adapter's hint about where it is set: ours is more precise
        raise _invalid(field_name, message) from None


@dataclass(frozen=True, repr=False)
class Config:
    """Every setting of a mailtrack process, validated; build it with :meth:`from_sources`.

    Direct construction (``Config(secret_keys=["k"], base_url=...)``) takes
    typed values and validates them the same way; lists become tuples. Fields
    a command does not need may stay unset; :meth:`require` checks the ones it
    does. ``landing_html`` holds the page's text (read from ``--landing``).
    """

    secret_keys: tuple[str, ...] = ()
    base_url: str | None = None
    db: str | None = None
    host: str = OPTIONS["host"].default
    port: int = OPTIONS["port"].default
    threads: int = OPTIONS["threads"].default
    workers: int = OPTIONS["serve_workers"].default
    server: str = OPTIONS["server"].default
    writer: str = OPTIONS["writer"].default
    access_log: bool = OPTIONS["access_log"].default
    trusted_proxies: tuple[str, ...] = ()
    max_age: float | None = None
    landing_html: str | None = None
    webhooks: tuple[str, ...] = ()
    webhooks_skip_machine: tuple[str, ...] = ()
    webhook_secret: str | None = None
    account_name: str = OPTIONS["account_name"].default
    account: str | None = None
    spool_dir: str | None = None
    spool_max_bytes: int = OPTIONS["spool_max_bytes"].default
    privacy_ip: str = OPTIONS["privacy_ip"].default
    privacy_user_agent: str = OPTIONS["privacy_user_agent"].default
    purge_after: float | None = None
    machine_ranges: str | None = None
    token_format: str = OPTIONS["token_format"].default

    def __post_init__(self) -> None:
        for name in ("secret_keys", "trusted_proxies", "webhooks", "webhooks_skip_machine"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise _invalid(name, f"{name} must be a list of strings")
            object.__setattr__(self, name, tuple(value))
        if not all(isinstance(key, str) and key for key in self.secret_keys):
            raise _invalid("secret_keys", "secret keys must be non-empty strings")
        if self.base_url is not None:
            try:
                object.__setattr__(self, "base_url", UrlLayout.create(self.base_url).base_url)
            except (MailtrackError, TypeError) as exc:
                raise _invalid("base_url", str(exc)) from None
        if self.db is not None and (not isinstance(self.db, (str, os.PathLike)) or not str(self.db)):
            raise _invalid("db", f"db must be a file path or a postgresql:// URL, not {self.db!r}")
        if self.db is not None:
            object.__setattr__(self, "db", os.fspath(self.db))
        if not isinstance(self.host, str) or not self.host:
            raise _invalid("host", f"host must be an address to listen on, not {self.host!r}")
        if not _is_int(self.port) or not 0 <= self.port <= 65535:
            raise _invalid("port", f"port must be a whole number from 0 to 65535, not {self.port!r}")
        if not _is_int(self.threads) or self.threads < 1:
            raise _invalid("threads", f"threads must be a whole number of at least 1, not {self.threads!r}")
        if not _is_int(self.workers) or not 1 <= self.workers <= 256:
            raise _invalid("workers", f"workers must be a whole number from 1 to 256, not {self.workers!r}")
        if self.server not in SERVERS:
            raise _invalid("server", f"server must be one of {', '.join(SERVERS)}, not {self.server!r}")
        if self.writer not in WRITERS:
            raise _invalid("writer", f"writer must be one of {', '.join(WRITERS)}, not {self.writer!r}")
        if not isinstance(self.access_log, bool):
            raise _invalid("access_log", f"access_log must be true or false, not {self.access_log!r}")
        # The checks the adapters make themselves, run here first so a mistake is named with its option and variable.
        _checked("trusted_proxies", trusted_networks, self.trusted_proxies)
        _checked("max_age", check_max_age, self.max_age)
        if self.landing_html is not None and not isinstance(self.landing_html, str):
            raise _invalid("landing_html", "the landing page must be text")
        for url in self.webhooks:
            _checked("webhooks", check_url, url)
        for url in self.webhooks_skip_machine:
            if url not in self.webhooks:
                raise _invalid("webhooks_skip_machine", f"{url} is not one of the webhooks (--webhook); "
                                                        "--webhook-skip-machine names one of them")
        if self.webhook_secret is not None and not isinstance(self.webhook_secret, str):
            raise _invalid("webhook_secret", "the webhook secret must be a string")
        if self.webhooks and not self.webhook_secret:
            raise _invalid("webhook_secret", "webhooks need a secret")
        if self.webhook_secret is not None:
            _checked("webhook_secret", secret_keys, self.webhook_secret)
        if self.spool_dir is not None and (not isinstance(self.spool_dir, (str, os.PathLike)) or not str(self.spool_dir)):
            raise _invalid("spool_dir", f"spool_dir must be a directory path, not {self.spool_dir!r}")
        if self.spool_dir is not None:
            object.__setattr__(self, "spool_dir", os.fspath(self.spool_dir))
        if not _is_int(self.spool_max_bytes) or self.spool_max_bytes < 1:
            raise _invalid("spool_max_bytes", f"spool_max_bytes must be a positive number of bytes, not "
                                              f"{self.spool_max_bytes!r}")
        _checked("account_name", _account_name, self.account_name)
        if self.account is not None:
            _checked("account", _account_name, self.account)
        if self.privacy_ip not in IP_MODES:
            raise _invalid("privacy_ip", f"privacy_ip must be one of {', '.join(IP_MODES)}, not {self.privacy_ip!r}")
        if self.privacy_user_agent not in USER_AGENT_MODES:
            raise _invalid("privacy_user_agent", f"privacy_user_agent must be one of {', '.join(USER_AGENT_MODES)}, "
                                                 f"not {self.privacy_user_agent!r}")
        _checked("privacy_user_agent", lambda _: self.privacy, None)  # family without ua-parser installed
        if self.token_format not in TOKEN_FORMATS:
            raise _invalid("token_format", f"token_format must be one of {', '.join(TOKEN_FORMATS)}, "
                                           f"not {self.token_format!r}")
        if self.purge_after is not None and (isinstance(self.purge_after, bool)
                                             or not isinstance(self.purge_after, (int, float))
                                             or not 0 < self.purge_after < float("inf")):
            raise _invalid("purge_after", f"purge_after must be a positive number of seconds, not {self.purge_after!r}")
        if self.machine_ranges is not None:
            if not isinstance(self.machine_ranges, (str, os.PathLike)) or not str(self.machine_ranges):
                raise _invalid("machine_ranges", f"machine_ranges must be a file path or off, not {self.machine_ranges!r}")
            object.__setattr__(self, "machine_ranges", os.fspath(self.machine_ranges))
            _checked("machine_ranges", classifier_for, self.machine_ranges)  # a bad file is named with its line now

    @property
    def classifier(self) -> Classifier | None:
        """The machine-event classifier (``--machine-ranges``): the shipped ranges', a file's, or None when off."""
        return classifier_for(self.machine_ranges)

    @property
    def privacy(self) -> Privacy:
        """What events keep of the reader's address and user agent (``--privacy-ip``, ``--privacy-user-agent``)."""
        return Privacy(ip=self.privacy_ip, user_agent=self.privacy_user_agent)  # type: ignore[arg-type]

    @classmethod
    def from_sources(
        cls, args: Mapping[str, Any] | argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
    ) -> Config:
        """Read every setting from ``args`` (argparse's namespace, or a mapping by :data:`OPTIONS` name), then ``environ``.

        ``environ`` defaults to ``os.environ``. Values may be strings (parsed
        here, the same way for both sources) or already typed.
        """
        env = os.environ if environ is None else environ
        given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})

        def argument(name: str) -> Any:
            value = given.get(name)
            return None if value is None or (OPTIONS[name].many and not isinstance(value, str) and not value) else value

        def variable(name: str) -> str | None:
            return env.get(OPTIONS[name].env) or None

        def pick(name: str) -> Any:
            value = argument(name)
            return value if value is not None else variable(name)

        values: dict[str, Any] = {"secret_keys": _secret_keys(argument, variable)}
        for name in ("base_url", "db", "host", "webhook_secret", "account_name", "account", "spool_dir", "server",
                     "writer", "privacy_ip", "privacy_user_agent", "machine_ranges", "token_format"):
            value = pick(name)
            if value is not None:
                values[OPTIONS[name].field] = value
        for name in ("port", "threads", "serve_workers"):
            value = pick(name)
            if value is not None:
                values[OPTIONS[name].field] = _parse(name, value, int, "a whole number")
        value = pick("access_log")
        if value is not None:
            values["access_log"] = _switch("access_log", value)


        value = pick("spool_max_bytes")
        if value is not None:
            values["spool_max_bytes"] = _parse_bytes(value)
        value = pick("max_age")
        if value is not None:
            values["max_age"] = _parse("max_age", value, float, "a positive number of seconds")
        value = pick("purge_after")
        if value is not None:
            values["purge_after"] = _duration("purge_after", value)
        for name in ("trusted_proxy", "webhook", "webhook_skip_machine"):
            values[OPTIONS[name].field] = _listed(pick(name))
        landing = pick("landing")
        if landing is not None:
            values["landing_html"] = _read_text(landing, OPTIONS["landing"], "the landing page")
        return cls(**values)

    def require(self, *fields: str) -> Config:
        """``self`` if every named field is set; else a :class:`MissingSetting` naming the options to set."""
        missing = [name for name in fields if getattr(self, name) in (None, ())]
        if missing:
            wanted = [
                " or ".join(o.flag for o in _BY_FIELD[name]) + " (or " + ", ".join(o.env for o in _BY_FIELD[name]) + ")"
                for name in missing
            ]
            verb = "is" if len(wanted) == 1 else "are"
            raise MissingSetting(f"{' and '.join(wanted)} {verb} required", options=missing)
        return self

    def __repr__(self) -> str:
        shown = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "secret_keys":
                shown.append(f"secret_keys=<{len(value)} key{'s' if len(value) != 1 else ''}>")
            elif name == "webhook_secret":
                shown.append(f"webhook_secret={'<set>' if value else None}")
            elif name == "db" and value is not None:
                shown.append(f"db={masked(value)!r}")  # a PostgreSQL URL's password is never shown
            elif name == "landing_html":
                shown.append(f"landing_html={None if value is None else f'<{len(value)} characters>'}")
            else:
                shown.append(f"{name}={value!r}")
        return f"Config({', '.join(shown)})"

    __str__ = __repr__


def _account_name(value: object) -> None:
    """The store's check of an account name, as a configuration error."""
    try:
        check_account_name(value)
    except ArgumentError as exc:
        raise ConfigurationError(str(exc)) from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse(name: str, value: Any, kind: type[Any], what: str) -> Any:
    if not isinstance(value, str):
        return value  # typed already; __post_init__ checks it
    try:
        return kind(value.strip())
    except ValueError:
        raise _invalid(OPTIONS[name].field, f"{OPTIONS[name].field} must be {what}, not {value!r}") from None


def _duration(name: str, value: Any) -> Any:
    """``"90d"`` and the like as seconds (:func:`~mailtrack.delivery.privacy.parse_duration`); typed values pass."""
    if not isinstance(value, str):
        return value
    try:
        return parse_duration(value)
    except ArgumentError as exc:
        raise _invalid(OPTIONS[name].field, f"{name}: {exc}") from None


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(name: str, value: Any) -> Any:
    """An on/off setting from its variable's text (typed values pass through to ``__post_init__``'s check)."""
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word in _ON or word in _OFF:
        return word in _ON
    raise _invalid(OPTIONS[name].field, f"{name} must be one of {'/'.join(_ON)} or {'/'.join(_OFF)}, not {value!r}")


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


def _parse_bytes(value: Any) -> Any:
    """``"512M"``, ``"1G"``, ``"1048576"`` as a number of bytes (binary units); typed values are left to the checks."""
    if not isinstance(value, str):
        return value
    text = value.strip().upper()
    digits = text.rstrip("KMGTIB ")
    unit = text[len(digits):].strip()
    try:
        number = int(digits)
    except ValueError:
        number = -1
    if number < 1 or unit not in _UNITS:
        raise _invalid("spool_max_bytes", f"spool_max_bytes must be a positive number of bytes (K, M or G suffix "
                                          f"allowed), not {value!r}")
    return number * _UNITS[unit]


def _listed(value: Any) -> tuple[Any, ...]:
    """A comma-separated string, or a repeated option's values, as a tuple without blanks (each stripped)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    stripped = [item.strip() if isinstance(item, str) else item for item in items]
    return tuple(item for item in stripped if item != "")


def _secret_keys(argument: Callable[[str], Any], variable: Callable[[str], Any]) -> tuple[str, ...]:
    """The keys from the first source that names any: arguments, then the environment."""
    for source, label in ((argument, "arguments"), (variable, "environment")):
        key, key_file = source("secret_key"), source("secret_key_file")
        if key is not None and key_file is not None:
            where = "--secret-key and --secret-key-file" if label == "arguments" else \
                "MAILTRACK_SECRET_KEY and MAILTRACK_SECRET_KEY_FILE"
            raise ConfigurationError(f"give {where} one at a time, not both")
        if key is not None:
            keys = _listed(key)
            if not keys:
                raise _invalid("secret_keys", "no secret key given (only commas and blanks)")
            return keys
        if key_file is not None:
            text = _read_text(key_file, OPTIONS["secret_key_file"], "the key file")
            keys = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))
            if not keys:
                raise ConfigurationError(f"the key file {str(key_file)!r} holds no key ({OPTIONS['secret_key_file'].where})")
            return keys
    return ()


def _read_text(path: Any, option: Option, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, TypeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigurationError(f"cannot read {what} {str(path)!r}: {reason} ({option.where})") from None
