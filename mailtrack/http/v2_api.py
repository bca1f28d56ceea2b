"""SendGrid's Web API v2 ``customer.apps`` for the tracking apps, sans-IO: :class:`V2Api` answers a Request.

``GET`` or ``POST /apiv2/customer.apps.json`` (or ``.xml``) with form-encoded
parameters (query string, ``application/x-www-form-urlencoded`` body, or both;
v2 took GET and POST interchangeably): ``api_user`` (the account's name),
``api_key`` (a key from ``mailtrack apikey create``), ``task``, ``user`` and
``name``. The apps are the four tracking settings, stored once per account and
shared with the v3 API (:mod:`mailtrack.http.settings_api`):

==================  ====================  ==============================================
v2 app (``name``)   v3 section            v2 setting fields -> v3 fields
==================  ====================  ==============================================
clicktrack          click                 enable_text (``0``/``1``)
opentrack           open                  (none)
subscriptiontrack   subscription          text/html -> html_content, text/plain ->
                                          plain_content, url, landing, replace
ganalytics          google_analytics      utm_source, utm_medium, utm_term, utm_content,
                                          utm_campaign
==================  ====================  ==============================================

Tasks (``task`` is matched without regard to case: the documentation spells
both ``getAvailable`` and ``getavailable``):

* ``getAvailable``: the apps with ``name``, ``title``, ``description`` and
  ``activated`` (a JSON array; XML ``<apps><app>...<activated>1</activated>``);
* ``activate`` / ``deactivate`` ``name=``: sets the section's ``enabled``;
* ``setup`` ``name=`` plus the app's fields: changes only the fields given
  (``clicktrack`` needs ``enable_text``; ``subscriptiontrack`` and
  ``ganalytics`` at least one field, else "missing parameters", as the Filter
  Settings page says); it does not activate the app;
* ``getsettings`` ``name=``: ``{"settings": {...}}`` / ``<app>...</app>``, every
  field of the app as a string (booleans ``"0"``/``"1"``, as the documented
  ``{"settings": {"enable_text": "0"}}``; unset strings ``""``, as in v3).
  ``opentrack`` has no settings: ``{"settings": null}`` / ``<app></app>`` (the
  documented "empty" answer). A deactivated app still shows its stored fields
  (the older page's "or is not enabled" case is not followed: the fields are
  what ``setup`` stored, and hiding them would make setup-then-check fail).

Success is ``{"message": "success"}`` / ``<result><message>success</message></result>``;
errors are the Web API overview's ``{"message": "error", "errors": ["..."]}`` /
``<result><message>error</message><errors><error>...</error></errors></result>``:
401 for missing or wrong credentials (``"Permission denied, wrong
credentials"``, what v2 answered; a revoked key, or a key that is not
``api_user``'s, is wrong), 403 for a key without the task's scope
(``tracking_settings.read`` for ``getAvailable``/``getsettings``,
``tracking_settings.update`` for the rest) or a ``user`` that is not
``api_user`` nor one of its subusers (only the parent acts for others), 400 for
an unknown task, app or field, a bad value or an unreadable body, 404 for
another ``/apiv2/`` call, 405 for another method, 413 for a body over
:data:`~mailtrack.http.messages.MAX_BODY`, 503 when the store is busy. Never a
500 page or HTML on an ``/apiv2/`` path.

Where the documentation is silent we mirror the JSON in XML as its examples do
and say so: the XML answers carry a UTF-8 declaration (the older examples
declare ISO-8859-1, which cannot carry every stored character); the field
names ``text/html`` and ``text/plain`` are not XML names, so XML shows them as
``<text_html>`` and ``<text_plain>``; characters XML 1.0 cannot hold (control
characters, lone surrogates) are shown as U+FFFD. Status codes beyond "4XX for
an error in the parameters" are ours. ``user`` is documented as required (the
API was for parents managing subusers); here it may be left out, or be
``api_user`` itself, to act on one's own settings.
"""

