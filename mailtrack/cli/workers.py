"""``mailtrack serve --workers N``: N forked processes answering on one listening socket, kept running.

Why: one process answers on one core at most (its event loop and its event
writer share one GIL). The parent binds the socket and forks the workers
before it has started a thread or opened a database; each worker builds its
own service (store connections, recorder and spool), and the first one also
runs the webhook deliveries and the stats roller (one sender, one roller, as
with one process). The kernel hands new connections to whichever worker
accepts first. A worker that dies (a crash, ``kill -9``) is started again, after a
pause that grows while workers keep dying at once (1 s, doubling, at most 30 s);
what it had answered was committed or spooled, and its spool is drained by
the workers (spool files are taken with ``flock``). SIGTERM or SIGINT is
passed to every worker, each stops as ``serve`` does (answers what is in
flight, then closes its recorder), and the parent exits 0 when all did.
POSIX only (``fork``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from types import FrameType

from mailtrack.config import Config

__all__ = ["run_workers"]

log = logging.getLogger("mailtrack")

#: A worker that exits sooner than this after it started counts as failing to start.
_QUICK_EXIT = 2.0
#: Pause before starting again a worker that failed quickly: doubled per failure in a row, capped.
_FIRST_PAUSE, _MAX_PAUSE = 1.0, 30.0


def run_workers(config: Config, *, grace: float) -> int:
    """Serve ``config`` with ``config.workers`` processes until SIGTERM/SIGINT; 0 when every worker stopped cleanly."""
    from mailtrack.exceptions import ConfigurationError
    from mailtrack.http import loop_server
    from mailtrack.storage.dsn import masked

    try:
        listener = loop_server.bind(config.host, config.port)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc} "
                                 "(--host, --port)") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    port = listener.getsockname()[1]
    print(f"mailtrack: serving {config.base_url} on http://{config.host}:{port} (events in {masked(config.db)}; "
          f"uvicorn, {config.workers} workers)", flush=True)
    return _Supervisor(config, listener, grace).run()


class _Supervisor:
    def __init__(self, config: Config, listener: socket.socket, grace: float) -> None:
        self.config = config
        self.listener = listener
        self.grace = grace
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, when it started)
        self.stopping = False
        self.codes: list[int] = []

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for index in range(self.config.workers):
            self._spawn(index)
        failures_in_a_row = 0
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            found = self.children.pop(pid, None)
            if found is None:
                continue
            index, started = found
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                self.codes.append(code)
                continue
            quick = time.monotonic() - started < _QUICK_EXIT
            failures_in_a_row = failures_in_a_row + 1 if quick else 0
            pause = min(_FIRST_PAUSE * 2 ** (failures_in_a_row - 1), _MAX_PAUSE) if quick else 0.0
            log.error("mailtrack: worker %d (pid %d) exited (%s); starting it again%s", index, pid, _how(code),
                      f" in {pause:g} s" if pause else "")
            deadline = time.monotonic() + pause
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(min(0.1, deadline - time.monotonic()))
            if not self.stopping:
                self._spawn(index)
        self.listener.close()
        failed = [code for code in self.codes if code != 0]
        if failed:
            log.error("mailtrack: %d worker(s) did not stop cleanly: %s", len(failed), ", ".join(map(_how, failed)))
        return 1 if failed else 0

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        """Stop: pass the signal to every worker (a second one, too: uvicorn then stops at once)."""
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            _worker(self.config, self.listener, index, self.grace)
        self.children[pid] = (index, time.monotonic())


def _worker(config: Config, listener: socket.socket, index: int, grace: float) -> None:
    """Serve in this (forked) process until told to stop; ends the process with its exit code."""
    code = 1
    told: list[int] = []
    try:
        # Until uvicorn installs its own handlers (when it runs), a stop is noted and honoured at once after start-up.
        signal.signal(signal.SIGTERM, lambda signum, frame: told.append(signum))
        signal.signal(signal.SIGINT, lambda signum, frame: told.append(signum))
        from mailtrack.cli.serve import run_loop_server
        from mailtrack.service import build_service, create_loop_server

        service = build_service(config, background=index == 0)
        try:
            server = create_loop_server(service, config, sockets=[listener], grace=grace)
        except BaseException:
            service.close()
            raise
        if told:
            server.stop()
        code = run_loop_server(server, service)
    except BaseException:  # noqa: BLE001 - a worker must end with an exit code, whatever happened
        log.exception("mailtrack: worker %d failed", index)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _how(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"
