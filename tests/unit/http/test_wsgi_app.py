"""WsgiApp without a server: what reaches the APIs (Content-Type, the body) and how oversized bodies are refused."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from mailtrack.http.messages import MAX_BODY, Request, Response
from mailtrack.http.wsgi import WsgiApp


class Recorder:
    """An API handler that answers every path and keeps the Request it was given."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.seen.append(request)
        return Response(200, [("Content-Type", "text/plain")], b"ok")


def environ(path: str, body: bytes = b"", **extra: Any) -> dict[str, Any]:
    return {"REQUEST_METHOD": "PATCH", "PATH_INFO": path, "QUERY_STRING": "", "wsgi.input": io.BytesIO(body),
            **extra}


def test_content_type_and_length_reach_the_apis() -> None:
    """PEP 3333 puts them in CONTENT_TYPE/CONTENT_LENGTH, not HTTP_*: they were lost, so no API saw a body's type."""
    api = Recorder()
    WsgiApp(None, [api]).respond(environ("/v3/x", b"{}", CONTENT_TYPE="text/plain", CONTENT_LENGTH="2",  # type: ignore[arg-type]
                                         HTTP_ON_BEHALF_OF="sub1"))
    [request] = api.seen
    assert request.headers == {"content-type": "text/plain", "content-length": "2", "on-behalf-of": "sub1"}
    assert request.body == b"{}"


def test_a_chunked_body_without_content_length_is_read_when_the_server_ends_the_stream() -> None:
    api = Recorder()
    app = WsgiApp(None, [api])  # type: ignore[arg-type]
    app.respond(environ("/v3/x", b'{"a": 1}', **{"wsgi.input_terminated": True}))
    app.respond(environ("/v3/x", b'{"a": 1}'))  # no length and a stream that may not end: no body (PEP 3333)
    assert [request.body for request in api.seen] == [b'{"a": 1}', b""]


@pytest.mark.parametrize(("path", "kind"), [("/v3/tracking_settings/open", "application/json"),
                                            ("/v1/events", "application/json"),
                                            ("/openapi.json", "application/json"),
                                            ("/apiv2/customer.apps.json", "application/json"),
                                            ("/apiv2/customer.apps.xml", "application/xml; charset=utf-8")])
@pytest.mark.parametrize("how", ["declared", "chunked"])
def test_an_oversized_body_is_a_413_in_the_path_s_shape(path: str, kind: str, how: str) -> None:
    api = Recorder()
    body = b"x" * (MAX_BODY + 1)
    extra = {"CONTENT_LENGTH": str(len(body))} if how == "declared" else {"wsgi.input_terminated": True}
    answer = WsgiApp(None, [api]).respond(environ(path, body, **extra))  # type: ignore[arg-type]
    assert answer.status == 413 and dict(answer.headers)["Content-Type"] == kind and not api.seen
    message = f"the request body is larger than {MAX_BODY} bytes"
    if path.endswith(".xml"):
        assert f"<error>{message}</error>".encode() in answer.body
    elif path.startswith("/apiv2/"):
        assert json.loads(answer.body) == {"message": "error", "errors": [message]}
    else:
        assert json.loads(answer.body) == {"errors": [{"field": None, "message": message}]}


def test_a_tracking_path_keeps_its_short_413_and_a_body_of_the_limit_passes() -> None:
    api = Recorder()
    app = WsgiApp(None, [api])  # type: ignore[arg-type]
    for extra in ({"CONTENT_LENGTH": str(MAX_BODY + 1)}, {"wsgi.input_terminated": True}):
        answer = app.respond(environ("/u/token", b"x" * (MAX_BODY + 1), **extra))
        assert (answer.status, answer.body) == (413, b"") and dict(answer.headers)["Content-Type"] == "text/plain"
    app.respond(environ("/v3/x", b"x" * MAX_BODY, **{"wsgi.input_terminated": True}))
    assert len(api.seen) == 1 and len(api.seen[0].body) == MAX_BODY


def test_server_refusals_take_the_api_shape_only_on_api_paths() -> None:
    app = WsgiApp(None, [Recorder()])  # type: ignore[arg-type]
    answer = app.server_refusal("/v3/tracking_settings/open", 400, "Bad Request: invalid chunk")
    assert answer is not None and json.loads(answer.body)["errors"][0]["message"] == "Bad Request: invalid chunk"
    answer = app.server_refusal("/apiv2/customer.apps.xml", 413, "Request Entity Too Large: exceeds max_body")
    assert answer is not None and b"larger than" in answer.body  # our message, not waitress' limit
    # PEP 3333 paths are Latin-1 text of UTF-8 bytes
    assert app.server_refusal("/v1/\u00c3\u00a9v\u00c3\u00a9nements", 400, "x") is not None
    assert app.server_refusal("/u/token", 413, "x") is None
    assert app.server_refusal("/", 400, "x") is None
    assert WsgiApp(None).server_refusal("/v3/x", 400, "x") is None  # type: ignore[arg-type]  # no API served
