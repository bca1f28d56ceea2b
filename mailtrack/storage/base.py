"""The storage protocol: what the recorder, webhooks, endpoints and CLI need from a store.

Adapters talk to a store only through :class:`EventStore` and catch only
:class:`StoreUnavailable`, never a driver's exceptions (``sqlite3.Error``,
``psycopg.Error``), so a second store (PostgreSQL) plugs in without touching
them. A store raises ``StoreUnavailable`` whenever it cannot do what was asked
*for now* (locked, full, unreachable, read-only); the recorder then spools the
event and tries again later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mailtrack.events import TrackingEvent
from mailtrack.exceptions import MailtrackError

__all__ = ["EventStore", "OutboxItem", "StoreError", "StoreUnavailable"]


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
