"""The ``Mailtrack`` Flask extension: configuration, the tracking blueprint, the ``tracking`` signal, Flask-Mail.

Configuration (``app.config``), all read once by :meth:`Mailtrack.init_app`:

``MAILTRACK_BASE_URL`` (required)
    Where the tracking URLs point, e.g. ``https://example.com/t``.
``MAILTRACK_SECRET_KEYS``
    The signing keys, oldest first (the last one signs); default ``[app.secret_key]``.
``MAILTRACK_TRACKING_SETTINGS``
    Account-level :class:`~mailtrack.TrackingSettings` (or their dict form).
``MAILTRACK_URL_PREFIX``
    Where the blueprint is mounted; default the path of ``MAILTRACK_BASE_URL``
    (``https://t.example.com`` mounts at the root, ``https://x.example/t`` at
    ``/t``). When set it must be that path (the URLs we sign must reach the
    blueprint), or the end of it when the app is served below a script root
    (``SCRIPT_NAME``): ``/t`` for an app at ``/app`` with tracking URLs at
    ``https://x.example/app/t``.
``MAILTRACK_TRUSTED_PROXIES``
    Addresses or networks (``["10.0.0.0/8"]``) of reverse proxies whose
    ``X-Forwarded-For`` is believed for the events' ``ip``; default none.
``MAILTRACK_MAX_AGE``
    Seconds after which click links stop redirecting (a 404); default never.
    Unsubscribe links never expire.
``MAILTRACK_DB``
    Optional SQLite path: events are stored there as well as signalled.
``MAILTRACK_PRIVACY_IP``, ``MAILTRACK_PRIVACY_USER_AGENT``
    Privacy mode (:mod:`mailtrack.delivery.privacy`): ``"full"`` (the default),
    ``"truncate"`` (IPv4 /24, IPv6 /48) or ``"none"`` for the address;
    ``"full"``, ``"family"`` or ``"none"`` for the user agent. Applied before
    the store and the signal see an event.
``MAILTRACK_MACHINE_RANGES``
    The IP ranges file of the machine-event classifier (:mod:`mailtrack.machine`;
    ``mailtrack serve --machine-ranges``) instead of the shipped one, or
    ``"off"``: no machine verdicts. Default: the shipped ranges.
``MAILTRACK_HONEYPOT``
    True adds the invisible honeypot link to every tracked HTML part
    (:mod:`mailtrack.core.rewrite.honeypot`); default False.
``MAILTRACK_ACCOUNT``
    Optional account (the parent or a subuser, see ``mailtrack subuser``) whose
    settings stored in ``MAILTRACK_DB`` (``PATCH /v3/tracking_settings/...``)
    every message gets: defaults < account < the message's own.
``MAILTRACK_TRACK_FLASK_MAIL``
    When true, every ``Mail.send`` of the ``flask_mail.Mail`` given to
    :meth:`Mailtrack.init_app` (``mail=``) is tracked, one copy per recipient.
``MAILTRACK_FAIL_SILENTLY_TRACKING``
    When false, a message whose tracking fails raises instead of going out
    untracked (default true); read by Flask-Mail and Flask-Mailman sending.

Every error is a :class:`~mailtrack.ConfigurationError` raised by ``init_app``,
naming the key, before anything is opened: the Flask-Mailman keys of
:mod:`mailtrack.contrib.flask.mailman` are checked here too, and a
``MAILTRACK_*`` key that none of these is (a misspelling) is refused.

Events reach :data:`tracking` (``sender=app``, ``event=`` a
:class:`~mailtrack.TrackingEvent`) through a :class:`~mailtrack.Recorder`,
which calls sinks on its own background thread after the store (if any) has
recorded the event: receivers run **outside** the request and its app
context, so a slow or failing receiver never delays or breaks the response
(failures are logged to the ``mailtrack`` logger), nor keeps the event from
the other receivers. Use the ``sender`` (the
app) to push an app context when a receiver needs one.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

import flask
from blinker import Namespace

from mailtrack.contrib._mailapi import add_list_unsubscribe, settings_for, tags_of
from mailtrack.core.tokens import TOKEN_FORMATS
from mailtrack.core.tracker import Tracker
from mailtrack.delivery.privacy import Privacy
from mailtrack.delivery.recorder import Recorder
from mailtrack.events import CallbackSink, TrackingEvent
from mailtrack.exceptions import ConfigurationError, MailtrackError
from mailtrack.http.endpoints import Endpoints, check_max_age, trusted_networks
from mailtrack.http.messages import MAX_BODY, Request, Response, too_large
from mailtrack.machine import classifier_for
from mailtrack.service import open_store
from mailtrack.storage.base import AccountStore, EventStore
from mailtrack.storage.settings_source import StoredSettings

__all__ = ["Mailtrack", "MailtrackState", "tracking"]

_signals = Namespace()

#: Sent for every recorded open, click and unsubscribe: ``sender`` is the Flask app, ``event`` the TrackingEvent.
#: Receivers run on mailtrack's background thread, not in the request (see the module docstring).
tracking = _signals.signal("mailtrack-tracking", doc="A TrackingEvent was recorded (sender=app, event=...).")

_WRAPPED = "_mailtrack_wrapped_send"
_OURS = "mailtrack.contrib."
#: Every ``MAILTRACK_*`` key of the app config read here or by :mod:`mailtrack.contrib.flask.mailman`.
_KEYS = frozenset({"MAILTRACK_BASE_URL", "MAILTRACK_SECRET_KEYS", "MAILTRACK_TRACKING_SETTINGS", "MAILTRACK_URL_PREFIX",
                   "MAILTRACK_TRUSTED_PROXIES", "MAILTRACK_MAX_AGE", "MAILTRACK_DB", "MAILTRACK_TRACK_FLASK_MAIL",
                   "MAILTRACK_MAILMAN_BACKEND", "MAILTRACK_SPLIT_RECIPIENTS", "MAILTRACK_FAIL_SILENTLY_TRACKING",
                   "MAILTRACK_ACCOUNT", "MAILTRACK_PRIVACY_IP", "MAILTRACK_PRIVACY_USER_AGENT",
                   "MAILTRACK_MACHINE_RANGES", "MAILTRACK_HONEYPOT", "MAILTRACK_TOKEN_FORMAT"})
log = logging.getLogger("mailtrack")


def config_flag(config: Any, key: str, default: bool) -> bool:
    """``config[key]`` (``default`` when absent), which must be True or False: a string such as "false" is refused."""
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ConfigurationError(f"{key} must be True or False, not {value!r}")
    return value


@dataclass
class MailtrackState:
    """What ``init_app`` built for one app, in ``app.extensions["mailtrack"]``."""

    tracker: Tracker
    recorder: Recorder
    endpoints: Endpoints
    store: EventStore | None
    track_flask_mail: bool

    def close(self) -> None:
        """Stop the recorder's threads (a last drain of its spool) and close the store."""
        self.recorder.close()
        close = getattr(self.store, "close", None)
        if callable(close):
            close()


