"""A small HTTP/1.1 POST client on asyncio, for webhook deliveries: kept-alive connections, httptools' parser.

Why not a general client: the deliveries were measured with urllib3 on a
thread pool (0.6-0.8 ms of interpreter time per POST, the threads waiting for
the GIL: 1,305 deliveries/s with 16 threads, no more than one thread) and with
aiohttp (fast, but its strict parser refuses answers that sloppy receivers
send, such as a ``204`` with a body, which turned a delivered event into
retries). A webhook POST needs little: the request bytes, the status and one
header of the answer (``Retry-After``), connections kept alive between POSTs.
So this module is that and no more: requests are written whole, answers are
read by httptools (llhttp, the parser uvicorn uses; installed with
``mailtrack[serve]``), TLS is the stdlib's default context (certificates and
host names verified). Redirects are never followed (a redirect is a failed
delivery: the receiver must give the final URL). An answer's body is read up
to :data:`MAX_ANSWER` bytes and ignored; a longer one closes its connection.

An answer that has no body (a ``204``, a ``304``: RFC 9112 6.3) ends at its
head. Bytes after an answer (a sloppy receiver's body for a ``204``, in the
same packet or a later one) are nobody's answer, so a connection that has
any, or that the receiver closed, is not reused: the reader counts the bytes
that arrive, and a connection on which more arrived than its answers read is
closed when it is taken from the pool, before the next request is written;
that request goes on another connection. (It failed once with "unreadable
answer" and was retried: the stray bytes were read as the next answer.)
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

from mailtrack.exceptions import MailtrackError

__all__ = ["MAX_ANSWER", "Answer", "PostClient", "PostFailed"]

#: Bytes of an answer's body read (and ignored) to keep its connection; past this the connection is closed.
MAX_ANSWER = 65536
#: Bytes of an answer's head (status line and headers) accepted.
_MAX_HEAD = 65536


class PostFailed(MailtrackError):
    """A POST got no complete answer: refused, reset, timed out, TLS failure, an unreadable answer."""


class Answer(NamedTuple):
    """A receiver's answer: the status and the headers (names in lower case)."""

    status: int
    headers: dict[str, str]


class _Reading:
    """httptools' callbacks for one answer: the headers, whether the head and the message are complete.

    Interim answers (``1xx`` but ``101``: ``100 Continue``, ``103 Early Hints``) are not the answer (RFC 9110
    15.2): their headers are dropped and the reading goes on to the final answer that follows them.
    """

    def __init__(self) -> None:
        self.parser: Any = None  # the httptools parser feeding these callbacks (for the status of each head)
        self.headers: dict[str, str] = {}
        self.status = 0
        self.head_done = False
        self.interim = False
        self.done = False
        self.after = False  # bytes came after the whole answer: a second message nobody asked for
        self.body = 0

    def on_message_begin(self) -> None:
        if self.done:
            self.after = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.after:
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self.after:  # the answer is read: what follows it must not replace its status
            return
        self.status = int(self.parser.get_status_code())
        self.interim = 100 <= self.status < 200 and self.status != 101
        self.head_done = not self.interim

    def on_body(self, body: bytes) -> None:
        if not self.after:
            self.body += len(body)

    def on_message_complete(self) -> None:
        if self.after:
            return
        if self.interim:  # a 1xx: the final answer is still to come on this connection
            self.interim = False
            self.headers = {}
            return
        self.done = True


class _Reader(asyncio.StreamReader):
    """A stream reader that counts the bytes that arrived, so the pool can tell whether any came while idle."""

    arrived = 0

    def feed_data(self, data: Any) -> None:  # bytes from the transport (typeshed says Iterable[SupportsIndex])
        self.arrived += len(data)
        super().feed_data(data)


