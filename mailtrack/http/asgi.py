"""The tracking endpoints and APIs as an ASGI 3 application, for an event-loop server (``mailtrack serve``'s).

Why a second adapter beside :mod:`.wsgi`: under WSGI every request waiting
for its event's commit holds a thread, so a group commit can only batch as
many events as there are threads, and a dozen threads trading the GIL with
the writer made each commit wait for the interpreter far longer than for
SQLite (measured: 210-400 requests/s on waitress, whatever its thread count
or switch interval; see ``benchmarks/bench_serve.py``). Here a pixel or
click request is answered on the event loop: the token is verified and the
event built there (pure work, microseconds), the request awaits
:meth:`~mailtrack.delivery.recorder.Recorder.record_async` (the writer
commits every event queued meanwhile and wakes the loop once per batch),
then the response goes out. Everything else (the APIs, the dashboard, the
unsubscribe pages, which read the store) runs :meth:`WsgiApp.answer
<mailtrack.http.wsgi.WsgiApp.answer>` on a small thread pool, so a slow
store read never stalls the loop.

It translates only: the answers are :class:`~mailtrack.http.wsgi.WsgiApp`'s
(its API handlers, endpoints, refusals, internal-error answer and access
log), byte for byte the same as under WSGI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mailtrack.http.messages import MAX_BODY, Request, Response, routed_path, too_large
from mailtrack.http.wsgi import WsgiApp

__all__ = ["CLIENT_GONE", "CLIENT_CLOSED", "AsgiApp", "LOOP_KINDS"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: The tracking URLs answered on the event loop itself (no store read before the answer, only the event's write).
LOOP_KINDS = frozenset({"open", "click"})
#: Paths the API handlers may claim: never taken for the loop's fast path, whatever the tracker's base path.
_API_PREFIXES = ("/v3", "/v1", "/apiv2", "/dashboard", "/healthz", "/openapi.json")
#: The scope extension by which ``mailtrack serve``'s server tells whether a request's client is gone (closed its
#: connection) before its answer is written: ``scope["extensions"][CLIENT_GONE]["gone"]()``. ASGI's own way (a
#: ``receive()`` kept waiting beside the commit) would cost a task per pixel.
CLIENT_GONE = "mailtrack.client_gone"
#: The status the access log gives a request whose client closed the connection before its answer was written
#: (nginx's ``499``): the answer was made (a pixel's or click's event is stored) but nobody received it.
CLIENT_CLOSED = 499
_TOO_LARGE = f"the request body is larger than {MAX_BODY} bytes"


class AsgiApp:
    """An ASGI 3 callable answering as ``app`` (a :class:`WsgiApp`) does; ``threads`` run the store-reading paths."""

    def __init__(self, app: WsgiApp, *, threads: int = 8) -> None:
        self.app = app
        self.endpoints = app.endpoints
        self.recorder = app.endpoints.recorder
        self._executor = ThreadPoolExecutor(max(1, threads), thread_name_prefix="mailtrack-http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets are not ours: the server refuses them
            return
        started = time.perf_counter()
        method = str(scope.get("method", "GET")).upper()
        path = text_path(scope)
        try:
            response = await self._respond(scope, receive, method, path)
        except asyncio.CancelledError:
            if _client_gone(scope):  # the server closed the connection (a forced stop): nobody to answer, no error
                return  # a pixel's or click's event stays queued for the writer (Recorder.record_async)
            raise
        except Exception:  # a bug, or a stored value the code did not expect: a 500, never a hung request
            response = self.app.internal_error(method, path)
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.safe_headers]
        gone = self.app.access_log and _client_gone(scope)  # before the answer is written: it will never arrive
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        # HEAD: the headers of the GET, never a body (one would desynchronize a keep-alive connection).
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else response.body})
        if self.app.access_log:
            client = scope.get("client")
            logged = Response(CLIENT_CLOSED, []) if gone else response
            self.app.log_access(client[0] if client else None, method, path, bool(scope.get("query_string")), logged,
                                time.perf_counter() - started, _header(scope, b"user-agent"))

    async def _respond(self, scope: Scope, receive: Receive, method: str, path: str) -> Response:
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            key = name.decode("latin-1").lower()
            value_text = value.decode("utf-8", "replace")  # as text() reads the WSGI server's Latin-1, in one step
            headers[key] = f"{headers[key]}, {value_text}" if key in headers else value_text
        refused = too_large(headers.get("content-length"))
        if refused is not None:
            return self.app.refusal(path, 413, _TOO_LARGE) or refused
        body = await _body(receive)
        if body is None:  # over the limit (a chunked body has no length to refuse it by)
            return self.app.refusal(path, 413, _TOO_LARGE) or Response(
                413, [("Content-Type", "text/plain"), ("Content-Length", "0")])
        client = scope.get("client")
        request = Request(method=method, path=path, query=bytes(scope.get("query_string", b"")).decode("latin-1"),
                          headers=headers, remote_addr=client[0] if client else None, body=body)
        if self._on_loop(path):
            response, event = self.endpoints.respond(request)
            if event is not None and self.recorder is not None:
                await self.recorder.record_async(event)
            return response
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.app.answer, request)

    def _on_loop(self, path: str) -> bool:
        """Whether ``path`` is an open or click URL no API claims: answered on the loop, without a thread."""
        if path.startswith(_API_PREFIXES):
            return False
        kind = self.endpoints.kind_of(path)
        return kind in LOOP_KINDS

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        try:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self._executor.shutdown(wait=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        except asyncio.CancelledError:  # a forced stop (a second Ctrl-C): no shutdown comes; not an error to log
            self._executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Let the thread pool's requests finish and stop its threads (the server's lifespan does it too)."""
        self._executor.shutdown(wait=True)


def text_path(scope: Scope) -> str:
    """The request path as text, decoded as the WSGI app decodes ``PATH_INFO`` (percent-decoded UTF-8), leading
    slashes as one (:func:`~mailtrack.http.messages.routed_path`: ``//healthz`` was a 404 here, a 200 on waitress)."""
    root = str(scope.get("root_path", ""))
    path = str(scope.get("path", ""))
    return routed_path(root + path if root and not path.startswith(root) else path)


async def _body(receive: Receive) -> bytes | None:
    """The whole request body, or None once it passes :data:`MAX_BODY` (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _client_gone(scope: Scope) -> bool:
    """Whether the server says the request's client closed its connection (see :data:`CLIENT_GONE`); False under a
    server that does not say."""
    extension = scope.get("extensions", {}).get(CLIENT_GONE)
    return bool(extension is not None and extension["gone"]())


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("utf-8", "replace"))
    return ""
