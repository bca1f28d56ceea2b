"""The event-loop server ``mailtrack serve`` runs by default: uvicorn (uvloop, httptools) around :class:`AsgiApp`.

Chosen by measurement over the tuned waitress of :mod:`.server` (both kept;
``--server waitress`` picks the other): with durable events, waitress holds
a thread per request waiting for its commit and spends its time trading the
GIL (210-400 requests/s at 50 connections here), while on one event loop the
requests of a burst all wait for the same group commit, and the loop only
works (see ``benchmarks/bench_serve.py`` and the README for the figures).

uvicorn gives HTTP/1.1, keep-alive, pipelining and a graceful shutdown; what
this module adds is what :mod:`.server` adds to waitress, so that bad
clients are cut off by time, never good ones by count:

* a connection that sends nothing is closed after :data:`~.server.IDLE_SECONDS`
  (uvicorn only times idle connections out after a first response);
* a **request deadline**: a request whose head and body have not fully
  arrived :data:`~.server.REQUEST_SECONDS` after its first byte is cut off
  (slowloris: uvicorn has no such limit), a request begun in the packet that
  ended the one before it included;
* a **head limit** (:data:`HEAD_BYTES`, waitress' own): httptools has none and
  joins a long header piece by piece, so one client sending gigabytes of a
  head (or of a chunked body's trailer) kept the loop copying them and every
  other client waiting;
* a request URL up to the head limit (uvicorn answered ``400`` from 64 KiB:
  ``httptools.parse_url`` keeps offsets in 16 bits), past it a ``431`` as
  on waitress (see :data:`HEAD_BYTES`);
* a refusal (400, 431) answers the request it refuses, after the answers owed
  to the requests pipelined before it (uvicorn wrote it at once, in place of
  theirs); an ``Upgrade`` request is answered as any other and the bytes
  after it are the next request (uvicorn dropped them);
* output a client does not read is cut off once it makes no progress for
  :data:`~.server.IDLE_SECONDS` (:data:`FLUSH_SECONDS` when stopping):
  uvicorn held such a connection for ever, and a stop for its whole grace;
* under ``mailtrack serve`` (``run(freeze=True)``), the heap frozen once the server has started
  (:func:`~mailtrack.storage.heap.freeze_heap`): full garbage collections walked every startup object with the
  loop stopped, 18-24 ms each, the p99 of the serve benchmark;
* the open-file limit raised to its hard limit, so thousands of idle
  connections fit (an idle connection costs a socket and a few KB, no thread);
* the scope's ``mailtrack.client_gone`` extension, so the access log says
  ``499`` for a request whose client left before its answer was written;
* SIGTERM/SIGINT: stop accepting, answer the requests in flight (at most
  ``grace`` seconds), close the idle connections, return, so the caller
  closes the recorder (every answered event is committed or spooled);
* a second Ctrl-C (uvicorn's forced exit) closes the connections of the
  requests still in flight without an answer and says so in one log line
  (uvicorn answered each with a ``500`` and logged a traceback per request);
  their events stay queued for the writer, which the caller's close of the
  recorder writes or spools.

``X-Forwarded-For`` is left to the endpoints (``--trusted-proxy``): uvicorn's
own proxy-header handling is off. Pinned to uvicorn's documented ``Config``
and ``Server`` and to its httptools protocol's parser callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket
import urllib.parse
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from mailtrack.http.asgi import CLIENT_GONE
from mailtrack.http.messages import MAX_BODY, Response
from mailtrack.http.server import IDLE_SECONDS, REQUEST_SECONDS, Refusal, raise_file_limit
from mailtrack.storage.heap import freeze_heap

__all__ = ["FLUSH_SECONDS", "HEAD_BYTES", "LoopServer", "available", "bind", "create"]

log = logging.getLogger("mailtrack")

#: Bytes a request's head (request line and headers) may have, as in waitress: past it, a 431 and the connection
#: closed (httptools has no limit and joins a header value piece by piece: a head of gigabytes, the loop copying
#: it, every other client waiting). Counted from the packet after the one the head began in, so a head is cut
#: off at most one read (256 KiB) past this, and never before.
HEAD_BYTES = 262_144
#: The longest URL ``httptools.parse_url`` takes (its offsets are 16-bit): a longer one is split here instead.
_PARSE_URL_MAX = 65_535
#: Stopping, seconds an answer's output may make no progress (a client that does not read) before it is dropped.
FLUSH_SECONDS = 1.0


def available() -> bool:
    """Whether uvicorn and httptools are installed (``pip install 'mailtrack[serve]'`` brings them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("uvicorn", "httptools"))


