"""The OpenAPI 3.1 document of every API path ``mailtrack serve`` answers, served at ``GET /openapi.json``.

:func:`build_document` writes it from the same constants the API modules use
(the v3 sections, the v2 apps, the Events API's parameters, ``GROUP_BYS``,
``MAX_PAGE``, ``MAX_BODY``, the event types), so the document follows the code;
``tests/unit/http/test_openapi.py`` checks it against the serializers
(:meth:`~mailtrack.events.TrackingEvent.to_dict`,
:meth:`~mailtrack.storage.base.StatsRow.to_dict`) and against SendGrid's file,
and ``tests/integration/test_openapi_schemathesis.py`` runs schemathesis over a
live server with it.

Provenance: the ``/v3/tracking_settings`` schemas (component names, titles,
field names, types, ``required`` lists, descriptions, operation ids and the
``on-behalf-of`` parameter) are taken from SendGrid's
``tsg_tracking_settings_v3.json`` in the public ``twilio/sendgrid-oai``
repository (commit dbe0e0d2e67a), Copyright (c) 2024 Twilio, MIT License,
reproduced under that licence. Where we are stricter than SendGrid says, the
document says so: request bodies refuse unknown fields
(``additionalProperties: false``), and every error status we answer is listed.
The v2 ``customer.apps`` and ``/v1`` parts are ours.

Served without authentication (it holds nothing secret), as
``application/json`` with ``Cache-Control: public, max-age=300`` and an
``ETag`` (``If-None-Match`` answers 304). The API paths are at the server's
root whatever the tracking base URL's path is, so ``servers`` is ``/``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from mailtrack.events import MACHINE_LABELS, EventType
from mailtrack.http.auth import error
from mailtrack.http.events_api import DEFAULT_LIMIT, PARAMETERS
from mailtrack.http.messages import MAX_BODY, Request, Response
from mailtrack.http.settings_api import PREFIX as V3_PREFIX
from mailtrack.http.v2_api import APPS, TASKS
from mailtrack.storage.base import GROUP_BYS, MACHINE_FILTERS, MAX_PAGE

__all__ = ["PATH", "OpenApiDocument", "build_document"]

#: Where the document is served.
PATH = "/openapi.json"
_JSON = "application/json"
_XML = "application/xml"
_URL_SET = "an absolute http(s) URI, or \"\" to unset it"
#: ``url`` as we take it: SendGrid's ``format: uri``, http(s) only, or "" to unset it.
_WEB_URI_OR_EMPTY: dict[str, Any] = {"type": "string", "anyOf": [{"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
                                                 {"maxLength": 0}]}

# -- SendGrid's schemas (tsg_tracking_settings_v3.json, MIT, see the module docstring) ----------------------------
_ON_BEHALF_OF: dict[str, Any] = {
    "name": "on-behalf-of",
    "in": "header",
    "description": (
        "The `on-behalf-of` header allows you to make API calls from a parent account on behalf of the parent's "
        "Subusers. You will use the parent account's API key when using this header; the value is the Subuser's "
        "username. Here: a subuser's key sending it, or a name that is no subuser of the key's account, is "
        "answered 403."),
    "required": False,
    "schema": {"type": "string"},
}
_CLICK_TRACKING: dict[str, Any] = {
    "title": "Settings: Click Tracking",
    "type": "object",
    "properties": {
        "enable_text": {"type": "boolean",
                        "description": "Indicates if click tracking is enabled for plain text emails."},
        "enabled": {"type": "boolean", "description": "Indicates if click tracking is enabled or disabled."},
    },
    "required": ["enable_text", "enabled"],
    "example": {"enable_text": False, "enabled": False},
}
_GOOGLE_ANALYTICS: dict[str, Any] = {
    "title": "Settings: Google Analytics",
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean", "description": "Indicates if Google Analytics is enabled."},
        "utm_campaign": {"type": "string", "description": "The name of the campaign."},
        "utm_content": {"type": "string", "description": "Used to differentiate ads"},
        "utm_medium": {"type": "string", "description": "Name of the marketing medium (e.g. \"Email\")."},
        "utm_source": {"type": "string", "description": "Name of the referrer source. "},
        "utm_term": {"type": "string", "description": "Any paid keywords."},
    },
    "example": {"enabled": True, "utm_source": "sendgrid.com", "utm_medium": "email", "utm_term": "",
                "utm_content": "", "utm_campaign": "website"},
}
_SUBSCRIPTION: dict[str, Any] = {
    "title": "Settings: Subscription Tracking",
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean", "description": "Indicates if subscription tracking is enabled."},
        "html_content": {"type": "string", "description": "The information and HTML for your unsubscribe link. "},
        "landing": {"type": "string", "description": (
            "The HTML that will be displayed on the page that your customers will see after clicking unsubscribe, "
            "hosted on SendGrid\u2019s server.")},
        "plain_content": {"type": "string", "description": (
            "The information in plain text for your unsubscribe link. You should have the \u201c<% %>\u201d tag "
            "in your content, otherwise the user will have no URL for unsubscribing.")},
        "replace": {"type": "string", "description": (
            "Your custom defined replacement tag for your templates. Use this tag to place your unsubscribe content "
            "anywhere in your emailtemplate.")},
        "url": {"type": "string", "format": "uri",
                "description": "The URL where you would like your users sent to unsubscribe."},
    },
}
#: What GET and PATCH answer for subscription: SendGrid's schema, with ``url`` "" when it was never set.
_SUBSCRIPTION_STATE = copy.deepcopy(_SUBSCRIPTION)
_SUBSCRIPTION_STATE["title"] = "Subscription Tracking Settings as answered"
_SUBSCRIPTION_STATE["properties"]["url"] = {
    "type": "string", "anyOf": [{"format": "uri"}, {"maxLength": 0}],
    "description": _SUBSCRIPTION["properties"]["url"]["description"] + " An empty string when not set."}
_OPEN: dict[str, Any] = {
    "type": "object",
    "properties": {"enabled": {"type": "boolean", "description": "Indicates if open tracking is enabled."}},
    "required": ["enabled"],
}
_ENABLED_ONLY: dict[str, Any] = {
    "type": "object",
    "properties": {"enabled": {"type": "boolean", "description": "The new status of this tracking setting."}},
    "example": {"enabled": True},
}
_LIST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "result": {
            "type": "array",
            "description": "The list of all tracking settings.",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The name of the event being tracked."},
                    "title": {"type": "string", "description": "The title of the tracking setting."},
                    "description": {"type": "string",
                                    "description": "A description about the event that is being tracked."},
                    "enabled": {"type": "boolean",
                                "description": "Indicates if this tracking setting is currently enabled."},
                },
            },
        },
    },
}
#: Each v3 section: SendGrid's operation-id stem, GET and PATCH summaries, response schema, PATCH body schema.
_V3_SECTIONS: dict[str, tuple[str, str, str, dict[str, Any], dict[str, Any]]] = {
    "click": ("ClickTracking", "Retrieve Click Track Settings", "Update Click Tracking Settings",
              {"$ref": "#/components/schemas/ClickTracking"}, _ENABLED_ONLY),
    "google_analytics": ("GoogleAnalyticsTracking", "Retrieve Google Analytics Settings",
                         "Update Google Analytics Settings",
                         {"$ref": "#/components/schemas/GoogleAnalyticsSettings"}, _GOOGLE_ANALYTICS),
    "open": ("OpenTracking", "Get Open Tracking Settings", "Update Open Tracking Settings", _OPEN, _ENABLED_ONLY),
    "subscription": ("SubscriptionTracking", "Retrieve Subscription Tracking Settings",
                     "Update Subscription Tracking Settings",
                     {"$ref": "#/components/schemas/SubscriptionTrackingState"}, _SUBSCRIPTION),
}

# -- our own schemas --------------------------------------------------------------------------------------------
_ERRORS: dict[str, Any] = {
    "title": "Errors",
    "description": "SendGrid's error shape; `field` names the request field at fault, or is null.",
    "type": "object",
    "required": ["errors"],
    "additionalProperties": False,
    "properties": {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "additionalProperties": False,
                "properties": {"field": {"type": ["string", "null"]}, "message": {"type": "string"}},
            },
        },
    },
}
_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
_EVENT: dict[str, Any] = {
    "title": "TrackingEvent",
    "description": "One open, click or unsubscribe, as webhooks and `mailtrack events --json` show it.",
    "type": "object",
    "additionalProperties": False,
    "required": ["event_id", "event_type", "timestamp", "message_id", "recipient", "url", "link_index",
                 "user_agent", "ip", "referer", "metadata", "first", "machine", "machine_reasons", "tags"],
    "properties": {
        "event_id": {"type": "string"},
        "event_type": {"type": "string", "enum": [member.value for member in EventType]},
        "timestamp": {"type": "string", "format": "date-time", "description": "ISO 8601, UTC, with a Z."},
        "message_id": {"type": "string"},
        "recipient": _NULLABLE_STRING,
        "url": _NULLABLE_STRING,
        "link_index": {"type": ["integer", "null"]},
        "user_agent": {**_NULLABLE_STRING, "description": "The reader's user agent; under privacy mode "
                       "(--privacy-user-agent) its family (Chrome, Outlook, Apple Mail, ..., other) or null."},
        "ip": {**_NULLABLE_STRING, "description": "The reader's address; under privacy mode (--privacy-ip) its "
               "IPv4 /24 or IPv6 /48 network address, or null."},
        "referer": _NULLABLE_STRING,
        "metadata": {"type": "object", "description": "The metadata signed into the tracking URL."},
        "first": {"type": ["boolean", "null"]},
        "machine": {"type": ["string", "null"], "enum": [*MACHINE_LABELS, None],
                    "description": "The machine-event verdict: null for a person (as far as we can tell)."},
        "machine_reasons": {"type": "array", "items": {"type": "string"},
                            "description": "What led to the verdict; empty for a person."},
        "tags": {"type": "array", "items": {"type": "string"}},
        # present only on a subuser's events (the account signed into the token); the parent's leave it out
        "account": {"type": "string", "minLength": 1,
                    "description": "The subuser the message was rewritten for; absent for the parent's events"},
    },
}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_NULLABLE_COUNT: dict[str, Any] = {"type": ["integer", "null"], "minimum": 0}
_RATE: dict[str, Any] = {"type": ["number", "null"], "minimum": 0}
_STATS_ROW: dict[str, Any] = {
    "title": "StatsRow",
    "description": "The counts of one group; `sent` and the rates over it are null while the store does not know "
                   "how many were sent; in `link` rows only the click counts mean anything (the rest are null). "
                   "The SendGrid-shaped counts (`opens`, `unique_opens`, `clicks`, ... and the rates) count people "
                   "(events whose `machine` verdict is null); `machine_opens`, `machine_clicks` and "
                   "`machine_unsubscribes` count the machines' events (any label) beside them.",
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "sent", "opens", "unique_opens", "clicks", "unique_clicks", "unsubscribes",
                 "unique_unsubscribes", "open_rate", "click_rate", "click_to_open_rate", "machine_opens",
                 "machine_clicks", "machine_unsubscribes"],
    "properties": {
        "key": {"type": "string"}, "sent": _NULLABLE_COUNT, "opens": _NULLABLE_COUNT,
        "unique_opens": _NULLABLE_COUNT, "clicks": _COUNT, "unique_clicks": _COUNT,
        "unsubscribes": _NULLABLE_COUNT, "unique_unsubscribes": _NULLABLE_COUNT, "open_rate": _RATE,
        "click_rate": _RATE, "click_to_open_rate": _RATE,
        "machine_opens": {**_NULLABLE_COUNT, "description": "Opens a machine made (Apple MPP, image proxies, ...)."},
        "machine_clicks": {**_COUNT, "description": "Clicks a machine made (link scanners, prefetches, honeypot)."},
        "machine_unsubscribes": {**_NULLABLE_COUNT, "description": "Unsubscribes a machine made."},
    },
}
#: ``since``/``until``: what ``events_api`` reads (a year up to 9999; a date that does not exist is a 400).
_MOMENT: dict[str, Any] = {"anyOf": [
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "date"},
    {"type": "string", "pattern": "^[0-9]{1,11}(\\.[0-9]{1,6})?$", "description": "Unix seconds"},
]}
#: Each Events API query parameter's schema and description (every name in events_api.PARAMETERS must be here).
_V1_PARAMETERS: dict[str, tuple[dict[str, Any], str]] = {
    "message_id": ({"type": "string", "minLength": 1}, "Only the events of this Message-ID."),
    "recipient": ({"type": "string"}, "Only the events of this recipient (empty: of messages tracked without one)."),
    "type": ({"type": "string", "enum": [member.value for member in EventType]}, "Only events of this type."),
    "since": (_MOMENT, "Events at or after this time: ISO 8601 (a date, or a date and time; UTC when no offset is "
                       "given) or Unix seconds."),
    "until": (_MOMENT, "Events before this time (same forms as since; must be later than since)."),
    "tag": ({"type": "string", "minLength": 1}, "Only events of messages with this tag."),
    "machine": ({"type": "string", "enum": list(MACHINE_FILTERS)},
                "Only people's events (`none`: the machine verdict is null), machines' (`any`), or one verdict's."),
    "limit": ({"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_LIMIT},
              f"At most this many events (or stats groups) per page (1 to {MAX_PAGE})."),
    "cursor": ({"type": "string"}, "The next_cursor of the previous page, as it was given."),
    "group_by": ({"type": "string", "enum": list(GROUP_BYS), "default": "day"}, "What one row counts."),
    "campaign_key": ({"type": "string", "minLength": 1, "default": "campaign"},
                     "The metadata key that names a campaign (group_by=campaign)."),
}
_V1_ERRORS_NOTE = ("Besides these parameters, `metadata.KEY=VALUE` (repeatable with different keys; all must "
                   "match) filters on the signed metadata; any other parameter, or one given twice, is a 400.")


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None,
          media: tuple[str, ...] = (_JSON,)) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {kind: {"schema": schema} for kind in media}}
    if headers:
        answer["headers"] = headers
    return answer


def _header(description: str, *, required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


_NO_STORE = {"Cache-Control": _header("no-store: the answer holds an account's data.")}
_RETRY = {**_NO_STORE, "Retry-After": _header("Seconds to wait before trying again.")}
_CHALLENGE = {**_NO_STORE, "WWW-Authenticate": _header('Bearer realm="mailtrack"')}
_ERROR_REF = {"$ref": "#/components/schemas/Errors"}


def _errors(*statuses: int) -> dict[str, Any]:
    """The JSON error answers (SendGrid's shape) of a /v3 or /v1 operation, for ``statuses``."""
    meaning = {
        400: ("Invalid JSON, a wrong type, an unknown field or a bad parameter.", _NO_STORE),
        401: ("No `Authorization: Bearer` key, or a key that is wrong, unknown or revoked.", _CHALLENGE),
        403: ("The key lacks the scope, or `on-behalf-of` was refused.", _NO_STORE),
        413: (f"The request body is larger than {MAX_BODY} bytes.", _NO_STORE),
        415: ("The request body is not `application/json`.", _NO_STORE),
        503: ("The store cannot be read or written now; try again.", _RETRY),
    }
    return {str(status): _json(_ERROR_REF, *meaning[status]) for status in statuses}


def _v3_paths() -> dict[str, Any]:
    common = {"tags": ["Tracking"], "parameters": [{"$ref": "#/components/parameters/OnBehalfOf"}],
              "security": [{"BearerAuth": []}]}
    paths: dict[str, Any] = {V3_PREFIX: {"get": {
        "operationId": "ListTrackingSetting", "summary": "Retrieve Tracking Settings", **common,
        "description": "The four tracking settings (scope `tracking_settings.read`).",
        "responses": {"200": _json(_LIST, "The settings.", _NO_STORE), **_errors(401, 403, 413, 503)},
    }}}
    for section, (stem, get_summary, patch_summary, answer, body) in sorted(_V3_SECTIONS.items()):
        strict = copy.deepcopy(body)
        strict["additionalProperties"] = False  # ours: an unknown field is a 400, not ignored
        for name, field in strict["properties"].items():
            if field.get("type") == "string":
                field["description"] += " (Here: null clears it, as if never set.)"
            if name == "url":  # ours: only web URIs are stored (or "" to unset)
                strict["properties"][name] = {**_WEB_URI_OR_EMPTY,
                                              "description": field["description"] + f" Here: {_URL_SET}."}
        ok = _json(answer, f"The {section} setting (strings never set are \"\").", _NO_STORE)
        paths[f"{V3_PREFIX}/{section}"] = {
            "get": {"operationId": f"List{stem}Setting", "summary": get_summary, **common,
                    "description": "Scope `tracking_settings.read`.",
                    "responses": {"200": ok, **_errors(401, 403, 413, 503)}},
            "patch": {"operationId": f"Update{stem}Setting", "summary": patch_summary, **common,
                      "description": "Partial (absent fields keep their value) and atomic; answers the whole new "
                                     "state. Scope `tracking_settings.update`. An empty body changes nothing.",
                      "requestBody": {"content": {_JSON: {"schema": strict}}},
                      "responses": {"200": ok, **_errors(400, 401, 403, 413, 415, 503)}},
        }
    return paths


def _v2_form() -> dict[str, Any]:
    """The form of each task (one variant per task group, one per app for setup), as the server checks it."""
    common: dict[str, Any] = {
        "api_user": {"type": "string", "description": "The account's name."},
        "api_key": {"type": "string", "description": "A key from `mailtrack apikey create` for api_user."},
        "user": {"type": "string", "description": "A subuser of api_user (absent or api_user: its own settings)."},
    }

    def variant(title: str, tasks: list[str], extra: dict[str, Any], required: list[str],
                **more: Any) -> dict[str, Any]:
        return {"title": title, "type": "object", "additionalProperties": False,
                "required": ["api_user", "api_key", "task", *required],
                "properties": {**common, "task": {"type": "string", "enum": tasks}, **extra}, **more}

    variants = [
        variant("getAvailable", ["getAvailable"], {}, []),
        variant("an app's state or settings", [TASKS[name] for name in ("activate", "deactivate", "getsettings")],
                {"name": {"type": "string", "enum": list(APPS)}}, ["name"]),
    ]
    for name, app in APPS.items():
        if not app.fields:
            continue
        fields: dict[str, Any] = {}
        for field in app.fields:
            fields[field] = ({"type": "string", "enum": ["0", "1"]} if field in app.booleans
                             else {**_WEB_URI_OR_EMPTY, "description": _URL_SET} if field == "url"
                             else {"type": "string"})
        required = sorted(app.required)
        # setup needs the app's required fields, or else at least one field (v2's "missing parameters")
        more = {} if required else {"anyOf": [{"required": [field]} for field in app.fields]}
        variants.append(variant(f"setup {name}", ["setup"], {"name": {"const": name}, **fields},
                                ["name", *required], **more))
    return {"title": "V2Form", "description": "Tasks are matched without regard to case (getavailable works).",
            "oneOf": variants}


_V2_ERROR: dict[str, Any] = {
    "title": "V2Error", "type": "object", "required": ["message", "errors"], "additionalProperties": False,
    "properties": {"message": {"const": "error"},
                   "errors": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
}
_V2_OK: dict[str, Any] = {"anyOf": [
    {"title": "getAvailable", "type": "array", "items": {
        "type": "object", "required": ["name", "title", "description", "activated"], "additionalProperties": False,
        "properties": {"name": {"type": "string", "enum": list(APPS)}, "title": {"type": "string"},
                       "description": {"type": "string"}, "activated": {"type": "boolean"}}}},
    {"title": "success", "type": "object", "required": ["message"], "additionalProperties": False,
     "properties": {"message": {"const": "success"}}},
    {"title": "getsettings", "type": "object", "required": ["settings"], "additionalProperties": False,
     "properties": {"settings": {"type": ["object", "null"], "additionalProperties": {"type": "string"}}}},
]}


def _v2_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    statuses = {400: "An unknown task, app or field, a bad value or an unreadable body.",
                401: "Permission denied, wrong credentials.",
                403: "The key lacks the task's scope, or user is not api_user nor one of its subusers.",
                413: f"The request body is larger than {MAX_BODY} bytes.",
                503: "The store is unavailable; try again."}
    for suffix, media in (("json", _JSON), ("xml", _XML)):
        headers = {"Cache-Control": _header("no-store")}
        error_schema = {"$ref": "#/components/schemas/V2Error"} if media == _JSON else {"type": "string"}
        ok_schema = {"$ref": "#/components/schemas/V2Result"} if media == _JSON else {"type": "string"}
        responses = {"200": _json(ok_schema, "The task's answer.", headers, (media,))}
        for status, description in statuses.items():
            responses[str(status)] = _json(error_schema, description, {**headers, "Retry-After": _header("seconds")}
                                           if status == 503 else headers, (media,))
        paths[f"/apiv2/customer.apps.{suffix}"] = {"post": {
            "operationId": f"CustomerApps{suffix.upper()}",
            "summary": f"SendGrid Web API v2 customer.apps ({suffix.upper()} answers)",
            "description": "The tracking apps (clicktrack, opentrack, subscriptiontrack, ganalytics), stored with "
                           "the v3 settings. GET with the same fields in the query string works too.",
            "tags": ["Web API v2"], "security": [],
            "requestBody": {"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/V2Form"}}}},
            "responses": responses,
        }}
    return paths


