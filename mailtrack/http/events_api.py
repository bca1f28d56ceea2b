"""The Events API: ``GET /v1/events`` and ``GET /v1/stats``, sans-IO (request in, response out).

``/v1/events`` answers ``{"data": [...], "next_cursor": ...}``: the events
matching the filters, newest first, each serialized by
:meth:`~mailtrack.events.TrackingEvent.to_dict` (what webhooks and
``mailtrack events --json`` show); ``next_cursor`` is null on the last page,
else the value to pass as ``cursor`` for the next one. ``/v1/stats`` answers
``{"group_by": ..., "data": [{"key": ..., "opens": ..., ...}], "next_cursor": ...}``
(see :class:`~mailtrack.storage.base.StatsRow`): the groups in key order
(days oldest first, the others by key; links too), paged the same way.

Filters (both endpoints): ``message_id``, ``recipient`` (empty: events of
messages tracked without one), ``type`` (``opened``, ``clicked``,
``unsubscribed``), ``since`` (inclusive) and ``until`` (exclusive) as ISO 8601
(a date, or a date and time; UTC when no offset is given) or Unix seconds,
``metadata.KEY=VALUE`` (repeatable with different keys; all must match) and
``tag``; ``/v1/events`` also takes ``machine``: ``none`` (people's events: the
verdict is null), ``any`` (machines', any label) or one label (``apple_mpp``,
``image_proxy``, ``link_scanner``, ``prefetch``, ``honeypot``). Stats need no
such filter: each group counts people (``opens``, ``unique_opens``, ... and the
rates) with the machines' counts beside them (``machine_opens``,
``machine_clicks``, ``machine_unsubscribes``). Both take ``limit`` (events or groups per page, 1 to 1000, default
100) and ``cursor``; ``/v1/stats`` also takes ``group_by`` (``day``, ``campaign``,
``message``, ``link``, ``tag``; default ``day``) and ``campaign_key`` (the
metadata key naming a campaign, default ``campaign``).

Every refusal is JSON in SendGrid's error shape ``{"errors": [{"field": ...,
"message": ...}]}``: 400 for a bad or unknown parameter (all of them listed at
once), 404 for an unknown ``/v1`` path, 405 for a method other than GET/HEAD,
503 when the store cannot be read now; never a 500 or an HTML page.
Authorization is not decided here: ``authorize(request, scope)`` (scopes
``events.read`` and ``stats.read``) returns the refusal to send, or the
account whose events the caller may read (``""`` the parent's; None: every
account), and is injected by :mod:`mailtrack.service` (an API key's account,
or a subuser's under ``on-behalf-of``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.parse import parse_qsl

from mailtrack.events import EventType
from mailtrack.exceptions import MailtrackError
from mailtrack.http.messages import Request, Response
from mailtrack.storage.base import GROUP_BYS, MACHINE_FILTERS, MAX_PAGE, EventQuery, EventStore, GroupBy, StoreError

__all__ = ["DEFAULT_LIMIT", "FILTERS", "PARAMETERS", "SCOPES", "Authorize", "EventsApi", "allow_all",
           "encode_stats_cursor", "error", "filters_query", "json_response", "parse_parameters", "stats_cursor"]

#: ``authorize(request, scope)``: a Response (401, 403) is sent instead; None lets the request read every account's
#: events; a str lets it read that account's only (``""`` the parent's, else a subuser's name).
Authorize = Callable[[Request, str], "Response | str | None"]
#: The scope each endpoint needs.
SCOPES = {"events": "events.read", "stats": "stats.read"}
DEFAULT_LIMIT = 100
FILTERS = ("message_id", "recipient", "type", "since", "until", "tag")
_PARAMETERS = {"events": (*FILTERS, "machine", "limit", "cursor"), "stats": (*FILTERS, "group_by", "campaign_key", "limit", "cursor")}
#: Each endpoint's query parameters (besides ``metadata.KEY``); the OpenAPI document lists these.
PARAMETERS = _PARAMETERS
_CURSOR_PREFIX = "before:"
_STATS_CURSOR_PREFIX = "after:"


def allow_all(request: Request, scope: str) -> Response | None:
    """The authorization that allows everything: for tests and for callers that authorize in front of us."""
    return None


def json_response(status: int, body: object, *, head: bool = False) -> Response:
    """A JSON response that no cache keeps (events are private and change)."""
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
               ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
    return Response(status, headers, b"" if head else data)


def error(status: int, errors: list[tuple[str | None, str]], *, head: bool = False,
          headers: list[tuple[str, str]] | None = None) -> Response:
    """SendGrid's error shape: ``{"errors": [{"field": ..., "message": ...}]}``."""
    response = json_response(status, {"errors": [{"field": field, "message": message} for field, message in errors]},
                             head=head)
    return Response(response.status, [*response.headers, *(headers or [])], response.body)


