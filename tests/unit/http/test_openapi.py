"""The OpenAPI document: valid OpenAPI 3.1, SendGrid's shapes on the /v3 paths, and in step with the code.

The document is written by hand from the code's constants; these tests are
what keeps it honest: the event and stats schemas list exactly the keys the
serializers write (and real values validate), every Events API parameter and
v2 field is documented, and the /v3 schemas have SendGrid's field names,
types and required lists (compared with ../shared/sendgrid-oai when present).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from support.helpers import CORPUS

from mailtrack.events import EventType, TrackingEvent
from mailtrack.http.events_api import PARAMETERS
from mailtrack.http.messages import Request
from mailtrack.http.openapi import PATH, OpenApiDocument, build_document
from mailtrack.http.v2_api import APPS, TASKS
from mailtrack.storage.base import GROUP_BYS, MAX_PAGE, StatsRow

SENDGRID = CORPUS.parent / "sendgrid-oai" / "tsg_tracking_settings_v3.json"
V3_OPERATIONS = [("/v3/tracking_settings", "get")] + [
    (f"/v3/tracking_settings/{section}", method)
    for section in ("click", "google_analytics", "open", "subscription") for method in ("get", "patch")]
V1_OPERATIONS = [("/v1/events", "get"), ("/v1/stats", "get")]
V2_OPERATIONS = [("/apiv2/customer.apps.json", "post"), ("/apiv2/customer.apps.xml", "post")]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with a top-level ``$ref`` into ``#/components/`` followed."""
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def validator(document: dict[str, Any], name: str) -> Any:
    """A JSON Schema 2020-12 validator for ``#/components/schemas/{name}`` (refs resolved within the document)."""
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                            "components": document["components"]})


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validator_module = pytest.importorskip("openapi_spec_validator")
    validator_module.validate(document)
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {path for path, _ in V3_OPERATIONS + V1_OPERATIONS + V2_OPERATIONS}
    json.dumps(document)  # plain JSON values only


def test_every_operation_lists_its_error_statuses(document: dict[str, Any]) -> None:
    for path, method in V3_OPERATIONS + V1_OPERATIONS + V2_OPERATIONS:
        operation = document["paths"][path][method]
        statuses = set(operation["responses"])
        assert {"200", "401", "403", "413", "503"} <= statuses, (path, method)
        if method != "get" or path.startswith(("/v1/", "/apiv2/")):  # a body or parameters that can be wrong
            assert "400" in statuses, (path, method)
        if method == "patch":
            assert "415" in statuses
        for status, answer in operation["responses"].items():
            assert answer["content"], (path, method, status)
            if status != "200" and not path.startswith("/apiv2/"):
                assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Errors"}
        if path.startswith("/apiv2/"):
            assert operation["security"] == []  # api_user/api_key travel in the form
            kinds = {kind for answer in operation["responses"].values() for kind in answer["content"]}
            assert kinds == {"application/xml" if path.endswith(".xml") else "application/json"}
        else:
            assert operation["security"] == [{"BearerAuth": []}]
            assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert document["components"]["securitySchemes"]["BearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["BearerAuth"][
            "description"]}


def test_v3_patch_bodies_refuse_unknown_fields_and_v3_takes_on_behalf_of(document: dict[str, Any]) -> None:
    for path, method in V3_OPERATIONS:
        operation = document["paths"][path][method]
        assert operation["parameters"] == [{"$ref": "#/components/parameters/OnBehalfOf"}]
        if method == "patch":
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body["additionalProperties"] is False
    assert document["components"]["parameters"]["OnBehalfOf"]["in"] == "header"


