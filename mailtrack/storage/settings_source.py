"""The store-backed settings source a :class:`~mailtrack.Tracker` takes as ``account_settings=``.

The core stays pure: it calls a plain ``account name -> settings`` callable
and knows nothing of stores. :class:`StoredSettings` is that callable over an
:class:`~mailtrack.storage.base.AccountStore`, so what ``PATCH
/v3/tracking_settings/...`` stored is what the next rewrite for that account
applies (read on every call: a change is seen at once, by every process).
"""

from __future__ import annotations

from typing import Any

from mailtrack.storage.base import AccountStore

__all__ = ["StoredSettings"]


class StoredSettings:
    """``account_settings=`` for a Tracker: the fields ``store`` holds for an account.

    An unknown account raises :class:`~mailtrack.storage.base.UnknownAccount`
    (a message meant for an account that does not exist is not quietly
    rewritten with the defaults).
    """

    def __init__(self, store: AccountStore) -> None:
        self.store = store

    def __call__(self, account: str) -> dict[str, Any]:
        return self.store.account_settings(account)