def _v1_paths() -> dict[str, Any]:
    answers = {
        "events": ({"type": "object", "required": ["data", "next_cursor"], "additionalProperties": False,
                    "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/TrackingEvent"}},
                                   "next_cursor": {"type": ["string", "null"],
                                                   "description": "null on the last page"}}},
                   "List events", "The events matching the filters, newest first (scope `events.read`). "),
        "stats": ({"type": "object", "required": ["group_by", "data", "next_cursor"], "additionalProperties": False,
                   "properties": {"group_by": {"type": "string", "enum": list(GROUP_BYS)},
                                  "data": {"type": "array", "items": {"$ref": "#/components/schemas/StatsRow"}},
                                  "next_cursor": {"type": ["string", "null"],
                                                  "description": "null on the last page"}}},
                  "Counts and rates", "Opens, clicks and unsubscribes per group (scope `stats.read`). "),
    }
    paths: dict[str, Any] = {}
    for name, (schema, summary, description) in answers.items():
        parameters = []
        for parameter in PARAMETERS[name]:
            parameter_schema, about = _V1_PARAMETERS[parameter]
            parameters.append({"name": parameter, "in": "query", "required": False, "schema": parameter_schema,
                               "description": about})
        paths[f"/v1/{name}"] = {"get": {
            "operationId": f"Get{name.title()}", "summary": summary, "tags": ["Events"],
            "description": description + _V1_ERRORS_NOTE, "security": [{"BearerAuth": []}],
            "parameters": parameters,
            "responses": {"200": _json(schema, "The answer.", _NO_STORE), **_errors(400, 401, 403, 413, 503)},
        }}
    return paths


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the v3 tracking-settings, v2 ``customer.apps`` and ``/v1`` paths."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailtrack API",
            "version": "1.0.0",
            "summary": "SendGrid-compatible tracking settings (v3 and v2) and an Events API.",
            "description": (
                "The /v3/tracking_settings paths follow SendGrid's OpenAPI document (twilio/sendgrid-oai, "
                "tsg_tracking_settings_v3.json, MIT). On every API path (/v3/, /v1/, /apiv2/) a path that does not "
                "exist is answered 404 and a method an operation does not list 405 (with `Allow`), in that API's "
                "error shape; HEAD is answered as GET without a body. Never a 500 or an HTML page."),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": "Tracking", "description": "SendGrid's Tracking Settings API (v3)"},
                 {"name": "Web API v2", "description": "SendGrid's v2 customer.apps, for the tracking apps"},
                 {"name": "Events", "description": "Tracking events and their counts"}],
        "paths": {**_v3_paths(), **_v2_paths(), **_v1_paths()},
        "components": {
            "schemas": {"ClickTracking": _CLICK_TRACKING, "GoogleAnalyticsSettings": _GOOGLE_ANALYTICS,
                        "SubscriptionTrackingSettings": _SUBSCRIPTION,
                        "SubscriptionTrackingState": _SUBSCRIPTION_STATE, "Errors": _ERRORS, "TrackingEvent": _EVENT,
                        "StatsRow": _STATS_ROW, "V2Form": _v2_form(), "V2Result": _V2_OK, "V2Error": _V2_ERROR},
            "parameters": {"OnBehalfOf": _ON_BEHALF_OF},
            "securitySchemes": {"BearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "An API key from `mailtrack apikey create`, sent as a bearer token in the "
                               "Authorization header."}},
        },
    }


class OpenApiDocument:
    """``GET /openapi.json``: the document, built and serialized once; :meth:`handle` is None for other paths."""

    def __init__(self) -> None:
        self.body = json.dumps(build_document(), separators=(",", ":"), sort_keys=False).encode("utf-8")
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    def handle(self, request: Request) -> Response | None:
        """The document (GET, HEAD), a 304 for a matching ``If-None-Match``, a JSON 405; None for other paths."""
        if request.path != PATH:
            return None
        if request.method not in ("GET", "HEAD"):
            return error(405, "method not allowed", headers={"Allow": "GET, HEAD"})
        headers = [("Cache-Control", "public, max-age=300"), ("ETag", self.etag),
                   ("X-Content-Type-Options", "nosniff")]
        tags = {tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")}
        if self.etag in tags or "*" in tags:
            return Response(304, headers)
        return Response(200, [("Content-Type", _JSON), ("Content-Length", str(len(self.body))), *headers], self.body)
