"""Pure helpers both stores share (no I/O): event rows, rollup cells, stats plans, merges and rows.

:mod:`mailtrack.storage.sqlite` and :mod:`mailtrack.storage.postgres` keep the
same rows, the same rollup keys and answer stats by the same plan, so that a
store of either kind gives the same results; what is written here once is
that common part. The SQL each database speaks stays in its own module.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mailtrack.events import EventType, TrackingEvent
from mailtrack.exceptions import ArgumentError
from mailtrack.storage.accounts import ApiKey
from mailtrack.storage.base import EventQuery, GroupBy, StatsRow

_COLUMNS = (
    "event_id, event_type, timestamp, message_id, recipient, url, link_index, user_agent, ip, referer, metadata, first, machine,"
    " tags, account, machine_reasons"
)
#: The columns of an event as schema v3 had them (before ``account``): for tests and benchmarks building old files.
_V3_COLUMNS = _COLUMNS.rsplit(",", 2)[0]
#: How many columns an event row (:func:`_row`) has; the stores insert ``link_first`` after them.
_WIDTH = _COLUMNS.count(",") + 1
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
        json.dumps(list(event.machine_reasons), separators=(",", ":")),
    )


def _event(row: Sequence[Any]) -> TrackingEvent:
    (event_id, event_type, timestamp, message_id, recipient, url, link_index, user_agent, ip, referer, metadata, first,
     machine, tags, account, reasons) = row
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
        machine_reasons=tuple(json.loads(reasons)) if reasons else (),
    )


def _message_report(totals: Iterable[Sequence[Any]], readers: Iterable[Sequence[Any]], links: Iterable[Sequence[Any]],
                    machines: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """:meth:`EventStore.stats`'s document from its four queries' rows: people's ``(message_id, type, count,
    distinct recipients)``, people's ``(message_id, distinct recipients)``, people's clicks ``(message_id,
    link_index, url, count, distinct recipients)`` in order, and machines' ``(message_id, type, count)``.

    People are counted (the events whose ``machine`` is None): the totals, uniques, ``recipients`` and the rates;
    ``machine_<type>`` beside them counts the machines' events of each type (a message with machine events only
    is listed with zeros for people).
    """
    messages: dict[str, dict[str, Any]] = {}

    def entry(message_id: str) -> dict[str, Any]:
        found = messages.get(message_id)
        if found is None:
            found = messages[message_id] = {"message_id": message_id, "links": [], "recipients": 0}
            for kind in EventType:
                found[f"{kind.value}_total"] = found[f"{kind.value}_unique"] = found[f"machine_{kind.value}"] = 0
        return found

    for message_id, event_type, total, unique in totals:
        entry(message_id).update({f"{event_type}_total": total, f"{event_type}_unique": unique})
    for message_id, recipients in readers:
        entry(message_id)["recipients"] = recipients
    for message_id, event_type, total in machines:
        entry(message_id)[f"machine_{event_type}"] = total
    for found in messages.values():
        clickers, openers = found[f"{EventType.CLICKED}_unique"], found[f"{EventType.OPENED}_unique"]
        found["ctr"] = clickers / found["recipients"] if found["recipients"] else 0.0
        found["click_to_open"] = clickers / openers if openers else None
    for message_id, index, url, total, unique in links:
        entry(message_id)["links"].append({"link_index": index, "url": url, "clicks": total, "unique": unique})
    return {"messages": sorted(messages.values(), key=lambda m: m["message_id"])}


#: The atom every event has (the filter "none" and the group "per day / per link").
_ALL = ("all", "", "")
_DAY = 86400


#: The counts of a rollup row (and of every stats source), in column order: people's counts first (an event whose
#: ``machine`` is None), then the machine events' (any label) per type. ``unique_*`` and ``link_unique_clicks``
#: count people only: a machine event never takes a first-event slot (see ``VERDICTS_MIGRATION`` in sqlite.py).
_ROLLUP_COUNTS = ("opens", "unique_opens", "clicks", "unique_clicks", "link_unique_clicks", "unsubscribes",
                  "unique_unsubscribes", "machine_opens", "machine_clicks", "machine_unsubscribes")
#: How many counts (``_ROLLUP_COUNTS``).
_N = len(_ROLLUP_COUNTS)
_ROLLUP_SUMS = ", ".join(f"sum({column})" for column in _ROLLUP_COUNTS)
#: The sums named ``n0`` ... ``n9`` (a pinned group's one row, filtered by ``_nonzero(..., _PINNED_SHOWN)``).
_PINNED_SUMS = ", ".join(f"sum({column}) AS n{i}" for i, column in enumerate(_ROLLUP_COUNTS))
_PINNED_SHOWN = ("n0", "n2", "n5", "n7", "n8", "n9")
#: ``_nonzero``'s sums over rollup rows (opens, clicks, unsubscribes, then the machines').
_GROUP_SHOWN = tuple(f"sum({_ROLLUP_COUNTS[i]})" for i in (0, 2, 5, 7, 8, 9))


def _verdict_counts(kind: str, first: bool, link_first: bool, machine: str | None) -> tuple[int, ...]:
    """The ten counts (``_ROLLUP_COUNTS``) one event adds to each rollup cell it belongs to.

    A person's event (``machine`` None) counts in the people's columns (and, when it holds the first-event slot,
    the unique ones); a machine event counts in its type's machine column only.
    """
    person = machine is None
    opened, clicked, unsubscribed = (kind == EventType.OPENED.value, kind == EventType.CLICKED.value,
                                     kind == EventType.UNSUBSCRIBED.value)
    first = bool(first) and person
    return (int(opened and person), int(opened and first), int(clicked and person), int(clicked and first),
            int(clicked and person and bool(link_first)), int(unsubscribed and person), int(unsubscribed and first),
            int(opened and not person), int(clicked and not person), int(unsubscribed and not person))


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


def _machine_filter(query: EventQuery, where: list[str], args: list[Any]) -> tuple[list[str], list[Any]]:
    """``where``/``args`` with the condition of ``query.machine`` on events ``e`` (placeholders appended last)."""
    if query.machine == "none":
        return [*where, "e.machine IS NULL"], args
    if query.machine == "any":
        return [*where, "e.machine IS NOT NULL"], args
    if query.machine is not None:
        return [*where, f"e.machine = '{query.machine}'"], args  # one of MACHINE_LABELS (checked): a literal
    return where, args


def _nonzero(group_by: GroupBy, event_type: EventType | None, sums: tuple[str, ...]) -> str:
    """SQL true for a group with a count to show: clicks for links; else any of the counts ``type`` keeps.

    ``sums`` are the expressions of the opens, clicks and unsubscribes (people's), then the machine opens, clicks
    and unsubscribes: a group of machine events only is shown too (its people's counts are zeros).
    """
    opens, clicks, unsubscribes, machine_opens, machine_clicks, machine_unsubscribes = sums
    if group_by == "link":
        return f"({clicks} > 0 OR {machine_clicks} > 0)" if event_type in (None, EventType.CLICKED) else "0"
    kept = {EventType.OPENED: (opens, machine_opens), EventType.CLICKED: (clicks, machine_clicks),
            EventType.UNSUBSCRIBED: (unsubscribes, machine_unsubscribes)}
    return " OR ".join(f"{column} > 0" for kind, columns in kept.items() if event_type in (None, kind)
                       for column in columns)


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


#: Which of the ten counts (after the group; people's and machines') make a group worth showing, per ``type`` filter.
_SHOWN: dict[EventType | None, tuple[int, ...]] = {None: (1, 3, 6, 8, 9, 10), EventType.OPENED: (1, 8),
                                                   EventType.CLICKED: (3, 9), EventType.UNSUBSCRIBED: (6, 10)}


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
            into = totals.setdefault(group, [0] * _N)
            for i, count in enumerate(counts):
                into[i] += int(count or 0)
    return sorted((group, *counts) for group, counts in totals.items() if horizon is None or group <= horizon)


def _stats_rows(rows: list[tuple[Any, ...]], group_by: GroupBy, event_type: EventType | None) -> list[StatsRow]:
    """:class:`StatsRow` per group, counts of other types than ``event_type`` zeroed, groups with nothing left out."""
    result = []
    for group, opens, unique_opens, clicks, unique_clicks, link_unique, unsubscribes, unique_unsubscribes, \
            machine_opens, machine_clicks, machine_unsubscribes in rows:
        keep = {t: event_type is None or event_type is t for t in EventType}
        if not keep[EventType.OPENED]:
            opens = unique_opens = machine_opens = 0
        if not keep[EventType.CLICKED]:
            clicks = unique_clicks = link_unique = machine_clicks = 0
        if not keep[EventType.UNSUBSCRIBED]:
            unsubscribes = unique_unsubscribes = machine_unsubscribes = 0
        if group_by == "day":
            key = datetime.fromtimestamp(int(group) * _DAY, timezone.utc).strftime("%Y-%m-%d")
        else:
            key = str(group)
        if group_by == "link":
            row = StatsRow(key, None, None, int(clicks or 0), int(link_unique or 0), None, None,
                           machine_opens=None, machine_clicks=int(machine_clicks or 0), machine_unsubscribes=None)
        else:
            row = StatsRow(key, int(opens or 0), int(unique_opens or 0), int(clicks or 0),
                           int(unique_clicks or 0), int(unsubscribes or 0), int(unique_unsubscribes or 0),
                           machine_opens=int(machine_opens or 0), machine_clicks=int(machine_clicks or 0),
                           machine_unsubscribes=int(machine_unsubscribes or 0))
        if row.opens or row.clicks or row.unsubscribes or row.machine_opens or row.machine_clicks \
                or row.machine_unsubscribes:
            result.append(row)
    return result


#: One rollup cell of an event: (filter atom f, group atom g, url); see ``STATS_MIGRATION`` in sqlite.py.
_Cell = tuple[tuple[str, str, str], tuple[str, str, str], str]


def _counts(event: TrackingEvent, link_first: bool) -> tuple[int, ...]:
    """The ten counts one stored event adds to each rollup row it belongs to (rollup column order)."""
    return _verdict_counts(event.event_type.value, bool(event.first), link_first, event.machine)


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


#: What :func:`_rollup_cells` reads of each event.
_ROLL_COLUMNS = "id, event_type, timestamp, message_id, url, metadata, first, tags, account, link_first, machine"

#: One relabel: a stored click's ``_ROLL_COLUMNS`` row (then its event id, ..., its recipient at 13), its new
#: label and reasons.
Relabel = tuple[tuple[Any, ...], str, tuple[str, ...]]


def _rollup_cells(rows: Iterable[Sequence[Any]]) -> dict[tuple[Any, ...], list[int]]:
    """The ``rollup_days`` cells of events (rows of ``_ROLL_COLUMNS``), each key with its ten counts summed.

    An event counts in (see ``STATS_MIGRATION``) the cells (all, all) and
    (atom, all) for each of its atoms (its message, each metadata pair, each
    tag), and (metadata pair or tag f, atom g) for every other atom g (g = f
    too for a tag), each on its UTC day and URL ('' when none): about 22 cells
    for an event with two metadata pairs and two tags. Metadata values as the
    index holds them (:func:`_meta_value`), tags once each.
    """
    shapes: dict[tuple[str, str], tuple[list[tuple[str, ...]], list[tuple[str, str, str]]]] = {}
    # cells counted per counts vector (a handful of kinds of event), in C (Counter.update), multiplied out at the end
    tallies: dict[tuple[int, ...], Counter[tuple[Any, ...]]] = {}
    vectors: dict[tuple[Any, ...], tuple[int, ...]] = {}
    for _, kind, timestamp, message_id, url, metadata, first, tags, account, link_first, machine in rows:
        person = machine is None
        sort = (kind, bool(first) and person, bool(link_first) and person, person)
        counts = vectors.get(sort)
        if counts is None:
            counts = vectors[sort] = _verdict_counts(kind, bool(first), bool(link_first), machine)
        shape = shapes.get((metadata, tags))
        if shape is None:  # a campaign's events share their metadata and tags: their cells but the message's
            shape = shapes[(metadata, tags)] = _shape(metadata, tags)
        fixed, by_message = shape
        day, url = int(timestamp // _DAY), url or ""
        keys = [(account, *pair, day, url) for pair in fixed]
        keys.append((account, "message", "all", message_id, "", "", "", day, url))
        keys += [(account, fdim, "message", fkey, fvalue, message_id, "", day, url) for fdim, fkey, fvalue in by_message]
        tally = tallies.get(counts)
        if tally is None:
            tally = tallies[counts] = Counter()
        tally.update(keys)
    cells: dict[tuple[Any, ...], list[int]] = {}
    for vector, tally in tallies.items():
        for key, times in tally.items():
            into = cells.get(key)
            if into is None:
                cells[key] = [count * times for count in vector]
            else:
                cells[key] = [have + count * times for have, count in zip(into, vector, strict=True)]
    return cells


def _shape(metadata: str, tags: str) -> tuple[list[tuple[str, ...]], list[tuple[str, str, str]]]:
    """The cells of an event with this metadata and these tags (JSON as stored), without its message.

    ``(fdim, gdim, fkey, fvalue, gkey, gvalue)`` of the cells that do not name
    the message, and the atoms f of the cells (f, its message) that do.
    """
    atoms = [*(("meta", key, _meta_value(value)) for key, value in json.loads(metadata).items()),
             *(("tag", tag, "") for tag in sorted(set(json.loads(tags))))]
    pairs = [(f, _ALL) for f in (_ALL, *atoms)]
    pairs += [(f, g) for f in atoms for g in atoms if g != f or f[0] == "tag"]
    return [(f[0], g[0], f[1], f[2], g[1], g[2]) for f, g in pairs], atoms


# -- the stateful verdicts (issue 14), decided where events are written ------------------------------------------

#: Clicks of different links (``link_index``) of one message and recipient this close together (seconds): a
#: scanner following every link, not a person (who reads, then clicks, then comes back for the next one).
BURST_SECONDS = 1.0
#: A click of a message and recipient this close (seconds, either side) to a click of its honeypot link is the same
#: scanner's: a minute covers a scanner that walks a message's links one by one with pauses, and is shorter than a
#: person takes to open a message, read it and click, so a person's click seldom falls inside it by chance.
HONEYPOT_SECONDS = 60.0
REASON_BURST = "several links of the message clicked within a second"
REASON_HONEYPOT = "near a honeypot click"
#: Weak on its own (a person who blocks images clicks without an open): only added beside another reason.
REASON_NO_OPEN = "clicked before any open"


def _with_reason(reasons: tuple[str, ...], *more: str) -> tuple[str, ...]:
    return (*reasons, *(reason for reason in more if reason not in reasons))


def _verdicts(clicks: Sequence[tuple[float, int | None, str | None]], first_open: float | None
              ) -> dict[int, tuple[str, tuple[str, ...]]]:
    """The clicks (of one message, recipient and account) a person's verdict no longer fits: index -> (label, reasons).

    ``clicks`` are ``(timestamp, link_index, machine)``, stored ones and new ones alike; ``first_open`` is the
    earliest person's open of the message (None: none). Only a person's click (``machine`` None) is relabelled
    (a machine verdict stays the classifier's): ``honeypot`` within :data:`HONEYPOT_SECONDS` of a honeypot click,
    else ``link_scanner`` within :data:`BURST_SECONDS` of a click (any verdict) of another link. Either one gets
    :data:`REASON_NO_OPEN` too when no person's open came before it. Monotone (person to machine only), so
    deciding again over more clicks never undoes a verdict: each write applies it to what it can see.
    """
    honeypots = [at for at, _, machine in clicks if machine == "honeypot"]
    found: dict[int, tuple[str, tuple[str, ...]]] = {}
    for i, (at, link, machine) in enumerate(clicks):
        if machine is not None:
            continue
        if any(abs(at - other) <= HONEYPOT_SECONDS for other in honeypots):
            label, reason = "honeypot", REASON_HONEYPOT
        elif link is not None and any(j != i and other_link is not None and other_link != link
                                      and abs(at - other) <= BURST_SECONDS
                                      for j, (other, other_link, _) in enumerate(clicks)):
            label, reason = "link_scanner", REASON_BURST
        else:
            continue
        more = (reason,) if first_open is not None and first_open <= at else (reason, REASON_NO_OPEN)
        found[i] = (label, more)
    return found


def _relabel_batch(events: Sequence[TrackingEvent], stored_clicks: Sequence[tuple[Any, ...]],
                   first_opens: dict[tuple[str, str, str], float | None]
                   ) -> tuple[list[TrackingEvent], list[Relabel]]:
    """Apply :func:`_verdicts` to a batch: the new events with their verdicts, and the stored clicks to relabel.

    ``events`` are the batch's new events (not stored yet). ``stored_clicks`` are stored clicks near the batch's
    clicks, as rows of ``_STORED_CLICK`` columns (their ``_ROLL_COLUMNS``, then link_index, machine_reasons,
    recipient); ``first_opens`` the earliest person's open per ``(account, message_id, recipient)`` (stored or in
    the batch). Returns the new events (relabelled ones replaced) and ``(stored row, label, reasons)`` per stored
    click to relabel.
    """
    groups: dict[tuple[str, str, str], list[tuple[str, Any]]] = {}
    for row in stored_clicks:
        groups.setdefault((row[8], row[3], row[13]), []).append(("stored", row))
    for index, event in enumerate(events):
        if event.event_type is EventType.CLICKED and event.recipient is not None:  # (see _click_groups)
            key = (_PARENT if event.account is None else event.account, event.message_id, event.recipient)
            groups.setdefault(key, []).append(("new", index))
    result = list(events)
    relabels: list[Relabel] = []
    for key, members in groups.items():
        if not any(kind == "new" for kind, _ in members):
            continue
        clicks = [(float(item[2]), item[11], item[10]) if kind == "stored"
                  else (events[item].timestamp.timestamp(), events[item].link_index, events[item].machine)
                  for kind, item in members]
        for i, (label, more) in _verdicts(clicks, first_opens.get(key)).items():
            kind, item = members[i]
            if kind == "new":
                event = events[item]
                result[item] = _relabelled(event, label, _with_reason(event.machine_reasons, *more))
            else:
                relabels.append((item, label, _with_reason(tuple(json.loads(item[12] or "[]")), *more)))
    return result, relabels


def _relabelled(event: TrackingEvent, machine: str, reasons: tuple[str, ...]) -> TrackingEvent:
    """``event`` with a machine verdict (and so without a first-event slot)."""
    copy = object.__new__(TrackingEvent)
    copy.__dict__.update(event.__dict__)
    object.__setattr__(copy, "machine", machine)
    object.__setattr__(copy, "machine_reasons", reasons)
    object.__setattr__(copy, "first", False if event.first is not None else None)
    return copy


#: The columns of a stored click the verdicts read (``_ROLL_COLUMNS`` first, so its rollup cells come from it).
_STORED_CLICK = f"{_ROLL_COLUMNS}, link_index, machine_reasons, recipient"


def _click_groups(events: Sequence[TrackingEvent]) -> dict[tuple[str, str, str], tuple[float, float]]:
    """Per ``(account, message_id, recipient)`` of the batch's clicks, the time span of stored clicks to read."""
    spans: dict[tuple[str, str, str], tuple[float, float]] = {}
    reach = max(HONEYPOT_SECONDS, BURST_SECONDS)
    for event in events:
        # A broadcast's click (no recipient) is one of many readers' clicks of one copy: a burst or a honeypot click
        # among them says nothing about another reader's, so its clicks are never relabelled (nor read for it).
        if event.event_type is EventType.CLICKED and event.recipient is not None:
            key = (_PARENT if event.account is None else event.account, event.message_id, event.recipient)
            at = event.timestamp.timestamp()
            low, high = spans.get(key, (at - reach, at + reach))
            spans[key] = (min(low, at - reach), max(high, at + reach))
    return spans


def _batch_first_opens(events: Iterable[TrackingEvent]) -> dict[tuple[str, str, str], float]:
    """The earliest person's open per ``(account, message_id, recipient)`` among the batch's new events."""
    opens: dict[tuple[str, str, str], float] = {}
    for event in events:
        if event.event_type is EventType.OPENED and event.machine is None:
            key = (_PARENT if event.account is None else event.account, event.message_id,
                   _NO_RECIPIENT if event.recipient is None else event.recipient)
            at = event.timestamp.timestamp()
            opens[key] = min(opens.get(key, at), at)
    return opens


@dataclass(frozen=True)
class _Dialect:
    """How one store's SQL spells what :func:`_relabel_rows` writes.

    ``param``: the parameter marker; ``true``/``false``: the flag values; ``hint``: put before a column to keep
    the planner off its index (SQLite's unary ``+``): on the recipient's rows (``events_clicks``, ``events_recipient``),
    never walking ``events_type`` in id order for ``ORDER BY id LIMIT 1`` (which read every click stored when no
    successor exists); ``insert``/``ignore``: "insert unless present".
    """

    param: str
    true: Any
    false: Any
    hint: str
    insert: str
    ignore: str


_SQLITE = _Dialect("?", 1, 0, "+", "INSERT OR IGNORE INTO", "")
_POSTGRES = _Dialect("%s", True, False, "", "INSERT INTO", " ON CONFLICT DO NOTHING")

def _relabel_rows(execute: Callable[[str, Sequence[Any]], Any], sql: _Dialect, relabels: Sequence[Relabel]
                  ) -> tuple[dict[int, tuple[Any, ...]], dict[int, list[Any]], set[str]]:
    """Relabel stored clicks, in the caller's transaction: both stores' ``_apply_relabels`` up to the rollups.

    Each click's row gets its label and reasons and loses its first-event slots (``firsts``, ``link_firsts``)
    to the next person's event of its key in recording order, if any (so ``first`` and the unique counts stay
    people's). Returns the changed events' ``_ROLL_COLUMNS`` rows before and after (by row id: the rollups'
    difference, which each store applies its own way) and the event ids that took a ``first`` slot.
    """
    mark = sql.param
    rows: dict[int, list[Any]] = {}
    before: dict[int, tuple[Any, ...]] = {}
    for row, label, reasons in relabels:
        execute(f"UPDATE events SET machine = {mark}, machine_reasons = {mark}, first = {mark}, link_first = {mark}"
                f" WHERE id = {mark}", (label, json.dumps(list(reasons), separators=(",", ":")), sql.false, sql.false,
                                       row[0]))
        before[row[0]] = tuple(row[:11])
        rows[row[0]] = [*row[:6], sql.false, row[7], row[8], sql.false, label]
    promoted: set[str] = set()
    clicked = f"'{EventType.CLICKED.value}'"
    for row, _, _ in relabels:
        account, kind, message_id, recipient, url = row[8], row[1], row[3], row[13], row[4]
        slots = []
        if row[6]:
            slots.append(("firsts", "event_type", kind, "first", ""))
        if row[9] and url is not None:
            slots.append(("link_firsts", "url", url, "link_first", f" AND event_type = {clicked}"))
        for table, column, value, flag, more in slots:
            execute(f"DELETE FROM {table} WHERE account = {mark} AND {column} = {mark} AND message_id = {mark}"
                    f" AND recipient = {mark}", (account, value, message_id, recipient))
            successor = execute(
                f"SELECT {_ROLL_COLUMNS}, event_id FROM events WHERE message_id = {mark} AND recipient = {mark} AND"
                f" {sql.hint}{column} = {mark} AND {sql.hint}account = {mark} AND machine IS NULL{more}"
                f" ORDER BY {sql.hint}id LIMIT 1", (message_id, recipient, value, account)).fetchone()
            if successor is None:
                continue
            execute(f"UPDATE events SET {flag} = {mark} WHERE id = {mark}", (sql.true, successor[0]))
            execute(f"{sql.insert} {table} (account, {column}, message_id, recipient) VALUES ({mark}, {mark}, {mark},"
                    f" {mark}){sql.ignore}", (account, value, message_id, recipient))
            before.setdefault(successor[0], tuple(successor[:11]))
            into = rows.setdefault(successor[0], list(successor[:11]))
            into[6 if flag == "first" else 9] = sql.true
            if flag == "first":
                promoted.add(successor[11])
    return before, rows, promoted


def _delta_cells(changes: Iterable[tuple[tuple[Any, ...], tuple[Any, ...]]]) -> dict[tuple[Any, ...], list[int]]:
    """What relabelling stored events changes in ``rollup_days``: per cell, new counts minus old ones.

    ``changes`` are ``(old, new)`` rows of ``_ROLL_COLUMNS`` (the same event before and after: its ``machine``,
    ``first`` and ``link_first`` may differ). Cells whose counts do not change are left out.
    """
    cells: dict[tuple[Any, ...], list[int]] = {}
    changes = list(changes)
    for rows, sign in (([new for _, new in changes], 1), ([old for old, _ in changes], -1)):
        for key, counts in _rollup_cells(rows).items():
            into = cells.setdefault(key, [0] * _N)
            for i, count in enumerate(counts):
                into[i] += sign * count
    return {key: counts for key, counts in cells.items() if any(counts)}


def _totals_of(days: dict[tuple[Any, ...], list[int]]) -> dict[tuple[Any, ...], list[int]]:
    """``rollup_totals`` cells from ``rollup_days`` ones (the day left out of the key, counts summed)."""
    totals: dict[tuple[Any, ...], list[int]] = {}
    for key, counts in days.items():
        into = totals.setdefault((*key[:7], key[8]), [0] * _N)
        for i, count in enumerate(counts):
            into[i] += count
    return totals