class Mailtrack:
    """The Flask extension: ``Mailtrack(app)``, or ``Mailtrack()`` then :meth:`init_app` (app factories)."""

    def __init__(self, app: flask.Flask | None = None, *, mail: Any = None) -> None:
        self.mail = mail
        if app is not None:
            self.init_app(app, mail=mail)

    def init_app(self, app: flask.Flask, *, mail: Any = None) -> MailtrackState:
        """Read the ``MAILTRACK_*`` config of ``app``, register the blueprint and, if asked, wrap ``mail.send``."""
        config = app.config
        if "mailtrack" in app.extensions:
            raise ConfigurationError("this app already has a Mailtrack: call init_app once per app")
        unknown = sorted(key for key in config if isinstance(key, str) and key.startswith("MAILTRACK_") and key not in _KEYS)
        if unknown:
            raise ConfigurationError(f"the app config has unknown keys: {', '.join(unknown)}; mailtrack reads "
                                     f"{', '.join(sorted(_KEYS))}")
        base_url = config.get("MAILTRACK_BASE_URL")
        if not isinstance(base_url, str) or not base_url:
            raise ConfigurationError("MAILTRACK_BASE_URL is required: the URL the tracking endpoints are served at, "
                                     "e.g. 'https://example.com/t'")
        keys = config.get("MAILTRACK_SECRET_KEYS")
        if keys is None:
            if not app.secret_key:
                raise ConfigurationError("MAILTRACK_SECRET_KEYS is not set and the app has no SECRET_KEY to default to")
            keys = [app.secret_key]
        prefix = config.get("MAILTRACK_URL_PREFIX")
        if prefix is not None and (not isinstance(prefix, str) or not prefix.startswith("/")):
            raise ConfigurationError(f"MAILTRACK_URL_PREFIX must be a path starting with '/', not {prefix!r}")
        honeypot = config_flag(config, "MAILTRACK_HONEYPOT", False)
        token_format = config.get("MAILTRACK_TOKEN_FORMAT", "opaque")  # opaque: encrypted tokens; signed: readable
        if token_format not in TOKEN_FORMATS:
            raise ConfigurationError(f"MAILTRACK_TOKEN_FORMAT must be one of {', '.join(TOKEN_FORMATS)}, "
                                     f"not {token_format!r}")
        try:
            tracker = Tracker(keys, base_url, settings=config.get("MAILTRACK_TRACKING_SETTINGS"), honeypot=honeypot,
                              token_format=token_format)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} (MAILTRACK_SECRET_KEYS, MAILTRACK_BASE_URL)") from None
        except MailtrackError as exc:
            raise ConfigurationError(f"MAILTRACK_TRACKING_SETTINGS: {exc}") from None
        base_path = urlsplit(tracker.base_url).path.rstrip("/")
        if prefix is None:
            prefix = base_path or "/"
        mounted = prefix.rstrip("/")
        # Its end will do: what comes before it is then the script root (SCRIPT_NAME) the app is served below.
        if base_path != mounted and not (mounted and base_path.endswith(mounted)):
            raise ConfigurationError(
                f"MAILTRACK_URL_PREFIX {prefix!r} must be the path of MAILTRACK_BASE_URL {base_url!r} "
                f"({base_path or '/'!r}), or its end when the app is served below a script root: tracking URLs "
                "would not reach the blueprint")
        proxies = config.get("MAILTRACK_TRUSTED_PROXIES", ())
        try:
            trusted_networks(proxies)
        except ConfigurationError as exc:
            raise ConfigurationError(f"MAILTRACK_TRUSTED_PROXIES: {exc}") from None
        max_age = config.get("MAILTRACK_MAX_AGE")
        try:
            check_max_age(max_age)
        except ConfigurationError as exc:
            raise ConfigurationError(f"MAILTRACK_MAX_AGE: {exc}") from None
        try:
            privacy = Privacy(ip=config.get("MAILTRACK_PRIVACY_IP", "full"),
                              user_agent=config.get("MAILTRACK_PRIVACY_USER_AGENT", "full"))
        except ConfigurationError as exc:
            raise ConfigurationError(f"MAILTRACK_PRIVACY_IP / MAILTRACK_PRIVACY_USER_AGENT: {exc}") from None
        try:
            classifier = classifier_for(config.get("MAILTRACK_MACHINE_RANGES"))
        except ConfigurationError as exc:
            raise ConfigurationError(f"MAILTRACK_MACHINE_RANGES: {exc}") from None
        track_mail = config_flag(config, "MAILTRACK_TRACK_FLASK_MAIL", False)
        # Read when Flask-Mailman sends (mailtrack.contrib.flask.mailman): checked now, at start-up, all the same.
        config_flag(config, "MAILTRACK_SPLIT_RECIPIENTS", True)
        config_flag(config, "MAILTRACK_FAIL_SILENTLY_TRACKING", True)
        backend = config.get("MAILTRACK_MAILMAN_BACKEND")
        if str(getattr(backend, "__module__", None) if isinstance(backend, type) else backend).startswith(_OURS):
            raise ConfigurationError("MAILTRACK_MAILMAN_BACKEND names mailtrack's own backend: "
                                     "name the one that really sends, e.g. 'smtp'")
        mail = mail if mail is not None else self.mail
        if track_mail and mail is None:
            raise ConfigurationError("MAILTRACK_TRACK_FLASK_MAIL needs the flask_mail.Mail instance: "
                                     "Mailtrack(app, mail=mail) or init_app(app, mail=mail)")
        db = config.get("MAILTRACK_DB")
        account = config.get("MAILTRACK_ACCOUNT")
        if account is not None and (not isinstance(account, str) or not account or not db):
            raise ConfigurationError(f"MAILTRACK_ACCOUNT must name an account (the parent or a subuser) and needs "
                                     f"MAILTRACK_DB, the database holding its settings, not {account!r}")
        store = open_store(db) if db else None
        if account is not None:
            if not isinstance(store, AccountStore) or store.account(account) is None:
                getattr(store, "close", lambda: None)()
                raise ConfigurationError(f"MAILTRACK_ACCOUNT: no account called {account!r} in {db!r} "
                                         f"(mailtrack subuser create {account} --db {db})")
            # The same keys, URL and settings, now with the account's stored settings under each message's.
            tracker = Tracker(keys, base_url, settings=config.get("MAILTRACK_TRACKING_SETTINGS"),
                              account_settings=StoredSettings(store), account=account, honeypot=honeypot,
                              token_format=token_format)

        def signal(event: TrackingEvent) -> None:
            # Each receiver on its own, as Django's send_robust: blinker's send() stops at the first that raises.
            for receiver in tracking.receivers_for(app):
                try:
                    receiver(app, event=event)
                except Exception:
                    log.exception("mailtrack: tracking signal receiver %r raised", receiver)

        recorder = Recorder(store, [CallbackSink(signal)], privacy=privacy)
        state = MailtrackState(tracker, recorder, Endpoints(tracker, recorder, trusted_proxies=proxies, max_age=max_age,
                                                                 classifier=classifier), store, track_mail)
        app.extensions["mailtrack"] = state
        app.register_blueprint(_blueprint(tracker, prefix.rstrip("/")))
        if track_mail:
            _wrap_send(mail)
        return state

    # -- Flask-Mail ---------------------------------------------------------------------
    def track(self, message: Any, recipient: str | None = None, message_id: str | None = None) -> Any:
        """Track a ``flask_mail.Message`` in place for one recipient, and return it.

        ``.html`` gets tracked links and the open pixel; ``.body`` gets tracked
        URLs when ``click_tracking.enable_text`` is on; with subscription
        tracking, ``extra_headers`` get RFC 8058's ``List-Unsubscribe`` and
        ``List-Unsubscribe-Post`` (unless the message has its own). ``recipient`` defaults to
        the message's only recipient (To, Cc and Bcc together); a message to
        several people is tracked without a recipient (its events say
        ``recipient=None``): send one message per recipient, or set
        ``MAILTRACK_TRACK_FLASK_MAIL``, to tell readers apart. The anymail
        attributes ``track_opens``, ``track_clicks``, ``metadata``, ``tags`` and
        ``tracking_settings`` set on the message are honoured, as in Django.
        ``message_id`` defaults to ``message.msgId`` without its angle brackets.
        Needs the app context of an app ``init_app`` set up.
        """
        return _track(_state(), message, recipient, message_id)


