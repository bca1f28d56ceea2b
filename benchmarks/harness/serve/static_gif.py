"""The static-GIF contender: the same server, answering every request with the pixel, no store.

``python benchmarks/harness/serve/static_gif.py HOST THREADS [uvicorn|waitress]`` prints a banner like
``mailtrack serve``'s (``... on http://HOST:PORT ...``) and serves until SIGINT. ``uvicorn`` (the default, as for
``mailtrack serve``) runs the very server ``serve`` runs (:mod:`mailtrack.http.loop_server`: uvicorn, uvloop,
httptools, its deadlines) around a two-line ASGI app; ``waitress`` the tuned waitress of
:mod:`mailtrack.http.server` with the same threads. What ``mailtrack serve`` achieves against it is the price of
verifying tokens and storing events durably (issue 12's goal: at least 0.7x).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

from mailtrack.http.pages import GIF

HEADERS = [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))),
           ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0"), ("Pragma", "no-cache"), ("Expires", "0")]
_ASGI_HEADERS = [(name.encode(), value.encode()) for name, value in HEADERS]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [GIF]


async def lifespan(receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """ASGI's lifespan protocol for a contender with nothing to start or stop: every message acknowledged."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _ASGI_HEADERS})
    await send({"type": "http.response.body", "body": GIF})


def _serve(listener: object) -> None:
    from mailtrack.http import loop_server

    server = loop_server.create(asgi_app, sockets=[listener])  # type: ignore[list-item]
    try:
        server.run(freeze=True)  # as mailtrack serve runs it
    finally:
        server.close()


def main() -> None:
    host, threads = sys.argv[1], int(sys.argv[2])
    kind = sys.argv[3] if len(sys.argv) > 3 else "uvicorn"
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    if kind == "uvicorn":
        from mailtrack.http import loop_server

        listener = loop_server.bind(host, 0)
        print(f"static GIF (no store) on http://{host}:{listener.getsockname()[1]} (uvicorn, as mailtrack serve runs "
              f"it; {workers} worker(s))", flush=True)
        if workers == 1:
            _serve(listener)
            return
        # as `serve --workers`: forked processes on one listening socket; a stop signal goes to each
        children = []
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                try:
                    _serve(listener)
                finally:
                    os._exit(0)
            children.append(pid)

        def forward(signum: int, frame: object) -> None:
            for child in children:
                try:
                    os.kill(child, signum)
                except ProcessLookupError:
                    pass

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        for child in children:
            os.waitpid(child, 0)
        return
    from mailtrack.http import server as tuned

    wsgi = tuned.create(app, threads=threads, max_body=1 << 16, host=host, port=0)
    print(f"static GIF (no store) on http://{host}:{wsgi.effective_port} (waitress, {threads} threads)", flush=True)
    try:
        tuned.run(wsgi, freeze=True)  # as mailtrack serve runs it
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
