"""Webhook delivery: POST each event to your endpoint, signed, from a durable outbox.

Events are queued in the store's ``outbox`` table in the same transaction that
records them (see :class:`~mailtrack.delivery.recorder.Recorder`'s ``outbox``), so a
receiver that is down loses nothing: :class:`WebhookDelivery` retries with
exponential backoff until it answers 2xx, across restarts.

Each request is a JSON body ``{"type": "email.opened" | "email.clicked" |
"email.unsubscribed", "created_at": ..., "data": {event fields}}`` with the
header ``Mailtrack-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>." + body>`` (the timestamp is signed, so a captured request cannot be
replayed later) and ``Mailtrack-Event-Id`` for de-duplication: delivery is at
least once. :func:`verify_signature` checks a request on the receiving side.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from mailtrack.events import TrackingEvent
from mailtrack.exceptions import ConfigurationError, WebhookSignatureError
from mailtrack.storage.base import EventStore, OutboxItem, StoreUnavailable

__all__ = [
    "MIN_SECRET_BYTES", "SIGNATURE_HEADER", "WebhookDelivery", "check_url", "payload", "secret_key", "sign", "verify_signature",
]

log = logging.getLogger("mailtrack")
SIGNATURE_HEADER = "Mailtrack-Signature"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed delivery: following it would turn the POST into a bodiless GET."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def payload(event: TrackingEvent) -> bytes:
    """The JSON body posted for ``event``."""
    body = {
        "type": f"email.{event.event_type.value}",  # email.opened, email.clicked, email.unsubscribed
        "created_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "data": event.to_dict(),
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


#: Shortest webhook secret accepted, in bytes (UTF-8 for str): an HMAC key shorter than this is guessable.
MIN_SECRET_BYTES = 16
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() is true for "²", which int() refuses


def check_url(url: object) -> str:
    """``url`` if it is an absolute http(s) URL with a host; :class:`ConfigurationError` otherwise."""
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"webhook URL must be an absolute http(s) URL, not {url!r}")
    assert isinstance(url, str)
    return url


def secret_key(secret: object) -> bytes:
    """``secret`` as HMAC key bytes; :class:`ConfigurationError` unless it is a str or bytes of 16+ bytes."""
    if isinstance(secret, str):
        key = secret.encode("utf-8", "surrogatepass")
    elif isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    else:
        raise ConfigurationError(f"a webhook secret must be a str or bytes, not {type(secret).__name__}")
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"a webhook secret must be at least {MIN_SECRET_BYTES} bytes long, not {len(key)} "
            "(--webhook-secret / MAILTRACK_WEBHOOK_SECRET; make one with "
            "python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return key


def sign(body: bytes, secret: str | bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp``.

    Raises :class:`~mailtrack.exceptions.ConfigurationError` for a secret shorter than 16 bytes.
    """
    return _sign(body, secret_key(secret), timestamp)


