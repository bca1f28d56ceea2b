"""The waitress server ``mailtrack serve`` runs, tuned to hold thousands of idle or slow connections.

Link scanners and image proxies open many connections and some clients dribble
their requests; waitress' defaults (100 connections, then it stops accepting;
no limit on how long a request may take to arrive; ``select()``, which cannot
watch more than 1,024 sockets) let 99 idle connections or one client sending a
header line a second lock everyone else out. Measured and chosen over an
event-loop server (see ``benchmarks/bench_serve.py`` and the README): waitress
already reads requests on its event loop and only hands complete ones to its
worker threads, so slow clients cost a socket, not a thread; what it lacks is
limits that cut off bad clients instead of good ones. This module adds them:

* ``poll()`` instead of ``select()`` and a connection limit from the process's
  file limit (:func:`connection_limit`), raised to its hard limit at start;
* a **request deadline**: a request whose head and body have not fully arrived
  :data:`REQUEST_SECONDS` after its first byte is cut off (slowloris), checked
  every :data:`CHECK_SECONDS`;
* idle keep-alive connections closed after :data:`IDLE_SECONDS`, and when the
  limit is reached anyway, the longest-idle connections are closed to make
  room (:data:`SHED_FRACTION` of them at a time), so a new client is always
  accepted: bad clients are cut off by time, never good ones by count;
* :func:`drain`: on SIGTERM stop accepting, let the requests in flight be
  answered (at most ``grace`` seconds), then return, so the process exits in
  well under a second once they are done.

It uses waitress' channel and server classes as documented in its source
(``HTTPChannel.request``/``requests``/``last_activity``, ``maintenance``),
pinned to waitress 3.
"""

from __future__ import annotations

import resource
import socket
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

from mailtrack.http.messages import Response
from mailtrack.storage.heap import freeze_heap

__all__ = ["CHECK_SECONDS", "IDLE_SECONDS", "REQUEST_SECONDS", "SHED_FRACTION", "connection_limit", "create", "drain",
           "raise_file_limit", "run"]

#: Seconds from a request's first byte to its last: longer is a slow (or malicious) client, cut off.
REQUEST_SECONDS = 15.0
#: Seconds an idle keep-alive connection is kept.
IDLE_SECONDS = 30.0
#: How often the deadlines are checked.
CHECK_SECONDS = 1.0
#: At the connection limit, this share of the connections (the longest idle) is closed to make room.
SHED_FRACTION = 0.1
#: File descriptors kept for the database, spool, logs and webhook connections.
_RESERVED_FILES = 200


def raise_file_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit (as far as allowed); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # not allowed here: keep what we have
            pass
    return soft if soft != resource.RLIM_INFINITY else 65536


def connection_limit(files: int | None = None) -> int:
    """How many connections to hold: the open-file limit less what the rest of the process needs (at least 100)."""
    available = raise_file_limit() if files is None else files
    return max(100, min(available - _RESERVED_FILES, 50_000))


#: ``refusal(wsgi_path, status, detail)``: the answer to send for a refusal waitress makes itself, or None to keep
#: waitress' own (:meth:`~mailtrack.http.wsgi.WsgiApp.server_refusal`: an API path's error shape).
Refusal = Callable[[str, int, str], "Response | None"]


def create(app: Callable[..., Any], *, threads: int, max_body: int, host: str | None = None, port: int | None = None,
           sockets: Sequence[socket.socket] | None = None, limit: int | None = None,
           refusal: Refusal | None = None) -> Any:
    """A waitress server for ``app`` with the limits above, listening but not yet running (``server.run()``).

    waitress answers some requests itself, before the app runs: a body over
    its limit (413; a chunked one is only measured as it arrives), broken
    chunked encoding (400), an app that raised (500). Its answer is
    ``text/plain``; ``refusal`` may give another (on an API path, that API's
    error shape), through waitress' ``error_task_class`` hook.
    """
    import waitress  # type: ignore[import-untyped]

    where: dict[str, Any] = {"sockets": list(sockets)} if sockets is not None else {"host": host, "port": port}
    server = waitress.create_server(
        app, threads=threads, ident="mailtrack", clear_untrusted_proxy_headers=False,
        # waitress refuses bodies itself only far above ours, so the app answers a too-large body in its own shape
        max_request_body_size=max(max_body * 4, 1 << 20),
        connection_limit=limit if limit is not None else connection_limit(), asyncore_use_poll=True,
        channel_timeout=IDLE_SECONDS, cleanup_interval=CHECK_SECONDS, backlog=2048, **where)
    for listener in _listeners(server):
        listener.channel_class = _channel_class(refusal)
        listener.maintenance = types.MethodType(_maintenance, listener)
        listener.readable = types.MethodType(_readable, listener)
        listener.handle_accept = types.MethodType(_handle_accept, listener)
    return server


def run(server: Any, *, freeze: bool = False) -> None:
    """Run ``server``'s loop until interrupted; unlike waitress' ``run()``, a KeyboardInterrupt (SIGTERM) is not
    swallowed with the worker threads shut down and queued requests dropped: it propagates, for :func:`drain`.
    ``freeze``: freeze the heap made so far first (:func:`~mailtrack.storage.heap.freeze_heap`), as ``mailtrack
    serve`` does in the process it owns."""
    from waitress import wasyncore

    if freeze:
        freeze_heap()

    wasyncore.loop(timeout=server.adj.asyncore_loop_timeout, map=_socket_map(server), use_poll=True)


