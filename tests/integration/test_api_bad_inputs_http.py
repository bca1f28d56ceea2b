"""Every bad input of issue 11, for each API family (v3, v2 JSON and XML, v1), over a real socket to ``mailtrack serve``.

Wrong key, revoked key, missing scope, unknown subuser, a subuser key using
on-behalf-of, invalid JSON, wrong types, unknown fields (on each PATCH),
bodies that are not UTF-8 or not JSON by their ``Content-Type``, duplicate
keys, huge numbers, NaN/Infinity, deep nesting, and oversized bodies (by
``Content-Length``, chunked, and a ``Content-Length`` that lies): each is
answered in its API's error shape with the documented status, never a 500
and never HTML, and none of them changes a stored setting.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from test_serve_http import Server

from mailtrack.http.messages import MAX_BODY
from mailtrack.storage.sqlite import SQLiteStore

V3_SECTIONS = ("click", "google_analytics", "open", "subscription")


def mailtrack(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mailtrack", *args], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass
class Live:
    server: Server
    parent: str
    subuser: str
    read_only: str
    revoked: str
    events_only: str

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def wrong(self) -> str:
        return self.parent[:-2] + ("xy" if not self.parent.endswith("xy") else "yx")

    def settings(self) -> dict[str, Any]:
        store = SQLiteStore(self.server.db)
        try:
            return {account: store.account_settings(account) for account in ("parent", "sub1")}
        finally:
            store.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("bad-inputs")
    db = workdir / "events.sqlite"
    server = Server(db, workdir)
    try:
        parent = mailtrack("apikey", "create", "--db", str(db))
        mailtrack("subuser", "create", "sub1", "--db", str(db))
        subuser = mailtrack("apikey", "create", "--db", str(db), "--subuser", "sub1")
        read_only = mailtrack("apikey", "create", "--db", str(db), "--scopes", "tracking_settings.read")
        events_only = mailtrack("apikey", "create", "--db", str(db), "--scopes", "events.read")
        revoked = mailtrack("apikey", "create", "--db", str(db))
        mailtrack("apikey", "revoke", revoked.split(".")[1], "--db", str(db))
        yield Live(server, parent, subuser, read_only, revoked, events_only)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def nothing_changes(live: Live) -> Iterator[None]:
    """No bad input changes a stored setting."""
    before = live.settings()
    yield
    assert live.settings() == before


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def errors(self) -> list[dict[str, Any]]:
        """SendGrid's shape: ``{"errors": [{"field", "message"}]}``, as JSON."""
        assert self.headers["content-type"] == "application/json", self
        found = json.loads(self.body)
        assert set(found) == {"errors"} and found["errors"]
        assert all(set(e) == {"field", "message"} and isinstance(e["message"], str) for e in found["errors"])
        return found["errors"]  # type: ignore[no-any-return]

    def v2_error(self, fmt: str) -> str:
        """v2's shape, in JSON or XML by the path's suffix: the one error message."""
        if fmt == "xml":
            assert self.headers["content-type"] == "application/xml; charset=utf-8", self
            root = ET.fromstring(self.body)
            assert root.tag == "result" and root.findtext("message") == "error"
            [message] = [e.text or "" for e in root.iter("error")]
            return message
        assert self.headers["content-type"] == "application/json", self
        found = json.loads(self.body)
        assert found["message"] == "error" and len(found["errors"]) == 1
        return found["errors"][0]  # type: ignore[no-any-return]


def request(live: Live, method: str, path: str, body: bytes | None = None, **headers: str) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        data = response.read()
        answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()
    assert answer.status < 500 and b"<html" not in answer.body.lower(), answer
    return answer


