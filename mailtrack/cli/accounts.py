"""``mailtrack apikey`` and ``mailtrack subuser``: the accounts, keys and scopes the HTTP API checks.

``apikey create`` prints the new key once, on stdout alone (so ``KEY=$(mailtrack
apikey create ...)`` works); only its SHA-256 is stored. Keys belong to the
parent account (``--account-name``, default ``parent``, created on first use)
or, with ``--subuser``, to one of its subusers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mailtrack.cli._common import UsageError, add_settings, settings
from mailtrack.storage.accounts import ALL_SCOPES, ApiKey
from mailtrack.storage.base import AccountStore, UnknownAccount

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``apikey`` and ``subuser`` (each with its own subcommands) to ``commands``."""
    apikey = commands.add_parser("apikey", help="create, list and revoke API keys",
                                 description="API keys for the HTTP API (Authorization: Bearer KEY).")
    keys = apikey.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = keys.add_parser("create", help="make a key and print it once")
    create.add_argument("--subuser", metavar="NAME", help="a key of this subuser (default: the parent's)")
    create.add_argument("--scopes", nargs="+", metavar="SCOPE", choices=ALL_SCOPES,
                        help=f"what the key may do (default: all of {', '.join(ALL_SCOPES)})")
    create.add_argument("--name", help="a label shown by list")
    create.set_defaults(func=create_key)
    listing = keys.add_parser("list", help="the keys: id, account, scopes, state (never the key)")
    listing.add_argument("--subuser", metavar="NAME", help="only this subuser's keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=list_keys)
    revoke = keys.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the id `apikey list` shows (or the whole key)")
    revoke.set_defaults(func=revoke_key)

    subuser = commands.add_parser("subuser", help="create, list and delete subusers of the parent account",
                                  description="Subusers: accounts of their own, below the parent.")
    users = subuser.add_subparsers(dest="action", required=True, metavar="ACTION")
    make = users.add_parser("create", help="add a subuser")
    make.add_argument("name", metavar="NAME")
    make.set_defaults(func=create_subuser)
    shown = users.add_parser("list", help="the parent and its subusers")
    shown.set_defaults(func=list_subusers)
    delete = users.add_parser("delete", help="remove a subuser with its keys and settings")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(func=delete_subuser)
    for parser in (create, listing, revoke, make, shown, delete):
        add_settings(parser, "db", "account_name")


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[tuple[AccountStore, str]]:
    """The store at ``--db`` (created if missing: making keys is how a deployment starts) and the parent's name;
    the store is closed when the block ends, however it ends."""
    from mailtrack.service import open_account_store

    config = settings(args, "db")
    assert config.db is not None  # required above
    store = open_account_store(config.db)
    try:
        yield store, config.account_name
    finally:
        store.close()


def _parent(store: AccountStore, name: str) -> None:
    """Make sure the parent account exists (the first key or subuser creates it)."""
    if store.account(name) is None:
        store.create_account(name)


def create_key(args: argparse.Namespace) -> int:
    """``mailtrack apikey create``: print the new key on stdout, its id and scopes on stderr."""
    with _store(args) as (store, parent):
        if args.subuser is None:
            _parent(store, parent)
            owner = parent
        else:
            account = store.account(args.subuser)
            if account is None or not account.is_subuser:
                raise UsageError(f"no subuser called {args.subuser!r} (mailtrack subuser create {args.subuser})")
            owner = args.subuser
        stored, key = store.create_key(owner, args.scopes, name=args.name)
    print(key)
    print(f"key {stored.key_id} for {owner}: {', '.join(sorted(stored.scopes))} (shown once: store it now)",
          file=sys.stderr)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    """``mailtrack apikey list``: id, account, scopes, created, state; never a key or its hash."""
    with _store(args) as (store, _):
        keys = store.api_keys(args.subuser)
    for key in keys:
        if args.json:
            print(json.dumps(_key_dict(key), separators=(",", ":")))
        else:
            state = "revoked " + _when(key.revoked) if key.revoked is not None else "active"
            label = f" ({key.name})" if key.name else ""
            print(f"{key.prefix}...  {key.account}{label}  {','.join(sorted(key.scopes))}  created {_when(key.created)}"
                  f"  {state}")
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    """``mailtrack apikey revoke KEY_ID``."""
    key_id = args.key_id.split(".")[1] if args.key_id.startswith("mt.") and args.key_id.count(".") >= 1 else args.key_id
    with _store(args) as (store, _):
        key = store.revoke_key(key_id)
    print(f"revoked {key.prefix}... of {key.account}")
    return 0


def create_subuser(args: argparse.Namespace) -> int:
    """``mailtrack subuser create NAME``."""
    with _store(args) as (store, parent):
        store.create_account(args.name, parent=parent)
    print(f"subuser {args.name} of {parent} created")
    return 0


def list_subusers(args: argparse.Namespace) -> int:
    """``mailtrack subuser list``: the subusers of the parent, one per line."""
    with _store(args) as (store, _):
        accounts = store.accounts()
    for account in accounts:
        if account.is_subuser:
            print(account.name)
    return 0


def delete_subuser(args: argparse.Namespace) -> int:
    """``mailtrack subuser delete NAME``: its keys and settings go too."""
    with _store(args) as (store, _):
        account = store.account(args.name)
        if account is None or not account.is_subuser:
            raise UnknownAccount(f"no subuser called {args.name!r}")
        store.delete_account(args.name)
    print(f"subuser {args.name} deleted")
    return 0


def _key_dict(key: ApiKey) -> dict[str, object]:
    return {"key_id": key.key_id, "prefix": key.prefix, "account": key.account, "name": key.name,
            "scopes": sorted(key.scopes), "created": key.created, "revoked": key.revoked}


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