class EventsApi:
    """``GET {prefix}/v1/events`` and ``GET {prefix}/v1/stats`` over ``store``, each allowed by ``authorize``."""

    def __init__(self, store: EventStore, *, authorize: Authorize = allow_all, prefix: str = "") -> None:
        self.store = store
        self.authorize = authorize
        self.prefix = prefix.rstrip("/") + "/v1/"

    def handles(self, path: str) -> bool:
        """Whether ``path`` is this API's (every ``/v1/`` path: unknown ones get a JSON 404, not a tracking page)."""
        return path.startswith(self.prefix) or path == self.prefix.rstrip("/")

    def handle(self, request: Request) -> Response:
        """Answer ``request``; never raises for anything a client sends, and never answers 500."""
        head = request.method == "HEAD"
        name = request.path[len(self.prefix):].rstrip("/")
        if name not in _PARAMETERS:
            return error(404, [(None, f"no such API path: {request.path}")], head=head)
        if request.method not in ("GET", "HEAD"):
            return error(405, [(None, f"{request.method} is not allowed here; use GET")], head=head,
                         headers=[("Allow", "GET, HEAD")])
        allowed = self.authorize(request, SCOPES[name])
        if isinstance(allowed, Response):
            return allowed
        params, problems = parse_parameters(request.query, _PARAMETERS[name])
        query = filters_query(params, problems)
        if query is not None and allowed is not None:  # the caller's account only
            query = dataclasses.replace(query, account=allowed)
        try:
            if name == "events":
                limit = _int(params, "limit", DEFAULT_LIMIT, 1, MAX_PAGE, problems)
                before = _cursor(params.get("cursor"), problems)
                if problems or query is None:
                    return error(400, problems, head=head)
                page = self.store.find(query, before=before, limit=limit)
                cursor = None if page.next_before is None else _encode_cursor(page.next_before)
                return json_response(200, {"data": [event.to_dict() for event in page.events], "next_cursor": cursor},
                                     head=head)
            group_by = params.get("group_by", "day")
            if group_by not in GROUP_BYS:
                problems.append(("group_by", f"must be one of {', '.join(GROUP_BYS)}"))
            campaign_key = params.get("campaign_key", "campaign")
            if not campaign_key:
                problems.append(("campaign_key", "must not be empty"))
            limit = _int(params, "limit", DEFAULT_LIMIT, 1, MAX_PAGE, problems)
            after = stats_cursor(params.get("cursor"), group_by, problems)
            if problems or query is None:
                return error(400, problems, head=head)
            grouping: GroupBy = group_by  # type: ignore[assignment]  # checked against GROUP_BYS just above
            stats = self.store.stats_page(query, grouping, campaign_key=campaign_key, after=after, limit=limit)
            cursor = None if stats.next_after is None else encode_stats_cursor(group_by, stats.next_after)
            return json_response(200, {"group_by": group_by, "data": [row.to_dict() for row in stats.rows],
                                       "next_cursor": cursor}, head=head)
        except StoreError as exc:
            return error(503, [(None, f"the event store is unavailable: {exc}")], head=head,
                         headers=[("Retry-After", "1")])
        except MailtrackError as exc:  # a value the store refused that the checks above let through
            return error(400, [(None, str(exc))], head=head)


