"""The proof: ``mailtrack serve`` as a real process, driven by SendGrid's official ``sendgrid`` client.

Keys and a subuser are made with the ``mailtrack apikey``/``subuser`` commands;
the client runs exactly the documented calls (``sg.client.tracking_settings.
open.patch(request_body={"enabled": True})`` ...), with ``impersonate_subuser=``
for ``on-behalf-of``; then a message is rewritten for that account, with a
Tracker reading the same store, and the stored settings show in it. Bad
inputs are sent over the socket too and must come back as SendGrid-shaped JSON.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.helpers import BASE_URL, wait_until

from mailtrack import Tracker
from mailtrack.http.messages import MAX_BODY
from mailtrack.storage.settings_source import StoredSettings
from mailtrack.storage.sqlite import SQLiteStore

sendgrid = pytest.importorskip("sendgrid")
from python_http_client import exceptions as sg_errors  # noqa: E402 - after the importorskip that needs it

KEYS = "older-key,newest-key"
MESSAGE = (b"From: news@example.com\r\nTo: ann@example.net\r\nSubject: hello\r\nMessage-ID: <m1@example.com>\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n<p><a href=\"https://example.com/a\">a</a></p>\r\n")


def mailtrack(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mailtrack", *args], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A ``mailtrack serve`` process on a free loopback port; stopped afterwards."""
    db = tmp_path / "events.sqlite"
    out = tmp_path / "serve.out"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "mailtrack", "serve", "--db", str(db), "--secret-key", KEYS,
                                 "--base-url", BASE_URL, "--port", "0"], stdout=stdout, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=dict(os.environ))

    def port() -> int | None:
        for line in out.read_text(encoding="utf-8", errors="replace").splitlines():
            if " on http://127.0.0.1:" in line:
                return int(line.split(" on http://127.0.0.1:", 1)[1].split()[0])
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        return None

    try:
        yield wait_until(port, 30.0, what="mailtrack serve to report its port"), db
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def body(response: Any) -> Any:
    return json.loads(response.body)


