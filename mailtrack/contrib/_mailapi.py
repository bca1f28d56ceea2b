"""Tracking for Django-shaped email messages, whichever framework sends them.

Django's ``EmailMessage`` and Flask-Mailman's (a port of Django's mail API)
share the attributes used here: ``to``/``cc``/``bcc``, ``recipients()``,
``extra_headers``, ``body``, ``content_subtype``, ``alternatives`` and
``from_email``; both build the To and Cc headers from ``extra_headers`` first
and the envelope from ``recipients()``. This module works on that shape and
imports no framework.

Both :mod:`mailtrack.contrib.django.backend` and the Flask-Mailman backend
send through :func:`prepare`: each envelope recipient once (a
named and a bare address are one person; the tokens name the bare address),
one copy per recipient sent to that address alone with the original To and
Cc headers shown (Bcc hidden), every copy sharing the ``Message-ID``; HTML
(the body when ``content_subtype`` is ``"html"`` and every ``text/html``
alternative) and, with ``click_tracking.enable_text``, the plain body
rewritten; with subscription tracking, RFC 8058's ``List-Unsubscribe`` and
``List-Unsubscribe-Post`` headers added (unless the message has its own); the
caller's message never changed; and tracking fails open when asked to (the
message is sent as it was, the failure logged).

Per-message attributes, as django-anymail spells them: ``track_opens``,
``track_clicks`` (bool), ``metadata`` (dict, signed into the tokens), ``tags``
(list of str, signed into the tokens and given back in every event) and
``tracking_settings`` (SendGrid-shaped, highest precedence).

Without splitting, a message to several people goes out as one copy tracked
without a recipient: its tokens name none, and so do its events.

Behind django-anymail: a tracked copy says ``track_clicks = False`` (and
``track_opens = False``) when we tracked its clicks (opens), so the ESP does
not wrap the links a second time; ``metadata`` and ``tags`` go through to it
unchanged. The ``anymail_status`` the ESP backend sets on each copy is merged
onto the caller's message, which is where anymail users read it.
"""

from __future__ import annotations

import copy
import logging
import re
import smtplib
from collections.abc import Callable, Mapping, Sequence
from email.utils import make_msgid, parseaddr
from typing import Any

from mailtrack.core.tracker import Tracker
from mailtrack.exceptions import ArgumentError

__all__ = ["add_list_unsubscribe", "addressed_to", "message_id", "prepare", "recipients", "send_tracked", "settings_for", "tags_of", "track"]

log = logging.getLogger("mailtrack")
_HIDDEN = {"to", "cc", "bcc"}
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def _msgid_domain(from_email: Any) -> str:
    """The sender's domain as ASCII for a Message-ID (IDNA for a non-ASCII one), or ``mailtrack.invalid``."""
    domain = parseaddr(str(from_email or ""))[1].rpartition("@")[2]
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "mailtrack.invalid"
    return domain if _DOMAIN.fullmatch(domain) else "mailtrack.invalid"


def _text(value: Any) -> Any:
    """``value`` as Django's ``force_str`` sees it when it builds the message: lazy text (``gettext_lazy``) made str.

    str, bytes and None are returned as they are.
    """
    return value if value is None or isinstance(value, (str, bytes)) else str(value)


def message_id(msg: Any) -> str:
    """The message's Message-ID (without angle brackets), set in ``extra_headers`` when it had none."""
    for name, value in msg.extra_headers.items():
        if name.lower() == "message-id" and str(value).strip():
            return str(value).strip().strip("<>")
    value = make_msgid(domain=_msgid_domain(msg.from_email))
    msg.extra_headers["Message-ID"] = value
    return value.strip("<>")


def recipients(msg: Any) -> list[tuple[str, str]]:
    """Each envelope recipient once, as ``(address as given, bare address for the tokens)``.

    ``"Ann <ann@x>"`` in To and ``ann@x`` in Cc are one person: one copy, and
    the tokens name ``ann@x`` (compared case-insensitively).
    """
    seen: set[str] = set()
    unique = []
    for given in msg.recipients():
        bare = parseaddr(str(given))[1] or str(given)
        if bare.lower() not in seen:
            seen.add(bare.lower())
            unique.append((str(given), bare))
    return unique


def settings_for(msg: Any) -> dict[str, Any]:
    """The message's own tracking settings: ``track_opens``/``track_clicks``, under its ``tracking_settings``."""
    merged: dict[str, Any] = {}
    for attribute, section in (("track_opens", "open_tracking"), ("track_clicks", "click_tracking")):
        value = getattr(msg, attribute, None)
        if value is not None:
            merged[section] = {"enable": bool(value)}
    own = getattr(msg, "tracking_settings", None)
    if own is not None:
        if not isinstance(own, Mapping):
            raise ArgumentError(f"tracking_settings must be a dict, not {type(own).__name__}")
        for section, value in own.items():
            if isinstance(value, Mapping) and isinstance(merged.get(section), dict):
                merged[section] = {**merged[section], **value}
            else:
                merged[section] = value
    return merged


