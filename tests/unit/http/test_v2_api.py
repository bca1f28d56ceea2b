"""v2's customer.apps without a socket: every task in JSON and XML, every refusal in v2's error shape, never a 500."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from mailtrack.exceptions import SettingsError
from mailtrack.http.messages import MAX_BODY, Request
from mailtrack.http.settings_api import SettingsApi
from mailtrack.http.v2_api import APPS, V2Api
from mailtrack.http.wsgi import WsgiApp
from mailtrack.storage.sqlite import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "t.sqlite")
    store.create_account("sub1", parent="parent")
    store.create_account("sub2", parent="parent")
    yield store
    store.close()


@pytest.fixture
def api(store: SQLiteStore) -> V2Api:
    return V2Api(store)


def call(api: V2Api, fmt: str, method: str = "POST", *, path: str | None = None, body: bytes | None = None,
         query: str = "", content_type: str = "application/x-www-form-urlencoded", **params: str) -> tuple[int, Any]:
    """One call; JSON answers come back parsed, XML ones as an ElementTree root (parsing proves well-formed)."""
    data = body if body is not None else urlencode({k.replace("__", "/"): v for k, v in params.items()}).encode()
    response = api.handle(Request(method, path or f"/apiv2/customer.apps.{fmt}", query=query,
                                  headers={"content-type": content_type}, body=data))
    assert response is not None
    headers = dict(response.headers)
    assert headers["Cache-Control"] == "no-store" and int(headers["Content-Length"]) == len(response.body)
    if fmt == "xml":
        assert headers["Content-Type"] == "application/xml; charset=utf-8"
        assert response.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
        return response.status, ET.fromstring(response.body)
    assert headers["Content-Type"] == "application/json"
    return response.status, json.loads(response.body)


def refused(answer: tuple[int, Any], fmt: str) -> tuple[int, str]:
    """The status and the one message of a documented v2 error, checked to have exactly that shape."""
    status, body = answer
    if fmt == "xml":
        assert body.tag == "result" and [child.tag for child in body] == ["message", "errors"]
        assert body.findtext("message") == "error"
        [error] = list(body.find("errors"))  # type: ignore[arg-type]
        assert error.tag == "error" and error.text
        return status, error.text
    assert set(body) == {"message", "errors"} and body["message"] == "error" and len(body["errors"]) == 1
    return status, body["errors"][0]


def success(answer: tuple[int, Any], fmt: str) -> bool:
    status, body = answer
    if fmt == "xml":
        return status == 200 and body.tag == "result" and [(c.tag, c.text) for c in body] == [("message", "success")]
    return status == 200 and body == {"message": "success"}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_every_task_in_the_documented_shapes(api: V2Api, store: SQLiteStore, fmt: str) -> None:
    key = store.create_key("parent")[1]
    auth = {"api_user": "parent", "api_key": key, "user": "sub1"}

    status, listed = call(api, fmt, task="getAvailable", **auth)
    assert status == 200
    if fmt == "xml":
        assert listed.tag == "apps" and all(app.tag == "app" for app in listed)
        assert all([c.tag for c in app] == ["name", "title", "description", "activated"] for app in listed)
        activated = {app.findtext("name"): app.findtext("activated") for app in listed}
        assert activated == {"clicktrack": "1", "subscriptiontrack": "0", "opentrack": "1", "ganalytics": "0"}
    else:
        assert [item["name"] for item in listed] == list(APPS)
        assert all(set(item) == {"name", "title", "description", "activated"} for item in listed)
        assert listed[0] == {"name": "clicktrack", "title": "Click Tracking",
                             "description": "Overwrites every link to track every click in emails.", "activated": True}
        assert {item["name"]: item["activated"] for item in listed} == {
            "clicktrack": True, "subscriptiontrack": False, "opentrack": True, "ganalytics": False}

    assert success(call(api, fmt, task="activate", name="subscriptiontrack", **auth), fmt)
    assert success(call(api, fmt, task="deactivate", name="opentrack", **auth), fmt)
    settings = store.tracking_settings("sub1")
    assert settings.subscription_tracking.enable and not settings.open_tracking.enable
    assert store.tracking_settings("parent").open_tracking.enable  # the parent's are its own

    assert success(call(api, fmt, task="setup", name="clicktrack", enable_text="1", **auth), fmt)
    assert success(call(api, fmt, task="setup", name="ganalytics", utm_source="news & <letters>",
                        utm_campaign="spring", **auth), fmt)
    assert success(call(api, fmt, task="setup", name="subscriptiontrack", text__html="<p>Leave: <% here %></p>",
                        text__plain="Leave: <% %>", replace="[unsub]", **auth), fmt)
    assert success(call(api, fmt, task="setup", name="opentrack", **auth), fmt)  # it has no settings to change

    status, got = call(api, fmt, task="getsettings", name="clicktrack", **auth)
    status2, ga = call(api, fmt, task="getsettings", name="ganalytics", **auth)
    status3, sub = call(api, fmt, task="getsettings", name="subscriptiontrack", **auth)
    status4, opened = call(api, fmt, task="getsettings", name="opentrack", **auth)
    assert status == status2 == status3 == status4 == 200
    if fmt == "xml":
        assert got.tag == "app" and [(c.tag, c.text) for c in got] == [("enable_text", "1")]
        assert {c.tag: c.text or "" for c in ga} == {"utm_source": "news & <letters>", "utm_medium": "",
                                                     "utm_term": "", "utm_content": "", "utm_campaign": "spring"}
        assert {c.tag: c.text or "" for c in sub} == {"text_html": "<p>Leave: <% here %></p>",
                                                      "text_plain": "Leave: <% %>", "url": "", "landing": "",
                                                      "replace": "[unsub]"}
        assert opened.tag == "app" and len(opened) == 0 and not opened.text
    else:
        assert got == {"settings": {"enable_text": "1"}}
        assert ga == {"settings": {"utm_source": "news & <letters>", "utm_medium": "", "utm_term": "",
                                   "utm_content": "", "utm_campaign": "spring"}}
        assert sub == {"settings": {"text/html": "<p>Leave: <% here %></p>", "text/plain": "Leave: <% %>",
                                    "url": "", "landing": "", "replace": "[unsub]"}}
        assert opened == {"settings": None}
    assert store.account_settings("sub1") == {
        "click": {"enable_text": True},
        "google_analytics": {"utm_campaign": "spring", "utm_source": "news & <letters>"},
        "open": {"enabled": False},
        "subscription": {"enabled": True, "html_content": "<p>Leave: <% here %></p>",
                         "plain_content": "Leave: <% %>", "replace": "[unsub]"}}


def test_get_and_query_string_work_like_post(api: V2Api, store: SQLiteStore) -> None:
    key = store.create_key("sub1")[1]
    query = urlencode({"api_user": "sub1", "api_key": key, "task": "getsettings", "name": "clicktrack"})
    assert call(api, "json", "GET", query=query, body=b"") == (200, {"settings": {"enable_text": "0"}})
    # Split between the query string and the body; a key of one's own needs no user= (or user= itself).
    query = urlencode({"api_user": "sub1", "api_key": key})
    assert success(call(api, "xml", query=query, task="setup", name="clicktrack", enable_text="1", user="sub1"), "xml")
    assert call(api, "json", query=query, task="getsettings", name="clicktrack")[1] == {"settings": {"enable_text": "1"}}


def test_v2_and_v3_read_and_write_the_same_stored_settings(api: V2Api, store: SQLiteStore) -> None:
    key = store.create_key("parent")[1]
    v3 = SettingsApi(store)

    def v3_call(method: str, section: str, body: Any = None) -> Any:
        response = v3.handle(Request(method, f"/v3/tracking_settings/{section}", headers={
            "authorization": f"Bearer {key}", "on-behalf-of": "sub1"}, body=json.dumps(body).encode() if body else b""))
        assert response is not None and response.status == 200
        return json.loads(response.body)

    v3_call("PATCH", "google_analytics", {"enabled": True, "utm_medium": "email"})
    v3_call("PATCH", "subscription", {"landing": "<p>bye</p>"})
    auth = {"api_user": "parent", "api_key": key, "user": "sub1"}
    listed = {item["name"]: item["activated"] for item in call(api, "json", task="getAvailable", **auth)[1]}
    assert listed["ganalytics"] is True and listed["subscriptiontrack"] is False
    assert call(api, "json", task="getsettings", name="ganalytics", **auth)[1]["settings"]["utm_medium"] == "email"
    assert call(api, "xml", task="getsettings", name="subscriptiontrack", **auth)[1].findtext("landing") == "<p>bye</p>"

    call(api, "json", task="setup", name="clicktrack", enable_text="1", **auth)
    call(api, "json", task="deactivate", name="clicktrack", **auth)
    call(api, "json", task="setup", name="subscriptiontrack", url="https://example.com/bye", **auth)
    assert v3_call("GET", "click") == {"enabled": False, "enable_text": True}
    assert v3_call("GET", "subscription")["url"] == "https://example.com/bye"
    assert v3_call("GET", "subscription")["landing"] == "<p>bye</p>"  # setup changed only what it named


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_credentials_scopes_and_users_are_refused_in_v2_s_shape(api: V2Api, store: SQLiteStore, fmt: str) -> None:
    parent = store.create_key("parent")[1]
    sub1 = store.create_key("sub1")[1]
    read_only = store.create_key("parent", ["tracking_settings.read"])[1]
    revoked_key, revoked = store.create_key("parent")
    store.revoke_key(revoked_key.key_id)
    wrong = parent[:-1] + ("A" if parent[-1] != "A" else "B")
    denied = (401, "Permission denied, wrong credentials")
    for user, key in (("parent", wrong), ("parent", revoked), ("parent", "SG.x.y"), ("parent", ""),
                      ("sub1", parent), ("parent", sub1), ("", parent), ("nobody", parent)):
        assert refused(call(api, fmt, api_user=user, api_key=key, task="getAvailable"), fmt) == denied
    assert refused(call(api, fmt, task="getAvailable"), fmt) == denied  # no credentials at all
    status, message = refused(call(api, fmt, api_user="parent", api_key=read_only, task="activate",
                                   name="opentrack"), fmt)
    assert status == 403 and "tracking_settings.update" in message
    assert call(api, fmt, api_user="parent", api_key=read_only, task="getAvailable")[0] == 200
    for user, key, target in (("parent", parent, "nobody"), ("sub1", sub1, "sub2"), ("sub1", sub1, "parent")):
        status, message = refused(call(api, fmt, api_user=user, api_key=key, task="getAvailable", user=target), fmt)
        assert status == 403 and "not api_user nor one of its subusers" in message
    assert store.account_settings("sub2") == {} and store.account_settings("parent") == {}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_bad_parameters_are_v2_errors_and_change_nothing(api: V2Api, store: SQLiteStore, fmt: str) -> None:
    auth = {"api_user": "parent", "api_key": store.create_key("parent")[1], "user": "sub1"}
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "task must be one of"),
        ({"task": "delete"}, "task must be one of"),
        ({"task": "activate"}, "name must be a supported app"),
        ({"task": "activate", "name": "bcc"}, "name must be a supported app"),
        ({"task": "getsettings", "name": "twitter"}, "name must be a supported app"),
        ({"task": "getAvailable", "name": "clicktrack"}, "getAvailable takes no name"),
        ({"task": "activate", "name": "clicktrack", "enable_text": "1"}, "unknown parameter(s) enable_text"),
        ({"task": "setup", "name": "clicktrack"}, "missing parameters: clicktrack needs enable_text"),
        ({"task": "setup", "name": "clicktrack", "enable_text": "yes"}, "enable_text must be 0 or 1"),
        ({"task": "setup", "name": "clicktrack", "enable_text": "1", "colour": "red"}, "unknown setting(s) colour"),
        ({"task": "setup", "name": "ganalytics"}, "missing parameters: ganalytics needs"),
        ({"task": "setup", "name": "ganalytics", "source": "x"}, "unknown setting(s) source for ganalytics"),
        ({"task": "setup", "name": "subscriptiontrack", "html_content": "x"}, "unknown setting(s) html_content"),
        ({"task": "setup", "name": "opentrack", "enabled": "1"}, "unknown setting(s) enabled for opentrack"),
    ]
    for params, expected in cases:
        status, message = refused(call(api, fmt, **auth, **params), fmt)
        assert status == 400 and expected in message, (params, message)
    assert store.account_settings("sub1") == {}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_unreadable_requests_paths_and_methods(api: V2Api, store: SQLiteStore, fmt: str) -> None:
    auth = urlencode({"api_user": "parent", "api_key": store.create_key("parent")[1], "task": "getAvailable"})
    assert refused(call(api, fmt, body=b"task=getAvailable&task=setup", query=auth.replace("&task=getAvailable", "")),
                   fmt) == (400, "the parameter 'task' is given more than once")
    assert refused(call(api, fmt, body=b"name=%ff", query=auth), fmt)[0] == 400  # not UTF-8
    assert refused(call(api, fmt, body=b"\xff=1", query=auth), fmt)[0] == 400
    assert refused(call(api, fmt, body=b"&".join(b"f%d=1" % i for i in range(60)), query=auth), fmt)[0] == 400
    assert refused(call(api, fmt, body=b'{"task": "x"}', content_type="application/json", query=auth), fmt)[0] == 400
    assert refused(call(api, fmt, body=b"x" * (MAX_BODY + 1), query=auth), fmt)[0] == 413
    assert refused(call(api, fmt, path=f"/apiv2/customer.profile.{fmt}", query=auth, body=b""), fmt)[0] == 404
    assert refused(call(api, fmt, path=f"/apiv2/x/customer.apps.{fmt}", query=auth, body=b""), fmt)[0] == 404
    response = api.handle(Request("DELETE", f"/apiv2/customer.apps.{fmt}", query=auth))
    assert response is not None and response.status == 405 and ("Allow", "GET, POST") in response.headers
    assert api.handle(Request("GET", "/v3/tracking_settings")) is None and api.handle(Request("GET", "/c/x")) is None


def test_xml_is_escaped_and_always_well_formed(api: V2Api, store: SQLiteStore) -> None:
    auth = {"api_user": "parent", "api_key": store.create_key("parent")[1]}
    nasty = "]]></landing><x>&amp; \x00\x01\x1f\x7f é\r\n🙂"
    with pytest.raises(SettingsError, match="lone surrogate"):  # no bytes write a lone surrogate: refused on write
        store.patch_tracking_settings("parent", "subscription", {"landing": "\ud800"})
    store.patch_tracking_settings("parent", "subscription", {"landing": nasty})  # v3 JSON stores control characters
    call(api, "json", task="setup", name="subscriptiontrack", replace="</replace><evil/>", **auth)
    status, root = call(api, "xml", task="getsettings", name="subscriptiontrack", **auth)
    assert status == 200 and [c.tag for c in root] == ["text_html", "text_plain", "url", "landing", "replace"]
    assert root.findtext("landing") == "]]></landing><x>&amp; \ufffd\ufffd\ufffd\x7f é\r\n🙂"  # DEL is XML-legal
    assert root.findtext("replace") == "</replace><evil/>"
    status, body = call(api, "json", task="getsettings", name="subscriptiontrack", **auth)
    assert body["settings"]["landing"] == nasty  # JSON carries it as stored


def test_store_failures_are_v2_answers(store: SQLiteStore) -> None:
    class Broken(SQLiteStore):
        def tracking_settings(self, name: str) -> Any:
            raise RuntimeError("a bug")

    key = store.create_key("parent")[1]
    broken = Broken(store.path)  # type: ignore[attr-defined]
    try:
        status, message = refused(call(V2Api(broken), "xml", api_user="parent", api_key=key, task="getAvailable"),
                                  "xml")
        assert (status, message) == (500, "internal error")
    finally:
        broken.close()


def test_the_wsgi_app_refuses_an_oversized_v2_body_unread_in_v2_s_shape(api: V2Api) -> None:
    app = WsgiApp(None, [api.handle])  # type: ignore[arg-type]  # the endpoints are never reached here

    class Unread:
        def read(self, *_: Any) -> bytes:
            raise AssertionError("the body was read")

    for fmt in ("json", "xml"):
        response = app.respond({"REQUEST_METHOD": "POST", "PATH_INFO": f"/apiv2/customer.apps.{fmt}",
                                "CONTENT_LENGTH": str(MAX_BODY + 1), "wsgi.input": Unread()})
        assert response.status == 413
        if fmt == "xml":
            assert ET.fromstring(response.body).findtext("message") == "error"
        else:
            assert json.loads(response.body)["message"] == "error"