def raw(live: Live, data: bytes) -> Answer:
    """Send ``data`` byte for byte (the request line, headers and body as given); read the whole answer."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # the server closed after answering, with our unread bytes in its buffer
            pass
    reply = b"".join(chunks)
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    answer = Answer(int(lines[0].split(" ", 2)[1]), headers, body[:int(headers.get("content-length", len(body)))])
    assert answer.status < 500 and b"<html" not in answer.body.lower(), answer
    return answer


def bearer(key: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **more}


JSON = {"Content-Type": "application/json"}


# -- keys, scopes, subusers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v3/tracking_settings", "/v3/tracking_settings/open", "/v1/events", "/v1/stats"])
@pytest.mark.parametrize("who", ["none", "wrong", "revoked", "malformed", "basic"])
def test_a_missing_wrong_or_revoked_key_is_a_401_on_v3_and_v1(live: Live, path: str, who: str) -> None:
    headers = {"none": {}, "wrong": bearer(live.wrong), "revoked": bearer(live.revoked),
               "malformed": bearer("not-a-key \u00e9".encode().decode("latin-1")),
               "basic": {"Authorization": "Basic YXBpa2V5OnNlY3JldA=="}}[who]
    answer = request(live, "GET", path, **headers)
    assert answer.status == 401 and answer.errors() == [{"field": None, "message": "authorization required"}]
    assert answer.headers["www-authenticate"] == 'Bearer realm="mailtrack"'


@pytest.mark.parametrize("section", V3_SECTIONS)
def test_a_revoked_or_wrong_key_cannot_patch(live: Live, section: str) -> None:
    for key in (live.revoked, live.wrong):
        answer = request(live, "PATCH", f"/v3/tracking_settings/{section}", b'{"enabled": false}', **bearer(key), **JSON)
        assert answer.status == 401 and answer.errors()[0]["message"] == "authorization required"


def test_a_key_without_the_scope_is_a_403_everywhere(live: Live) -> None:
    answer = request(live, "PATCH", "/v3/tracking_settings/open", b'{"enabled": false}', **bearer(live.read_only),
                     **JSON)
    assert answer.status == 403 and answer.errors() == [{"field": None, "message": "access forbidden"}]
    assert request(live, "GET", "/v3/tracking_settings/open", **bearer(live.events_only)).status == 403
    for path in ("/v1/events", "/v1/stats"):
        assert request(live, "GET", path, **bearer(live.read_only)).errors()[0]["message"] == "access forbidden"
    assert request(live, "GET", "/v1/stats", **bearer(live.events_only)).status == 403
    assert request(live, "GET", "/v1/events", **bearer(live.events_only)).status == 200


@pytest.mark.parametrize("path", ["/v3/tracking_settings/open", "/v1/events", "/v1/stats"])
def test_an_unknown_subuser_and_a_subuser_key_using_on_behalf_of_are_403(live: Live, path: str) -> None:
    for key, target in ((live.parent, "nobody"), (live.parent, "parent"), (live.subuser, "sub1"),
                        (live.subuser, "parent")):
        answer = request(live, "GET", path, **bearer(key, **{"on-behalf-of": target}))
        assert answer.status == 403 and answer.errors() == [{"field": None, "message": "access forbidden"}], (
            key, target)
    answer = request(live, "PATCH", "/v3/tracking_settings/open", b'{"enabled": false}',
                     **bearer(live.subuser, **{"on-behalf-of": "sub1"}), **JSON)
    assert answer.status == 403


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_v2_credentials_scopes_and_users(live: Live, fmt: str) -> None:
    def call(**params: str) -> Answer:
        return request(live, "POST", f"/apiv2/customer.apps.{fmt}", urlencode(params).encode(),
                       **{"Content-Type": "application/x-www-form-urlencoded"})

    denied = "Permission denied, wrong credentials"
    for user, key in (("parent", live.wrong), ("parent", live.revoked), ("parent", live.subuser), ("sub1", live.parent),
                      ("parent", "")):
        answer = call(api_user=user, api_key=key, task="getAvailable")
        assert (answer.status, answer.v2_error(fmt)) == (401, denied)
    answer = call(api_user="parent", api_key=live.read_only, task="activate", name="opentrack")
    assert answer.status == 403 and "tracking_settings.update" in answer.v2_error(fmt)
    answer = call(api_user="parent", api_key=live.parent, task="getAvailable", user="nobody")
    assert answer.status == 403 and "subusers" in answer.v2_error(fmt)
    # v2's on-behalf-of is `user=`: a subuser's key may not act for another account
    answer = call(api_user="sub1", api_key=live.subuser, task="activate", name="opentrack", user="parent")
    assert answer.status == 403 and "subusers" in answer.v2_error(fmt)


# -- bodies: v3 -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("section", V3_SECTIONS)
@pytest.mark.parametrize(("body", "field"), [
    (b'{"enabled": "yes"}', "enabled"),  # a wrong type
    (b'{"enabled": 1}', "enabled"),
    (b'{"enabled": null}', "enabled"),
    (b'{"enabled": true, "nope": 1}', "nope"),  # an unknown field
    (b'{"Enabled": true}', "Enabled"),
])
def test_each_patch_refuses_wrong_types_and_unknown_fields(live: Live, section: str, body: bytes,
                                                           field: str) -> None:
    answer = request(live, "PATCH", f"/v3/tracking_settings/{section}", body, **bearer(live.parent), **JSON)
    assert answer.status == 400 and answer.errors()[0]["field"] == field


@pytest.mark.parametrize(("section", "body", "field"), [
    ("click", b'{"enable_text": true}', "enable_text"),  # only "enabled" is patchable on click (SendGrid's schema)
    ("google_analytics", b'{"utm_source": 5}', "utm_source"),
    ("google_analytics", b'{"utm_source": ["a"]}', "utm_source"),
    ("subscription", b'{"landing": {"html": "x"}}', "landing"),
    ("subscription", b'{"url": "not a url"}', "url"),
    ("subscription", b'{"url": "javascript:alert(1)"}', "url"),
])
def test_section_fields_of_the_wrong_type_or_value(live: Live, section: str, body: bytes, field: str) -> None:
    answer = request(live, "PATCH", f"/v3/tracking_settings/{section}", body, **bearer(live.parent), **JSON)
    assert answer.status == 400 and answer.errors()[0]["field"] == field


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", None),
    (b'{"enabled": true', None),
    (b"\xff\xfe{}", None),  # not UTF-8
    (b'{"enabled": "caf\xe9"}', None),  # Latin-1 inside JSON
    (b"\xef\xbb\xbf{}", None),  # a byte-order mark
    (b'{"enabled": true, "enabled": false}', "enabled"),  # duplicate keys
    (b'{"enabled": NaN}', None),
    (b'{"enabled": Infinity}', None),
    (b'{"enabled": -Infinity}', None),
    (b'{"enabled": 1e400}', None),  # a huge float
    (b'{"enabled": ' + b"9" * 6000 + b"}", None),  # a huge integer
    (b"[" * 30_000 + b"]" * 30_000, None),  # deep nesting (was a 500)
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, None),
    (b"[true]", None),
    (b'"enabled"', None),
    (b"null", None),
])
def test_invalid_json_is_a_400_in_sendgrid_s_shape(live: Live, body: bytes, field: str | None) -> None:
    answer = request(live, "PATCH", "/v3/tracking_settings/open", body, **bearer(live.parent), **JSON)
    assert answer.status == 400 and answer.errors()[0]["field"] == field


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                  "application/json; charset=utf-16"])
def test_a_body_that_is_not_json_by_content_type_is_a_415(live: Live, kind: str) -> None:
    answer = request(live, "PATCH", "/v3/tracking_settings/open", b'{"enabled": false}', **bearer(live.parent),
                     **{"Content-Type": kind})
    assert answer.status == 415 and answer.errors()[0]["message"].startswith("the request body must be")


def test_wrong_methods_and_unknown_paths_are_json(live: Live) -> None:
    answer = request(live, "DELETE", "/v3/tracking_settings/open", **bearer(live.parent))
    assert answer.status == 405 and answer.headers["allow"] == "GET, HEAD, PATCH" and answer.errors()
    assert request(live, "GET", "/v3/tracking_settings/bounce", **bearer(live.parent)).status == 404
    assert request(live, "POST", "/v1/events", b"{}", **bearer(live.parent)).status == 405
    assert request(live, "GET", "/v1/bounces", **bearer(live.parent)).errors()
    answer = request(live, "POST", "/openapi.json", b"{}")
    assert answer.status == 405 and answer.errors()


# -- v2 bodies -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize(("body", "kind", "needle"), [
    (b"task=setup&name=clicktrack&enable_text=yes", None, "enable_text"),  # a wrong type
    (b"task=setup&name=ganalytics&utm_nothing=x", None, "utm_nothing"),  # an unknown field
    (b"task=setup&name=subscriptiontrack&url=not%20a%20url", None, "url"),
    (b"task=activate&name=opentrack&foo=1", None, "foo"),
    (b"task=activate&name=opentrack&name=clicktrack", None, "more than once"),  # duplicate parameters
    (b"task=setup&name=ganalytics&utm_source=caf%E9", None, "unreadable"),  # not UTF-8 (percent-encoded)
    (b"task=setup&name=ganalytics&utm_source=caf\xe9", None, "unreadable"),  # not UTF-8 (raw)
    (b'{"task": "getAvailable"}', "application/json", "x-www-form-urlencoded"),  # JSON is not a v2 body
    (b"task=explode", None, "task must be"),
])
def test_v2_refuses_bad_bodies_in_its_own_shape(live: Live, fmt: str, body: bytes, kind: str | None,
                                                needle: str) -> None:
    login = urlencode({"api_user": "parent", "api_key": live.parent}).encode()
    data = body if kind else login + b"&" + body
    path = f"/apiv2/customer.apps.{fmt}" + (f"?{login.decode()}" if kind else "")
    answer = request(live, "POST", path, data, **{"Content-Type": kind or "application/x-www-form-urlencoded"})
    assert answer.status == 400 and needle in answer.v2_error(fmt), answer


# -- v1 parameters ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/events", "/v1/stats"])
@pytest.mark.parametrize(("query", "field"), [
    ("limit=abc", "limit"),  # a wrong type (stats: not a parameter at all)
    ("since=yesterday", "since"),
    ("since=NaN", "since"),
    ("until=Infinity", "until"),
    ("until=1e400", "until"),
    ("since=" + "9" * 400, "since"),  # a huge number
    ("type=bounced", "type"),
    ("colour=red", "colour"),  # an unknown parameter
    ("tag=a&tag=b", "tag"),  # given twice
    ("%ff=1", None),  # not UTF-8
    ("tag=%ff", None),
])
def test_v1_refuses_bad_parameters_in_sendgrid_s_shape(live: Live, path: str, query: str, field: str | None) -> None:
    answer = request(live, "GET", f"{path}?{query}", **bearer(live.parent))
    assert answer.status == 400 and field in [problem["field"] for problem in answer.errors()], answer


def test_v1_huge_limits_and_cursors(live: Live) -> None:
    for query in ("limit=" + "9" * 40, "limit=-1", "limit=1.5", "cursor=" + "A" * 5000, "cursor=YmVmb3JlOi0x"):
        answer = request(live, "GET", f"/v1/events?{query}", **bearer(live.parent))
        assert answer.status == 400 and answer.errors()[0]["field"] in ("limit", "cursor"), (query, answer)


# -- oversized bodies --------------------------------------------------------------------------------------------------

#: One request per family: (path, method, headers, how to read the error, the content type it must have).
FAMILIES = {
    "v3": ("/v3/tracking_settings/subscription", "PATCH", "application/json"),
    "v2-json": ("/apiv2/customer.apps.json", "POST", "application/json"),
    "v2-xml": ("/apiv2/customer.apps.xml", "POST", "application/xml; charset=utf-8"),
    "v1": ("/v1/events", "GET", "application/json"),
    "openapi": ("/openapi.json", "GET", "application/json"),
}
TOO_LARGE = f"the request body is larger than {MAX_BODY} bytes"


def assert_too_large(answer: Answer, family: str) -> None:
    assert answer.status == 413, answer
    assert answer.headers["content-type"] == FAMILIES[family][2]
    if family.startswith("v2"):
        assert answer.v2_error(family[3:]) == TOO_LARGE
    else:
        assert answer.errors() == [{"field": None, "message": TOO_LARGE}]


def head(live: Live, family: str, extra: str) -> bytes:
    path, method, _ = FAMILIES[family]
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {live.parent}\r\n"
            f"Content-Type: application/json\r\nConnection: close\r\n{extra}\r\n").encode()


def chunked(body: bytes, size: int = 8192) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for piece in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("family", FAMILIES)
def test_a_body_over_the_limit_by_content_length_is_a_413_in_the_family_s_shape(live: Live, family: str) -> None:
    body = b"x" * (MAX_BODY + 1)
    assert_too_large(raw(live, head(live, family, f"Content-Length: {len(body)}\r\n") + body), family)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_chunked_body_over_the_limit_is_a_413_in_the_family_s_shape(live: Live, family: str) -> None:
    """Below waitress' own limit the app measures it; above, waitress refuses it before the app runs, and its
    text/plain answer used to reach the client: both are the family's 413 now."""
    for size in (MAX_BODY + 1, 4 * MAX_BODY, (1 << 20) + MAX_BODY):
        assert_too_large(raw(live, head(live, family, "Transfer-Encoding: chunked\r\n") + chunked(b"x" * size)), family)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_content_length_that_claims_too_much_is_refused_unread(live: Live, family: str) -> None:
    """It claims a gigabyte and sends a few bytes: the 413 comes without waiting for the rest."""
    assert_too_large(raw(live, head(live, family, "Content-Length: 1073741824\r\n") + b'{"enabled": false}'), family)


