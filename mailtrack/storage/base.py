"""The storage protocol: what the recorder, webhooks, endpoints and CLI need from a store.

Adapters talk to a store only through :class:`EventStore` and catch only
:class:`StoreUnavailable`, never a driver's exceptions (``sqlite3.Error``,
``psycopg.Error``), so a second store (PostgreSQL) plugs in without touching
them. A store raises ``StoreUnavailable`` whenever it cannot do what was asked
*for now* (locked, full, unreachable, read-only); the recorder then spools the
event and tries again later.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from mailtrack.core.settings import TrackingSettings
from mailtrack.events import MACHINE_LABELS, EventType, TrackingEvent
from mailtrack.exceptions import ArgumentError, MailtrackError
from mailtrack.storage.accounts import Account, ApiKey

__all__ = ["GROUP_BYS", "MACHINE_FILTERS", "MAX_PAGE", "AccountStore", "Erased", "EventPage", "EventQuery", "EventStore", "EventWriter", "GroupBy", "OutboxItem",
           "StatsPage", "StatsRow", "StoreError", "StoreUnavailable", "UnknownAccount", "check_before", "check_recipient",
           "same_recipient"]

#: What ``stats`` can group by: UTC day, a metadata key's value (the campaign), message, clicked URL, tag.
GroupBy = Literal["day", "campaign", "message", "link", "tag"]
GROUP_BYS: tuple[str, ...] = get_args(GroupBy)
#: The most events one page may hold (the Events API's ``limit`` ceiling).
MAX_PAGE = 1000


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


#: What :attr:`EventQuery.machine` takes: people's events, machines' (any label), or one label's.
MACHINE_FILTERS = ("none", "any", *MACHINE_LABELS)


@dataclass(frozen=True)
class EventQuery:
    """Which events a query or a stats request covers; every field None (or empty) means "no condition".

    ``recipient`` ``""`` selects the events of messages tracked without a
    recipient (stored that way). ``since`` is inclusive and ``until``
    exclusive, both Unix seconds. ``metadata`` pairs must all match (a value
    that is not a str matches its compact JSON: ``5``, ``true``). An event
    matches ``tag`` when the tag is one of its tags. ``account`` None reads
    every account's events; ``""`` only the parent's (events of messages
    rewritten without an account), a name only that subuser's. ``machine`` (events only: stats count people and
    machines apart, see :class:`StatsRow`) is ``"none"`` for people's events (verdict None), ``"any"`` for
    machines' (any label), or one of :data:`~mailtrack.events.MACHINE_LABELS`. Built from untrusted input
    by the HTTP API and the CLI, so every field is checked here
    (:class:`~mailtrack.exceptions.ArgumentError`).
    """

    message_id: str | None = None
    recipient: str | None = None
    event_type: EventType | None = None
    since: float | None = None
    until: float | None = None
    metadata: tuple[tuple[str, str], ...] = field(default=())
    tag: str | None = None
    account: str | None = None
    machine: str | None = None

    def __post_init__(self) -> None:
        for name in ("message_id", "recipient", "tag", "account"):
            if not isinstance(getattr(self, name), (str, type(None))):
                raise ArgumentError(f"{name} must be a str or None, not {getattr(self, name)!r}")
        if self.event_type is not None:
            try:
                object.__setattr__(self, "event_type", EventType(self.event_type))
            except ValueError:
                raise ArgumentError(f"type must be one of {', '.join(t.value for t in EventType)}, "
                                    f"not {self.event_type!r}") from None
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ArgumentError(f"{name} must be Unix seconds, not {value!r}")
        if self.machine is not None and self.machine not in MACHINE_FILTERS:
            raise ArgumentError(f"machine must be one of {', '.join(MACHINE_FILTERS)}, not {self.machine!r}")
        if not isinstance(self.metadata, tuple) or not all(
                isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
                for pair in self.metadata):
            raise ArgumentError(f"metadata must be a tuple of (key, value) str pairs, not {self.metadata!r}")


@dataclass(frozen=True)
class EventPage:
    """One page of events, newest first; ``next_before`` is the id to continue below (None: this was the last page)."""

    events: list[TrackingEvent]
    next_before: int | None


@dataclass(frozen=True)
class StatsPage:
    """One page of stats groups in key order; ``next_after`` is the last key to continue after (None: last page)."""

    rows: list[StatsRow]
    next_after: str | None


@dataclass(frozen=True)
class StatsRow:
    """The counts of one group. ``unique_*`` count recipients of a message (each counted on its first such event).

    People are counted, machines beside them: ``opens``, ``clicks``, ``unsubscribes`` and their ``unique_*``
    (hence the rates) count the events whose ``machine`` verdict is None; ``machine_opens``, ``machine_clicks``
    and ``machine_unsubscribes`` count the others (every label), which never take a first-event slot.

    ``sent`` is None: the store does not know how many were sent, so the
    open and click rates (unique over sent) are None too; ``click_to_open``
    (unique clicks over unique opens) is known. In ``link`` rows only clicks
    mean anything and the other counts are None.
    """

    key: str
    opens: int | None
    unique_opens: int | None
    clicks: int
    unique_clicks: int
    unsubscribes: int | None
    unique_unsubscribes: int | None
    sent: int | None = None
    machine_opens: int | None = 0
    machine_clicks: int = 0
    machine_unsubscribes: int | None = 0

    @property
    def open_rate(self) -> float | None:
        return None if not self.sent or self.unique_opens is None else self.unique_opens / self.sent

    @property
    def click_rate(self) -> float | None:
        return None if not self.sent else self.unique_clicks / self.sent

    @property
    def click_to_open(self) -> float | None:
        return None if not self.unique_opens else self.unique_clicks / self.unique_opens

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``GET /v1/stats`` and ``mailtrack stats --group-by ... --json``."""
        return {"key": self.key, "sent": self.sent, "opens": self.opens, "unique_opens": self.unique_opens,
                "clicks": self.clicks, "unique_clicks": self.unique_clicks, "unsubscribes": self.unsubscribes,
                "unique_unsubscribes": self.unique_unsubscribes, "open_rate": self.open_rate,
                "click_rate": self.click_rate, "click_to_open_rate": self.click_to_open,
                "machine_opens": self.machine_opens, "machine_clicks": self.machine_clicks,
                "machine_unsubscribes": self.machine_unsubscribes}