from __future__ import annotations

import hmac
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from mailtrack.exceptions import SettingsError
from mailtrack.http.messages import MAX_BODY, Request, Response
from mailtrack.storage.base import AccountStore, StoreError, UnknownAccount

__all__ = ["APPS", "PREFIX", "TASKS", "App", "V2Api", "refusal", "too_large"]

PREFIX = "/apiv2/"
_CALL = "/apiv2/customer.apps"
#: More parameters than this in one request is not a v2 call (subscriptiontrack's setup sends at most 10).
MAX_FIELDS = 50
_CREDENTIALS = "Permission denied, wrong credentials"
_TASKS = {"getavailable": "getAvailable", "activate": "activate", "deactivate": "deactivate", "setup": "setup",
          "getsettings": "getsettings"}
#: The tasks, by their lowercase form (how they are matched) -> the documented spelling.
TASKS = _TASKS
_READS = frozenset({"getavailable", "getsettings"})
_RESERVED = frozenset({"api_user", "api_key", "task", "user", "name"})
#: What XML 1.0 cannot hold (C0 controls but tab/LF/CR, surrogates, U+FFFE/U+FFFF): shown as U+FFFD.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class App:
    """A v2 app: its v3 ``section``, what the list shows, and its setting fields (v2 name -> v3 field)."""

    section: str
    title: str
    description: str
    fields: Mapping[str, str]
    booleans: frozenset[str] = frozenset()
    #: setup must name every one of these (clicktrack's enable_text).
    required: frozenset[str] = frozenset()

    def xml_name(self, field: str) -> str:
        """The element name of a field in XML answers (``text/html`` is no XML name: ``text_html``)."""
        return field.replace("/", "_")


#: The apps, in the order getAvailable lists them (the documentation's first three, then ganalytics).
APPS: dict[str, App] = {
    "clicktrack": App("click", "Click Tracking", "Overwrites every link to track every click in emails.",
                      {"enable_text": "enable_text"}, frozenset({"enable_text"}), frozenset({"enable_text"})),
    "subscriptiontrack": App(
        "subscription", "Subscription Tracking",
        "Adds unsubscribe links to the bottom of the text and HTML emails. "
        "Future emails won't be delivered to unsubscribed users.",
        {"text/html": "html_content", "text/plain": "plain_content", "url": "url", "landing": "landing",
         "replace": "replace"}),
    "opentrack": App("open", "Open Tracking",
                     "Appends an invisible image to HTML emails to track emails that have been opened.", {}),
    "ganalytics": App("google_analytics", "Google Analytics",
                      "Adds Google Analytics campaign parameters (utm_*) to every tracked link.",
                      {name: name for name in ("utm_source", "utm_medium", "utm_term", "utm_content",
                                               "utm_campaign")}),
}


