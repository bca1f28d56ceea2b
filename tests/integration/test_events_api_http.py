"""``GET /v1/events`` and ``/v1/stats`` from a real ``mailtrack serve`` process, after real opens and clicks over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from support.helpers import READER_HEADERS
from support.stores import Backend
from test_serve_http import Server, path_of, serve  # noqa: F401, F811  (the fixture)

import mailtrack


def key_for(store: Any, *scopes: str) -> str:
    """A live API key of the parent account holding ``scopes`` (as ``mailtrack apikey create`` makes one)."""
    if store.account("parent") is None:
        store.create_account("parent")
    return str(store.create_key("parent", list(scopes))[1])


def api(server: Server, path: str, key: str | None = None, **params: str) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    reply = server.get(f"{path}?{urlencode(params)}" if params else path, headers=headers)
    assert reply.header("Content-Type") == "application/json"
    return reply.status, json.loads(reply.body)


def test_events_and_stats_over_http(serve: Callable[..., Server], tracker: mailtrack.Tracker,  # noqa: F811
                                    backend: Backend) -> None:
    """On SQLite and on PostgreSQL (``--db postgresql://...``): the same answers."""
    store = backend.open()  # first: on PostgreSQL it makes the schema the server's URL names
    server = serve(db=backend.serve_db)
    html = '<html><body><a href="https://example.com/a">a</a></body></html>'
    for recipient in ("ann@example.com", "bob@example.com"):
        result = tracker.rewrite_html(html, message_id=f"m-{recipient[:3]}", recipient=recipient,
                                      metadata={"campaign": "spring"})
        assert result.pixel is not None
        pixel = result.html.split('src="', 1)[1].split('"', 1)[0]
        assert server.get(path_of(pixel), headers=READER_HEADERS).status == 200
        assert server.get(path_of(result.links[0].tracking_url), headers=READER_HEADERS).status == 302
    assert server.get(path_of(pixel), headers=READER_HEADERS).status == 200  # bob opens again

    assert api(server, "/v1/events")[0] == 401  # no key
    key = key_for(store, "events.read", "stats.read")
    assert api(server, "/v1/events", key_for(store, "stats.read"))[0] == 403  # a key without the scope
    status, body = api(server, "/v1/events", key, limit="2")
    assert status == 200
    newest = [event.to_dict() for event in reversed(store.events())]
    assert len(newest) == 5 and body["data"] == newest[:2]
    status, rest = api(server, "/v1/events", key, limit="1000", cursor=str(body["next_cursor"]))
    assert status == 200 and rest == {"data": newest[2:], "next_cursor": None}

    status, body = api(server, "/v1/events", key, type="clicked", **{"metadata.campaign": "spring"})
    assert [event["recipient"] for event in body["data"]] == ["bob@example.com", "ann@example.com"]

    status, stats = api(server, "/v1/stats", key, group_by="campaign")
    assert status == 200
    assert stats["data"] == [{"key": "spring", "sent": None, "opens": 3, "unique_opens": 2, "clicks": 2,
                              "unique_clicks": 2, "unsubscribes": 0, "unique_unsubscribes": 0, "open_rate": None,
                              "click_rate": None, "click_to_open_rate": 1.0, "machine_opens": 0,
                              "machine_clicks": 0, "machine_unsubscribes": 0}]
    status, errors = api(server, "/v1/stats", key, group_by="week")
    assert status == 400 and errors == {"errors": [{"field": "group_by",
                                                    "message": "must be one of day, campaign, message, link, tag"}]}
    assert server.get("/v1/").status == 404
    # the tracking endpoints are served as before
    assert server.get(path_of(pixel)).header("Content-Type") == "image/gif"