def _state() -> MailtrackState:
    state = flask.current_app.extensions.get("mailtrack")
    if not isinstance(state, MailtrackState):
        raise ConfigurationError("this app has no Mailtrack: call Mailtrack(app) or init_app(app) first")
    return state


def _addresses(message: Any) -> Iterator[tuple[Any, str]]:
    """Each distinct recipient of ``message`` (To, then Cc, then Bcc) as given and as a bare address."""
    seen: set[str] = set()
    for given in [*message.recipients, *(message.cc or []), *(message.bcc or [])]:
        address = given[1] if isinstance(given, tuple) else parseaddr(given)[1] or given
        if address.lower() not in seen:
            seen.add(address.lower())
            yield given, address


def _track(state: MailtrackState, message: Any, recipient: str | None, message_id: str | None) -> Any:
    if recipient is None:
        addresses = [address for _, address in _addresses(message)]
        recipient = addresses[0] if len(addresses) == 1 else None
    if message_id is None:
        message_id = str(message.msgId).strip().strip("<>")
    tracker = state.tracker
    metadata = getattr(message, "metadata", None)
    common: dict[str, Any] = {"message_id": message_id, "recipient": recipient, "settings": settings_for(message) or None,
                              "metadata": dict(metadata) if metadata else None, "tags": tags_of(message)}
    opted_out: list[str] = []
    if message.html is not None:
        result = tracker.rewrite_html(message.html, **common)
        message.html = result.html
        opted_out = [link.url for link in result.skipped if link.reason == "opt-out"]
    if message.body is not None:  # rewrite_text leaves it alone unless click_tracking.enable_text is on
        message.body = tracker.rewrite_text(message.body, exclude=opted_out, **common).text
    if tracker.settings.merged(common["settings"]).subscription_tracking.enable:
        message.extra_headers = dict(message.extra_headers or {})
        add_list_unsubscribe(message, tracker.tracking_url("unsubscribe", message_id=message_id, recipient=recipient,
                                                           metadata=common["metadata"], tags=common["tags"]))
    return message