def tags_of(msg: Any) -> list[str] | None:
    """``msg.tags`` as a list of str (anymail's attribute), or None; one str is refused, not split into letters."""
    tags = getattr(msg, "tags", None)
    if tags is None:
        return None
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)) or not all(isinstance(tag, str) for tag in tags):
        raise ArgumentError(f"tags must be a list of str, not {tags!r}")
    return list(tags)


def track(tracker: Tracker, msg: Any, msg_id: str, recipient: str | None) -> Any:
    """A copy of ``msg`` whose HTML (and text, if enabled) carries tracking for ``recipient`` (None: nobody named)."""
    tracked = copy.copy(msg)
    tracked.extra_headers = dict(msg.extra_headers)
    own = settings_for(msg)
    metadata = getattr(msg, "metadata", None)
    common: dict[str, Any] = {"message_id": msg_id, "recipient": recipient, "settings": own or None,
                              "metadata": dict(metadata) if metadata else None, "tags": tags_of(msg)}
    opted_out: list[str] = []
    body = _text(msg.body)
    if msg.content_subtype == "html":
        result = tracker.rewrite_html(body, **common)
        tracked.body = result.html
        opted_out += [link.url for link in result.skipped if link.reason == "opt-out"]
    alternatives = getattr(msg, "alternatives", None)
    if alternatives:
        rewritten: list[Any] = []
        for alternative in alternatives:
            content, mimetype = _text(alternative[0]), alternative[1]
            if isinstance(content, str) and str(mimetype).split(";")[0].strip().lower() == "text/html":
                result = tracker.rewrite_html(content, **common)
                opted_out += [link.url for link in result.skipped if link.reason == "opt-out"]
                content = result.html
                alternative = alternative._replace(content=content) if hasattr(alternative, "_replace") \
                    else (content, mimetype)
            rewritten.append(alternative)
        tracked.alternatives = rewritten
    if msg.content_subtype != "html" and isinstance(body, str) and body:
        tracked.body = tracker.rewrite_text(body, exclude=opted_out, **common).text
    resolved = tracker.settings.merged(own or None)
    if resolved.subscription_tracking.enable:
        add_list_unsubscribe(tracked, tracker.tracking_url("unsubscribe", message_id=msg_id, recipient=recipient,
                                                        metadata=common["metadata"], tags=common["tags"]))
    if resolved.click_tracking.enable:
        tracked.track_clicks = False  # tracked here: an ESP behind anymail must not wrap the links again
    if resolved.open_tracking.enable:
        tracked.track_opens = False
    return tracked


def add_list_unsubscribe(msg: Any, url: str) -> None:
    """RFC 8058 one-click headers on ``msg`` (``List-Unsubscribe``, and ``-Post`` for https), as the core's
    :meth:`~mailtrack.Tracker.rewrite_message` adds them: never over the message's own ``List-Unsubscribe``."""
    if any(name.lower() == "list-unsubscribe" for name in msg.extra_headers) or len(url) > 975:
        return  # the message's own; or a URL too long for one header line (998 characters)
    msg.extra_headers["List-Unsubscribe"] = f"<{url}>"
    if url.startswith("https://") and not any(name.lower() == "list-unsubscribe-post" for name in msg.extra_headers):
        msg.extra_headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"


def addressed_to(msg: Any, recipient: str, *, show_all: bool = True) -> Any:
    """``msg`` sent to ``recipient`` alone, its To and Cc headers still showing the original lists.

    With ``show_all=False`` the copy is simply addressed ``To: recipient`` (no
    Cc): for backends that cannot send a To header other than the envelope,
    such as django-anymail's (its ESPs refuse "spoofing the To header").
    """
    single = copy.copy(msg)
    if not show_all:
        single.extra_headers = {name: value for name, value in msg.extra_headers.items() if name.lower() not in _HIDDEN}
        single.to, single.cc, single.bcc = [recipient], [], []
        return single
    headers = {name: value for name, value in msg.extra_headers.items() if name.lower() not in _HIDDEN}
    for header, values in (("To", msg.to), ("Cc", msg.cc)):
        given = [value for name, value in msg.extra_headers.items() if name.lower() == header.lower()]
        if given:
            headers[header] = given[0]
        elif values:
            headers[header] = ", ".join(str(value) for value in values)
    single.extra_headers = headers
    # The envelope comes from recipients() = to + cc + bcc, and the To/Cc headers from extra_headers first.
    single.to, single.cc, single.bcc = [], [], [recipient]
    return single


