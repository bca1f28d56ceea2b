"""``mailtrack serve``: the tracking endpoints (pixel, click, unsubscribe) on waitress, wired by :mod:`mailtrack.service`."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal

from mailtrack.cli._common import UsageError, add_settings, settings
from mailtrack.storage.dsn import masked

__all__ = ["DRAIN_SECONDS", "register"]

#: On SIGTERM, how long the requests in flight get to be answered before the server stops anyway.
DRAIN_SECONDS = 10.0

#: Every setting ``serve`` reads (the order of its --help).
SERVE_OPTIONS = ("db", "secret_key", "secret_key_file", "base_url", "host", "port", "threads", "access_log",
                 "trusted_proxy", "max_age", "landing", "webhook", "webhook_secret", "account_name", "spool_dir",
                 "spool_max_bytes")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the subcommands ``commands``."""
    serve = commands.add_parser(
        "serve", help="serve the tracking endpoints (pixel, click, unsubscribe) on waitress",
        description="Serve the tracking URLs and record events in SQLite or PostgreSQL until SIGTERM or Ctrl-C. "
                    "The WSGI entry point mailtrack.wsgi:application reads the same MAILTRACK_* variables.")
    add_settings(serve, *SERVE_OPTIONS)
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """``mailtrack serve``: build the service, listen, run until stopped; returns 0 after a clean stop."""
    config = settings(args, "secret_keys", "base_url", "db")
    if importlib.util.find_spec("waitress") is None:
        raise UsageError("serve needs waitress: pip install 'mailtrack[serve]'")
    from mailtrack.service import build_service, create_server

    service = build_service(config)
    try:
        server = create_server(service, config)
    except BaseException:
        service.close()
        raise
    port = getattr(server, "effective_port", config.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" on every busy request

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (systemd, docker) shuts down like Ctrl-C: the recorder is closed

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background, where it is ignored
    print(f"mailtrack: serving {config.base_url} on http://{config.host}:{port} (events in {masked(config.db)})",
          flush=True)
    from mailtrack.http.server import drain, run

    try:
        run(server)
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
