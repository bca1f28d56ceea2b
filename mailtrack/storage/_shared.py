"""Pure helpers both stores share (no I/O): event rows, rollup cells, stats plans, merges and rows.

:mod:`mailtrack.storage.sqlite` and :mod:`mailtrack.storage.postgres` keep the
same rows, the same rollup keys and answer stats by the same plan, so that a
store of either kind gives the same results; what is written here once is
that common part. The SQL each database speaks stays in its own module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from mailtrack.events import EventType, TrackingEvent
from mailtrack.exceptions import ArgumentError
from mailtrack.storage.accounts import ApiKey
from mailtrack.storage.base import EventQuery, GroupBy, StatsRow

_COLUMNS = (
    "event_id, event_type, timestamp, message_id, recipient, url, link_index, user_agent, ip, referer, metadata, first, machine,"
    " tags, account"
)
#: The columns of an event as schema v3 had them (before ``account``): for tests and benchmarks building old files.
_V3_COLUMNS = _COLUMNS.rsplit(",", 1)[0]
#: How the parent's events (``account`` None) are stored: the column stays NOT NULL, so it can lead indexes and keys.
_PARENT = ""
#: How a message tracked without a recipient is stored: ``recipient`` stays NOT NULL, so that
#: ``firsts`` (its primary key) and ``count(DISTINCT recipient)`` treat "no recipient" as one reader.
_NO_RECIPIENT = ""


_KEY_COLUMNS = "key_id, account, scopes, created, revoked, name"


def _api_key(row: Sequence[Any]) -> ApiKey:
    key_id, account, scopes, created, revoked, name = row
    return ApiKey(key_id, account, frozenset(json.loads(scopes)), created, revoked, name)


def _row(event: TrackingEvent) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.event_type.value,
        event.timestamp.timestamp(),
        event.message_id,
        _NO_RECIPIENT if event.recipient is None else event.recipient,
        event.url,
        event.link_index,
        event.user_agent,
        event.ip,
        event.referer,
        json.dumps(dict(event.metadata), separators=(",", ":"), sort_keys=True, default=str),
        int(bool(event.first)),
        event.machine,
        json.dumps(list(event.tags), separators=(",", ":")),
        _PARENT if event.account is None else event.account,
    )


def _event(row: Sequence[Any]) -> TrackingEvent:
    (event_id, event_type, timestamp, message_id, recipient, url, link_index, user_agent, ip, referer, metadata, first,
     machine, tags, account) = row
    return TrackingEvent(
        event_type=event_type,
        timestamp=datetime.fromtimestamp(timestamp, timezone.utc),
        message_id=message_id,
        recipient=None if recipient == _NO_RECIPIENT else recipient,
        url=url,
        link_index=link_index,
        user_agent=user_agent,
        ip=ip,
        referer=referer,
        metadata=json.loads(metadata),
        first=bool(first),
        machine=machine,
        event_id=event_id,
        tags=tuple(json.loads(tags)),
        account=None if account == _PARENT else account,
    )


#: The atom every event has (the filter "none" and the group "per day / per link").
_ALL = ("all", "", "")
_DAY = 86400


_ROLLUP_SUMS = ("sum(opens), sum(unique_opens), sum(clicks), sum(unique_clicks), sum(link_unique_clicks),"
                " sum(unsubscribes), sum(unique_unsubscribes)")


def _meta_value(value: Any) -> str:
    """How a metadata value is indexed and matched: a str as itself, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)


#: The rollup atom dimension each group_by groups by (day and link group the "all" rows by day or URL).
_ATOM_OF_GROUP = {"message": "message", "campaign": "meta", "tag": "tag"}
#: (fixed rollup key columns, the grouping column or None, the one group's key when the conditions pin it)
_Spec = tuple[dict[str, str], str | None, str | None]


def _fixed(f: tuple[str, str, str], g: tuple[str, str, str]) -> dict[str, str]:
    return dict(zip(("fdim", "fkey", "fvalue", "gdim", "gkey", "gvalue"), (*f, *g), strict=True))