@pytest.mark.skipif(not SENDGRID.exists(), reason="../shared/sendgrid-oai is absent")
def test_v3_schemas_have_sendgrid_s_names_types_and_required_lists(document: dict[str, Any]) -> None:
    theirs = json.loads(SENDGRID.read_text(encoding="utf-8"))

    def shape(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
        """What must match: the type, each property's type (and format), the required list, array items."""
        schema = resolve(doc, schema)
        found: dict[str, Any] = {"type": schema.get("type"), "required": sorted(schema.get("required", []))}
        if "properties" in schema:
            found["properties"] = {name: shape(doc, value) for name, value in schema["properties"].items()}
        if "items" in schema:
            found["items"] = shape(doc, schema["items"])
        formats = [branch["format"] for branch in schema.get("anyOf", []) if "format" in branch]
        if "format" in schema or formats:  # ours may add "" (unset) beside SendGrid's format in an anyOf
            found["format"] = schema.get("format") or formats[0]
        return found

    for name in ("ClickTracking", "GoogleAnalyticsSettings", "SubscriptionTrackingSettings"):
        assert document["components"]["schemas"][name] == theirs["components"]["schemas"][name], name
    assert document["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    ours_header = document["components"]["parameters"]["OnBehalfOf"]
    their_header = theirs["components"]["parameters"]["OnBehalfOf"]
    assert {k: v for k, v in ours_header.items() if k != "description"} == {
        k: v for k, v in their_header.items() if k != "description"}
    assert {path for path, _ in V3_OPERATIONS} == set(theirs["paths"])
    for path, method in V3_OPERATIONS:
        ours, their = document["paths"][path][method], theirs["paths"][path][method]
        assert (ours["operationId"], ours["summary"]) == (their["operationId"], their["summary"])
        assert shape(document, ours["responses"]["200"]["content"]["application/json"]["schema"]) == shape(
            theirs, their["responses"]["200"]["content"]["application/json"]["schema"]), (path, method)
        if method == "patch":
            assert shape(document, ours["requestBody"]["content"]["application/json"]["schema"]) == shape(
                theirs, their["requestBody"]["content"]["application/json"]["schema"]), path


def test_the_event_schema_is_to_dict_exactly(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["TrackingEvent"]
    check = validator(document, "TrackingEvent")
    moment = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
    events = [
        TrackingEvent(EventType.OPENED, moment, "m1", None),
        TrackingEvent(EventType.CLICKED, moment, "m1", "ann@example.com", url="https://example.com/a", link_index=0,
                      user_agent="UA", ip="192.0.2.1", referer="https://mail.example/", first=True, machine="image_proxy",
                      metadata={"campaign": "spring", "n": 1, "nested": {"x": [1, None]}}, tags=("news",)),
        TrackingEvent(EventType.UNSUBSCRIBED, moment, "m2", "bob@example.com", first=False),
        TrackingEvent(EventType.OPENED, moment, "m3", "cy@example.com", account="sub1"),  # a subuser's: with account
    ]
    for event in events:
        data = event.to_dict()
        optional = set() if event.account is None else {"account"}
        assert set(data) - optional == set(schema["required"]) == set(schema["properties"]) - {"account"}
        check.validate(data)
    assert schema["properties"]["event_type"]["enum"] == [member.value for member in EventType]
    assert not check.is_valid({**events[0].to_dict(), "extra": 1})
    assert not check.is_valid({**events[0].to_dict(), "event_type": "bounced"})


def test_the_stats_row_schema_is_to_dict_exactly(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["StatsRow"]
    check = validator(document, "StatsRow")
    rows = [StatsRow("2024-03-01", 3, 2, 2, 2, 0, 0), StatsRow("spring", 3, 2, 2, 1, 1, 1, sent=10),
            StatsRow("https://example.com/a", None, None, 5, 4, None, None)]
    for row in rows:
        data = row.to_dict()
        assert set(data) == set(schema["properties"]) == set(schema["required"])
        check.validate(data)


def test_the_events_api_parameters_follow_the_code(document: dict[str, Any]) -> None:
    for name in ("events", "stats"):
        parameters = {item["name"]: item for item in document["paths"][f"/v1/{name}"]["get"]["parameters"]}
        assert list(parameters) == list(PARAMETERS[name])
        assert all(item["in"] == "query" and item["required"] is False for item in parameters.values())
    events = {item["name"]: item for item in document["paths"]["/v1/events"]["get"]["parameters"]}
    assert events["limit"]["schema"]["maximum"] == MAX_PAGE
    stats = {item["name"]: item for item in document["paths"]["/v1/stats"]["get"]["parameters"]}
    assert stats["group_by"]["schema"]["enum"] == list(GROUP_BYS)


def test_the_v2_form_documents_every_field_of_every_app(document: dict[str, Any]) -> None:
    form = document["components"]["schemas"]["V2Form"]
    variants = form["oneOf"]
    assert all(variant["additionalProperties"] is False for variant in variants)
    assert {task for variant in variants for task in variant["properties"]["task"]["enum"]} == set(TASKS.values())
    documented = {field for variant in variants for field in variant["properties"]}
    assert documented == {field for app in APPS.values() for field in app.fields} | {
        "api_user", "api_key", "task", "user", "name"}
    check = validator(document, "V2Form")
    login = {"api_user": "parent", "api_key": "k"}
    for good in ({"task": "getAvailable"}, {"task": "getAvailable", "user": "sub1"},
                 {"task": "activate", "name": "opentrack"}, {"task": "getsettings", "name": "ganalytics"},
                 {"task": "setup", "name": "clicktrack", "enable_text": "1"},
                 {"task": "setup", "name": "subscriptiontrack", "url": "https://x.example/u"},
                 {"task": "setup", "name": "subscriptiontrack", "url": ""},
                 {"task": "setup", "name": "ganalytics", "utm_source": "news", "utm_term": ""}):
        assert check.is_valid({**login, **good}), good
    for bad in ({"task": "getAvailable", "name": "opentrack"},  # the server refuses each of these with a 400
                {"task": "activate"}, {"task": "activate", "name": "nothing"},
                {"task": "setup", "name": "clicktrack"}, {"task": "setup", "name": "subscriptiontrack"},
                {"task": "setup", "name": "opentrack"}, {"task": "setup", "name": "clicktrack", "enable_text": "2"},
                {"task": "setup", "name": "ganalytics", "enable_text": "1"},
                {"task": "setup", "name": "subscriptiontrack", "url": "not a url"},
                {"task": "getsettings", "name": "clicktrack", "enable_text": "1"}, {"task": "delete"}):
        assert not check.is_valid({**login, **bad}), bad
    assert not check.is_valid({"task": "getAvailable"})  # no credentials
    result = validator(document, "V2Result")
    assert result.is_valid({"message": "success"}) and result.is_valid({"settings": None})
    assert result.is_valid({"settings": {"enable_text": "1"}})
    assert result.is_valid([{"name": "clicktrack", "title": "t", "description": "d", "activated": True}])
    assert not result.is_valid({"message": "error"})
    v2_error = validator(document, "V2Error")
    assert v2_error.is_valid({"message": "error", "errors": ["x"]}) and not v2_error.is_valid({"message": "error"})


def test_the_document_is_served_without_a_key_and_cached_by_etag() -> None:
    served = OpenApiDocument()
    answer = served.handle(Request("GET", PATH))
    assert answer is not None and answer.status == 200
    headers = dict(answer.headers)
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "public, max-age=300"
    assert json.loads(answer.body) == build_document()
    assert headers["Content-Length"] == str(len(answer.body))
    again = served.handle(Request("GET", PATH, headers={"if-none-match": f'W/{headers["ETag"]}, "other"'}))
    assert again is not None and (again.status, again.body) == (304, b"")
    stale = served.handle(Request("GET", PATH, headers={"if-none-match": '"other"'}))
    assert stale is not None and stale.status == 200
    head = served.handle(Request("HEAD", PATH))
    assert head is not None and head.status == 200
    refused = served.handle(Request("POST", PATH, body=b"{}"))
    assert refused is not None and refused.status == 405 and dict(refused.headers)["Allow"] == "GET, HEAD"
    assert json.loads(refused.body) == {"errors": [{"field": None, "message": "method not allowed"}]}
    assert served.handle(Request("GET", "/openapi.yaml")) is None
    assert served.handle(Request("GET", "/o/token")) is None


def test_the_document_file_is_not_copied_into_the_package() -> None:
    """SendGrid's file is read by tests only (../shared); the package carries its own, attributed, schemas."""
    package = Path(__file__).resolve().parents[3] / "mailtrack"
    assert not list(package.rglob("tsg_*.json"))
    source = (package / "http" / "openapi.py").read_text(encoding="utf-8")
    assert "MIT" in source and "twilio/sendgrid-oai" in source