def create(app: Any, *, host: str = "127.0.0.1", port: int = 0, sockets: Sequence[socket.socket] | None = None,
           grace: float = 10.0, refusal: Refusal | None = None) -> LoopServer:
    """A :class:`LoopServer` for the ASGI ``app``, listening (on ``sockets``, or bound to ``host``/``port`` now).

    ``refusal(path, status, detail)`` gives the answer to a request uvicorn refuses itself (a head or chunked
    body it cannot parse: 400), as for waitress in :func:`mailtrack.http.server.create`: an API path's error shape.
    """
    raise_file_limit()
    listeners = list(sockets) if sockets is not None else [bind(host, port)]
    for listener in listeners:  # listening from now on: clients queue until run() accepts them (as with waitress)
        listener.listen(2048)
        listener.setblocking(False)
    return LoopServer(app, listeners, grace=grace, refusal=refusal)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``/``port`` (IPv6 when ``host`` has a colon); ``OSError`` when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=2048, reuse_port=False)
    listener.setblocking(False)
    return listener


class LoopServer:
    """uvicorn serving ``app`` on ``listeners``: :meth:`run` until SIGTERM/SIGINT or :meth:`stop`."""

    def __init__(self, app: Any, listeners: list[socket.socket], *, grace: float = 10.0,
                 refusal: Refusal | None = None) -> None:
        import uvicorn

        self.app = app
        self.listeners = listeners
        self.effective_port = listeners[0].getsockname()[1]
        loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
        self.config = uvicorn.Config(
            app, loop=loop, http=_protocol_class(), ws="none", lifespan="on", log_level="warning", access_log=False,
            proxy_headers=False, server_header=False, timeout_keep_alive=int(IDLE_SECONDS),
            timeout_graceful_shutdown=max(1, int(grace)), backlog=2048)
        setattr(self.config, "mailtrack_refusal", refusal)  # noqa: B010 - read by the protocol (it gets the config)
        self.server = _Server(self.config)

    def run(self, *, freeze: bool = False) -> None:
        """Serve until stopped; returns after the requests in flight were answered (or ``grace`` ran out).

        ``freeze``: once started, freeze the process' heap (:func:`~mailtrack.storage.heap.freeze_heap`), as
        ``mailtrack serve`` does in the process it owns; off by default, the collector of a program embedding
        this server being that program's."""
        self.server.mailtrack_freeze = freeze
        self.server.run(sockets=self.listeners)

    def stop(self) -> None:
        """Ask :meth:`run` to stop (from any thread): what SIGTERM does."""
        self.server.should_exit = True

    def close(self) -> None:
        """Close the listening sockets (after :meth:`run` returned, or when it never ran)."""
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.close()