class _Refusal(Exception):
    """An error answer to send: its status and the message in ``errors``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def _answer(status: int, fmt: str, data: Any, root: ET.Element | None, headers: Mapping[str, str] | None = None
            ) -> Response:
    """``data`` as JSON, or ``root`` as XML; never cached (it holds an account's settings)."""
    if fmt == "xml":
        assert root is not None
        # Empty elements written out (<app></app>, as documented); a CR kept as a reference, or parsers make it LF.
        text = ET.tostring(root, encoding="unicode", short_empty_elements=False).replace("\r", "&#13;")
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + text.encode("utf-8")
        kind = "application/xml; charset=utf-8"
    else:
        body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        kind = "application/json"
    return Response(status, [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                             *(headers or {}).items()], body)


def _element(tag: str, text: str | None = None, children: list[ET.Element] | None = None) -> ET.Element:
    element = ET.Element(tag)
    if text is not None:
        element.text = _NOT_XML.sub("\ufffd", text)
    element.extend(children or [])
    return element


def _success(fmt: str) -> Response:
    return _answer(200, fmt, {"message": "success"}, _element("result", children=[_element("message", "success")]))


def _error(status: int, fmt: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """The Web API overview's error: ``{"message": "error", "errors": [message]}`` or its XML form."""
    root = _element("result", children=[_element("message", "error"),
                                        _element("errors", children=[_element("error", message)])])
    return _answer(status, fmt, {"message": "error", "errors": [message]}, root, headers)


def _format(path: str) -> str:
    return "xml" if path.endswith(".xml") else "json"


def too_large(path: str) -> Response:
    """The 413 answer for an ``/apiv2/`` body over :data:`MAX_BODY` (the WSGI adapter sends it unread)."""
    return refusal(path, 413, f"the request body is larger than {MAX_BODY} bytes")


def refusal(path: str, status: int, message: str) -> Response:
    """A v2 error for ``path`` in the format its suffix asks for: what a server's own refusals become on ``/apiv2/``."""
    return _error(status, _format(path), message)


def _parameters(request: Request) -> dict[str, str]:
    """The query string's and the form body's parameters; each may be given once."""
    try:
        pairs = parse_qsl(request.query, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_FIELDS)
        if request.body:
            kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind not in ("", "application/x-www-form-urlencoded"):
                raise _Refusal(400, "the request body must be application/x-www-form-urlencoded")
            pairs += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                               errors="strict", max_num_fields=MAX_FIELDS)
    except ValueError:  # bad UTF-8 or percent-encoding, or too many fields
        raise _Refusal(400, f"unreadable parameters (form-encoded UTF-8, at most {MAX_FIELDS})") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:
            raise _Refusal(400, f"the parameter {name!r} is given more than once")
        found[name] = value
    return found


class V2Api:
    """v2's ``customer.apps`` over ``store``; :meth:`handle` answers ``/apiv2/...`` paths, None for others."""

    def __init__(self, store: AccountStore) -> None:
        self.store = store

    def handle(self, request: Request) -> Response | None:
        """The answer for an ``/apiv2/`` path, or None when the path is not v2's."""
        if not request.path.startswith(PREFIX):
            return None
        fmt = _format(request.path)
        try:
            return self._route(request, fmt)
        except _Refusal as refusal:
            return _error(refusal.status, fmt, refusal.message, refusal.headers)
        except UnknownAccount:  # a subuser deleted while we answered
            return _error(403, fmt, "the user is not api_user nor one of its subusers")
        except StoreError:
            return _error(503, fmt, "the store is unavailable; try again", {"Retry-After": "1"})
        except Exception:  # never a 500 page on an API path: a bug is still a v2 answer
            return _error(500, fmt, "internal error")

    def _route(self, request: Request, fmt: str) -> Response:
        if request.path not in (_CALL + ".json", _CALL + ".xml"):
            raise _Refusal(404, "unknown API call (this server answers customer.apps.json and customer.apps.xml)")
        if request.method not in ("GET", "POST"):
            raise _Refusal(405, "method not allowed", {"Allow": "GET, POST"})
        if len(request.body) > MAX_BODY:
            raise _Refusal(413, f"the request body is larger than {MAX_BODY} bytes")
        params = _parameters(request)
        account = self._authenticate(params)
        task = params.get("task", "").lower()
        if task not in _TASKS:
            raise _Refusal(400, f"task must be one of {', '.join(_TASKS.values())}")
        scope = "tracking_settings.read" if task in _READS else "tracking_settings.update"
        if scope not in account[1]:
            raise _Refusal(403, f"Permission denied, the key lacks the {scope} scope")
        target = self._target(account[0], params.get("user", ""))
        fields = {name: value for name, value in params.items() if name not in _RESERVED}
        if task == "getavailable":
            if "name" in params or fields:
                raise _Refusal(400, f"getAvailable takes no {', '.join(sorted(fields) or ['name'])} parameter")
            return self._available(target, fmt)
        name = params.get("name", "")
        app = APPS.get(name)
        if app is None:
            raise _Refusal(400, f"name must be a supported app: {', '.join(APPS)}")
        if task != "setup" and fields:
            raise _Refusal(400, f"unknown parameter(s) {', '.join(sorted(fields))} for {_TASKS[task]}")
        if task == "getsettings":
            return self._settings(target, app, fmt)
        if task in ("activate", "deactivate"):
            self.store.patch_tracking_settings(target, app.section, {"enabled": task == "activate"})
            return _success(fmt)
        return self._setup(target, name, app, fields, fmt)

    def _authenticate(self, params: Mapping[str, str]) -> tuple[str, frozenset[str]]:
        """``api_user`` and its key's scopes, if ``api_key`` is a live key of ``api_user``; a 401 otherwise."""
        user, key = params.get("api_user", ""), params.get("api_key", "")
        found = self.store.authenticate(key) if key else None
        # Names are not secret, but one comparison for every refusal keeps the answers alike.
        if found is None or not hmac.compare_digest(found.account.encode("utf-8"), user.encode("utf-8")):
            raise _Refusal(401, _CREDENTIALS)
        return found.account, found.scopes

    def _target(self, api_user: str, user: str) -> str:
        """Whose settings: ``api_user``'s own (``user`` absent or itself), or its subuser ``user``."""
        if not user or user == api_user:
            return api_user
        owner, subuser = self.store.account(api_user), self.store.account(user)
        if owner is None or owner.is_subuser or subuser is None or subuser.parent != owner.name:
            raise _Refusal(403, "the user is not api_user nor one of its subusers")
        return subuser.name

    def _available(self, account: str, fmt: str) -> Response:
        stored = self.store.tracking_settings(account).to_account_dict()
        activated = {name: bool(stored[app.section]["enabled"]) for name, app in APPS.items()}
        listed = [{"name": name, "title": app.title, "description": app.description, "activated": activated[name]}
                  for name, app in APPS.items()]
        root = _element("apps", children=[
            _element("app", children=[_element("name", name), _element("title", app.title),
                                      _element("description", app.description),
                                      _element("activated", "1" if activated[name] else "0")])
            for name, app in APPS.items()])
        return _answer(200, fmt, listed, root)

    def _settings(self, account: str, app: App, fmt: str) -> Response:
        if not app.fields:
            return _answer(200, fmt, {"settings": None}, _element("app", ""))
        stored = self.store.tracking_settings(account).to_account_dict()[app.section]
        values: dict[str, str] = {}
        for field, key in app.fields.items():
            value = stored.get(key)
            values[field] = ("1" if value else "0") if field in app.booleans else ("" if value is None else str(value))
        root = _element("app", children=[_element(app.xml_name(field), value) for field, value in values.items()])
        return _answer(200, fmt, {"settings": values}, root)

    def _setup(self, account: str, name: str, app: App, fields: Mapping[str, str], fmt: str) -> Response:
        unknown = sorted(field for field in fields if field not in app.fields)
        if unknown:
            known = ", ".join(app.fields) or "none"
            raise _Refusal(400, f"unknown setting(s) {', '.join(unknown)} for {name} (its settings: {known})")
        missing = sorted(app.required - set(fields))
        if missing or (app.fields and not fields):
            raise _Refusal(400, f"missing parameters: {name} needs {', '.join(missing or list(app.fields))}"
                           + ("" if missing else " (at least one)"))
        body: dict[str, Any] = {}
        for field, value in fields.items():
            if field in app.booleans:
                if value not in ("0", "1"):
                    raise _Refusal(400, f"{field} must be 0 or 1")
                body[app.fields[field]] = value == "1"
            else:
                body[app.fields[field]] = value
        if body:
            try:
                self.store.patch_tracking_settings(account, app.section, body, every_field=True)
            except SettingsError as exc:
                raise _Refusal(400, str(exc)) from None
        return _success(fmt)