def parse_parameters(query: str, allowed: tuple[str, ...]) -> tuple[dict[str, str], list[tuple[str | None, str]]]:
    """The parameters of ``query`` (``metadata.KEY`` included), with a problem for each unknown or repeated one."""
    params: dict[str, str] = {}
    problems: list[tuple[str | None, str]] = []
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=100)
    except (ValueError, UnicodeDecodeError):
        return {}, [(None, "the query string is not valid (UTF-8, at most 100 parameters)")]
    for name, value in pairs:
        if name in params:
            problems.append((name, "is given more than once"))
        elif name not in allowed and not (name.startswith("metadata.") and len(name) > len("metadata.")):
            problems.append((name, f"is not a parameter of this endpoint (known: {', '.join(allowed)}, metadata.KEY)"))
        params[name] = value
    return params, problems


def filters_query(params: dict[str, str], problems: list[tuple[str | None, str]]) -> EventQuery | None:
    """The :class:`EventQuery` the filters describe; a problem (and None) for each bad value."""
    event_type = params.get("type")
    if event_type is not None and event_type not in {member.value for member in EventType}:
        problems.append(("type", f"must be one of {', '.join(member.value for member in EventType)}"))
        event_type = None
    for name in ("message_id", "tag"):
        if params.get(name) == "":
            problems.append((name, "must not be empty"))
    machine = params.get("machine")
    if machine is not None and machine not in MACHINE_FILTERS:
        problems.append(("machine", f"must be one of {', '.join(MACHINE_FILTERS)}"))
    since, until = _time(params, "since", problems), _time(params, "until", problems)
    if since is not None and until is not None and since >= until:
        problems.append(("until", "must be later than since"))
    if problems:
        return None
    metadata = tuple(sorted((name[len("metadata."):], value) for name, value in params.items()
                            if name.startswith("metadata.")))
    return EventQuery(message_id=params.get("message_id"), recipient=params.get("recipient"),
                      event_type=EventType(event_type) if event_type is not None else None, since=since, until=until,
                      metadata=metadata, tag=params.get("tag"), machine=machine)


def _time(params: dict[str, str], name: str, problems: list[tuple[str | None, str]]) -> float | None:
    """``since``/``until`` as Unix seconds: Unix seconds, or ISO 8601 (UTC when it names no offset)."""
    text = params.get(name)
    if text is None:
        return None
    value: float | None
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            value = None
        else:
            value = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    # Years 1 to 9999, as ISO 8601 writes them: a filter before 1970 is a fair question (it selects every event).
    if value is None or not math.isfinite(value) or not -62135596800 <= value < 253402300800:
        problems.append((name, "must be ISO 8601 (2024-03-01, 2024-03-01T09:00:00Z) or Unix seconds"))
        return None
    return value


def _int(params: dict[str, str], name: str, default: int, low: int, high: int,
         problems: list[tuple[str | None, str]]) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        problems.append((name, f"must be an integer from {low} to {high}"))
        return default
    return int(text)


def _encode_cursor(before: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{before}".encode()).decode().rstrip("=")


def _cursor(text: str | None, problems: list[tuple[str | None, str]]) -> int | None:
    """The event id an opaque ``cursor`` (from ``next_cursor``) continues below."""
    if text is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        decoded = ""
    number = decoded[len(_CURSOR_PREFIX):]
    if not decoded.startswith(_CURSOR_PREFIX) or not number.isdigit() or len(number) > 18:
        problems.append(("cursor", "is not a cursor this API gave (pass next_cursor back as it is)"))
        return None
    return int(number)


def encode_stats_cursor(group_by: str, after: str) -> str:
    """An opaque ``/v1/stats`` cursor: the group_by and the last key of the page (base64url of UTF-8)."""
    return base64.urlsafe_b64encode(f"{_STATS_CURSOR_PREFIX}{group_by}:{after}".encode()).decode().rstrip("=")


def stats_cursor(text: str | None, group_by: str, problems: list[tuple[str | None, str]]) -> str | None:
    """The group key a ``/v1/stats`` cursor continues after; a problem when it is not one of ours for this group_by."""
    if text is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        decoded = ""
    prefix = f"{_STATS_CURSOR_PREFIX}{group_by}:"
    if not decoded.startswith(prefix):
        problems.append(("cursor", "is not a cursor this API gave for this group_by (pass next_cursor back as it is)"))
        return None
    return decoded[len(prefix):]