def test_a_content_length_that_claims_too_little_is_read_as_declared(live: Live) -> None:
    """The declared bytes are the body; the rest is the next request on the connection (garbage: a 400)."""
    body = b'{"enabled": false}' + b" " * 100
    data = head(live, "v3", "Content-Length: 5\r\n").replace(b"/subscription", b"/open") + body
    answer = raw(live, data)
    assert answer.status == 400 and answer.errors()[0]["message"] == "invalid JSON in the request body"
    assert request(live, "GET", "/v3/tracking_settings/open", **bearer(live.parent)).status == 200  # still serving


@pytest.mark.parametrize("transfer", ["length", "chunked"])
def test_a_body_of_exactly_the_limit_is_taken(live: Live, transfer: str) -> None:
    """MAX_BODY bytes are allowed (waitress' limit refused a Content-Length of exactly MAX_BODY, and counted the
    framing of a chunked one); an empty object padded to the limit changes nothing and answers the state."""
    body = b"{}" + b" " * (MAX_BODY - 2)
    extra = f"Content-Length: {len(body)}\r\n" if transfer == "length" else "Transfer-Encoding: chunked\r\n"
    data = head(live, "v3", extra).replace(b"/subscription", b"/open")
    answer = raw(live, data + (body if transfer == "length" else chunked(body)))
    assert (answer.status, json.loads(answer.body)) == (200, {"enabled": True})
    if transfer == "chunked":  # one byte more is refused by the app itself, in the API's shape
        answer = raw(live, data + chunked(body + b" "))
        assert_too_large(answer, "v3")


def test_broken_chunked_encoding_on_an_api_path_is_a_json_400(live: Live) -> None:
    answer = raw(live, head(live, "v3", "Transfer-Encoding: chunked\r\n") + b"zz\r\nxx\r\n0\r\n\r\n")
    assert answer.status == 400 and answer.errors()[0]["field"] is None


def test_tracking_paths_keep_refusing_big_bodies_cheaply(live: Live) -> None:
    """Not an API path: waitress' or the endpoints' own short refusal, not an API error shape."""
    for extra, body in (("Transfer-Encoding: chunked\r\n", chunked(b"x" * (2 * MAX_BODY))),
                        ("Content-Length: 1073741824\r\n", b"x")):
        data = (f"POST /u/some-token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n").encode() + body
        answer = raw(live, data)
        assert answer.status == 413 and answer.headers["content-type"].startswith("text/plain")
