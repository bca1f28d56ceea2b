"""Webhook delivery: POST each event to your endpoint, signed, from a durable outbox.

Events are queued in the store's ``outbox`` table in the same transaction that
records them (see :class:`~mailtrack.delivery.recorder.Recorder`'s ``outbox``), so a
receiver that is down loses nothing: :class:`WebhookDelivery` retries with
jittered exponential backoff until it answers 2xx, across restarts.

Each request is a JSON body ``{"type": "email.opened" | "email.clicked" |
"email.unsubscribed", "created_at": <when the event happened>, "data": {event
fields}}``, signed as the `Standard Webhooks <https://www.standardwebhooks.com/>`_
specification says, so receivers verify it with the ``standardwebhooks`` or
``svix`` libraries:

* ``webhook-id`` (the event id, the same on every retry: de-duplicate on it;
  delivery is at least once), ``webhook-timestamp`` (Unix seconds of the
  attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of
  "id.timestamp.body">``, one ``v1,...`` per secret, space-separated, while
  secrets rotate; the same three values again as ``svix-id``,
  ``svix-timestamp`` and ``svix-signature``.
* Secrets are ``whsec_`` + base64 of random bytes (:func:`new_secret`; 24 to 64
  bytes as the specification advises, 16 at least). ``--webhook-secret`` takes
  one, or several separated by spaces while rotating (all sign). A secret
  without the ``whsec_`` prefix (the form before 0.2) is used as its UTF-8
  bytes; its Standard Webhooks form is :func:`standard_secret` of it.
* Deprecated, kept for one release: ``Mailtrack-Signature: t=<unix
  seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` (one ``v1=`` per secret)
  and ``Mailtrack-Event-Id``; :func:`verify_signature` checks them.

The signing is the ``standardwebhooks`` package's (``pip install
'mailtrack[serve]'``); the HTTP is :mod:`.http_client` on an event loop:
kept-alive connections, many POSTs in flight from one thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hashlib
import hmac
import json
import logging
import random
import re
import secrets as _secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from mailtrack.delivery.http_client import PostClient, PostFailed
from mailtrack.events import TrackingEvent
from mailtrack.exceptions import ConfigurationError, WebhookSignatureError
from mailtrack.storage.base import EventStore, OutboxItem, StoreUnavailable

__all__ = [
    "MIN_SECRET_BYTES", "SIGNATURE_HEADER", "WebhookDelivery", "check_url", "new_secret", "payload", "secret_key",
    "retry_after", "secret_keys", "sign", "standard_headers", "standard_secret", "verify_signature",
]

log = logging.getLogger("mailtrack")
#: The deprecated signature header (kept for one release beside the Standard Webhooks ones).
SIGNATURE_HEADER = "Mailtrack-Signature"
_WHSEC = "whsec_"


def payload(event: TrackingEvent) -> bytes:
    """The JSON body posted for ``event``: the same bytes on every attempt (``created_at`` is when it happened)."""
    body = {
        "type": f"email.{event.event_type.value}",  # email.opened, email.clicked, email.unsubscribed
        "created_at": event.timestamp.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
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


def new_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return _WHSEC + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def standard_secret(secret: str | bytes) -> str:
    """The ``whsec_`` form of ``secret``, for a receiver's Standard Webhooks library (a ``whsec_`` secret is returned as is)."""
    keys = secret_keys(secret)
    if len(keys) != 1:
        raise ConfigurationError("standard_secret takes one secret, not several")
    if isinstance(secret, str) and _whsec_key(secret) is not None:
        return secret
    return _WHSEC + base64.b64encode(keys[0]).decode("ascii")


def secret_key(secret: object) -> bytes:
    """One secret as HMAC key bytes: a ``whsec_`` secret's decoded bytes, any other str's UTF-8 bytes, or bytes.

    A str that starts with ``whsec_`` but is not base64 after it is taken as
    plain text, as every secret was before 0.2 (its Standard Webhooks form is
    then :func:`standard_secret` of it). Raises :class:`ConfigurationError`
    unless the key has 16 bytes or more.
    """
    if isinstance(secret, str):
        key = _whsec_key(secret)
        if key is None:
            key = secret.encode("utf-8", "surrogatepass")
    elif isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    else:
        raise ConfigurationError(f"a webhook secret must be a str or bytes, not {type(secret).__name__}")
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"a webhook secret must be at least {MIN_SECRET_BYTES} bytes long, not {len(key)} "
            "(--webhook-secret / MAILTRACK_WEBHOOK_SECRET; make one with: mailtrack webhooks --new-secret)"
        )
    return key