def _socket_map(server: Any) -> dict[int, Any]:
    found: dict[int, Any] = getattr(server, "map", None) or server._map
    return found


def drain(server: Any, grace: float = 10.0) -> None:
    """Stop accepting, then run the loop until no request is in flight (or ``grace`` seconds): SIGTERM's shutdown."""
    from waitress import wasyncore

    listeners = _listeners(server)
    socket_map = _socket_map(server)
    for listener in listeners:
        listener.accepting = False  # readable() is False from now on: nothing new is accepted
        try:
            listener.socket.close()
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _busy(socket_map, listeners):
        wasyncore.loop(timeout=0.05, map=socket_map, use_poll=True, count=1)
    for listener in listeners:
        listener.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
    wasyncore.close_all(socket_map)


def _busy(socket_map: dict[int, Any], listeners: list[Any]) -> bool:
    """Whether any connection has a request being served or an answer not yet sent."""
    for channel in list(socket_map.values()):
        if channel in listeners or not hasattr(channel, "requests"):
            continue
        if channel.requests or getattr(channel, "total_outbufs_len", 0):
            return True
    return False


def _listeners(server: Any) -> list[Any]:
    """The listening servers: ``server`` itself, or those a ``MultiSocketServer`` holds."""
    from waitress.server import BaseWSGIServer  # type: ignore[import-untyped]

    if isinstance(server, BaseWSGIServer):
        return [server]
    return [value for value in server.map.values() if isinstance(value, BaseWSGIServer)]


_CHANNEL: type | None = None


def _channel_class(refusal: Refusal | None = None) -> type:
    """waitress' ``HTTPChannel`` that notes when the request it is reading began (made once, on first use);
    with ``refusal``, a subclass whose own refusals are written by it."""
    global _CHANNEL
    if _CHANNEL is None:
        from waitress.channel import HTTPChannel  # type: ignore[import-untyped]

        class DeadlineChannel(HTTPChannel):  # type: ignore[misc]
            """Knows since when its current request has been arriving (``started``; None between requests)."""

            started: float | None = None

            def received(self, data: bytes) -> bool:
                if self.request is None and data:
                    self.started = time.monotonic()
                result: bool = super().received(data)
                if self.request is None:  # every byte so far made whole requests
                    self.started = None
                return result

        _CHANNEL = DeadlineChannel
    if refusal is None:
        return _CHANNEL
    write: Refusal = refusal
    from waitress.task import ErrorTask  # type: ignore[import-untyped]

    class RefusalTask(ErrorTask):  # type: ignore[misc]
        def execute(self) -> None:
            try:  # an internal error's request is a fresh parser without a path: never let the answer itself fail
                problem = self.request.error
                answer = write(getattr(self.request, "path", "") or "", int(problem.code),
                               f"{problem.reason}: {problem.body}")
            except Exception:  # noqa: BLE001 - waitress' own plain answer is still an answer
                answer = None
            if answer is None:
                super().execute()
                return
            self.status = f"{answer.status} {answer.reason}"
            self.response_headers.extend((name, value) for name, value in answer.safe_headers
                                         if name.lower() != "content-length")  # waitress writes its own
            self.set_close_on_finish()
            self.content_length = len(answer.body)
            self.write(answer.body)

    return type("RefusingChannel", (_CHANNEL,), {"error_task_class": RefusalTask})


def _maintenance(self: Any, now: float) -> None:
    """Close connections idle past ``channel_timeout`` (waitress') and requests arriving for too long (ours)."""
    cutoff = now - self.adj.channel_timeout
    too_slow = time.monotonic() - REQUEST_SECONDS
    for channel in list(self.active_channels.values()):
        started = getattr(channel, "started", None)
        if started is not None and started < too_slow and channel.request is not None:
            channel.will_close = True  # closed by the loop's next pass; nothing of it is being served
        elif not channel.requests and channel.request is None and channel.last_activity < cutoff:
            channel.will_close = True


#: Connections accepted per wake-up of the listening socket (waitress takes one, and a loop pass over
#: thousands of sockets costs milliseconds: a burst of 2,000 new connections kept a fresh client waiting 2 s).
ACCEPT_BATCH = 256


def _handle_accept(self: Any) -> None:
    """waitress' ``handle_accept``, taking every waiting connection (up to :data:`ACCEPT_BATCH`), not one."""
    for _ in range(ACCEPT_BATCH):
        if len(self._map) >= self.adj.connection_limit:
            return
        try:
            accepted = self.accept()
        except OSError:  # a bogus socket from accept (see waitress): skip it
            continue
        if accepted is None:  # nothing more waiting
            return
        conn, addr = accepted
        try:
            self.set_socket_options(conn)
        except OSError:  # the client went away already
            conn.close()
            continue
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)


def _readable(self: Any) -> bool:
    """waitress' check, except that at the limit the longest-idle connections make room instead of new ones waiting."""
    now = time.time()
    if now >= self.next_channel_cleanup:
        self.next_channel_cleanup = now + self.adj.cleanup_interval
        self.maintenance(now)
    if not self.accepting:
        return False
    if len(self._map) >= self.adj.connection_limit:
        idle = sorted((channel for channel in self.active_channels.values()
                       if not channel.requests and channel.request is None and not channel.will_close),
                      key=lambda channel: channel.last_activity)
        for channel in idle[:max(1, int(self.adj.connection_limit * SHED_FRACTION))]:
            channel.will_close = True
        return False  # accept again once they are closed (the loop's next passes)
    return True