def prepare(
    tracker: Tracker, msg: Any, *, split_recipients: bool = True, fail_silently: bool = True, show_all: bool = True
) -> list[Any]:
    """The copies to send for ``msg``: tracked ones, or ``[msg]`` itself when tracking is not possible.

    No recipients: no copies (nothing to send). With ``fail_silently``, a
    failure while tracking is logged and ``msg`` is sent untracked; without,
    it is raised. Without ``split_recipients`` a message to several people is
    one copy tracked without a recipient (its events say ``recipient=None``).
    ``show_all`` is :func:`addressed_to`'s.
    """
    addresses = recipients(msg)
    if not addresses:
        return []
    try:
        original = copy.copy(msg)
        original.extra_headers = dict(msg.extra_headers)
        msg_id = message_id(original)
        if split_recipients:
            return [track(tracker, addressed_to(original, given, show_all=show_all), msg_id, bare)
                    for given, bare in addresses]
        return [track(tracker, original, msg_id, addresses[0][1] if len(addresses) == 1 else None)]
    except Exception:
        if not fail_silently:
            raise
        log.exception("mailtrack: tracking failed; the message is sent untracked")
        return [msg]


def _carry_status(msg: Any, copies: Sequence[Any]) -> None:
    """Merge the ``anymail_status`` django-anymail set on each copy onto ``msg`` (duck-typed: anymail is not imported)."""
    found: list[Any] = [getattr(c, "anymail_status", None) for c in copies if c is not msg]
    statuses = [s for s in found if isinstance(getattr(s, "recipients", None), dict)]
    if not statuses or not hasattr(statuses[0], "set_recipient_status"):
        return
    merged = type(statuses[0])()
    for status in statuses:
        if status.recipients:
            merged.set_recipient_status(status.recipients)
        merged.esp_response = getattr(status, "esp_response", None)
    msg.anymail_status = merged


def _send_copies(connection: Any, copies: Sequence[Any]) -> bool:
    """Send the copies of one message; whether it went out, as one SMTP transaction to all its recipients would.

    That transaction goes to the recipients the server accepts, and raises
    ``SMTPRecipientsRefused`` only when it accepts none: so a copy whose
    recipient is refused does not stop the copies after it, and the message
    counts as sent when every other copy was, and at least one was.
    """
    if len(copies) == 1:
        return bool(connection.send_messages(copies) == 1)
    went, refused = 0, {}
    for single in copies:
        try:
            went += connection.send_messages([single])
        except smtplib.SMTPRecipientsRefused as exc:
            refused.update(exc.recipients)
    if refused and not went:
        raise smtplib.SMTPRecipientsRefused(refused)
    return went > 0 and went + len(refused) >= len(copies)


class TrackingConnection:
    """What every tracking backend does the same way around the backend it wraps (``self.connection``).

    ``open``/``close`` are the wrapped backend's; ``send_messages`` sends the
    copies :meth:`copies_of` makes for each message through :func:`send_tracked`,
    one batch at a time under ``self._lock`` (an ``RLock`` the subclass makes
    first thing in ``__init__``), as Django's and Flask-Mailman's SMTP backends
    lock: another thread's batch would otherwise close the wrapped connection
    under this one. Put it before the framework's ``BaseEmailBackend`` in the bases.
    """

    connection: Any
    _lock: Any  # a threading.RLock

    def open(self) -> Any:
        """Open the wrapped backend's connection (its return value: True when it opened one)."""
        return self.connection.open()

    def close(self) -> None:
        """Close the wrapped backend's connection."""
        self.connection.close()

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send each message, tracked; the number of the caller's messages the wrapped backend sent (every copy)."""
        with self._lock:
            return send_tracked(self.connection, email_messages, self.copies_of)

    def copies_of(self, msg: Any) -> list[Any]:
        """The copies to send for ``msg`` (see :func:`prepare`)."""
        raise NotImplementedError


def send_tracked(connection: Any, messages: Sequence[Any], copies_of: Callable[[Any], list[Any]]) -> int:
    """Send ``copies_of(msg)`` for each message over ``connection``; how many of ``messages`` went out whole.

    The wrapped connection is opened once for the batch and closed only if it
    was opened here; a message counts as sent when the connection took every
    one of its copies but those whose recipient the server refused
    (:func:`_send_copies`; nothing is ever retried, so nothing is sent twice).
    """
    if not messages:
        return 0
    opened = connection.open()
    try:
        sent = 0
        for msg in messages:
            copies = copies_of(msg)
            try:
                if copies and _send_copies(connection, copies):
                    sent += 1
            finally:
                _carry_status(msg, copies)
        return sent
    finally:
        if opened:
            connection.close()
