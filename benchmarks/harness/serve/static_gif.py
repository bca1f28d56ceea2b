"""The static-GIF contender: the same server, answering every request with the pixel, no store.

``python benchmarks/harness/serve/static_gif.py HOST THREADS [uvicorn|waitress]`` prints a banner like
``mailtrack serve``'s (``... on http://HOST:PORT ...``) and serves until SIGINT. ``uvicorn`` (the default, as for
``mailtrack serve``) runs the very server ``serve`` runs (:mod:`mailtrack.http.loop_server`: uvicorn, uvloop,
httptools, its deadlines) around a two-line ASGI app; ``waitress`` the tuned waitress of
:mod:`mailtrack.http.server` with the same threads. What ``mailtrack serve`` achieves against it is the price of
verifying tokens and storing events durably (issue 12's goal: at least 0.7x).
"""

from __future__ import annotations

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


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _ASGI_HEADERS})
    await send({"type": "http.response.body", "body": GIF})


def main() -> None:
    host, threads = sys.argv[1], int(sys.argv[2])
    kind = sys.argv[3] if len(sys.argv) > 3 else "uvicorn"
    if kind == "uvicorn":
        from mailtrack.http import loop_server

        server = loop_server.create(asgi_app, host=host, port=0)
        print(f"static GIF (no store) on http://{host}:{server.effective_port} (uvicorn, as mailtrack serve runs it)",
              flush=True)
        try:
            server.run()
        finally:
            server.close()
        return
    from mailtrack.http import server as tuned

    wsgi = tuned.create(app, threads=threads, max_body=1 << 16, host=host, port=0)
    print(f"static GIF (no store) on http://{host}:{wsgi.effective_port} (waitress, {threads} threads)", flush=True)
    try:
        tuned.run(wsgi)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
