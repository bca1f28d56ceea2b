"""``mailtrack serve --workers N``: N forked processes answering on one listening socket, kept running.

Why: one process answers on one core at most (its event loop and its event
writer share one GIL). The parent binds the socket and forks the workers
before it has started a thread or opened a database; each worker builds its
own service (store connections, recorder and spool), and the first one also
runs the webhook deliveries and the stats roller (one sender, one roller, as
with one process). The kernel hands new connections to whichever worker
accepts first. A worker that dies (a crash, ``kill -9``) is started again, after a
pause that grows while workers keep dying young (1 s, doubling, at most 30 s;
each worker's death is noticed within a tenth of a second, so its age is
right, whatever the others do); what it had answered was committed or
spooled, and its spool is drained by the workers (spool files are taken with
``flock``). A worker that cannot start (the database cannot be opened...)
says why in one line and is started again as any other; when its settings
are wrong (a ``ConfigurationError``: a database directory that does not
exist...) at the very first start, ``serve`` stops and exits 1, as it does
alone.

SIGTERM or SIGINT is passed to every worker as SIGTERM; each stops as
``serve`` does (answers what is in flight, then closes its recorder), and
the parent exits 0 when all did. The workers have a process group of their
own, so Ctrl-C in a terminal reaches the parent only (a worker that also got
the terminal's SIGINT took the second signal for "stop at once" and dropped
the requests in flight).
A second signal is passed on as SIGINT: the workers stop at once. On Linux a
worker whose parent dies (``kill -9``) gets SIGTERM and stops the same way
(``PR_SET_PDEATHSIG``); elsewhere it notices within a second. POSIX only (``fork``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType

from mailtrack.config import Config

__all__ = ["run_workers"]

log = logging.getLogger("mailtrack")

#: A worker that exits sooner than this after it started counts as failing to start.
_QUICK_EXIT = 2.0
#: Pause before starting again a worker that failed quickly: doubled per failure in a row, capped.
_FIRST_PAUSE, _MAX_PAUSE = 1.0, 30.0
#: How often the supervisor looks for workers that ended.
_POLL = 0.1
#: The exit status of a worker whose configuration is wrong (a ConfigurationError at start; why is logged in one line).
_MISCONFIGURED = 78  # EX_CONFIG
_STOPPING = {signal.SIGTERM, signal.SIGINT}


def run_workers(config: Config, *, grace: float) -> int:
    """Serve ``config`` with ``config.workers`` processes until SIGTERM/SIGINT; 0 when every worker stopped cleanly,
    1 when one did not, or when the workers could not start at all."""
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
        self.pid = os.getpid()
        self.children: dict[int, tuple[int, float, bool]] = {}  # pid -> (worker index, when it started, first start)
        self.stopping = False  # the stop was passed on to the workers
        self.signals = 0  # stop signals received
        self.passed_on = 0  # of which passed on
        self.codes: list[int] = []

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for index in range(self.config.workers):
            self._spawn(index, first=True)
        failures_in_a_row = 0
        due: dict[int, float] = {}  # worker index -> when to start it again
        could_not_start = False
        while self.children or (due and not self.stopping and not self.signals):
            ended = self._reap()
            now = time.monotonic()
            for pid, code in ended:
                index, started, first = self.children.pop(pid)
                if self.stopping:  # after the stop was passed on: how the worker stopped
                    self.codes.append(code)
                    continue
                if self.signals:  # ended before the stop was passed on (killed just before): not started again
                    log.error("mailtrack: worker %d (pid %d) exited (%s) as serve was stopping", index, pid, _how(code))
                    continue
                if code == _MISCONFIGURED and first:  # the configuration is wrong: as serve alone, stop and say so
                    log.error("mailtrack: worker %d could not start (see above); stopping", index)
                    could_not_start = True
                    self._pass_on(signal.SIGTERM)
                    continue
                quick = now - started < _QUICK_EXIT
                failures_in_a_row = failures_in_a_row + 1 if quick else 0
                pause = min(_FIRST_PAUSE * 2 ** (failures_in_a_row - 1), _MAX_PAUSE) if quick else 0.0
                log.error("mailtrack: worker %d (pid %d) exited (%s); starting it again%s", index, pid, _how(code),
                          f" in {pause:g} s" if pause else "")
                due[index] = now + pause
            if self.signals > self.passed_on:
                # SIGTERM to every worker first (they answer what is in flight); a second signal, SIGINT: at once.
                self.passed_on = self.signals
                self._pass_on(signal.SIGTERM if self.passed_on == 1 else signal.SIGINT)
            if self.stopping:
                due.clear()
            for index, when in sorted(due.items()):
                if when <= now:
                    del due[index]
                    self._spawn(index, first=False)
            if not ended:
                time.sleep(_POLL)
        self.listener.close()
        if could_not_start:
            return 1
        failed = [code for code in self.codes if code != 0]
        if failed:
            log.error("mailtrack: %d worker(s) did not stop cleanly: %s", len(failed), ", ".join(map(_how, failed)))
        return 1 if failed else 0

    def _reap(self) -> list[tuple[int, int]]:
        """The workers that ended since the last look, with their exit codes (never blocks)."""
        ended = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.children:
                ended.append((pid, os.waitstatus_to_exitcode(status)))
        return ended

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        """Note a stop; the loop passes it on (within :data:`_POLL`), after taking note of the workers that had
        ended already: one killed just before the stop is neither started again nor counted as failing to stop."""
        self.signals += 1

    def _pass_on(self, signum: int) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _spawn(self, index: int, *, first: bool) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # Stop signals are held back across fork(): the child inherits the mask and lifts it once its own handlers
        # are in place (until then it has this process's handler, and a stop would be noted in the wrong place).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
        try:
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                _worker(self.config, self.listener, index, self.grace, parent=self.pid, mask=mask)
            self.children[pid] = (index, time.monotonic(), first)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _worker(config: Config, listener: socket.socket, index: int, grace: float, *, parent: int,
            mask: set[int | signal.Signals]) -> None:
    """Serve in this (forked) process until told to stop; ends the process with its exit code."""
    code = 1
    told: list[int] = []
    try:
        # Until uvicorn installs its own handlers (when it runs), a stop is noted and honoured at once after start-up.
        signal.signal(signal.SIGTERM, lambda signum, frame: told.append(signum))
        signal.signal(signal.SIGINT, lambda signum, frame: told.append(signum))
        _own_group()
        _stop_with(parent)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if os.getppid() != parent:  # the supervisor died before this worker could ask to be told
            told.append(signal.SIGTERM)
        from mailtrack.cli.serve import run_loop_server
        from mailtrack.exceptions import ConfigurationError, MailtrackError
        from mailtrack.service import build_service, create_loop_server
        from mailtrack.storage.base import StoreUnavailable

        try:
            service = build_service(config, background=index == 0)
            try:
                server = create_loop_server(service, config, sockets=[listener], grace=grace)
            except BaseException:
                service.close()
                raise
        except ConfigurationError as exc:  # wrong settings: no restart helps
            log.error("mailtrack: worker %d could not start: %s", index, _reason(exc))
            code = _MISCONFIGURED
            return
        except (MailtrackError, StoreUnavailable, OSError) as exc:
            # The store locked or unreachable (a fresh database another worker is creating): a restart may do.
            log.error("mailtrack: worker %d could not start: %s", index, _reason(exc))
            return
        # From here until uvicorn installs its handlers (in run), a stop stops the server: noted in `told` only, a
        # SIGTERM in that window was lost and the worker served on, its supervisor waiting for it for ever.
        signal.signal(signal.SIGTERM, lambda signum, frame: server.stop())
        signal.signal(signal.SIGINT, lambda signum, frame: server.stop())
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


def _own_group() -> None:
    """Leave the terminal's process group: Ctrl-C reaches the supervisor only, which passes SIGTERM on (a worker
    that got the terminal's SIGINT and the supervisor's would take the second for "stop at once")."""
    try:
        os.setpgid(0, 0)
    except OSError:  # already a group leader, or not allowed: the terminal's signals may come twice
        return
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # writing its log lines to the terminal is still allowed


def _stop_with(parent: int) -> None:
    """Have this worker get SIGTERM when the supervisor ``parent`` dies, even by ``kill -9``: orphaned workers would
    keep answering on the shared socket, unsupervised. Linux: ``PR_SET_PDEATHSIG``; elsewhere a thread that looks
    at the parent's pid every second."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0:  # 1: PR_SET_PDEATHSIG
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="mailtrack-parent-watch", daemon=True).start()


def _reason(exc: BaseException) -> str:
    """``exc`` in one line, as the command line words its errors."""
    from mailtrack.cli._common import cli_wording

    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return cli_wording(str(exc) or type(exc).__name__)


def _how(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"
