"""The static-GIF contender: the same waitress, the same threads, answering every request with the pixel, no store.

``python benchmarks/harness/serve/static_gif.py HOST THREADS`` prints a banner like ``mailtrack serve``'s
(``... on http://HOST:PORT ...``) and serves until SIGINT. What ``mailtrack serve`` achieves against it is the
price of verifying tokens and storing events durably (issue 12's goal: at least 0.7x).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

import waitress

from mailtrack.http.pages import GIF

HEADERS = [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))),
           ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0"), ("Pragma", "no-cache"), ("Expires", "0")]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [GIF]


def main() -> None:
    host, threads = sys.argv[1], int(sys.argv[2])
    server = waitress.create_server(app, host=host, port=0, threads=threads, ident="static")
    print(f"static GIF (no store) on http://{host}:{server.effective_port} (waitress, {threads} threads)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
