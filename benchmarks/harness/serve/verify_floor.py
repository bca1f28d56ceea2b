"""The verify-only contender: the same server, each request's token verified, then the pixel or the redirect; no event.

``python benchmarks/harness/serve/verify_floor.py HOST`` prints a banner like ``mailtrack serve``'s (``... on
http://HOST:PORT ...``) and serves until SIGINT, on the very server ``mailtrack serve`` runs
(:mod:`mailtrack.http.loop_server`: uvicorn, uvloop, httptools, its deadlines), around an ASGI app of a dozen lines
that does only what no tracking server can skip: :meth:`mailtrack.Tracker.verify` of the token in the path (the
compiled AES-SIV open and the claims' checks), then the GIF for an open or a ``302`` to the signed destination for a
click, a ``404`` for a bad token. No request object, no machine classification, no event, no recorder, no store.

Why (``bench_serve.py --verify-contender``): issue 12 asks ``mailtrack serve`` with durable events for 0.7x the
requests/s of the static GIF. This contender is the floor of any design: whatever an implementation does beyond
verifying can only make it slower. Where it already falls short of 0.7x, the goal is out of reach for this server
stack, whatever the store and the recorder.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/, for ``harness`` when run as a script

from harness.serve.static_gif import _ASGI_HEADERS, lifespan  # noqa: E402 - after the path it needs
from harness.serve.workload import BASE_URL, SECRET_KEY  # noqa: E402
from mailtrack import MailtrackError, Tracker  # noqa: E402
from mailtrack.http.pages import GIF  # noqa: E402

_TRACKER = Tracker(secret_keys=[SECRET_KEY], base_url=BASE_URL)
_NOT_FOUND = [(b"content-type", b"text/plain"), (b"content-length", b"0")]
_PREFIXES = {"/o/": "open", "/c/": "click"}


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = str(scope["path"])
    kind = _PREFIXES.get(path[:3])
    status, headers, body = 404, _NOT_FOUND, b""
    if kind is not None:
        try:
            claims = _TRACKER.verify(path[3:], kind=kind)  # type: ignore[arg-type]
        except MailtrackError:
            claims = None
        if claims is not None and kind == "open":
            status, headers, body = 200, _ASGI_HEADERS, GIF
        elif claims is not None and isinstance(claims.url, str):
            status, headers = 302, [(b"location", claims.url.encode("utf-8")), *_NOT_FOUND]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    from mailtrack.http import loop_server

    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    listener = loop_server.bind(host, 0)
    print(f"verify-only floor (no event, no store) on http://{host}:{listener.getsockname()[1]} (uvicorn, as "
          f"mailtrack serve runs it)", flush=True)
    server = loop_server.create(asgi_app, sockets=[listener])
    try:
        server.run(freeze=True)  # as mailtrack serve runs it
    finally:
        server.close()


if __name__ == "__main__":
    main()
