"""Events per account over a real ``mailtrack serve``: the account signed into tokens, scoped Events API and stats,
and each subuser's stored unsubscribe landing page."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlencode

from support.stores import Backend
from test_serve_http import Server, path_of, serve  # noqa: F401, F811  (the fixture)

from tests.support.helpers import READER_HEADERS, make_tracker

HTML = '<html><body><a href="https://example.com/a">a</a></body></html>'


def api(server: Server, path: str, key: str, behalf: str | None = None, **params: str) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {key}", **({"on-behalf-of": behalf} if behalf else {})}
    reply = server.get(f"{path}?{urlencode(params)}" if params else path, headers=headers)
    assert reply.header("Content-Type") == "application/json"
    return reply.status, json.loads(reply.body)


def test_each_key_reads_its_accounts_events_and_each_subuser_gets_its_landing_page(
        serve: Callable[..., Server], backend: Backend) -> None:  # noqa: F811
    """On SQLite and on PostgreSQL (``--db postgresql://...``): the same answers."""
    store = backend.open()  # first: on PostgreSQL it makes the schema the server's URL names
    server = serve(db=backend.serve_db)
    store.create_account("parent")
    for sub in ("sub1", "sub2"):
        store.create_account(sub, parent="parent")
    keys = {name: store.create_key(name, ["events.read", "stats.read"])[1] for name in ("parent", "sub1", "sub2")}
    store.patch_tracking_settings("parent", "subscription", {"landing": "<p>Parent landing</p>"})
    store.patch_tracking_settings("sub1", "subscription", {"landing": "<p>Sub1 landing</p>"})
    tracker = make_tracker(account_settings=store.account_settings)
    messages = {None: "m-ann", "sub1": "m-bob", "sub2": "m-cy", "parent": "m-dan"}  # "parent": the parent's own name
    for account, message_id in messages.items():
        result = tracker.rewrite_html(HTML, message_id=message_id, recipient=f"{message_id[2:]}@example.com",
                                      metadata={"campaign": "spring"}, account=account)
        pixel = result.html.split('src="', 1)[1].split('"', 1)[0]
        assert server.get(path_of(pixel), headers=READER_HEADERS).status == 200
        assert server.get(path_of(result.links[0].tracking_url), headers=READER_HEADERS).status == 302

    # the account travelled in the tokens: each event is its subuser's, the parent's have none (in the webhook shape too)
    stored = {(event.message_id, event.account) for event in store.events()}
    assert stored == {("m-ann", None), ("m-bob", "sub1"), ("m-cy", "sub2"), ("m-dan", None)}

    def messages_seen(key: str, behalf: str | None = None) -> list[str]:
        status, body = api(server, "/v1/events", key, behalf)
        assert status == 200, body
        return sorted({event["message_id"] for event in body["data"]})  # type: ignore[index, union-attr]

    assert messages_seen(keys["parent"]) == ["m-ann", "m-dan"]
    assert messages_seen(keys["sub1"]) == ["m-bob"]
    assert messages_seen(keys["sub2"]) == ["m-cy"]
    assert messages_seen(keys["parent"], "sub1") == ["m-bob"]  # a parent acts for its subuser
    _, body = api(server, "/v1/events", keys["sub1"])
    assert all(event["account"] == "sub1" for event in body["data"])  # type: ignore[index, union-attr]
    _, body = api(server, "/v1/events", keys["parent"])
    assert all("account" not in event for event in body["data"])  # type: ignore[index, union-attr]
    assert api(server, "/v1/events", keys["sub1"], "sub2")[0] == 403  # a subuser cannot act for another
    assert api(server, "/v1/stats", keys["parent"], "nobody")[0] == 403  # nor can anyone act for an unknown subuser

    # stats: the same scoping, from the per-account rollups
    for key, behalf, expected in ((keys["parent"], None, ["m-ann", "m-dan"]), (keys["sub1"], None, ["m-bob"]),
                                  (keys["parent"], "sub2", ["m-cy"])):
        status, stats = api(server, "/v1/stats", key, behalf, group_by="message")
        assert status == 200 and [row["key"] for row in stats["data"]] == expected  # type: ignore[index, union-attr]
        status, stats = api(server, "/v1/stats", key, behalf, group_by="campaign")
        assert stats["data"] == [{"key": "spring", "sent": None, "opens": len(expected),  # type: ignore[index]
                                  "unique_opens": len(expected), "clicks": len(expected),
                                  "unique_clicks": len(expected), "unsubscribes": 0, "unique_unsubscribes": 0,
                                  "open_rate": None, "click_rate": None, "click_to_open_rate": 1.0,
                                  "machine_opens": 0, "machine_clicks": 0, "machine_unsubscribes": 0}]

    # the unsubscribe page: the subuser's stored landing, else the parent's
    def landing(account: str | None, message_id: str) -> str:
        url = tracker.tracking_url("unsubscribe", message_id=message_id, recipient="x@example.com", account=account)
        reply = server.get(path_of(url))
        assert reply.status == 200
        return reply.body.decode()

    assert "Sub1 landing" in landing("sub1", "m-bob")
    assert "Parent landing" in landing("sub2", "m-cy") and "Sub1 landing" not in landing("sub2", "m-cy")
    assert "Parent landing" in landing(None, "m-ann")
    assert "Parent landing" in landing("ghost", "m-ghost")  # an account the store does not know: the parent's page
    url = tracker.tracking_url("unsubscribe", message_id="m-bob", recipient="bob@example.com", account="sub1")
    assert server.request("POST", path_of(url), body=b"List-Unsubscribe=One-Click",  # RFC 8058's one-click POST
                          headers={"Content-Type": "application/x-www-form-urlencoded"}).status == 200
    status, stats = api(server, "/v1/stats", keys["sub1"], group_by="message", type="unsubscribed")
    assert [(row["key"], row["unsubscribes"]) for row in stats["data"]] == [("m-bob", 1)]  # type: ignore[index, union-attr]
    store.close()
