"""``mailtrack serve``: the tracking endpoints (pixel, click, unsubscribe) and APIs on uvicorn (or waitress), wired by
:mod:`mailtrack.service`."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from mailtrack.cli._common import UsageError, add_settings, settings
from mailtrack.storage.dsn import masked

if TYPE_CHECKING:  # imported when serving: `mailtrack --help` loads no server
    from mailtrack.http.loop_server import LoopServer
    from mailtrack.service import Service

__all__ = ["DRAIN_SECONDS", "register"]

#: On SIGTERM, how long the requests in flight get to be answered before the server stops anyway.
DRAIN_SECONDS = 10.0

#: Every setting ``serve`` reads (the order of its --help).
SERVE_OPTIONS = ("db", "secret_key", "secret_key_file", "base_url", "host", "port", "server", "writer", "serve_workers",
                 "threads", "access_log",
                 "trusted_proxy", "max_age", "landing", "webhook", "webhook_skip_machine", "webhook_secret", "account_name",
                 "spool_dir", "spool_max_bytes", "privacy_ip", "privacy_user_agent", "purge_after", "machine_ranges")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the subcommands ``commands``."""
    serve = commands.add_parser(
        "serve", help="serve the tracking endpoints (pixel, click, unsubscribe) and the APIs",
        description="Serve the tracking URLs and record events in SQLite or PostgreSQL until SIGTERM or Ctrl-C. "
                    "The WSGI entry point mailtrack.wsgi:application reads the same MAILTRACK_* variables.")
    add_settings(serve, *SERVE_OPTIONS)
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """``mailtrack serve``: build the service, listen, run until stopped; returns 0 after a clean stop."""
    config = settings(args, "secret_keys", "base_url", "db")
    from mailtrack.http import loop_server

    use_loop = config.server == "uvicorn" and loop_server.available()
    if not use_loop and importlib.util.find_spec("waitress") is None:
        raise UsageError("serve needs uvicorn or waitress: pip install 'mailtrack[serve]'")
    if config.workers > 1:
        if not use_loop:
            raise UsageError("--workers needs the uvicorn server (pip install 'mailtrack[serve]'; not --server waitress)")
        if not hasattr(os, "fork"):
            raise UsageError("--workers needs fork(): on this system run one process per port behind a proxy")
        from mailtrack.cli.workers import run_workers

        return run_workers(config, grace=DRAIN_SECONDS)
    from mailtrack.service import build_service, create_loop_server, create_server

    service = build_service(config)
    try:
        server = create_loop_server(service, config, grace=DRAIN_SECONDS) if use_loop else create_server(service, config)
    except BaseException:
        service.close()
        raise
    port = getattr(server, "effective_port", config.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" on every busy request
    if config.server == "uvicorn" and not use_loop:
        logging.getLogger("mailtrack").warning("mailtrack: uvicorn or httptools is not installed: serving on waitress "
                                               "(pip install 'mailtrack[serve]' for the event-loop server)")
    print(f"mailtrack: serving {config.base_url} on http://{config.host}:{port} (events in {masked(config.db)}; "
          f"{'uvicorn' if use_loop else 'waitress'})", flush=True)
    if use_loop:
        return run_loop_server(server, service)
    return _run_waitress(server, service)


def run_loop_server(server: LoopServer, service: Service) -> int:
    """uvicorn handles SIGTERM/SIGINT itself: it stops accepting and answers what is in flight, then returns; a second
    Ctrl-C returns at once, the requests still in flight closed without an answer (:mod:`mailtrack.http.loop_server`).
    Either way the recorder is closed here (what was queued is written or spooled) and the exit status is 0."""
    try:
        server.run(freeze=True)  # this process is ours: its startup heap is frozen (mailtrack.storage.heap)
    except KeyboardInterrupt:  # a Ctrl-C before uvicorn's handlers are in place, or after they are gone: stop now
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            server.close()
        finally:
            service.close()
    return 0


def _run_waitress(server: Any, service: Service) -> int:
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (systemd, docker) shuts down like Ctrl-C: the recorder is closed

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background, where it is ignored
    from mailtrack.http.server import drain, run

    try:
        run(server, freeze=True)
    except KeyboardInterrupt:
        pass
    finally:
        # Stop accepting, answer what is in flight (a request being served is an event being stored), then go.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            drain(server, grace=DRAIN_SECONDS)
        finally:
            service.close()
    return 0
