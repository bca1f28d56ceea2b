"""Regressions from the adversarial review of issue 11: an internal error is answered (never a hung request),
settings that no bytes can write are refused, null is a wrong type, /apiv2 alone is a v2 error, and the OpenAPI
document describes a subuser's events."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.helpers import serving

from mailtrack.core.settings import TrackingSettings
from mailtrack.exceptions import SettingsError
from mailtrack.http import server as holding
from mailtrack.http.messages import Request, Response
from mailtrack.http.openapi import build_document
from mailtrack.http.settings_api import SettingsApi
from mailtrack.http.wsgi import WsgiApp
from mailtrack.storage.sqlite import SQLiteStore


def environ(path: str, method: str = "GET") -> dict[str, Any]:
    import io

    return {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "wsgi.input": io.BytesIO(b""),
            "REMOTE_ADDR": "127.0.0.1"}


class Broken:
    """An API handler (and endpoints) that fails: a bug, or a stored value the code did not expect."""

    def __call__(self, request: Request) -> Response | None:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    def handle(self, request: Request) -> Response:
        return self(request)  # type: ignore[return-value]


@pytest.mark.parametrize(("path", "kind"), [("/v3/tracking_settings", "application/json"),
                                            ("/v1/events", "application/json"),
                                            ("/apiv2/customer.apps.xml", "xml"), ("/u/some-token", "text/plain")])
def test_an_internal_error_is_a_500_in_the_path_s_shape(path: str, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    app = WsgiApp(Broken(), [Broken()])  # type: ignore[arg-type]
    seen: list[tuple[str, dict[str, str]]] = []
    body = b"".join(app(environ(path), lambda status, headers: seen.append((status, dict(headers)))))
    [(status, headers)] = seen
    assert status == "500 Internal Server Error" and headers["Content-Type"].startswith(kind if kind != "xml" else
                                                                                        "application/xml")
    if kind == "text/plain":
        assert body == b"internal error\n"
    else:
        assert b"internal error" in body
    logged = [record.getMessage() for record in caplog.records if "internal error answering" in record.getMessage()]
    assert logged and not any("some-token" in line for line in logged if len("some-token") >= 24)


@pytest.fixture
def raising_server() -> Iterator[Any]:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")  # waitress' own internal-error path: its request has no path

    refusal = WsgiApp(Broken(), [Broken()]).server_refusal  # type: ignore[arg-type]
    with serving(holding.create(app, threads=2, max_body=1024, host="127.0.0.1", port=0, refusal=refusal)) as server:
        yield server


@pytest.mark.parametrize("path", ["/u/token", "/v3/tracking_settings"])
def test_an_app_that_raises_under_waitress_is_answered_and_closed_never_hung(raising_server: Any, path: str) -> None:
    with socket.create_connection(("127.0.0.1", raising_server.effective_port), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):  # the server closes: a hang would raise socket.timeout here
            data += chunk
    assert data.startswith(b"HTTP/1.1 500")


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "<p>\udc80</p>"])
def test_settings_that_no_bytes_can_write_are_refused(text: str) -> None:
    with pytest.raises(SettingsError, match="lone surrogate"):
        TrackingSettings.from_dict({"ganalytics": {"enable": True, "utm_source": text}})
    with pytest.raises(SettingsError, match="lone surrogate"):
        TrackingSettings.from_dict({"subscription_tracking": {"enable": True, "html": text}})


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[SettingsApi, str, SQLiteStore]]:
    store = SQLiteStore(tmp_path / "t.sqlite")
    store.create_account("parent")
    key = store.create_key("parent", None)[1]
    yield SettingsApi(store), key, store
    store.close()


def patch(api: SettingsApi, key: str, section: str, raw: bytes) -> tuple[int, Any]:
    response = api.handle(Request("PATCH", f"/v3/tracking_settings/{section}", body=raw,
                                  headers={"authorization": f"Bearer {key}", "content-type": "application/json"}))
    assert response is not None
    return response.status, json.loads(response.body)


@pytest.mark.parametrize(("section", "raw", "field"), [
    ("google_analytics", b'{"enabled": true, "utm_source": "\\ud800"}', "utm_source"),
    ("subscription", b'{"enabled": true, "landing": "<p>\\ud800</p>"}', "landing"),
    ("google_analytics", b'{"utm_source": null}', "utm_source"),
    ("subscription", b'{"url": null}', "url"),
    ("open", b'{"enabled": null}', "enabled"),
])
def test_v3_patch_refuses_lone_surrogates_and_nulls_naming_the_field(api: tuple[SettingsApi, str, SQLiteStore],
                                                                     section: str, raw: bytes, field: str) -> None:
    settings_api, key, store = api
    before = store.account_settings("parent")
    status, body = patch(settings_api, key, section, raw)
    assert status == 400 and body["errors"][0]["field"] == field, body
    assert store.account_settings("parent") == before  # nothing stored


def test_apiv2_alone_is_a_v2_error_not_a_page() -> None:
    app = WsgiApp(Broken(), [lambda request: None])  # type: ignore[arg-type]
    answer = app.respond(environ("/apiv2"))
    assert answer.status == 404 and dict(answer.headers)["Content-Type"].startswith("application/json")
    assert json.loads(answer.body) == {"message": "error", "errors": ["no such API method"]}  # v2's error shape


def test_the_openapi_event_schema_takes_a_subuser_s_event() -> None:
    import jsonschema

    from mailtrack.events import TrackingEvent

    schema = build_document()["components"]["schemas"]["TrackingEvent"]
    from datetime import datetime, timezone

    event = TrackingEvent("opened", datetime.now(timezone.utc), "m", "r@x", account="sub1").to_dict()
    jsonschema.validate(event, schema)
    parent = TrackingEvent("opened", datetime.now(timezone.utc), "m", "r@x").to_dict()
    assert "account" not in parent
    jsonschema.validate(parent, schema)
