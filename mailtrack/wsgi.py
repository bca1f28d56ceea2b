"""The WSGI entry point: ``gunicorn -w 4 mailtrack.wsgi:application``.

A composition root, like the CLI: the application is built on first use by
:func:`mailtrack.service.from_environment` from ``MAILTRACK_*`` variables (read
by :mod:`mailtrack.config`, the same reader ``mailtrack serve`` uses), so each
worker process of gunicorn, uWSGI or mod_wsgi wires its own store, recorder
and webhook deliveries. The adapter itself is :class:`mailtrack.http.wsgi.WsgiApp`;
its names, and the wiring functions of 0.1's ``mailtrack.wsgi``, are
re-exported here so older imports keep working.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from mailtrack.http.wsgi import MAX_BODY, StartResponse, WsgiApp
from mailtrack.service import Service, build_service, from_environment

__all__ = ["MAX_BODY", "Service", "WsgiApp", "application", "build_service", "from_environment"]

_app: WsgiApp | None = None
_app_lock = threading.Lock()


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The tracking endpoints, configured from the environment on the first request."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                _app = from_environment().app
    return _app(environ, start_response)