def _whsec_key(secret: str) -> bytes | None:
    """The key bytes of a ``whsec_<base64>`` secret, or None when ``secret`` is not one."""
    if not secret.startswith(_WHSEC):
        return None
    encoded = secret[len(_WHSEC):]
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def secret_keys(secret: object) -> tuple[bytes, ...]:
    """Every key in ``secret``: several ``whsec_`` secrets separated by spaces (rotation), else one (:func:`secret_key`)."""
    if isinstance(secret, str):
        parts = secret.split()
        if len(parts) > 1 and all(_whsec_key(part) is not None for part in parts):
            return tuple(secret_key(part) for part in parts)
    return (secret_key(secret),)


def sign(body: bytes, secret: str | bytes, timestamp: int) -> str:
    """The deprecated ``Mailtrack-Signature`` value for ``body`` sent at ``timestamp`` (one ``v1=`` per key in ``secret``).

    Raises :class:`~mailtrack.exceptions.ConfigurationError` for a secret shorter than 16 bytes.
    """
    return _sign(body, secret_keys(secret), timestamp)


def _sign(body: bytes, keys: Iterable[bytes], timestamp: int) -> str:
    signed = str(timestamp).encode("ascii") + b"." + body
    return f"t={timestamp}," + ",".join(f"v1={hmac.new(key, signed, hashlib.sha256).hexdigest()}" for key in keys)


def standard_headers(body: bytes, event_id: str, keys: Iterable[bytes], timestamp: int) -> dict[str, str]:
    """The Standard Webhooks headers (and their ``svix-`` twins) for ``body``, signed by the ``standardwebhooks`` package."""
    from standardwebhooks.webhooks import Webhook  # the [serve] extra; imported here so config never needs it

    when = datetime.fromtimestamp(timestamp, timezone.utc)
    text = body.decode("utf-8")
    signature = " ".join(Webhook(key).sign(event_id, when, text) for key in keys)
    values = {"id": event_id, "timestamp": str(timestamp), "signature": signature}
    return {f"{prefix}-{name}": value for prefix in ("webhook", "svix") for name, value in values.items()}


def verify_signature(body: bytes, header: str, secrets: str | bytes | Iterable[str | bytes], *, tolerance: float = 300,
                     now: float | None = None) -> dict[str, object]:
    """Check a received webhook's deprecated ``Mailtrack-Signature``; return its parsed JSON object or raise :class:`~mailtrack.WebhookSignatureError`.

    (New receivers verify the Standard Webhooks headers with the
    ``standardwebhooks`` library instead.) ``secrets`` may be several
    (rotation on the receiving side), and the header may carry several
    ``v1=`` signatures (rotation on the sending side): one match is enough.
    Refuses a timestamp more than ``tolerance`` seconds from ``now``.
    Signatures are compared in constant time. Every refusal of the request
    (missing or malformed header, stale timestamp, no match, a signed body
    that is not a JSON object) is a ``WebhookSignatureError`` carrying the
    header; a secret shorter than 16 bytes (or none) is the receiver's own
    mistake and raises :class:`~mailtrack.exceptions.ConfigurationError`.
    """
    if isinstance(secrets, (str, bytes, bytearray)):
        keys = list(secret_keys(secrets))
    elif isinstance(secrets, Iterable):
        keys = [key for secret in secrets for key in secret_keys(secret)]
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
        expected = _sign(body, [secret], timestamp).split("v1=", 1)[1].encode("ascii")
        if any(hmac.compare_digest(expected, candidate) for candidate in given):
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                data = None
            if not isinstance(data, dict):
                raise WebhookSignatureError("signed webhook body is not a JSON object", header=header)
            return data
    raise WebhookSignatureError("webhook signature does not match", header=header)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay seconds or an HTTP date), or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


#: An HTTP status that ends the endpoint: the receiver said it is gone for good.
GONE = 410
#: Statuses whose ``Retry-After`` is honoured.
_RETRY_AFTER = (429, 503)