def _sign(body: bytes, key: bytes, timestamp: int) -> str:
    digest = hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(body: bytes, header: str, secrets: str | bytes | Iterable[str | bytes], *, tolerance: float = 300,
                     now: float | None = None) -> dict[str, object]:
    """Check a received webhook; return its parsed JSON object or raise :class:`~mailtrack.WebhookSignatureError`.

    ``secrets`` may be several (rotation on the receiving side), and the header
    may carry several ``v1=`` signatures (rotation on the sending side): one
    match is enough. Refuses a timestamp more than ``tolerance`` seconds from
    ``now``. Signatures are compared in constant time. Every refusal of the
    request (missing or malformed header, stale timestamp, no match, a signed
    body that is not a JSON object) is a ``WebhookSignatureError`` carrying the
    header; a secret shorter than 16 bytes (or none) is the receiver's own
    mistake and raises :class:`~mailtrack.exceptions.ConfigurationError`.
    """
    if isinstance(secrets, (str, bytes, bytearray)):
        keys = [secret_key(secrets)]
    elif isinstance(secrets, Iterable):
        keys = [secret_key(secret) for secret in secrets]
    else:
        raise ConfigurationError(f"webhook secrets must be a str, bytes or a list of them, not {type(secrets).__name__}")
    if not keys:
        raise ConfigurationError("no webhook secret given to verify_signature")
    if not isinstance(header, str):
        raise WebhookSignatureError(f"missing or non-text {SIGNATURE_HEADER} header", header=None)
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise WebhookSignatureError("webhook body must be the raw request bytes", header=header)
    body = bytes(body)
    timestamp: int | None = None
    given: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and _TIMESTAMP.fullmatch(value):
            timestamp = int(value)
        elif key == "v1":
            given.append(value.encode("utf-8", "replace"))  # compare_digest refuses non-ASCII str
    if timestamp is None or not given:
        raise WebhookSignatureError("malformed webhook signature header", header=header)
    current = time.time() if now is None else now
    if not abs(current - timestamp) <= tolerance:  # "not <=": a NaN clock or tolerance refuses
        raise WebhookSignatureError("webhook signature timestamp is outside the tolerance", header=header)
    for secret in keys:
        expected = _sign(body, secret, timestamp).split("v1=", 1)[1].encode("ascii")
        if any(hmac.compare_digest(expected, candidate) for candidate in given):
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                data = None
            if not isinstance(data, dict):
                raise WebhookSignatureError("signed webhook body is not a JSON object", header=header)
            return data
    raise WebhookSignatureError("webhook signature does not match", header=header)


class WebhookDelivery:
    """Delivers the outbox rows for ``url`` from a background thread.

    Backoff after the n-th failed attempt is ``backoff * 2**(n-1)`` seconds,
    capped at ``max_backoff``: with the defaults a receiver may be down for
    about 31 hours. After ``max_attempts`` the row is marked dead (kept, with
    its last error); :meth:`EventStore.outbox_requeue` (``mailtrack
    webhooks --requeue``) gives dead rows a fresh start.
    """

    def __init__(
        self,
        store: EventStore,
        url: str,
        secret: str | bytes,
        *,
        backoff: float = 1.0,
        max_backoff: float = 3600.0,
        max_attempts: int = 40,
        timeout: float = 10.0,
        poll_interval: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_url(url)
        self._key = secret_key(secret)  # ConfigurationError for a secret shorter than 16 bytes
        self.store = store
        self.url = url
        self.secret = secret
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookDelivery:
        self._thread = threading.Thread(target=self._loop, name="mailtrack-webhook", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except StoreUnavailable as exc:  # the store is busy or failing: the next poll tries again
                log.warning("mailtrack: webhook outbox not readable now (%s); retrying", exc)
            except Exception:
                log.exception("mailtrack: webhook delivery loop failed; retrying")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def deliver_due(self) -> int:
        """Attempt every due delivery once; returns how many succeeded."""
        done = 0
        lease = self.timeout + 30  # long enough for one attempt; a dead worker's row comes back after it
        while not self._stop.is_set():
            # One row per claim: a slow receiver never holds rows it is not posting yet.
            claimed = self.store.outbox_claim(self.url, self.clock(), lease, limit=1)
            if not claimed:
                break
            done += self._attempt(claimed[0])
        return done

    def _attempt(self, item: OutboxItem) -> int:
        body = payload(item.event)
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "mailtrack-webhook",
                SIGNATURE_HEADER: _sign(body, self._key, int(self.clock())),
                "Mailtrack-Event-Id": item.event.event_id,
            },
        )
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            status, error = 0, str(getattr(exc, "reason", exc))
        else:
            error = f"HTTP {status}"
        if 200 <= status < 300:
            self.store.outbox_delivered(item.id, self.clock())
            return 1
        attempts = item.attempts + 1
        if attempts >= self.max_attempts:
            log.error("mailtrack: webhook gave up on event %s after %d attempts (%s)", item.event.event_id, attempts, error)
            self.store.outbox_failed(item.id, error, None)
        else:
            delay = min(self.backoff * 2 ** (attempts - 1), self.max_backoff)
            log.warning("mailtrack: webhook attempt %d for event %s failed (%s); retry in %.1fs",
                        attempts, item.event.event_id, error, delay)
            self.store.outbox_failed(item.id, error, self.clock() + delay)
        return 0
