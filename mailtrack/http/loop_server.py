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
  (slowloris: uvicorn has no such limit);
* the open-file limit raised to its hard limit, so thousands of idle
  connections fit (an idle connection costs a socket and a few KB, no thread);
* SIGTERM/SIGINT: stop accepting, answer the requests in flight (at most
  ``grace`` seconds), close the idle connections, return, so the caller
  closes the recorder (every answered event is committed or spooled).

``X-Forwarded-For`` is left to the endpoints (``--trusted-proxy``): uvicorn's
own proxy-header handling is off. Pinned to uvicorn's documented ``Config``
and ``Server`` and to its httptools protocol's parser callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

from mailtrack.http.server import IDLE_SECONDS, REQUEST_SECONDS, Refusal, raise_file_limit

__all__ = ["LoopServer", "available", "bind", "create"]


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

    def run(self) -> None:
        """Serve until stopped; returns after the requests in flight were answered (or ``grace`` ran out)."""
        self.server.run(sockets=self.listeners)

    def stop(self) -> None:
        """Ask :meth:`run` to stop (from any thread): what SIGTERM does."""
        self.server.should_exit = True

    def close(self) -> None:
        """Close the listening sockets (after :meth:`run` returned, or when it never ran)."""
        for listener in self.listeners:
            with contextlib.suppress(OSError):
                listener.close()


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus its re-raising of the stopping signal once it has stopped (that would kill the
        process before the recorder is closed)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()  # before uvicorn's own exit code raises them again

    return Server


def _Server(config: Any) -> Any:  # noqa: N802 - a class made on first use (uvicorn is an optional extra)
    global _SERVER
    if _SERVER is None:
        _SERVER = _server_class()
    return _SERVER(config)


_SERVER: type | None = None
_PROTOCOL: type | None = None


def _protocol_class() -> type:
    """uvicorn's httptools protocol with an idle deadline before the first byte and a deadline per request."""
    global _PROTOCOL
    if _PROTOCOL is not None:
        return _PROTOCOL
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class DeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _arriving = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(IDLE_SECONDS)  # a connection that never sends a byte

        def data_received(self, data: bytes) -> None:
            if not self._arriving and data:
                self._arriving = True
                self._arm(REQUEST_SECONDS)
            super().data_received(data)

        def on_message_complete(self) -> None:
            self._arriving = False
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def send_400_response(self, msg: str) -> None:
            """uvicorn's plain 400 for what it cannot parse, or the path's own refusal (an API's JSON error)."""
            refusal = getattr(self.config, "mailtrack_refusal", None)
            cycle = getattr(self, "cycle", None)
            if cycle is not None and cycle.response_started:  # an answer is on its way: it cannot be followed
                self.transport.close()
                return
            answer = None
            if refusal is not None:
                raw = bytes(getattr(self, "url", b"") or b"").split(b"?", 1)[0]
                try:
                    answer = refusal(urllib.parse.unquote(raw.decode("latin-1")), 400, msg)
                except Exception:  # noqa: BLE001 - uvicorn's own plain answer is still an answer
                    answer = None
            if answer is None:
                super().send_400_response(msg)
                return
            head = [f"HTTP/1.1 {answer.status} {answer.reason}\r\n".encode("latin-1")]
            for name, value in self.server_state.default_headers:
                head.append(name + b": " + value + b"\r\n")
            for name, value in answer.safe_headers:
                if name.lower() not in ("connection", "content-length"):
                    head.append(f"{name}: {value}\r\n".encode("latin-1"))
            head.append(f"content-length: {len(answer.body)}\r\nconnection: close\r\n\r\n".encode("ascii"))
            self.transport.write(b"".join(head) + answer.body)
            self.transport.close()

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    _PROTOCOL = DeadlineProtocol
    return _PROTOCOL