class _Connection:
    """A connection and how many of the bytes that arrived on it its answers have read."""

    __slots__ = ("reader", "writer", "read")

    def __init__(self, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.read = 0

    def reusable(self) -> bool:
        """Taken from the pool: whether it may carry the next request: open, and nothing arrived on it since its
        last answer (stray bytes after it, or the receiver's close)."""
        return not self.writer.is_closing() and not self.reader.at_eof() and self.reader.arrived == self.read

    def close(self) -> None:
        self.writer.close()


class PostClient:
    """POSTs to one URL over at most ``limit`` kept-alive connections; connecting, then sending a POST and reading
    its answer, are each bounded by ``timeout`` seconds in total.

    Use from one event loop; :meth:`close` closes the idle connections.
    """

    def __init__(self, url: str, *, limit: int = 16, timeout: float = 10.0,
                 user_agent: str = "mailtrack-webhook") -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PostFailed(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if parts.port is None else f"{host}:{parts.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._head = (f"POST {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\n"
                      f"Connection: keep-alive\r\n").encode("latin-1")
        self.limit = limit
        self.timeout = timeout
        self._idle: list[_Connection] = []

    async def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST ``body`` with ``headers``; the answer, or :class:`PostFailed` saying why there is none.

        A kept-alive connection the receiver closed meanwhile (nothing at all
        came back) is replaced by a new one and the request sent once more.
        """
        request = b"".join([
            self._head,
            "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1"),
            f"Content-Length: {len(body)}\r\n\r\n".encode("ascii"),
            body,
        ])
        while self._idle:
            connection = self._idle.pop()
            if not connection.reusable():  # stray bytes after its last answer, or closed: not reused
                connection.close()
                continue
            try:
                return await self._exchange(connection, request, reused=True)
            except _Stale:
                continue
        return await self._exchange(await self._open(), request, reused=False)

    async def close(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for connection in idle:
            try:
                await asyncio.wait_for(connection.writer.wait_closed(), 1)
            except (OSError, asyncio.TimeoutError):
                pass

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        reader = _Reader(limit=_MAX_HEAD, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)  # asyncio.open_connection, with our reader
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: protocol, self.host, self.port, ssl=self.tls,
                                       server_hostname=self.host if self.tls is not None else None),
                self.timeout)
        except asyncio.TimeoutError:
            raise PostFailed(f"timed out: no connection within {self.timeout:g} s") from None
        except ssl.SSLError as exc:
            raise PostFailed(f"TLS failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise PostFailed(f"cannot connect: {exc.strerror or exc}") from None
        return _Connection(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    async def _exchange(self, connection: _Connection, request: bytes, *, reused: bool) -> Answer:
        """Write ``request`` and read its answer, all within ``timeout`` seconds in total (an answer dribbled a
        byte at a time, each byte well within it, is cut off all the same; once its head is whole, the status
        stands and the connection is dropped)."""
        import httptools

        reading = _Reading()
        parser = httptools.HttpResponseParser(reading)
        reading.parser = parser
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        keep = False
        received = 0
        try:
            connection.writer.write(request)
            await asyncio.wait_for(connection.writer.drain(), self.timeout)
            while not reading.done:
                left = deadline - loop.time()
                if left <= 0:
                    raise asyncio.TimeoutError
                data = await asyncio.wait_for(connection.reader.read(65536), left)
                if not data:
                    if received == 0 and reused:
                        raise _Stale
                    if reading.head_done:  # an answer without a length ends with its connection
                        break
                    raise PostFailed("the receiver closed the connection before answering")
                received += len(data)
                try:
                    parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    raise PostFailed("the receiver answered with a protocol upgrade") from None
                except httptools.HttpParserError as exc:
                    if reading.done:  # bytes after a whole answer (a 204 with a body): the answer stands
                        return Answer(reading.status, reading.headers)  # the connection is not reused
                    raise PostFailed(f"unreadable answer: {exc}") from None
                if not reading.head_done and received > _MAX_HEAD:
                    raise PostFailed(f"the answer's head is longer than {_MAX_HEAD} bytes")
                if reading.head_done and reading.body > MAX_ANSWER:
                    break  # enough: the status is known; the connection is not reused
            keep = (reading.done and not reading.after and parser.should_keep_alive()
                    and len(self._idle) < self.limit)
            return Answer(reading.status, reading.headers)
        except asyncio.TimeoutError:
            if reading.head_done:  # the status is known, only the body is late: it stands, the connection goes
                return Answer(reading.status, reading.headers)
            raise PostFailed(f"timed out: no answer within {self.timeout:g} s") from None
        except (ConnectionError, OSError) as exc:
            if reused and received == 0 and isinstance(exc, ConnectionError):
                raise _Stale from None
            raise PostFailed(f"connection failed: {exc.strerror or exc}") from None
        finally:
            if keep:
                connection.read += received
                self._idle.append(connection)
            else:
                connection.close()


class _Stale(Exception):
    """A kept-alive connection the receiver had closed: nothing came back; the request is sent on a new one."""