class _ClientGone:
    """``scope["extensions"][CLIENT_GONE]["gone"]``: whether the request's client closed its connection, holding
    the request (uvicorn's ``RequestResponseCycle``, whose scope holds this) and its transport weakly; a request or
    transport gone counts as a client gone."""

    __slots__ = ("_cycle", "_transport")

    def __init__(self, cycle: Any, transport: Any) -> None:
        self._cycle = weakref.ref(cycle)
        self._transport = weakref.ref(transport)

    def __call__(self) -> bool:
        cycle, transport = self._cycle(), self._transport()
        return cycle is None or transport is None or bool(cycle.disconnected) or bool(transport.is_closing())


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus its re-raising of the stopping signal once it has stopped (that would kill the
        process before the recorder is closed)."""

        #: Set by :meth:`LoopServer.run`: freeze the heap once started.
        mailtrack_freeze = False

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            """uvicorn's; then, for ``run(freeze=True)``, the heap made so far is frozen
            (:func:`~mailtrack.storage.heap.freeze_heap`): the full collections that paused the loop for 18-24 ms
            under load walk only what was made since."""
            await super().startup(sockets=sockets)
            if self.mailtrack_freeze:
                freeze_heap()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()  # before uvicorn's own exit code raises them again

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            """uvicorn's; the requests still in flight when the stop cannot wait for them are closed without an
            answer, in one log line: after a forced exit (a second Ctrl-C), and when the grace runs out (just
            before uvicorn would cancel them). uvicorn answered each with a ``500`` and logged a traceback."""
            grace = self.config.timeout_graceful_shutdown
            # uvicorn starts its grace 0.1 s into the shutdown: ours ends a little before it
            watchdog = (asyncio.get_running_loop().call_later(max(0.0, grace - 0.2), self._grace_ran_out)
                        if grace is not None and not self.force_exit else None)
            try:
                await super().shutdown(sockets=sockets)
            finally:
                if watchdog is not None:
                    watchdog.cancel()
            if self.force_exit:
                log.warning("mailtrack: stopped at once (a second Ctrl-C): %d request(s) in flight closed without an "
                            "answer; their events are still written or spooled", self._close_in_flight())

        def _close_in_flight(self) -> int:
            closed = 0
            for connection in list(self.server_state.connections):  # ours all (DeadlineProtocol)
                close_in_flight = getattr(connection, "close_in_flight", None)
                if close_in_flight is not None:
                    closed += int(close_in_flight())
            return closed

        def _grace_ran_out(self) -> None:
            """The stop's grace is over: close what is in flight, then cancel it (marked disconnected first, so the
            app returns quietly and uvicorn writes no ``500``); uvicorn then finds nothing left to cancel."""
            if self.force_exit:
                return
            closed = self._close_in_flight()
            for task in list(self.server_state.tasks):
                task.cancel()
            log.warning("mailtrack: the stop's grace (%s s) ran out: %d request(s) in flight closed without an answer; "
                        "their events are still written or spooled", self.config.timeout_graceful_shutdown, closed)

    return Server


def _Server(config: Any) -> Any:  # noqa: N802 - a class made on first use (uvicorn is an optional extra)
    global _SERVER
    if _SERVER is None:
        _SERVER = _server_class()
    return _SERVER(config)


_SERVER: type | None = None
_PROTOCOL: type | None = None


def _protocol_class() -> type:
    """uvicorn's httptools protocol with deadlines, a head size limit and refusals that never answer the wrong
    request (see :data:`HEAD_BYTES` and the module's docstring)."""
    global _PROTOCOL
    if _PROTOCOL is not None:
        return _PROTOCOL
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class DeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _arriving = False  # a request is arriving: its deadline runs
        _in_head = False  # the current request's head is not whole yet
        _messages = 0  # requests begun on this connection
        _head_bytes = 0  # bytes of the current request, from the packet after the one it began in
        _body_bytes = 0  # bytes of its body (the rest is its head, chunk sizes and trailer fields)
        _refusal: bytes | None = None  # the answer to an unreadable request, sent once the answers before it are
        _running: Any = None  # the request whose answer is being made
        _output_watch: asyncio.TimerHandle | None = None  # checks that output waiting to go out still moves
        _stopping = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(IDLE_SECONDS)  # a connection that never sends a byte

        def data_received(self, data: bytes) -> None:
            """uvicorn's, plus: the deadline, the head limit; an ``Upgrade`` is never done (the bytes after its
            head are the next request: uvicorn dropped them); no log line per bad client (the 400 says it)."""
            if self._refusal is not None or self.parser is None:  # refused: nothing more is read
                return
            if not self._arriving and data:
                self._arriving = True
                self._arm(REQUEST_SECONDS)
            messages, size = self._messages, len(data)
            self._unset_keepalive_if_required()
            while data:
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserUpgrade as upgrade:  # no websockets here: go on with the rest as HTTP
                    offset = int(upgrade.args[0]) if upgrade.args else 0
                    data = data[offset:] if 0 < offset < len(data) else b""
                    continue
                except httptools.HttpParserError as error:
                    if isinstance(error.__context__, _HeadTooLong):  # raised by on_url: the parser stopped there
                        self._refuse(431, f"the request's head is longer than {HEAD_BYTES} bytes")
                    else:
                        self.send_400_response("Invalid HTTP request received.")
                    return
                break
            if self._arriving and self._messages == messages and self._refusal is None:
                self._head_bytes += size
                # httptools joins a header (or a chunked body's trailer field) piece by piece: bounded here. After
                # the head, a body's chunk sizes (at most 5 bytes per byte of the body, read up to MAX_BODY) too.
                limit = HEAD_BYTES if self._in_head else HEAD_BYTES + 5 * MAX_BODY
                if self._head_bytes - self._body_bytes > limit:
                    self._refuse(431, f"the request's head is longer than {HEAD_BYTES} bytes")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._messages += 1
            self._in_head = True
            self._head_bytes = self._body_bytes = 0
            if not self._arriving:  # begun in the packet that ended the request before: its own deadline
                self._arriving = True
                self._arm(REQUEST_SECONDS)

        def on_url(self, url: bytes) -> None:
            if len(self.url) + len(url) > HEAD_BYTES:  # the URL alone is over the head limit: a 431, as waitress
                raise _HeadTooLong  # stops the parser: nothing after it is read as a request
            super().on_url(url)

        def on_headers_complete(self) -> None:
            """uvicorn's, for a URL of any length up to the head limit: ``httptools.parse_url`` refuses one past
            64 KiB (16-bit offsets), which uvicorn answered with a 400; such a URL is split here instead."""
            self._in_head = False
            url = self.url
            if len(url) <= _PARSE_URL_MAX:
                super().on_headers_complete()
                self._tell_client_gone()
                return
            self.url = b"/"  # parsed by uvicorn in its place; the scope then gets the real path and query
            super().on_headers_complete()
            self.url = url
            path, query = _split_target(url)
            self.scope["path"] = self.root_path + (urllib.parse.unquote(path) if "%" in path else path)
            self.scope["raw_path"] = self.root_path.encode("ascii") + path.encode("ascii")
            self.scope["query_string"] = query
            self._tell_client_gone()

        def _tell_client_gone(self) -> None:
            """The scope's :data:`~mailtrack.http.asgi.CLIENT_GONE` extension for the request just read: its client
            closed the connection (uvicorn marks the request disconnected; a pipelined request's transport closes).
            It holds the request and the transport weakly: a closure holding them made every request a reference
            cycle (request -> scope -> closure -> request), about a dozen objects a request that only the cyclic
            collector could free, in collections that stop the loop."""
            self.scope.setdefault("extensions", {})[CLIENT_GONE] = {"gone": _ClientGone(self.cycle, self.transport)}

        def on_body(self, body: bytes) -> None:
            self._body_bytes += len(body)
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._arriving = False
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            if self._refusal is not None and not self.pipeline and not self.transport.is_closing():
                self.server_state.total_requests += 1
                self.transport.write(self._refusal)  # the answers before it are out: now the refusal
                self.transport.close()
            else:
                super().on_response_complete()
            if self.transport.is_closing():  # closed once its output is out: if it ever goes out
                self._watch_output()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._unwatch_output()
            super().connection_lost(exc)

        # -- output a client does not read: a closed connection waits for its output to flush, a pipelined
        # answer for the one before it to drain, with no deadline (uvicorn): cut off when it stops moving.
        def pause_writing(self) -> None:
            super().pause_writing()
            self._watch_output()

        def resume_writing(self) -> None:
            super().resume_writing()
            if not self.transport.is_closing():
                self._unwatch_output()

        def timeout_keep_alive_handler(self) -> None:
            super().timeout_keep_alive_handler()
            self._watch_output()

        def shutdown(self) -> None:
            """Stopping: as uvicorn, and output that does not move for :data:`FLUSH_SECONDS` is dropped (an
            answered request whose client does not read is not in flight: it held the stop for its whole grace)."""
            self._stopping = True
            super().shutdown()
            self._unwatch_output()
            self._watch_output()

        def close_in_flight(self) -> int:
            """A forced stop: the requests of this connection without a complete answer get none (marked
            disconnected: the app returns quietly when cancelled, uvicorn writes no ``500``), the connection is
            closed once the answers already written are out. How many requests that left unanswered."""
            cycles = [entry[0] for entry in self.pipeline]
            if self._running is not None:
                cycles.append(self._running)
            open_cycles = [cycle for cycle in cycles if not cycle.response_complete]
            for cycle in open_cycles:
                cycle.disconnected = True
                cycle.message_event.set()
            if not self.transport.is_closing():
                self.transport.close()
            return len(open_cycles)

        def _watch_output(self) -> None:
            if self._output_watch is None and self.transport.get_write_buffer_size():
                seconds = FLUSH_SECONDS if self._stopping else IDLE_SECONDS
                self._output_watch = self.loop.call_later(seconds, self._check_output,
                                                          self.transport.get_write_buffer_size())

        def _unwatch_output(self) -> None:
            if self._output_watch is not None:
                self._output_watch.cancel()
                self._output_watch = None

        def _check_output(self, before: int) -> None:
            self._output_watch = None
            left = self.transport.get_write_buffer_size()
            if left and left >= before:  # not a byte went out since the last look: the client does not read
                self.transport.abort()
            else:
                self._watch_output()

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def send_400_response(self, msg: str) -> None:
            """uvicorn's plain 400 for what it cannot parse, or the path's own refusal (an API's JSON error)."""
            self._refuse(400, msg)

        def _refuse(self, status: int, msg: str) -> None:
            """Answer ``status`` (in the path's shape when an API's) and close; after the answers still owed to
            the requests before it on this connection (pipelined), never in place of one of them."""
            self._refusal = self._refusal_bytes(status, msg)
            self.flow.pause_reading()
            cycle = getattr(self, "cycle", None)
            if not self._in_head and cycle is not None and cycle.more_body and not cycle.response_complete:
                # The refused request is the last one whose head was read (its body is broken): its app gets a
                # disconnect, its answer is never written (the refusal is its answer), it is never started.
                self.pipeline = type(self.pipeline)(entry for entry in self.pipeline if entry[0] is not cycle)
                cycle.disconnected = True
                cycle.message_event.set()
            running = self._running
            if running is not None and not running.response_complete and not running.disconnected:
                return  # written by on_response_complete once the requests before it are answered
            self.transport.write(self._refusal)
            self.transport.close()

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            self._running = cycle  # the request being answered (self.cycle is the last one read)
            super()._start_asgi_task(cycle, app)

        def _refusal_bytes(self, status: int, msg: str) -> bytes:
            refusal = getattr(self.config, "mailtrack_refusal", None)
            answer = None
            if refusal is not None:
                raw = bytes(getattr(self, "url", b"") or b"").split(b"?", 1)[0]
                try:
                    answer = refusal(urllib.parse.unquote(raw.decode("latin-1")), status, msg)
                except Exception:  # noqa: BLE001 - a plain answer is still an answer
                    answer = None
            if answer is None:
                answer = Response(status, [("Content-Type", "text/plain; charset=utf-8")], msg.encode("ascii"))
            head = [f"HTTP/1.1 {answer.status} {answer.reason}\r\n".encode("latin-1")]
            for raw_name, raw_value in self.server_state.default_headers:
                head.append(raw_name + b": " + raw_value + b"\r\n")
            for name, value in answer.safe_headers:
                if name.lower() not in ("connection", "content-length"):
                    head.append(f"{name}: {value}\r\n".encode("latin-1"))
            head.append(f"content-length: {len(answer.body)}\r\nconnection: close\r\n\r\n".encode("ascii"))
            return b"".join(head) + answer.body

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()
                self._watch_output()

    _PROTOCOL = DeadlineProtocol
    return _PROTOCOL


class _HeadTooLong(Exception):
    """Raised from the parser's URL callback: the request line alone passes :data:`HEAD_BYTES`."""


def _split_target(url: bytes) -> tuple[str, bytes]:
    """A request target's path (ASCII, not yet percent-decoded) and query, as ``httptools.parse_url`` gives them,
    for a target too long for it. Origin form (``/path?query``) as it is; absolute form (``http://host/path``)
    without its scheme and authority; the fragment (never sent by clients) dropped."""
    target = url.split(b"#", 1)[0]
    if not target.startswith(b"/"):
        parts = urllib.parse.urlsplit(target)
        target = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
    path, _, query = target.partition(b"?")
    return path.decode("ascii"), query  # not ASCII: raised, a 400, as uvicorn does for a short URL
