"""The storage protocol: what the recorder, webhooks, endpoints and CLI need from a store.

Adapters talk to a store only through :class:`EventStore` and catch only
:class:`StoreUnavailable`, never a driver's exceptions (``sqlite3.Error``,
``psycopg.Error``), so a second store (PostgreSQL) plugs in without touching
them. A store raises ``StoreUnavailable`` whenever it cannot do what was asked
*for now* (locked, full, unreachable, read-only); the recorder then spools the
event and tries again later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mailtrack.core.settings import TrackingSettings
from mailtrack.events import TrackingEvent
from mailtrack.exceptions import MailtrackError
from mailtrack.storage.accounts import Account, ApiKey

__all__ = ["AccountStore", "EventStore", "UnknownAccount", "OutboxItem", "StoreError", "StoreUnavailable"]


class StoreError(MailtrackError):
    """The store refused an operation for a reason that retrying will not fix (a constraint, a corrupt file)."""


class StoreUnavailable(StoreError):
    """The store cannot be read or written right now (locked, full, unreachable, missing).

    ``cause`` is the driver's exception, kept for logs; callers decide by this
    class alone.
    """

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class UnknownAccount(StoreError):
    """No account (parent or subuser) has that name."""


@dataclass(frozen=True)
class OutboxItem:
    """One pending webhook delivery."""

    id: int
    target: str
    attempts: int
    event: TrackingEvent


@runtime_checkable
class EventStore(Protocol):
    """Events, the ``first`` flags and the webhook outbox. Every method may raise :class:`StoreUnavailable`."""

    def record(self, event: TrackingEvent, outbox: Sequence[str] = ()) -> TrackingEvent:
        """Store ``event`` once per ``event_id``, decide ``first``, queue it for each ``outbox`` target, atomically."""
        ...

    def events(
        self, *, message_id: str | None = None, event_type: str | None = None, after_id: int = 0, limit: int | None = None
    ) -> list[TrackingEvent]:
        """Stored events in the order they were recorded, optionally filtered."""
        ...

    def count(self) -> int:
        """How many events are stored."""
        ...

    def stats(self) -> dict[str, Any]:
        """Opens, clicks and unsubscribes per message and per link (see :meth:`SQLiteStore.stats`)."""
        ...

    def outbox_claim(self, target: str, now: float, lease: float, limit: int = 50) -> list[OutboxItem]:
        """Take the due deliveries for ``target`` for ``lease`` seconds (each attempt happens once)."""
        ...

    def outbox_delivered(self, item_id: int, now: float) -> None:
        """Mark a delivery done."""
        ...

    def outbox_failed(self, item_id: int, error: str, next_attempt: float | None) -> None:
        """Record a failed attempt; ``next_attempt`` None gives up."""
        ...

    def outbox_requeue(self, now: float) -> int:
        """Restart every dead delivery; returns how many."""
        ...

    def outbox_rows(self) -> list[dict[str, Any]]:
        """Every outbox row, for inspection."""
        ...

    def close(self) -> None:
        """Release this thread's resources."""
        ...


@runtime_checkable
class AccountStore(Protocol):
    """Accounts, subusers, API keys and each account's stored tracking settings.

    The parent is the one account without a parent; subusers belong to it.
    Settings are kept in the v3 API's account shape holding only the fields
    that were set, so defaults < account < message stays field by field.
    Every method may raise :class:`StoreUnavailable`; a name that is no
    account raises :class:`UnknownAccount`.
    """

    def create_account(self, name: str, *, parent: str | None = None) -> Account:
        """Add the parent (``parent`` None; there is one) or a subuser of ``parent`` (created when missing)."""
        ...

    def account(self, name: str) -> Account | None:
        """The account called ``name``, or None."""
        ...

    def accounts(self) -> list[Account]:
        """Every account, the parent first, then subusers by name."""
        ...

    def delete_account(self, name: str) -> None:
        """Remove a subuser with its keys and settings (the parent cannot be deleted)."""
        ...

    def create_key(self, account: str, scopes: Iterable[str] | None = None, *, name: str | None = None) -> tuple[ApiKey, str]:
        """A new key for ``account``: the stored :class:`ApiKey` and the full key, which is never stored or shown again."""
        ...

    def api_keys(self, account: str | None = None) -> list[ApiKey]:
        """Stored keys (of ``account``, or all), oldest first, revoked ones included."""
        ...

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke a key by its id (a :class:`StoreError` if none has it); revoking twice keeps the first time."""
        ...

    def authenticate(self, key: str) -> ApiKey | None:
        """The live key ``key`` is, or None (malformed, unknown, wrong secret, revoked): compared in constant time."""
        ...

    def account_settings(self, name: str) -> dict[str, Any]:
        """The settings stored for account ``name`` (account shape, only the fields set; ``{}`` when none)."""
        ...

    def tracking_settings(self, name: str) -> TrackingSettings:
        """The account's full settings: the defaults with its stored fields over them."""
        ...

    def patch_tracking_settings(
        self, name: str, section: str, body: Mapping[str, Any], *, every_field: bool = False
    ) -> tuple[TrackingSettings, dict[str, Any]]:
        """``PATCH /v3/tracking_settings/{section}`` in one transaction: the new settings and the section's new state.

        ``every_field=True`` also takes the section's fields v3's PATCH does not (``click.enable_text``, for v2).

        Raises :class:`~mailtrack.exceptions.SettingsError` (nothing written) for a body the section does not take.
        """
        ...

    def close(self) -> None:
        """Release this thread's resources."""
        ...
