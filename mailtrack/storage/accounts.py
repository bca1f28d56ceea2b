"""Accounts, subusers, API keys and scopes: the values the :class:`~mailtrack.storage.base.AccountStore` keeps.

An **account** is the parent (one per store, named by ``--account-name``,
``"parent"`` by default) or one of its **subusers**. Each has its own stored
tracking settings (the v3 API's shapes, only the fields that were set) and its
own **API keys**.

A key reads ``mt.<key_id>.<secret>``: ``key_id`` (12 hex digits) is public (it
is what ``mailtrack apikey list`` shows and how a key is found), ``secret`` is
``secrets.token_urlsafe(32)``: 256 random bits. Only the SHA-256 of the whole
key is stored. A slow, salted hash (scrypt, bcrypt) exists to make guessing a
*password* expensive; a key with 256 bits of entropy cannot be guessed, so one
SHA-256 is as safe and costs microseconds per request instead of tens of
milliseconds. The stored hash is compared with :func:`hmac.compare_digest`
(constant time), so the time an answer takes says nothing about how much of a
guessed key was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from mailtrack.exceptions import ArgumentError

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_PARENT",
    "Account",
    "ApiKey",
    "NewKey",
    "check_account_name",
    "check_scopes",
    "digest_matches",
    "hash_key",
    "new_key",
    "split_key",
]

#: Scopes in SendGrid's names (``tracking_settings.*``) and ours (``events.read``, ``stats.read``).
ALL_SCOPES: tuple[str, ...] = ("tracking_settings.read", "tracking_settings.update", "events.read", "stats.read")
#: The parent account's name unless ``--account-name`` / ``MAILTRACK_ACCOUNT_NAME`` says otherwise.
DEFAULT_PARENT = "parent"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_KEY = re.compile(r"mt\.([0-9a-f]{12})\.([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class Account:
    """An account: the parent (``parent`` None) or a subuser of ``parent``."""

    name: str
    parent: str | None
    created: float

    @property
    def is_subuser(self) -> bool:
        """True for a subuser, False for the parent."""
        return self.parent is not None


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret: whose it is, what it may do, and whether it was revoked."""

    key_id: str
    account: str
    scopes: frozenset[str]
    created: float
    revoked: float | None = None
    name: str | None = None

    @property
    def prefix(self) -> str:
        """How the key starts (``mt.<key_id>.``): enough to recognise it, never enough to use it."""
        return f"mt.{self.key_id}."


class NewKey(NamedTuple):
    """A key just made: the full ``key`` (shown once, never stored) and its ``key_id`` and ``digest`` (stored)."""

    key: str
    key_id: str
    digest: str


def new_key() -> NewKey:
    """A fresh random key, its public id and the SHA-256 that is stored in its place."""
    key_id = secrets.token_hex(6)
    key = f"mt.{key_id}.{secrets.token_urlsafe(32)}"
    return NewKey(key, key_id, hash_key(key))


def hash_key(key: str) -> str:
    """The hex SHA-256 of ``key``: what the store keeps (see the module docstring for why SHA-256 suffices)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def split_key(key: object) -> str | None:
    """The ``key_id`` of a well-formed key, else None (anything else a client sends is simply no key)."""
    if not isinstance(key, str):
        return None
    match = _KEY.fullmatch(key)
    return match[1] if match else None


def digest_matches(key: str, digest: str) -> bool:
    """Whether ``key`` hashes to ``digest``, compared in constant time."""
    return hmac.compare_digest(hash_key(key).encode("ascii"), digest.encode("ascii"))


def check_account_name(name: object) -> str:
    """``name`` if it can name an account (1-64 letters, digits and ``. _ @ + -``); an :class:`ArgumentError` else."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ArgumentError(f"an account name is 1 to 64 letters, digits, '.', '_', '@', '+' or '-', not {name!r}")
    return name


def check_scopes(scopes: Iterable[str] | None) -> frozenset[str]:
    """The scopes as a set, each one of :data:`ALL_SCOPES` (None: all of them, as SendGrid's full access)."""
    if scopes is None:
        return frozenset(ALL_SCOPES)
    if isinstance(scopes, str):
        scopes = [scopes]
    chosen = frozenset(scopes)
    unknown = sorted(repr(s) for s in chosen if s not in ALL_SCOPES)
    if unknown:
        raise ArgumentError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}")
    if not chosen:
        raise ArgumentError(f"a key needs at least one scope; known: {', '.join(ALL_SCOPES)}")
    return chosen