def _wrap_send(mail: Any) -> None:
    """Make ``mail.send`` track each message, one copy per recipient, when the current app asks for it.

    Each copy is the message with ``recipients=[that recipient]`` and no Cc or
    Bcc, so each recipient sees only their own address in ``To`` (as with a
    provider's per-recipient personalizations); all copies keep the original
    ``Message-ID`` so their events share the ``message_id``. Wrapped once per
    ``Mail`` instance, which may serve several apps (app factories): the
    current app's config decides. Only ``mail.send`` is wrapped: messages sent
    on a connection of your own (``with mail.connect() as conn: conn.send(m)``)
    are not tracked; call :meth:`Mailtrack.track` on each of those. If sending
    one copy fails, the copies before it have been sent. Tracking fails open,
    as in the Django and Flask-Mailman backends: if tracking raises, the
    message is sent as it was and the failure logged (raised instead when
    ``MAILTRACK_FAIL_SILENTLY_TRACKING`` is false).
    """
    if getattr(mail, _WRAPPED, None) is not None:
        return
    original = mail.send

    def send(message: Any) -> None:
        state = flask.current_app.extensions.get("mailtrack")
        addresses = list(_addresses(message))
        if not isinstance(state, MailtrackState) or not state.track_flask_mail or not addresses:
            original(message)  # not ours to track (no recipients: Flask-Mail's own error)
            return
        try:  # every copy tracked before any is sent: a failure cannot leave some recipients served
            copies = [_track(state, _copy_for(message, given), address, None) for given, address in addresses]
        except Exception:
            if not config_flag(flask.current_app.config, "MAILTRACK_FAIL_SILENTLY_TRACKING", True):
                raise
            log.exception("mailtrack: tracking failed; the message is sent untracked")
            original(message)
            return
        with mail.connect() as connection:  # one SMTP session for all the copies, as Flask-Mail's bulk sending does
            for tracked in copies:
                connection.send(tracked)

    setattr(mail, _WRAPPED, original)
    mail.send = send