def _rollup_spec(query: EventQuery, group_by: GroupBy, campaign_key: str) -> _Spec | None:
    """Which rollup rows hold ``query`` grouped by ``group_by`` (see ``STATS_MIGRATION``), or None: counted from events.

    The conditions name atoms (the message, each metadata pair, the tag). Served from rollups: no atom, one atom,
    or two atoms when the group is a day or pinned by a condition (a message_id with group_by=message, a campaign
    pair with group_by=campaign), from the pair rows; group_by message/campaign/tag under one metadata pair or tag.
    Not served (counted from the events the most selective condition's index finds, see :meth:`grouped_stats`):
    a recipient; three or more atoms; two atoms with group_by link, or with an unpinned group_by
    message/campaign/tag; a message_id with an unpinned group_by campaign/tag.
    """
    if query.recipient is not None:
        return None
    atoms: list[tuple[str, str, str]] = []
    if query.message_id is not None:
        atoms.append(("message", query.message_id, ""))
    atoms += [("meta", key, value) for key, value in query.metadata]
    if query.tag is not None:
        atoms.append(("tag", query.tag, ""))
    atoms = list(dict.fromkeys(atoms))
    pinned = None
    if group_by == "message" and query.message_id is not None:
        pinned = query.message_id
    if group_by == "campaign":
        pinned = next((value for key, value in query.metadata if key == campaign_key), None)
    if group_by in ("day", "link") or pinned is not None:
        group = None if pinned is not None else "day" if group_by == "day" else "url"
        if len(atoms) <= 1:
            return _fixed(atoms[0] if atoms else _ALL, _ALL), group, pinned
        if len(atoms) == 2:
            f, g = atoms if atoms[0][0] != "message" else atoms[::-1]  # pair rows are filed under a pair or a tag
            return _fixed(f, g), group, pinned
        return None
    dim = _ATOM_OF_GROUP[group_by]
    if not atoms:  # every group's own rows: (group atom, all)
        if dim == "meta":
            return {"fdim": "meta", "fkey": campaign_key, "gdim": "all", "gkey": "", "gvalue": ""}, "fvalue", None
        return {"fdim": dim, "fvalue": "", "gdim": "all", "gkey": "", "gvalue": ""}, "fkey", None
    if len(atoms) == 1 and atoms[0][0] != "message":
        only = dict(zip(("fdim", "fkey", "fvalue"), atoms[0], strict=True))
        if dim == "meta":
            return {**only, "gdim": "meta", "gkey": campaign_key}, "gvalue", None
        return {**only, "gdim": dim, "gvalue": ""}, "gkey", None
    return None


def _nonzero(group_by: GroupBy, event_type: EventType | None, sums: tuple[str, str, str]) -> str:
    """SQL true for a group with a count to show: clicks for links; else any of the counts ``type`` keeps."""
    opens, clicks, unsubscribes = sums
    if group_by == "link":
        return f"{clicks} > 0" if event_type in (None, EventType.CLICKED) else "0"
    kept = {EventType.OPENED: opens, EventType.CLICKED: clicks, EventType.UNSUBSCRIBED: unsubscribes}
    return " OR ".join(f"{column} > 0" for kind, column in kept.items() if event_type in (None, kind))