@dataclass(frozen=True)
class Erased:
    """What :meth:`EventStore.purge` or :meth:`EventStore.forget` deleted.

    ``events``: events; ``outbox``: webhook deliveries of those events
    (delivered, pending or dead); ``firsts``: first-event keys (``firsts``
    and per-link ``link_firsts`` rows: account, type or URL, message id and
    recipient) that no remaining event uses. The stats rollups are
    aggregates (counts per account, message, metadata value, tag, day and
    link, never a recipient) and are kept: stats read from them still count
    the deleted events.
    """

    events: int = 0
    outbox: int = 0
    firsts: int = 0

    def __add__(self, other: Erased) -> Erased:
        return Erased(self.events + other.events, self.outbox + other.outbox, self.firsts + other.firsts)

    def to_dict(self) -> dict[str, int]:
        """``{"events": ..., "outbox": ..., "firsts": ...}`` (``mailtrack purge``/``forget --json``)."""
        return {"events": self.events, "outbox": self.outbox, "firsts": self.firsts}


def check_before(before: object) -> float:
    """``before`` (Unix seconds) as a float; an :class:`ArgumentError` for anything that is not a finite number."""
    if isinstance(before, bool) or not isinstance(before, (int, float)) or not math.isfinite(before):
        raise ArgumentError(f"before must be Unix seconds (a finite number), not {before!r}")
    return float(before)


def check_recipient(recipient: object) -> str:
    """``recipient`` for :meth:`EventStore.forget`: a non-empty address; an :class:`ArgumentError` otherwise."""
    if not isinstance(recipient, str) or not recipient.strip():
        raise ArgumentError(f"forget needs a recipient address, not {recipient!r}")
    return recipient.strip()


def same_recipient(stored: str, wanted: str) -> bool:
    """Whether the stored recipient ``stored`` is the address ``wanted``, ignoring case (Unicode case folding).

    Stores keep a recipient exactly as it was signed into the token, so
    ``Alice@Example.com`` and ``alice@example.com`` are two keys there; an
    erasure request names a person, whatever case their address was written
    in, so :meth:`EventStore.forget` takes every spelling.
    """
    return stored.casefold() == wanted.casefold()