def _copy_for(message: Any, given: Any) -> Any:
    """A copy of ``message`` addressed to ``given`` alone, sharing nothing mutable with it."""
    single = copy.copy(message)
    # Flask-Mail keeps .html in the .alts dict: a shallow copy would share it and rewrite the caller's message.
    single.alts = dict(getattr(message, "alts", None) or {})
    single.extra_headers = dict(message.extra_headers) if message.extra_headers else message.extra_headers
    single.recipients, single.cc, single.bcc = [given], [], []
    single.attachments = list(message.attachments)
    return single


# -- the blueprint --------------------------------------------------------------------------
def _blueprint(tracker: Tracker, prefix: str) -> flask.Blueprint:
    """The open, click and unsubscribe routes under ``prefix``, all answered by the shared endpoints."""
    blueprint = flask.Blueprint("mailtrack", __name__, url_prefix=prefix or None)
    for kind, path in tracker.layout.paths.items():
        blueprint.add_url_rule(f"/{path}/<path:token>", endpoint=kind, view_func=_view,
                               methods=["GET", "HEAD", "POST"], provide_automatic_options=False)
    return blueprint


def _view(token: str) -> flask.Response:
    """Translate the Flask request for the endpoints and their answer back (HEAD: headers only, no body)."""
    request = flask.request
    refused = too_large(request.content_length)
    if refused is not None:
        return _flask_response(refused)
    body = b""
    if request.method == "POST":  # a chunked body declares no length: read one byte past the limit, no more
        body = request.stream.read(MAX_BODY + 1)
        refused = too_large(len(body))
        if refused is not None:
            return _flask_response(refused)
    answer = _state().endpoints.handle(Request(
        method=request.method,
        path=request.script_root + request.path,  # the full path, as the tracking URL has it
        query=request.query_string.decode("latin-1"),
        headers={name.lower(): value for name, value in request.headers.items()},
        remote_addr=request.remote_addr,
        body=body,
    ))
    return _flask_response(answer, head=request.method == "HEAD")


def _flask_response(answer: Response, *, head: bool = False) -> flask.Response:
    headers = answer.safe_headers  # a last guard against response splitting, as every adapter
    response = flask.Response(b"" if head else answer.body, status=answer.status)
    # Ours replace werkzeug's defaults: a HEAD keeps the Content-Length of its GET (werkzeug would say 0).
    response.headers.clear()
    response.headers.extend(headers)
    return response
