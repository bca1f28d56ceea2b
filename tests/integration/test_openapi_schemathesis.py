"""Schemathesis over a live ``mailtrack serve``: every operation of its own /openapi.json, with and without keys.

One server (a real subprocess on loopback, a temporary database, keys and a
subuser made with the ``mailtrack apikey``/``subuser`` commands, a few real
opens and clicks so /v1/events has events to show) serves every run. The
schema is loaded from the running server, and every operation is exercised
with the checks ``not_a_server_error``, ``status_code_conformance``,
``content_type_conformance``, ``response_schema_conformance`` and
``response_headers_conformance``:

* a parent key with every scope, valid and invalid data (schemathesis'
  positive and negative modes): the run that gets past authentication, so
  some answers must be 200s (and, for invalid data, 400s);
* the parent key on behalf of its subuser, and a subuser's own key with
  ``on-behalf-of`` (a 403 on every /v3 path);
* a read-only key (every PATCH, every /v1 read and every v2 write is a 403);
* no key, a wrong key and a revoked key: every answer a documented 401.

Cases come from each operation's ``as_strategy()`` under Hypothesis
(``derandomize=True``, no example database, bounded examples), and each is
sent with ``case.call_and_validate``. Schemathesis' own pytest plugin
(``schemathesis.pytest.from_fixture``) is not used: with pytest 9.2 it fails
before running anything (``'Function' object has no attribute '_nodeid'``),
so its coverage phase does not run here; the fuzzing phase does.
Schemathesis needs Python 3.11+: on 3.10 the module is skipped.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support.helpers import make_tracker
from test_serve_http import Server, path_of

schemathesis = pytest.importorskip("schemathesis")
import hypothesis  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402 - after the importorskip that needs it
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
#: Examples per operation (9 operations): the authenticated runs explore, the others only sample.
FULL_EXAMPLES = 100
SAMPLE_EXAMPLES = 10


def mailtrack(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mailtrack", *args], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass
class Live:
    """The running server and the credentials made for it."""

    server: Server
    parent: str
    subuser: str
    read_only: str
    revoked: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    db = workdir / "events.sqlite"
    server = Server(db, workdir)
    try:
        parent = mailtrack("apikey", "create", "--db", str(db))
        mailtrack("subuser", "create", "sub1", "--db", str(db))
        subuser = mailtrack("apikey", "create", "--db", str(db), "--subuser", "sub1")
        read_only = mailtrack("apikey", "create", "--db", str(db), "--scopes", "tracking_settings.read")
        revoked = mailtrack("apikey", "create", "--db", str(db))
        mailtrack("apikey", "revoke", revoked.split(".")[1], "--db", str(db))
        tracker = make_tracker()
        for n, recipient in enumerate(("ann@example.com", None)):  # events with and without a recipient
            result = tracker.rewrite_html('<p><a href="https://example.com/a">a</a></p>', message_id=f"m{n}",
                                          recipient=recipient, metadata={"campaign": "spring", "n": n},
                                          tags=["news"])
            assert result.pixel is not None
            assert server.get(path_of(result.html.split('src="', 1)[1].split('"', 1)[0])).status == 200
            assert server.get(path_of(result.links[0].tracking_url)).status == 302
        yield Live(server, parent, subuser, read_only, revoked)
    finally:
        server.stop()


OPERATIONS = [("GET", "/v3/tracking_settings"),
              *[(method, f"/v3/tracking_settings/{section}") for section in ("click", "google_analytics", "open",
                                                                               "subscription")
                for method in ("GET", "PATCH")],
              ("POST", "/apiv2/customer.apps.json"), ("POST", "/apiv2/customer.apps.xml"),
              ("GET", "/v1/events"), ("GET", "/v1/stats")]
LABELS = [f"{method} {path}" for method, path in OPERATIONS]


@pytest.fixture(scope="module")
def schema(live: Live) -> Any:
    """The schema as the running server publishes it (loaded over HTTP, as a client would)."""
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


def credentials(case: Any, key: str | None, account: str | None = None, **headers: str) -> dict[str, str]:
    """The headers to send; for v2 the key goes in the form (``api_user``/``api_key``) when the body is one."""
    if case.path.startswith("/apiv2/"):
        if key is not None and account is not None and isinstance(case.body, dict):
            case.body = {**case.body, "api_user": account, "api_key": key}
        return headers
    return {**({"Authorization": f"Bearer {key}"} if key is not None else {}), **headers}


def explore(schema: Any, operation: tuple[str, str], mode: str, examples: int,
            send: Callable[[Any], None]) -> int:
    """Run ``send(case)`` over ``examples`` generated cases of ``operation`` (seeded, derandomized); how many ran."""
    method, path = operation
    strategy = schema[path][method].as_strategy(generation_mode=GenerationMode(mode))
    seen = []

    @hypothesis.settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                         suppress_health_check=list(hypothesis.HealthCheck), print_blob=True)
    @hypothesis.given(case=strategy)
    def property_test(case: Any) -> None:
        seen.append(case)
        send(case)

    property_test()
    return len(seen)


def run(case: Any, headers: dict[str, str]) -> Any:
    """Send ``case`` and apply every check; no answer may be HTML."""
    response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
    assert "html" not in (response.headers.get("Content-Type") or [""])[0].lower()
    return response


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=LABELS)
def test_a_key_with_every_scope_gets_schema_conforming_answers(schema: Any, live: Live, operation: tuple[str, str],
                                                               mode: str) -> None:
    statuses: list[int] = []

    def send(case: Any) -> None:
        statuses.append(run(case, credentials(case, live.parent, "parent")).status_code)

    assert explore(schema, operation, mode, FULL_EXAMPLES, send) > 0
    if mode == "positive":  # valid data gets past authentication: some answers are 200s
        assert 200 in statuses, statuses
    elif operation[0] != "GET" or operation[1].startswith("/v1/"):  # invalid bodies and parameters are refused
        assert 400 in statuses, statuses


@pytest.mark.parametrize("operation", OPERATIONS, ids=LABELS)
def test_on_behalf_of_the_subuser(schema: Any, live: Live, operation: tuple[str, str]) -> None:
    def send(case: Any) -> None:
        response = run(case, credentials(case, live.parent, "parent", **{"on-behalf-of": "sub1"}))
        if case.path.startswith("/v3/"):
            assert response.status_code in (200, 400, 415), response.text

    explore(schema, operation, "positive", SAMPLE_EXAMPLES, send)


@pytest.mark.parametrize("operation", OPERATIONS, ids=LABELS)
def test_a_subuser_key_may_not_use_on_behalf_of(schema: Any, live: Live, operation: tuple[str, str]) -> None:
    def send(case: Any) -> None:
        response = run(case, credentials(case, live.subuser, "sub1", **{"on-behalf-of": "sub1"}))
        if case.path.startswith("/v3/"):
            assert response.status_code == 403, response.text  # only a parent's key acts for a subuser

    explore(schema, operation, "positive", SAMPLE_EXAMPLES, send)


@pytest.mark.parametrize("operation", OPERATIONS, ids=LABELS)
def test_a_read_only_key_is_refused_every_change(schema: Any, live: Live, operation: tuple[str, str]) -> None:
    def send(case: Any) -> None:
        response = run(case, credentials(case, live.read_only, "parent"))
        if case.method == "PATCH" or case.path.startswith("/v1/"):
            assert response.status_code == 403, response.text
        if case.path.startswith("/apiv2/") and response.status_code == 200:
            assert str(case.body.get("task", "")).lower() in ("getavailable", "getsettings")

    explore(schema, operation, "positive", SAMPLE_EXAMPLES, send)


@pytest.mark.parametrize("who", ["none", "wrong", "revoked"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=LABELS)
def test_no_wrong_or_revoked_key_is_a_401(schema: Any, live: Live, operation: tuple[str, str], who: str) -> None:
    key = {"none": None, "wrong": live.parent[:-2] + ("xy" if not live.parent.endswith("xy") else "yx"),
           "revoked": live.revoked}[who]

    def send(case: Any) -> None:
        response = run(case, credentials(case, key, "parent"))
        assert response.status_code == 401, response.text

    explore(schema, operation, "positive", SAMPLE_EXAMPLES, send)


def test_the_schema_covers_every_api_path_the_server_answers(schema: Any, live: Live) -> None:
    operations = {(result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()}
    assert operations == set(OPERATIONS)
    answer = live.server.get("/openapi.json")
    assert answer.status == 200 and answer.header("Content-Type") == "application/json"
    assert answer.header("Cache-Control") == "public, max-age=300"