def _window(query: EventQuery) -> tuple[bool, int | None, int | None, list[tuple[float, float]]]:
    """(read day rows, first whole day, end day, sub-day edges) for ``since``/``until``.

    Whole UTC days inside the window come from the rollups' day rows; the
    partial days at its ends (at most two) are counted from the events the
    time index finds in them. ``(False, None, None, [])``: no window, the
    all-time totals answer.
    """
    since, until = query.since, query.until
    if since is None and until is None:
        return False, None, None, []
    low = None if since is None else int(since // _DAY) + (1 if since % _DAY else 0)
    high = None if until is None else int(until // _DAY)
    if since is not None and until is not None and low is not None and high is not None and low >= high:
        return False, None, None, [(since, until)] if since < until else []  # no whole day inside
    edges = []
    if since is not None and low is not None and low * _DAY > since:
        edges.append((since, float(low * _DAY)))
    if until is not None and high is not None and high * _DAY < until:
        edges.append((float(high * _DAY), until))
    return True, low, high, edges


#: Which of the seven counts (after the group) make a group worth showing, per ``type`` filter.
_SHOWN: dict[EventType | None, tuple[int, ...]] = {None: (1, 3, 6), EventType.OPENED: (1,), EventType.CLICKED: (3,),
                                                   EventType.UNSUBSCRIBED: (6,)}


def _group_value(key: str, group_by: GroupBy) -> int | str:
    """A group's key as the rollups order it: the day number for ``day`` (``YYYY-MM-DD``), else the key itself."""
    if group_by != "day":
        return key
    try:
        return int(datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp() // _DAY)
    except ValueError:
        raise ArgumentError(f"a day group's key is YYYY-MM-DD, not {key!r}") from None


def _merge(sources: list[tuple[list[tuple[Any, ...]], bool]], after: int | str | None) -> list[tuple[Any, ...]]:
    """Sum rows of the same group over ``sources`` (each ``(rows, complete)``): the groups above ``after``, in order.

    An incomplete source (cut at ``limit + 1`` groups) knows nothing past its
    last group, so the merge keeps only groups up to the smallest such last
    group: every group kept has all its counts (its rank in any one source is
    at most its rank in the union), and the first ``limit`` of them are right.
    """
    totals: dict[Any, list[int]] = {}
    horizon = None
    for rows, complete in sources:
        if not complete and rows:
            horizon = rows[-1][0] if horizon is None else min(horizon, rows[-1][0])
        for group, *counts in rows:
            if group is None or (after is not None and group <= after):
                continue
            into = totals.setdefault(group, [0] * 7)
            for i, count in enumerate(counts):
                into[i] += int(count or 0)
    return sorted((group, *counts) for group, counts in totals.items() if horizon is None or group <= horizon)


def _stats_rows(rows: list[tuple[Any, ...]], group_by: GroupBy, event_type: EventType | None) -> list[StatsRow]:
    """:class:`StatsRow` per group, counts of other types than ``event_type`` zeroed, groups with nothing left out."""
    result = []
    for group, opens, unique_opens, clicks, unique_clicks, link_unique, unsubscribes, unique_unsubscribes in rows:
        keep = {t: event_type is None or event_type is t for t in EventType}
        opens, unique_opens = (opens, unique_opens) if keep[EventType.OPENED] else (0, 0)
        clicks, unique_clicks, link_unique = (clicks, unique_clicks, link_unique) if keep[EventType.CLICKED] else (0, 0, 0)
        if not keep[EventType.UNSUBSCRIBED]:
            unsubscribes = unique_unsubscribes = 0
        if group_by == "day":
            key = datetime.fromtimestamp(int(group) * _DAY, timezone.utc).strftime("%Y-%m-%d")
        else:
            key = str(group)
        if group_by == "link":
            row = StatsRow(key, None, None, int(clicks or 0), int(link_unique or 0), None, None)
        else:
            row = StatsRow(key, int(opens or 0), int(unique_opens or 0), int(clicks or 0),
                           int(unique_clicks or 0), int(unsubscribes or 0), int(unique_unsubscribes or 0))
        if row.opens or row.clicks or row.unsubscribes:
            result.append(row)
    return result


#: One rollup cell of an event: (filter atom f, group atom g, url); see ``STATS_MIGRATION`` in sqlite.py.
_Cell = tuple[tuple[str, str, str], tuple[str, str, str], str]


def _counts(event: TrackingEvent, link_first: bool) -> tuple[int, ...]:
    """The seven counts one stored event adds to each rollup row it belongs to (rollup column order)."""
    kind, first = event.event_type, bool(event.first)
    return (
        int(kind is EventType.OPENED), int(kind is EventType.OPENED and first),
        int(kind is EventType.CLICKED), int(kind is EventType.CLICKED and first), int(link_first),
        int(kind is EventType.UNSUBSCRIBED), int(kind is EventType.UNSUBSCRIBED and first),
    )


def _event_cells(event: TrackingEvent, row: Sequence[Any]) -> list[_Cell]:
    """Every (f, g, url) rollup cell the event (``row`` is its :func:`_row`) is counted in, per day and in the totals.

    (all|atom, all) per url, and (metadata pair|tag, atom) pair rows (g = f only for a tag), as ``STATS_MIGRATION``
    describes; the message atom is never a pair row's filter.
    """
    tags = sorted(set(event.tags))
    meta = [(key, _meta_value(value)) for key, value in json.loads(row[10]).items()]
    url = event.url or ""
    atoms = [("message", event.message_id, ""), *(("meta", key, value) for key, value in meta),
             *(("tag", tag, "") for tag in tags)]
    cells: list[_Cell] = [(f, _ALL, url) for f in (_ALL, *atoms)]
    cells += [(f, g, url) for f in atoms if f[0] != "message" for g in atoms if g != f or f[0] == "tag"]
    return cells
