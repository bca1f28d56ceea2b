"""v2's customer.apps over real HTTP: a ``mailtrack serve`` process, keys from the CLI, every task in JSON and XML.

Form-encoded POSTs (and a GET with a query string) go over the socket with
``http.client``; XML answers are parsed with ElementTree. Settings written
through v2 are read back through v3 and the other way round, and every refusal
(wrong, revoked or foreign key, unknown user, unknown app, bad field, oversized
body) comes back in v2's error shape, never as HTML.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from test_settings_api_http import mailtrack, raw, server  # noqa: F401 - the fixture, shared

from mailtrack.http.messages import MAX_BODY

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def v2(port: int, fmt: str, method: str = "POST", **params: str) -> tuple[int, Any]:
    """One v2 call; the JSON parsed, or the XML root."""
    data = urlencode({k.replace("__", "/"): v for k, v in params.items()})
    if method == "GET":
        status, kind, payload = raw(port, "GET", f"/apiv2/customer.apps.{fmt}?{data}")
    else:
        status, kind, payload = raw(port, "POST", f"/apiv2/customer.apps.{fmt}", data.encode(), **FORM)
    if fmt == "xml":
        assert kind == "application/xml; charset=utf-8", (status, kind, payload)
        return status, ET.fromstring(payload)
    assert kind == "application/json", (status, kind, payload)
    return status, json.loads(payload)


def error(answer: tuple[int, Any], fmt: str) -> tuple[int, str]:
    status, body = answer
    if fmt == "xml":
        assert body.tag == "result" and body.findtext("message") == "error"
        [message] = [e.text for e in body.iter("error")]
        return status, message or ""
    assert body["message"] == "error" and len(body["errors"]) == 1
    return status, body["errors"][0]


def ok(answer: tuple[int, Any], fmt: str) -> bool:
    status, body = answer
    if fmt == "xml":
        return status == 200 and body.tag == "result" and body.findtext("message") == "success"
    return status == 200 and body == {"message": "success"}


def test_every_task_in_json_and_xml_shares_settings_with_v3(server: tuple[int, Path]) -> None:  # noqa: F811
    port, db = server
    key = mailtrack("apikey", "create", "--db", str(db))
    mailtrack("subuser", "create", "sub1", "--db", str(db))
    auth = {"api_user": "parent", "api_key": key, "user": "sub1"}
    bearer = {"Authorization": f"Bearer {key}", "on-behalf-of": "sub1", "Content-Type": "application/json"}

    for fmt in ("json", "xml"):
        status, listed = v2(port, fmt, task="getAvailable", **auth)
        assert status == 200
        names = [i["name"] for i in listed] if fmt == "json" else [a.findtext("name") for a in listed.iter("app")]
        assert names == ["clicktrack", "subscriptiontrack", "opentrack", "ganalytics"]

    assert ok(v2(port, "json", task="deactivate", name="opentrack", **auth), "json")
    assert ok(v2(port, "xml", task="activate", name="ganalytics", **auth), "xml")
    assert ok(v2(port, "json", task="setup", name="clicktrack", enable_text="1", **auth), "json")
    assert ok(v2(port, "xml", task="setup", name="ganalytics", utm_source="news", utm_campaign="spring", **auth), "xml")
    assert ok(v2(port, "json", task="setup", name="subscriptiontrack", text__plain="Leave: <% %>",
                 landing="<p>bye & thanks</p>", **auth), "json")
    assert ok(v2(port, "xml", task="activate", name="subscriptiontrack", **auth), "xml")

    # v2 wrote, v3 reads the same stored settings.
    status, _, payload = raw(port, "GET", "/v3/tracking_settings/click", **bearer)
    assert (status, json.loads(payload)) == (200, {"enabled": True, "enable_text": True})
    assert json.loads(raw(port, "GET", "/v3/tracking_settings/open", **bearer)[2]) == {"enabled": False}
    assert json.loads(raw(port, "GET", "/v3/tracking_settings/subscription", **bearer)[2])["landing"] == (
        "<p>bye & thanks</p>")
    # v3 writes, v2 reads.
    assert raw(port, "PATCH", "/v3/tracking_settings/google_analytics", b'{"utm_medium": "email"}', **bearer)[0] == 200
    assert v2(port, "json", "GET", task="getsettings", name="ganalytics", **auth) == (200, {"settings": {
        "utm_source": "news", "utm_medium": "email", "utm_term": "", "utm_content": "", "utm_campaign": "spring"}})
    status, root = v2(port, "xml", task="getsettings", name="subscriptiontrack", **auth)
    assert status == 200 and root.tag == "app"
    assert {c.tag: c.text or "" for c in root} == {"text_html": "", "text_plain": "Leave: <% %>", "url": "",
                                                   "landing": "<p>bye & thanks</p>", "replace": ""}
    assert v2(port, "json", task="getsettings", name="clicktrack", **auth) == (200, {"settings": {"enable_text": "1"}})
    status, root = v2(port, "xml", task="getsettings", name="opentrack", **auth)
    assert status == 200 and root.tag == "app" and len(root) == 0
    status, listed = v2(port, "xml", task="getAvailable", **auth)
    assert {a.findtext("name"): a.findtext("activated") for a in listed} == {
        "clicktrack": "1", "subscriptiontrack": "1", "opentrack": "0", "ganalytics": "1"}


def test_every_refusal_over_the_socket_is_a_v2_error(server: tuple[int, Path]) -> None:  # noqa: F811
    port, db = server
    key = mailtrack("apikey", "create", "--db", str(db))
    mailtrack("subuser", "create", "sub1", "--db", str(db))
    sub_key = mailtrack("apikey", "create", "--db", str(db), "--subuser", "sub1")
    read_only = mailtrack("apikey", "create", "--db", str(db), "--scopes", "tracking_settings.read")
    revoked = mailtrack("apikey", "create", "--db", str(db))
    mailtrack("apikey", "revoke", revoked.split(".")[1], "--db", str(db))
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")

    for fmt in ("json", "xml"):
        denied = (401, "Permission denied, wrong credentials")
        for user, k in (("parent", wrong), ("parent", revoked), ("parent", sub_key), ("sub1", key)):
            assert error(v2(port, fmt, api_user=user, api_key=k, task="getAvailable"), fmt) == denied
        status, message = error(v2(port, fmt, api_user="parent", api_key=key, task="getAvailable", user="nobody"), fmt)
        assert status == 403 and "subusers" in message
        status, message = error(v2(port, fmt, api_user="sub1", api_key=sub_key, task="getAvailable", user="parent"),
                                fmt)
        assert status == 403
        assert error(v2(port, fmt, api_user="parent", api_key=read_only, task="setup", name="clicktrack",
                        enable_text="1"), fmt)[0] == 403
        auth = {"api_user": "parent", "api_key": key, "user": "sub1"}
        status, message = error(v2(port, fmt, task="activate", name="twitter", **auth), fmt)
        assert status == 400 and "supported app" in message
        status, message = error(v2(port, fmt, task="setup", name="ganalytics", utm_nothing="x", **auth), fmt)
        assert status == 400 and "utm_nothing" in message
        status, message = error(v2(port, fmt, task="setup", name="clicktrack", enable_text="maybe", **auth), fmt)
        assert status == 400 and "enable_text" in message
        assert error(v2(port, fmt, task="explode", **auth), fmt)[0] == 400
        status, kind, payload = raw(port, "POST", f"/apiv2/customer.apps.{fmt}", b"x=" + b"y" * (MAX_BODY + 10),
                                    **FORM)
        assert status == 413 and b"<html" not in payload.lower()
        status, kind, payload = raw(port, "PUT", f"/apiv2/customer.apps.{fmt}", b"", **FORM)
        assert status == 405 and b"<html" not in payload.lower()
        status, kind, payload = raw(port, "POST", f"/apiv2/customer.profile.{fmt}", b"", **FORM)
        assert status == 404 and (json.loads(payload) if fmt == "json" else ET.fromstring(payload)) is not None
    status, _, payload = raw(port, "GET", "/v3/tracking_settings/click", Authorization=f"Bearer {key}",
                             **{"on-behalf-of": "sub1"})
    assert json.loads(payload) == {"enabled": True, "enable_text": False}  # nothing above changed a setting