class EventWriter(Protocol):
    """What the recorder writes events through: a store itself (every :class:`EventStore` is one), or a
    :class:`~mailtrack.storage.writer_process.ProcessWriter` running a SQLite store's writes in a child process.
    Both methods mean exactly what :class:`EventStore`'s mean."""

    def record(self, event: TrackingEvent, outbox: Sequence[str] = ()) -> TrackingEvent: ...

    def record_many(self, events: Sequence[TrackingEvent], outbox: Sequence[str] = ()) -> list[TrackingEvent]: ...


@runtime_checkable
class EventStore(Protocol):
    """Events, the ``first`` flags and the webhook outbox. Every method may raise :class:`StoreUnavailable`."""

    def record(self, event: TrackingEvent, outbox: Sequence[str] = ()) -> TrackingEvent:
        """Store ``event`` once per ``event_id``, decide ``first``, queue it for each ``outbox`` target, atomically."""
        ...

    def record_many(self, events: Sequence[TrackingEvent], outbox: Sequence[str] = ()) -> list[TrackingEvent]:
        """:meth:`record` for each of ``events``, in order, in one transaction (all stored or none); the stored events.

        The recorder's group commit: concurrent requests' events in one
        commit. ``first`` must come out exactly as calling :meth:`record` on
        each event in turn would decide it, including between events of the
        same batch (two opens of one recipient: ``True``, then ``False``),
        except that a stateful machine verdict (issue 14: a burst of clicks, a
        honeypot click) the batch gives one of its own events is known before
        that event is written (one at a time, the event was a person's when
        written, then relabelled; the stored rows end the same), and
        an ``event_id`` already stored, or earlier in the batch, is not stored
        again (it comes back with its stored ``first``). Each event's outbox
        rows are written in the same transaction. Raises
        :class:`StoreUnavailable` with nothing written when the store cannot
        take writes now; any other error (one event refused) must also leave
        nothing written, so the caller can retry the events one by one.
        """
        ...

    def events(
        self, *, message_id: str | None = None, event_type: str | None = None, after_id: int = 0, limit: int | None = None
    ) -> list[TrackingEvent]:
        """Stored events in the order they were recorded, optionally filtered."""
        ...

    def find(self, query: EventQuery, *, before: int | None = None, limit: int = 100) -> EventPage:
        """Events matching ``query``, newest (highest id) first, below id ``before``; at most ``limit`` (<= MAX_PAGE)."""
        ...

    def grouped_stats(self, query: EventQuery, group_by: GroupBy, *, campaign_key: str = "campaign") -> list[StatsRow]:
        """Counts of the events matching ``query`` per ``group_by`` group, from rollups or index-narrowed rows."""
        ...

    def stats_page(self, query: EventQuery, group_by: GroupBy, *, campaign_key: str = "campaign",
                   after: str | None = None, limit: int = 100) -> StatsPage:
        """At most ``limit`` (<= MAX_PAGE) of :meth:`grouped_stats`'s groups with a key above ``after``, in key order."""
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

    def outbox_delivered_many(self, item_ids: Sequence[int], now: float) -> None:
        """Mark several deliveries done, in one transaction."""
        ...

    def outbox_backlog(self) -> int:
        """How many deliveries are waiting (not delivered, not dead): cheap (an index), so ``/healthz`` can ask often."""
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

    def purge(self, before: float) -> Erased:
        """Delete the events older than ``before`` (Unix seconds), with their outbox rows and unused first-event keys.

        Retention (``mailtrack purge --older-than 90d``). The stats rollups
        keep counting the deleted events (they are aggregates); every deleted
        event is in them first. Deletes in short transactions, so writers wait
        little. A first-event key no remaining event uses is deleted with the
        events: a reader who opens a purged message again counts as a unique
        open again.
        """
        ...

    def forget(self, recipient: str) -> Erased:
        """Delete every event of ``recipient`` (any letter case), their outbox rows and the recipient's first-event
        keys: erasure (GDPR article 17, ``mailtrack forget --recipient``). The rollups keep their counts."""
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
