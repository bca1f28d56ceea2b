"""Tracking events: what a served tracking URL tells us, in one normalized shape.

Modelled on django-anymail's normalized tracking events: every event has an
``event_type`` (``opened``, ``clicked``, ``unsubscribed``), an aware UTC
``timestamp``, the ``message_id`` and ``recipient`` the token was signed for
(``None`` when the message was tracked without one: one copy to several
people), its ``metadata`` and ``tags``, what the request said about the reader
(``user_agent``, ``ip``, ``referer``), a unique ``event_id``, and
``esp_event``: the raw request data, for in-process receivers only. Receivers
written for anymail's ``AnymailTrackingEvent`` read ours (``click_url`` too). Sinks receive events through one small interface,
:class:`EventSink`; the SQLite store, the webhook outbox and a plain callback
are all sinks.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Protocol

from mailtrack.exceptions import MailtrackError

__all__ = ["EVENT_TYPES", "MACHINE_LABELS", "CallbackSink", "EventSink", "EventType", "InvalidEvent", "TrackingEvent"]


class EventType(str, Enum):
    """What happened: the event names live here and only here.

    A ``str`` enum (``StrEnum`` arrived in Python 3.11; we support 3.10), so
    ``EventType.OPENED == "opened"`` and it goes into JSON and SQL as its value.
    """

    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def for_kind(cls, kind: str) -> EventType:
        """The event a token of ``kind`` (``open``, ``click``, ``unsubscribe``) records."""
        try:
            return EVENT_TYPES[kind]
        except (KeyError, TypeError):  # TypeError: an unhashable kind
            raise InvalidEvent(f"unknown token kind {kind!r}; expected open, click or unsubscribe") from None


#: Event type per token kind.
EVENT_TYPES = {"open": EventType.OPENED, "click": EventType.CLICKED, "unsubscribe": EventType.UNSUBSCRIBED}


#: The verdicts an event's ``machine`` can hold (None: a person, as far as we can tell). ``apple_mpp``: Apple Mail
#: Privacy Protection fetched the pixel on arrival. ``image_proxy``: a caching image proxy (Gmail, Yahoo) fetched
#: it: a real first open whose later fetches are cached. ``link_scanner``: a security scanner (Safe Links,
#: Defender, Mimecast, Proofpoint, Barracuda) fetched the link. ``prefetch``: a browser or client prefetched it
#: (``Sec-Purpose: prefetch``, ``HEAD``). ``honeypot``: a click on the invisible link no person follows, or a click
#: of the same message close to one.
MACHINE_LABELS = ("apple_mpp", "image_proxy", "link_scanner", "prefetch", "honeypot")


class InvalidEvent(MailtrackError, ValueError):
    """A :class:`TrackingEvent` was built with a value it cannot hold (unknown type, naive timestamp)."""


#: The ids' own generator, seeded from the OS (and again in a forked child, so workers never share a sequence);
#: not the global one, which the caller's code (and hypothesis) may seed or watch.
_RANDOM = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_RANDOM.seed)
_random_bits = _RANDOM.getrandbits


def new_event_id() -> str:
    """A fresh event id: a UUIDv7 (RFC 9562) as 32 hex digits, unique and ordered by time.

    Its first 48 bits are the Unix time in milliseconds and the rest random
    (74 bits), so ids made one after another sort in time order: a store's
    unique index on them grows at its right edge instead of taking each new
    id at a random page (which, with uuid4, cost a page write per event).
    The random bits come from a :class:`random.Random` of its own (seeded from
    the OS, and again in each forked child), not ``os.urandom``: an id needs to be unique, not
    secret, and ``os.urandom`` releases the GIL, which on a busy server's event
    loop cost up to a switch interval (milliseconds) to take back per event.
    """
    value = _random_bits(80)
    value = ((time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF) << 80 | value
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return f"{value:032x}"


@dataclass(frozen=True)
class TrackingEvent:
    """One open, click or unsubscribe.

    ``first`` says whether this is the first event of its type for this
    message and recipient (None when no store was there to tell). ``machine``
    is the machine-event verdict: None (a person, as far as we can tell) or
    one of :data:`MACHINE_LABELS`, with ``machine_reasons`` the short
    sentences that led to it (empty for a person). ``event_id`` is
    unique per event, so a retried write is recorded once. ``recipient`` is
    None for a message tracked without one. ``esp_event`` (anymail's name) is
    the raw request the event came from (method, path, query, headers,
    remote_addr); it reaches in-process receivers (signals, callbacks) but is
    neither stored nor sent in webhooks, and is not part of equality.
    ``account`` is the subuser the message was rewritten for (signed into its
    token); None for the parent's messages. It appears in :meth:`to_dict`
    (webhooks, the Events API) only when set, so the parent's events keep
    the shape they always had.
    """

    event_type: EventType
    timestamp: datetime
    message_id: str
    recipient: str | None
    url: str | None = None
    link_index: int | None = None
    user_agent: str | None = None
    ip: str | None = None
    referer: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    first: bool | None = None
    machine: str | None = None
    event_id: str = field(default_factory=lambda: new_event_id())
    tags: tuple[str, ...] = ()
    account: str | None = None
    machine_reasons: tuple[str, ...] = ()
    esp_event: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            event_type = EventType(self.event_type)
        except ValueError:
            names = ", ".join(member.value for member in EventType)
            raise InvalidEvent(f"event_type must be one of {names}, not {self.event_type!r}") from None
        object.__setattr__(self, "event_type", event_type)  # a plain str given: keep the enum member
        if not isinstance(self.timestamp, datetime) or self.timestamp.tzinfo is None:
            raise InvalidEvent("timestamp must be a timezone-aware datetime (UTC)")
        for name in ("message_id", "event_id"):
            if not isinstance(getattr(self, name), str):
                raise InvalidEvent(f"{name} must be a str, not {type(getattr(self, name)).__name__}")
        for name in ("recipient", "url", "user_agent", "ip", "referer", "machine", "account"):
            if not isinstance(getattr(self, name), (str, type(None))):
                raise InvalidEvent(f"{name} must be a str or None, not {type(getattr(self, name)).__name__}")
        if self.link_index is not None and (isinstance(self.link_index, bool) or not isinstance(self.link_index, int)):
            raise InvalidEvent(f"link_index must be an int or None, not {self.link_index!r}")
        if not isinstance(self.metadata, Mapping):
            raise InvalidEvent(f"metadata must be a mapping, not {type(self.metadata).__name__}")
        if self.first is not None and not isinstance(self.first, bool):
            raise InvalidEvent(f"first must be a bool or None, not {self.first!r}")
        if isinstance(self.tags, (str, bytes)) or not isinstance(self.tags, (list, tuple)) \
                or not all(isinstance(tag, str) for tag in self.tags):
            raise InvalidEvent(f"tags must be a list of str, not {self.tags!r}")
        object.__setattr__(self, "tags", tuple(self.tags))  # a list given (from JSON): keep it immutable
        if self.machine is not None and self.machine not in MACHINE_LABELS:
            raise InvalidEvent(f"machine must be None or one of {', '.join(MACHINE_LABELS)}, not {self.machine!r}")
        if isinstance(self.machine_reasons, (str, bytes)) or not isinstance(self.machine_reasons, (list, tuple)) \
                or not all(isinstance(reason, str) for reason in self.machine_reasons):
            raise InvalidEvent(f"machine_reasons must be a list of str, not {self.machine_reasons!r}")
        object.__setattr__(self, "machine_reasons", tuple(self.machine_reasons))
        if self.esp_event is not None and not isinstance(self.esp_event, Mapping):
            raise InvalidEvent(f"esp_event must be a mapping or None, not {type(self.esp_event).__name__}")

    @property
    def click_url(self) -> str | None:
        """The clicked destination: django-anymail's name for :attr:`url`, so receivers written for anymail read ours."""
        return self.url

    # anymail's AnymailTrackingEvent has these for delivery events; a tracking URL never carries them.
    @property
    def description(self) -> str | None:
        """Always None (anymail's delivery-event description): here so anymail receivers can read it."""
        return None

    @property
    def mta_response(self) -> str | None:
        """Always None (anymail's SMTP response for delivery events)."""
        return None

    @property
    def reject_reason(self) -> str | None:
        """Always None (anymail's reason a message was rejected)."""
        return None

    def with_first(self, first: bool) -> TrackingEvent:
        return replace(self, first=first)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``timestamp`` in ISO 8601 UTC with a ``Z``; ``account`` only when there is one."""
        data: dict[str, Any] = {
            "event_id": self.event_id,
            "event_type": self.event_type.value,
            "timestamp": self.timestamp.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
            "message_id": self.message_id,
            "recipient": self.recipient,
            "url": self.url,
            "link_index": self.link_index,
            "user_agent": self.user_agent,
            "ip": self.ip,
            "referer": self.referer,
            "metadata": dict(self.metadata),
            "first": self.first,
            "machine": self.machine,
            "machine_reasons": list(self.machine_reasons),
            "tags": list(self.tags),
        }
        if self.account is not None:  # only when set: the parent's events keep their webhook shape
            data["account"] = self.account
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackingEvent:
        """The inverse of :meth:`to_dict`; anything else raises :class:`InvalidEvent`."""
        if not isinstance(data, Mapping):
            raise InvalidEvent(f"an event must be a mapping, not {type(data).__name__}")
        values = dict(data)
        stamp = values.pop("timestamp", None)
        if not isinstance(stamp, str):
            raise InvalidEvent(f"timestamp must be an ISO 8601 string, not {stamp!r}")
        try:
            timestamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"timestamp must be an ISO 8601 string, not {stamp!r}") from None
        unknown = sorted(str(key) for key in values if key not in _FIELDS or key == "esp_event")
        if unknown:
            raise InvalidEvent(f"unknown event field(s): {', '.join(unknown)}")
        try:
            return cls(timestamp=timestamp, **values)
        except TypeError as exc:  # a required field missing
            raise InvalidEvent(f"incomplete event: {exc}") from None


_FIELDS = frozenset(TrackingEvent.__dataclass_fields__)


class EventSink(Protocol):
    """Anything that takes events. ``record`` may raise; the caller logs and carries on."""

    def record(self, event: TrackingEvent) -> None: ...


class CallbackSink:
    """Calls ``callback(event)`` for each event: the simplest sink, for your own code."""

    def __init__(self, callback: Callable[[TrackingEvent], object]) -> None:
        self.callback = callback

    def record(self, event: TrackingEvent) -> None:
        self.callback(event)
