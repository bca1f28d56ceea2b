"""The Events API (mailtrack.http.events_api), sans-IO over a real store of each kind (SQLite, PostgreSQL): shapes,
filters, cursors, refusals."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from support.stores import Backend

from mailtrack.events import TrackingEvent
from mailtrack.http.events_api import EventsApi, error
from mailtrack.http.messages import Request, Response
from mailtrack.storage.base import EventQuery, StoreUnavailable
from mailtrack.storage.sqlite import SQLiteStore

DAY0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def store(backend: Backend) -> Iterator[Any]:
    store = backend.open()
    for i in range(30):
        store.record(TrackingEvent(
            event_type=["opened", "clicked", "unsubscribed"][i % 3], message_id=f"m{i % 4}",
            recipient=None if i % 5 == 0 else f"r{i % 6}@x", url="https://e.com/a" if i % 3 == 1 else None,
            timestamp=DAY0 + timedelta(hours=5 * i), metadata={"campaign": ["spring", "fall"][i % 2]},
            tags=("news",) if i % 2 else ()))
    yield store
    store.close()


def get(api: EventsApi, path: str, params: dict[str, Any] | str = "", method: str = "GET") -> tuple[Response, Any]:
    query = params if isinstance(params, str) else urlencode(params)
    response = api.handle(Request(method, path, query=query))
    assert ("Content-Type", "application/json") in response.headers
    return response, json.loads(response.body) if response.body else None


def test_events_are_the_stores_newest_first_serialized_by_to_dict(store: Any) -> None:
    api = EventsApi(store)
    response, body = get(api, "/v1/events", {"limit": 1000})
    assert response.status == 200
    assert body == {"data": [event.to_dict() for event in reversed(store.events())], "next_cursor": None}


@pytest.mark.parametrize("params", [
    {"message_id": "m1"}, {"recipient": "r1@x"}, {"recipient": ""}, {"type": "clicked"},
    {"since": "2024-03-02"}, {"until": "2024-03-02T10:00:00+00:00"}, {"since": str(int(DAY0.timestamp()) + 86400)},
    {"metadata.campaign": "fall"}, {"tag": "news"}, {"tag": "news", "type": "opened", "metadata.campaign": "fall"},
])
def test_every_filter_reaches_the_store(store: Any, params: dict[str, str]) -> None:
    from mailtrack.http.events_api import filters_query, parse_parameters

    parsed, problems = parse_parameters(urlencode(params), ("message_id", "recipient", "type", "since", "until", "tag"))
    query = filters_query(parsed, problems)
    assert query is not None and problems == []
    _, body = get(EventsApi(store), "/v1/events", params)
    assert body["data"] == [event.to_dict() for event in store.find(query, limit=100).events]
    assert 0 < len(body["data"]) < 30


def test_cursor_pages_through_everything_once(store: Any) -> None:
    api = EventsApi(store)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 7}
    while True:
        _, body = get(api, "/v1/events", params)
        seen += [event["event_id"] for event in body["data"]]
        if body["next_cursor"] is None:
            break
        params = {"limit": 7, "cursor": body["next_cursor"]}
    assert seen == [event.event_id for event in reversed(store.events())]


def test_stats_groups(store: Any) -> None:
    api = EventsApi(store)
    _, body = get(api, "/v1/stats", {"group_by": "campaign"})
    assert body["group_by"] == "campaign"
    assert [row["key"] for row in body["data"]] == ["fall", "spring"]
    assert sum(row["opens"] + row["clicks"] + row["unsubscribes"] for row in body["data"]) == 30
    assert set(body["data"][0]) == {"key", "sent", "opens", "unique_opens", "clicks", "unique_clicks", "unsubscribes",
                                    "unique_unsubscribes", "open_rate", "click_rate", "click_to_open_rate",
                                    "machine_opens", "machine_clicks", "machine_unsubscribes"}
    _, day = get(api, "/v1/stats")  # group_by defaults to day
    assert day["group_by"] == "day" and day["data"][0]["key"] == "2024-03-01"
    _, links = get(api, "/v1/stats", {"group_by": "link", "metadata.campaign": "fall"})
    assert [(row["key"], row["clicks"], row["opens"]) for row in links["data"]] == [("https://e.com/a", 5, None)]


@pytest.mark.parametrize("group_by", ["day", "campaign", "message", "link", "tag"])
@pytest.mark.parametrize("filters", [{}, {"metadata.campaign": "fall"}, {"tag": "news", "type": "opened"},
                                     {"since": "2024-03-02T07:00:00Z", "until": "2024-03-06T05:00:00Z"}])
def test_stats_pages_concatenated_are_the_whole_answer(store: Any, group_by: str,
                                                         filters: dict[str, str]) -> None:
    api = EventsApi(store)
    _, whole = get(api, "/v1/stats", {**filters, "group_by": group_by, "limit": 1000})
    assert whole["next_cursor"] is None and whole["group_by"] == group_by
    keys = [row["key"] for row in whole["data"]]
    assert keys == sorted(keys) and len(keys) == len(set(keys))  # key order, links included
    for limit in (1, 2, 3):
        rows: list[dict[str, Any]] = []
        params: dict[str, Any] = {**filters, "group_by": group_by, "limit": limit}
        while True:
            response, body = get(api, "/v1/stats", params)
            assert response.status == 200 and len(body["data"]) <= limit
            rows += body["data"]
            if body["next_cursor"] is None:
                break
            assert len(body["data"]) == limit  # a cursor only when more follow: never an empty last page
            params = {**params, "cursor": body["next_cursor"]}
        assert rows == whole["data"]
    if group_by in ("day", "message") and not filters:
        assert len(keys) > 3  # the pages above really paged


def test_stats_default_page_is_100_groups(backend: Backend) -> None:
    big = backend.open()
    for i in range(130):
        big.record(TrackingEvent(event_type="opened", message_id=f"m{i:03d}", recipient="a@x", timestamp=DAY0))
    api = EventsApi(big)
    _, first = get(api, "/v1/stats", {"group_by": "message"})
    assert [row["key"] for row in first["data"]] == [f"m{i:03d}" for i in range(100)]
    _, rest = get(api, "/v1/stats", {"group_by": "message", "cursor": first["next_cursor"]})
    assert [row["key"] for row in rest["data"]] == [f"m{i:03d}" for i in range(100, 130)] and rest["next_cursor"] is None
    big.close()


@pytest.mark.parametrize(("path", "params", "fields"), [
    ("/v1/events", {"limit": "0"}, ["limit"]),
    ("/v1/events", {"limit": "1001"}, ["limit"]),
    ("/v1/events", {"limit": "ten"}, ["limit"]),
    ("/v1/events", {"type": "bounced"}, ["type"]),
    ("/v1/events", {"since": "yesterday"}, ["since"]),
    ("/v1/events", {"until": "nan"}, ["until"]),
    ("/v1/events", {"since": "2024-03-02", "until": "2024-03-01"}, ["until"]),
    ("/v1/events", {"since": "253402300800"}, ["since"]),  # after 9999-12-31
    ("/v1/events", {"since": "-62135596801"}, ["since"]),  # before 0001-01-01
    ("/v1/events", {"until": "1e400"}, ["until"]),
    ("/v1/events", {"cursor": "garbage!"}, ["cursor"]),
    ("/v1/events", {"cursor": "YWJj"}, ["cursor"]),
    ("/v1/events", {"colour": "red"}, ["colour"]),
    ("/v1/events", {"group_by": "day"}, ["group_by"]),
    ("/v1/events", "tag=a&tag=b", ["tag"]),
    ("/v1/events", {"message_id": ""}, ["message_id"]),
    ("/v1/events", {"limit": "0", "type": "x", "since": "x"}, ["type", "since", "limit"]),
    ("/v1/stats", {"group_by": "week"}, ["group_by"]),
    ("/v1/stats", {"campaign_key": ""}, ["campaign_key"]),
    ("/v1/stats", {"limit": "0"}, ["limit"]),
    ("/v1/stats", {"limit": "1001"}, ["limit"]),
    ("/v1/stats", {"cursor": "garbage!"}, ["cursor"]),
    ("/v1/stats", {"cursor": "YWZ0ZXI6dGFnOm5ld3M", "group_by": "day"}, ["cursor"]),  # "after:tag:news", a tag cursor
    ("/v1/stats", {"before": "x"}, ["before"]),
    ("/v1/stats", "%ff=1", [None]),
])
def test_bad_parameters_are_400_in_sendgrids_shape(store: Any, path: str, params: Any,
                                                    fields: list[str | None]) -> None:
    response, body = get(EventsApi(store), path, params)
    assert response.status == 400
    assert [problem["field"] for problem in body["errors"]] == fields
    assert all(isinstance(problem["message"], str) and problem["message"] for problem in body["errors"])


@pytest.mark.parametrize("since", ["1969-12-31", "0400-12-30", "0001-01-01T00:00:00-05:00", "-86400", "0"])
def test_a_time_before_1970_is_a_fair_filter(store: Any, since: str) -> None:
    """Every event is after it: the answer is every event (it was a 400, though ISO 8601 allows years from 1)."""
    response, body = get(EventsApi(store), "/v1/events", {"since": since})
    assert response.status == 200
    assert body["data"] == [event.to_dict() for event in reversed(store.events())]


def test_unknown_paths_methods_and_a_store_that_is_down(store: Any, tmp_path: Path) -> None:
    api = EventsApi(store)
    assert api.handles("/v1/events") and api.handles("/v1/nothing") and not api.handles("/o/token")
    response, body = get(api, "/v1/nothing")
    assert response.status == 404 and body["errors"][0]["field"] is None
    response, _ = get(api, "/v1/events", method="POST")
    assert response.status == 405 and ("Allow", "GET, HEAD") in response.headers
    response, body = get(api, "/v1/events", method="HEAD")
    assert response.status == 200 and body is None

    broken = SQLiteStore(tmp_path / "broken.sqlite")
    with sqlite3.connect(tmp_path / "broken.sqlite") as connection:  # a store whose tables went away under it
        connection.executescript("DROP TABLE outbox; DROP TABLE events; DROP TABLE rollup_days; DROP TABLE rollup_totals;")
    with pytest.raises(StoreUnavailable):
        broken.find(EventQuery())
    down = EventsApi(broken)
    for path in ("/v1/events", "/v1/stats"):
        response, body = get(down, path)
        assert response.status == 503 and "unavailable" in body["errors"][0]["message"]


def test_authorize_is_asked_with_the_endpoints_scope(store: Any) -> None:
    asked: list[tuple[str, str]] = []

    def authorize(request: Request, scope: str) -> Response | None:
        asked.append((request.path, scope))
        return None if scope == "events.read" else error(403, [(None, "no")])

    api = EventsApi(store, authorize=authorize)
    assert get(api, "/v1/events")[0].status == 200
    response, body = get(api, "/v1/stats", {"group_by": "week"})  # refused before the parameters are read
    assert response.status == 403 and body == {"errors": [{"field": None, "message": "no"}]}
    assert asked == [("/v1/events", "events.read"), ("/v1/stats", "stats.read")]


def test_serves_default_authorization_is_this_machine_only(store: Any, tracker: Any) -> None:
    from mailtrack.http.endpoints import Endpoints
    from mailtrack.service import loopback_only

    endpoints = Endpoints(tracker, trusted_proxies=["10.0.0.0/8"])
    api = EventsApi(store, authorize=loopback_only(endpoints))
    for address, forwarded, status in (("127.0.0.1", "", 200), ("::1", "", 200), ("203.0.113.9", "", 403),
                                       (None, "", 403), ("10.0.0.2", "127.0.0.1", 200),
                                       ("10.0.0.2", "203.0.113.9", 403), ("127.0.0.1", "203.0.113.9", 200)):
        headers = {"x-forwarded-for": forwarded} if forwarded else {}
        response = api.handle(Request("GET", "/v1/stats", headers=headers, remote_addr=address))
        assert response.status == status, (address, forwarded)
        if status == 403:
            assert json.loads(response.body)["errors"][0]["message"].startswith("the stats.read scope")


def test_events_carry_the_verdict_and_filter_by_it_and_stats_count_people_with_machines_beside(backend: Any) -> None:
    """Issue 14: ``machine=none|any|<label>`` on /v1/events (a bad value is a 400; /v1/stats refuses the parameter),
    each event with ``machine`` and ``machine_reasons``; stats' SendGrid-shaped counts are people's."""
    from datetime import datetime, timezone

    from mailtrack.events import TrackingEvent

    store = backend.open()
    at = datetime(2024, 3, 1, 12, tzinfo=timezone.utc)
    person = store.record(TrackingEvent(event_type="opened", timestamp=at, message_id="m", recipient="a@x"))
    mpp = store.record(TrackingEvent(event_type="opened", timestamp=at, message_id="m", recipient="b@x",
                                     machine="apple_mpp", machine_reasons=("Apple's proxy",)))
    scan = store.record(TrackingEvent(event_type="clicked", timestamp=at, message_id="m", recipient="b@x",
                                      url="https://e.com/", link_index=0, machine="link_scanner",
                                      machine_reasons=("a scanner's agent",)))
    api = EventsApi(store)
    for value, wanted in (("none", [person]), ("any", [scan, mpp]), ("apple_mpp", [mpp]), ("link_scanner", [scan]),
                          ("honeypot", []), (None, [scan, mpp, person])):
        response, body = get(api, "/v1/events", {} if value is None else {"machine": value})
        assert response.status == 200 and [event["event_id"] for event in body["data"]] == [e.event_id for e in wanted], value
    _, body = get(api, "/v1/events", {"machine": "apple_mpp"})
    assert (body["data"][0]["machine"], body["data"][0]["machine_reasons"]) == ("apple_mpp", ["Apple's proxy"])
    response, body = get(api, "/v1/events", {"machine": "robot"})
    assert response.status == 400 and body["errors"][0]["field"] == "machine"
    response, body = get(api, "/v1/stats", {"machine": "none"})
    assert response.status == 400 and body["errors"][0]["field"] == "machine"
    _, stats = get(api, "/v1/stats", {"group_by": "message"})
    (row,) = stats["data"]
    assert (row["opens"], row["unique_opens"], row["clicks"], row["unique_clicks"]) == (1, 1, 0, 0)
    assert (row["machine_opens"], row["machine_clicks"], row["machine_unsubscribes"]) == (1, 1, 0)
