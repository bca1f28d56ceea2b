"""The v3 tracking-settings API without a socket: every refusal in SendGrid's error shape, never a 500 or HTML."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailtrack.http.auth import Principal, authorize
from mailtrack.http.messages import MAX_BODY, Request, Response
from mailtrack.http.settings_api import SettingsApi
from mailtrack.storage.sqlite import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "t.sqlite")
    store.create_account("sub1", parent="parent")
    store.create_account("sub2", parent="parent")
    yield store
    store.close()


@pytest.fixture
def api(store: SQLiteStore) -> SettingsApi:
    return SettingsApi(store)


def key(store: SQLiteStore, account: str = "parent", scopes: list[str] | None = None) -> str:
    return store.create_key(account, scopes)[1]


def call(api: SettingsApi, method: str, path: str, key: str | None = None, body: Any = None, *,
         raw: bytes | None = None, **headers: str) -> tuple[int, Any, Response]:
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    if key is not None:
        sent["authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    response = api.handle(Request(method, path, headers=sent, body=data))
    assert response is not None
    assert dict(response.headers)["Content-Type"] == "application/json"
    return response.status, json.loads(response.body), response


def errors(status_body: tuple[int, Any, Response]) -> tuple[int, list[dict[str, Any]]]:
    status, body, _ = status_body
    assert set(body) == {"errors"} and all(set(e) == {"field", "message"} for e in body["errors"])
    return status, body["errors"]


def test_list_get_and_patch_in_sendgrid_shapes(api: SettingsApi, store: SQLiteStore) -> None:
    k = key(store)
    status, body, _ = call(api, "GET", "/v3/tracking_settings", k)
    assert status == 200 and [item["name"] for item in body["result"]] == ["click", "google_analytics", "open",
                                                                           "subscription"]
    assert all(set(item) == {"name", "title", "description", "enabled"} for item in body["result"])
    assert call(api, "GET", "/v3/tracking_settings/open", k)[:2] == (200, {"enabled": True})
    assert call(api, "GET", "/v3/tracking_settings/click", k)[:2] == (200, {"enabled": True, "enable_text": False})
    assert call(api, "PATCH", "/v3/tracking_settings/open", k, {"enabled": False})[:2] == (200, {"enabled": False})
    status, body, _ = call(api, "PATCH", "/v3/tracking_settings/google_analytics", k, {"utm_source": "news"})
    assert (status, body) == (200, {"enabled": False, "utm_source": "news", "utm_medium": "", "utm_term": "",
                                    "utm_content": "", "utm_campaign": ""})
    status, body, _ = call(api, "PATCH", "/v3/tracking_settings/subscription/", k, {"enabled": True, "landing": "<p>x</p>"})
    assert status == 200 and body == {"enabled": True, "html_content": "", "plain_content": "", "replace": "",
                                      "url": "", "landing": "<p>x</p>"}
    assert call(api, "GET", "/v3/tracking_settings/open", k)[1] == {"enabled": False}
    assert call(api, "GET", "/v3/tracking_settings", k)[1]["result"][2]["enabled"] is False


def test_on_behalf_of_acts_on_the_subuser(api: SettingsApi, store: SQLiteStore) -> None:
    k = key(store)
    assert call(api, "PATCH", "/v3/tracking_settings/open", k, {"enabled": False}, on_behalf_of="sub1")[0] == 200
    assert store.account_settings("sub1") == {"open": {"enabled": False}}
    assert store.account_settings("parent") == {} and store.account_settings("sub2") == {}
    sub_key = key(store, "sub1")
    assert call(api, "GET", "/v3/tracking_settings/open", sub_key)[1] == {"enabled": False}  # its own settings


def test_wrong_missing_and_revoked_keys_are_401(api: SettingsApi, store: SQLiteStore) -> None:
    k = key(store)
    for sent in (None, "mt.000000000000." + "A" * 43, k[:-1] + ("A" if k[-1] != "A" else "B"), "", "garbage"):
        assert errors(call(api, "GET", "/v3/tracking_settings/open", sent)) == (
            401, [{"field": None, "message": "authorization required"}])
    assert errors(call(api, "GET", "/v3/tracking_settings", raw=b"", authorization=f"Basic {k}"))[0] == 401
    store.revoke_key(k.split(".")[1])
    assert errors(call(api, "GET", "/v3/tracking_settings/open", k))[0] == 401


def test_scopes_subusers_and_on_behalf_of_misuse_are_403(api: SettingsApi, store: SQLiteStore) -> None:
    read_only = key(store, scopes=["tracking_settings.read"])
    assert call(api, "GET", "/v3/tracking_settings/open", read_only)[0] == 200
    assert errors(call(api, "PATCH", "/v3/tracking_settings/open", read_only, {"enabled": False})) == (
        403, [{"field": None, "message": "access forbidden"}])
    events_only = key(store, scopes=["events.read"])
    assert errors(call(api, "GET", "/v3/tracking_settings", events_only))[0] == 403
    parent = key(store)
    assert errors(call(api, "GET", "/v3/tracking_settings/open", parent, on_behalf_of="nobody"))[0] == 403
    assert errors(call(api, "GET", "/v3/tracking_settings/open", parent, on_behalf_of="parent"))[0] == 403
    sub_key = key(store, "sub1")
    assert errors(call(api, "GET", "/v3/tracking_settings/open", sub_key, on_behalf_of="sub2"))[0] == 403
    assert errors(call(api, "GET", "/v3/tracking_settings/open", sub_key, on_behalf_of="sub1"))[0] == 403
    assert store.account_settings("parent") == {}


@pytest.mark.parametrize(("path", "raw", "field"), [
    ("open", b"{not json", None),
    ("open", b"\xff\xfe", None),
    ("open", b"[true]", None),
    ("open", b'{"enabled": "yes"}', "enabled"),
    ("open", b'{"enabled": 1}', "enabled"),
    ("click", b'{"enable_text": true}', "enable_text"),  # PATCH /click takes only "enabled", as the document says
    ("open", b'{"enabled": true, "nope": 1}', "nope"),
    ("google_analytics", b'{"utm_source": 5}', "utm_source"),
    ("subscription", b'{"landing": ["x"]}', "landing"),
    ("subscription", b'{"landing": {"deep": "x"}}', "landing"),
    ("open", b'{"enabled": true, "enabled": false}', "enabled"),  # duplicate keys: which one was meant?
    ("open", b'{"enabled": NaN}', None),
    ("open", b'{"enabled": -Infinity}', None),
    ("open", b'{"enabled": 1e999}', None),  # beyond a double: json.loads would make it inf
    ("open", b'{"enabled": ' + b"9" * 5000 + b"}", None),  # more digits than Python converts
    ("open", b'{"enabled": 12345678901234567890123}', "enabled"),  # a big int is still no boolean
    ("open", b"[" * 30_000 + b"]" * 30_000, None),  # deeper than the parser's recursion: was a 500
    ("open", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, None),
    ("open", b'\xef\xbb\xbf{"enabled": true}', None),  # a byte-order mark is not JSON text
    ("open", b'{"enabled": true', None),
    ("open", b"null", None),
    ("open", b'"enabled"', None),
    ("google_analytics", b'{"utm_source": "caf\xe9"}', None),  # Latin-1, not UTF-8
])
def test_invalid_bodies_are_400_naming_the_field_and_change_nothing(api: SettingsApi, store: SQLiteStore, path: str,
                                                                    raw: bytes, field: str | None) -> None:
    status, found = errors(call(api, "PATCH", f"/v3/tracking_settings/{path}", key(store), raw=raw))
    if raw.startswith(b'{"a":{"a"') and found[0]["field"] == "a":
        field = "a"  # a recursion limit raised by another test let the parser through: "a" is then an unknown field
    assert status == 400 and found[0]["field"] == field and found[0]["message"]
    assert store.account_settings("parent") == {}


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                  "application/json; charset=iso-8859-1", "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_json_by_its_content_type_is_415(api: SettingsApi, store: SQLiteStore, kind: str) -> None:
    status, found = errors(call(api, "PATCH", "/v3/tracking_settings/open", key(store), {"enabled": False},
                                content_type=kind))
    assert status == 415 and found == [{"field": None, "message": "the request body must be application/json (UTF-8)"}]
    assert store.account_settings("parent") == {}


@pytest.mark.parametrize("kind", ["application/json", "Application/JSON; charset=UTF-8", "application/merge-patch+json",
                                  ""])
def test_json_content_types_and_none_are_taken(api: SettingsApi, store: SQLiteStore, kind: str) -> None:
    headers = {"content_type": kind} if kind else {}
    assert call(api, "PATCH", "/v3/tracking_settings/open", key(store), {"enabled": False}, **headers)[:2] == (
        200, {"enabled": False})


def test_an_empty_body_changes_nothing_and_answers_the_state(api: SettingsApi, store: SQLiteStore) -> None:
    for raw in (b"", b" \r\n", b"{}"):
        assert call(api, "PATCH", "/v3/tracking_settings/click", key(store), raw=raw)[:2] == (
            200, {"enabled": True, "enable_text": False})
    assert store.account_settings("parent") == {}


def test_unknown_paths_wrong_methods_and_oversized_bodies(api: SettingsApi, store: SQLiteStore) -> None:
    k = key(store)
    assert errors(call(api, "GET", "/v3/tracking_settings/nothing", k))[0] == 404
    assert errors(call(api, "GET", "/v3/mail/send", k))[0] == 404
    status, _ = errors(call(api, "DELETE", "/v3/tracking_settings/open", k))
    assert status == 405 and dict(call(api, "DELETE", "/v3/tracking_settings/open", k)[2].headers)["Allow"] == \
        "GET, HEAD, PATCH"
    assert errors(call(api, "POST", "/v3/tracking_settings", k))[0] == 405
    too_big = b'{"landing": "' + b"x" * MAX_BODY + b'"}'
    assert errors(call(api, "PATCH", "/v3/tracking_settings/subscription", k, raw=too_big))[0] == 413
    assert api.handle(Request("GET", "/c/token")) is None  # not an API path: the tracking endpoints answer


def test_a_store_that_cannot_be_read_is_a_503(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.sqlite")
    store.create_account("parent")
    k = key(store)
    store._connection().execute("DROP TABLE api_keys")  # the store now fails every lookup
    assert errors(call(SettingsApi(store), "GET", "/v3/tracking_settings/open", k))[0] == 503


def test_authorize_is_reusable_by_other_api_modules(store: SQLiteStore) -> None:
    k = key(store, scopes=["events.read"])
    principal = authorize(Request("GET", "/v1/events", headers={"authorization": f"Bearer {k}", "on-behalf-of": "sub1"}),
                          "events.read", store=store)
    assert isinstance(principal, Principal) and principal.account == "sub1" and principal.on_behalf_of == "sub1"
    refused = authorize(Request("GET", "/v1/stats", headers={"authorization": f"Bearer {k}"}), "stats.read", store=store)
    assert isinstance(refused, Response) and refused.status == 403