def raw(port: int, method: str, path: str, data: bytes | None = None, **headers: str) -> tuple[int, str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=data, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        payload = response.read()
        return response.status, response.getheader("Content-Type") or "", payload
    finally:
        connection.close()


def test_the_official_sendgrid_client_manages_settings_that_the_rewriter_then_applies(
        server: tuple[int, Path]) -> None:
    port, db = server
    host = f"http://127.0.0.1:{port}"
    parent_key = mailtrack("apikey", "create", "--db", str(db))
    mailtrack("subuser", "create", "sub1", "--db", str(db))

    sg = sendgrid.SendGridAPIClient(api_key=parent_key, host=host)
    listed = sg.client.tracking_settings.get()
    assert listed.status_code == 200
    assert {item["name"]: item["enabled"] for item in body(listed)["result"]} == {
        "click": True, "google_analytics": False, "open": True, "subscription": False}

    response = sg.client.tracking_settings.open.patch(request_body={"enabled": True})
    assert (response.status_code, body(response)) == (200, {"enabled": True})
    assert body(sg.client.tracking_settings.click.get()) == {"enabled": True, "enable_text": False}

    # The subuser's settings, through impersonate_subuser= (the on-behalf-of header).
    as_sub1 = sendgrid.SendGridAPIClient(api_key=parent_key, host=host, impersonate_subuser="sub1")
    response = as_sub1.client.tracking_settings.open.patch(request_body={"enabled": False})
    assert (response.status_code, body(response)) == (200, {"enabled": False})
    response = as_sub1.client.tracking_settings.click.patch(request_body={"enabled": True})
    assert body(response) == {"enabled": True, "enable_text": False}
    response = as_sub1.client.tracking_settings.google_analytics.patch(request_body={
        "enabled": True, "utm_source": "sendgrid.com", "utm_medium": "email", "utm_campaign": "website"})
    assert body(response) == {"enabled": True, "utm_source": "sendgrid.com", "utm_medium": "email", "utm_term": "",
                              "utm_content": "", "utm_campaign": "website"}
    response = as_sub1.client.tracking_settings.subscription.patch(request_body={
        "enabled": True, "html_content": "<p>Leave: <% here %></p>", "plain_content": "Leave: <% %>",
        "landing": "<p>Sorry to see you go</p>", "replace": "[unsub]", "url": ""})
    assert body(response) == {"enabled": True, "html_content": "<p>Leave: <% here %></p>",
                              "plain_content": "Leave: <% %>", "replace": "[unsub]", "url": "",
                              "landing": "<p>Sorry to see you go</p>"}
    assert body(as_sub1.client.tracking_settings.open.get()) == {"enabled": False}
    assert body(as_sub1.client.tracking_settings.google_analytics.get())["utm_campaign"] == "website"
    assert body(as_sub1.client.tracking_settings.subscription.get())["landing"] == "<p>Sorry to see you go</p>"
    assert body(sg.client.tracking_settings.open.get()) == {"enabled": True}  # the parent's are its own

    # The rewriter applies what was stored for sub1: no pixel, UTM parameters, an unsubscribe footer.
    store = SQLiteStore(db)
    try:
        tracker = Tracker(KEYS.split(","), BASE_URL, account_settings=StoredSettings(store))
        result = tracker.rewrite_message(MESSAGE, account="sub1", issued_at=time.time())
        plain = tracker.rewrite_message(MESSAGE, issued_at=time.time())
    finally:
        store.close()
    out = result.message.decode()
    assert f"{BASE_URL}/o/" not in out and f"{BASE_URL}/o/" in plain.message.decode()
    [link] = result.links
    assert "utm_source=sendgrid.com" in link.url and "utm_campaign=website" in link.url
    assert "Leave: " in out and f"{BASE_URL}/u/" in out and f"{BASE_URL}/u/" not in plain.message.decode()


def test_every_bad_input_is_answered_in_sendgrid_s_shape(server: tuple[int, Path]) -> None:
    port, db = server
    host = f"http://127.0.0.1:{port}"
    parent_key = mailtrack("apikey", "create", "--db", str(db))
    mailtrack("subuser", "create", "sub1", "--db", str(db))
    sub_key = mailtrack("apikey", "create", "--db", str(db), "--subuser", "sub1")
    read_only = mailtrack("apikey", "create", "--db", str(db), "--scopes", "tracking_settings.read")
    revoked = mailtrack("apikey", "create", "--db", str(db))
    mailtrack("apikey", "revoke", revoked.split(".")[1], "--db", str(db))

    def refused(error: type[Exception], call: Any) -> list[dict[str, Any]]:
        with pytest.raises(error) as caught:
            call()
        found: dict[str, Any] = json.loads(caught.value.body)  # type: ignore[attr-defined]
        assert set(found) == {"errors"} and all(set(e) == {"field", "message"} for e in found["errors"])
        return found["errors"]  # type: ignore[no-any-return]

    def client(key: str, subuser: str | None = None) -> Any:
        return sendgrid.SendGridAPIClient(api_key=key, host=host, impersonate_subuser=subuser).client

    wrong = parent_key[:-1] + ("A" if parent_key[-1] != "A" else "B")
    for key in (wrong, revoked, "SG.not-ours.at-all"):
        assert refused(sg_errors.UnauthorizedError, client(key).tracking_settings.open.get) == [
            {"field": None, "message": "authorization required"}]
    assert refused(sg_errors.ForbiddenError, lambda: client(read_only).tracking_settings.open.patch(
        request_body={"enabled": False}))[0]["message"] == "access forbidden"
    refused(sg_errors.ForbiddenError, client(parent_key, "nobody").tracking_settings.open.get)  # unknown subuser
    refused(sg_errors.ForbiddenError, client(sub_key, "sub1").tracking_settings.open.get)  # a subuser's key
    assert refused(sg_errors.BadRequestsError, lambda: client(parent_key).tracking_settings.open.patch(
        request_body={"enabled": "yes"}))[0]["field"] == "enabled"
    assert refused(sg_errors.BadRequestsError, lambda: client(parent_key).tracking_settings.google_analytics.patch(
        request_body={"utm_nothing": "x"}))[0]["field"] == "utm_nothing"
    refused(sg_errors.NotFoundError, client(parent_key).tracking_settings.nothing.get)

    auth = {"Authorization": f"Bearer {parent_key}", "Content-Type": "application/json"}
    status, kind, payload = raw(port, "PATCH", "/v3/tracking_settings/open", b"{not json", **auth)
    assert (status, kind) == (400, "application/json") and json.loads(payload)["errors"][0]["field"] is None
    status, kind, payload = raw(port, "DELETE", "/v3/tracking_settings/open", None, **auth)
    assert (status, kind) == (405, "application/json")
    status, _, payload = raw(port, "PATCH", "/v3/tracking_settings/subscription",
                             b'{"landing": "' + b"x" * (MAX_BODY + 10) + b'"}', **auth)
    assert status == 413 and b"<html" not in payload.lower()
    status, kind, _ = raw(port, "GET", "/v3/tracking_settings/open")
    assert (status, kind) == (401, "application/json")
    store = SQLiteStore(db)
    try:  # nothing above changed a setting
        assert store.account_settings("parent") == {} and store.account_settings("sub1") == {}
    finally:
        store.close()