class WebhookDelivery:
    """Delivers the outbox rows for ``url``: ``concurrency`` POSTs at once over kept-alive connections.

    A background thread (:meth:`start`) claims due rows (at most as many as it
    can post now, so a slow receiver never holds rows it is not posting) and
    posts them concurrently from one event loop
    (:class:`~mailtrack.delivery.http_client.PostClient`: kept-alive
    connections, at most ``concurrency`` of them). Why an event loop and not a
    thread per POST: measured with urllib3 on 16 threads, a POST cost 0.6-0.8
    ms of interpreter time and the threads mostly waited for the GIL (1,305
    deliveries/s, no faster than one thread); on one loop a delivery costs a
    fraction of that. Backoff after the n-th failed attempt is ``backoff *
    2**(n-1)`` seconds capped at ``max_backoff``, times a random factor in
    [0.5, 1] (jitter, so a receiver coming back is not hit by every retry at
    once): with the defaults a receiver may be down for about a day. A 429 or
    503 with ``Retry-After`` waits what it says (capped at ``max_backoff``). A
    410 disables the endpoint: it is logged, and this row and every later one
    for it are marked dead (kept, with the reason) instead of posted, until the
    server restarts; ``mailtrack webhooks --requeue`` gives them a fresh start.
    After ``max_attempts`` a row is marked dead too. The store is read and
    written from the loop's thread (short transactions: a claim per batch, one
    commit for the delivered ones of a batch, one per failure).

    ``skip_machine``: the receiver subscribed without machine events, so an
    event whose ``machine`` verdict is set (when its row is claimed, which
    reads the event as stored then) is marked done without a POST. A verdict
    the store gives an event later (a click relabelled by a honeypot click
    that arrives within the minute after it) cannot take back a webhook
    already sent; every payload carries ``machine`` and ``machine_reasons``
    as stored when it was sent, and the Events API has the current verdict.
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
        concurrency: int = 16,
        jitter: bool = True,
        skip_machine: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_url(url)
        self._keys = secret_keys(secret)  # ConfigurationError for a secret shorter than 16 bytes
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"webhook concurrency must be a whole number of at least 1, not {concurrency!r}")
        self.store = store
        self.url = url
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self.jitter = jitter
        self.skip_machine = skip_machine
        self.clock = clock
        self.disabled: str | None = None  # the reason, once the endpoint answered 410
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = threading.Lock()  # one deliver_due at a time: the loop and its session are not shared
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: PostClient | None = None
        self._in_flight: set[asyncio.Task[int | None]] = set()  # the POSTs of the running deliver_due

    def start(self) -> WebhookDelivery:
        self._thread = threading.Thread(target=self._run, name="mailtrack-webhook", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop now: the POSTs in flight are abandoned (their rows stay claimed until their lease ends, then they
        are posted again: delivery is at least once), so a receiver that hangs never holds a shutdown (SIGTERM
        stops ``serve`` in well under a second); close the connections. ``timeout`` bounds the wait for the
        delivery thread (a store call it is making)."""
        self._stop.set()
        self._wake.set()
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._abandon)
            except RuntimeError:  # that loop is closed: nothing is in flight
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # still finishing a POST: its daemon thread ends with the process
        with self._running:
            self._close()

    def _run(self) -> None:
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
        """Attempt every due delivery once, ``concurrency`` at a time; returns how many succeeded.

        Rows are claimed only for POSTs that can start now, in batches (once
        a quarter of the slots is free), and the finished ones are marked
        delivered together, one commit for all: the store is written about
        twice per batch, not twice per delivery. Blocks the calling thread
        (the loop runs in it), like the thread-pool sender it replaced.
        """
        with self._running:
            if self._loop is None or self._loop.is_closed():
                self._loop = _new_loop()
            return self._loop.run_until_complete(self._deliver_due())

    async def _deliver_due(self) -> int:
        client = self._client()
        done = 0
        lease = self.timeout + 30  # long enough for one attempt; a dead worker's row comes back after it
        batch = max(1, self.concurrency // 4)
        running: set[asyncio.Task[int | None]] = set()
        self._in_flight = running
        try:
            while not self._stop.is_set():
                free = self.concurrency - len(running)
                if free >= batch or not running:
                    claimed = self.store.outbox_claim(self.url, self.clock(), lease, limit=free)
                    running.update(asyncio.ensure_future(self._attempt(client, item)) for item in claimed)
                    if self._stop.is_set():  # stopped while claiming: these go the same way as the others
                        self._abandon()
                if not running:
                    break
                finished, pending = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                running.clear()
                running.update(pending)
                done += self._settle(finished)
        finally:
            if running:
                finished, _ = await asyncio.wait(running)
                done += self._settle(finished)
            self._in_flight = set()
        return done

    def _abandon(self) -> None:
        """Cancel the POSTs in flight (on the loop's thread; :meth:`stop` schedules it), and again every 50 ms
        until they are done: Python's ``asyncio.wait_for`` swallows a cancellation that arrives just as what it
        waits for completes (CPython gh-86296, fixed in 3.12), and the POST then went on waiting for its answer
        (seen: 2 stops in 5 held for the whole join timeout)."""
        pending = [task for task in self._in_flight if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            asyncio.get_running_loop().call_later(0.05, self._abandon)

    def _client(self) -> PostClient:
        """The loop's client (made on first use, with the loop: its connections belong to it)."""
        if self._session is None:
            self._session = PostClient(self.url, limit=self.concurrency, timeout=self.timeout)
        return self._session

    def _close(self) -> None:
        loop, client = self._loop, self._session
        self._session = None
        if loop is None or loop.is_closed():
            return
        try:
            if client is not None:
                loop.run_until_complete(client.close())
        finally:
            loop.close()

    def _settle(self, finished: Iterable[asyncio.Task[int | None]]) -> int:
        """Mark the delivered ones among ``finished`` (each the row id, or None) in one transaction; how many."""
        results = (task.result() for task in finished if not task.cancelled())  # cancelled: abandoned by stop()
        delivered = [item_id for item_id in results if item_id is not None]
        self.store.outbox_delivered_many(delivered, self.clock())
        return len(delivered)

    async def _attempt(self, client: PostClient, item: OutboxItem) -> int | None:
        """Post ``item``: its id when it was delivered (to be marked so), else None (the failure already stored)."""
        try:
            return await self._post(client, item)
        except StoreUnavailable as exc:  # the row stays claimed; its lease ends and it is tried again
            log.warning("mailtrack: webhook result for event %s not stored now (%s)", item.event.event_id, exc)
            return None

    async def _post(self, client: PostClient, item: OutboxItem) -> int | None:
        if self.disabled is not None:
            self.store.outbox_failed(item.id, self.disabled, None)
            return None
        if self.skip_machine and item.event.machine is not None:
            return item.id  # not this receiver's: marked done without a POST (the verdict as stored when claimed)
        body = payload(item.event)
        stamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            **standard_headers(body, item.event.event_id, self._keys, stamp),
            SIGNATURE_HEADER: _sign(body, self._keys, stamp),  # deprecated: one more release
            "Mailtrack-Event-Id": item.event.event_id,
        }
        wait_for: float | None = None
        try:
            answer = await client.post(body, headers)
        except PostFailed as exc:  # refused, reset, timed out, TLS, unreadable
            status, error = 0, str(exc)
        else:
            status, error = answer.status, f"HTTP {answer.status}"
            if status in _RETRY_AFTER:
                wait_for = retry_after(answer.headers.get("retry-after"), self.clock())
        return self._outcome(item, status, error, wait_for)

    def _outcome(self, item: OutboxItem, status: int, error: str, wait_for: float | None) -> int | None:
        """What an attempt's ``status`` means for its row: delivered (its id), or the failure stored (None)."""
        if 200 <= status < 300:
            return item.id
        if status == GONE:
            self.disabled = "HTTP 410 Gone: endpoint disabled until the server restarts (mailtrack webhooks --requeue)"
            log.error("mailtrack: webhook endpoint %s answered 410 Gone: disabled, its deliveries are kept as dead",
                      _safe_url(self.url))
            self.store.outbox_failed(item.id, self.disabled, None)
            return None
        attempts = item.attempts + 1
        if attempts >= self.max_attempts:
            log.error("mailtrack: webhook gave up on event %s after %d attempts (%s)", item.event.event_id, attempts, error)
            self.store.outbox_failed(item.id, error, None)
            return None
        delay = min(self.backoff * 2 ** (attempts - 1), self.max_backoff)
        if self.jitter:
            delay *= random.uniform(0.5, 1.0)
        if wait_for is not None:
            delay = min(wait_for, self.max_backoff)
        log.warning("mailtrack: webhook attempt %d for event %s failed (%s); retry in %.1fs",
                    attempts, item.event.event_id, error, delay)
        self.store.outbox_failed(item.id, error, self.clock() + delay)
        return None


#: Bytes of a receiver's answer read (and ignored): enough for any acknowledgement; a bigger one closes the connection.
_MAX_ANSWER = 65536


def _new_loop() -> asyncio.AbstractEventLoop:
    """An event loop for a delivery thread: uvloop's when installed (the ``[serve]`` extra), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _safe_url(url: str) -> str:
    """``url`` without user info or query (they may hold a token): nothing secret in logs."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
