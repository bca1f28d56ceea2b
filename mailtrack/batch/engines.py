"""Engines: what runs :class:`~mailtrack.batch.Rewriter` over the partitions of a batch.

An :data:`Engine` is a function ``engine(job, chunks)`` that takes the job
and an iterator of item lists and yields one
:class:`~mailtrack.batch.Partition` per list, **in the order of the lists**.
It should pull lists only as it has room for them (the reader streams, so
memory stays flat) and give the job to each worker once, not with every list.
It must handle empty lists (yield an empty partition), and clean up in a
``finally`` block: the runner closes the generator when it stops early
(Ctrl-C, an error). An engine may carry ``chunk_items`` and ``chunk_bytes``
attributes: the chunk bounds it works best with, which
:func:`~mailtrack.batch.run_batch` uses unless told others. :func:`in_process` and :func:`process_pool` are the local
engines; a distributed one (Dask) follows the same contract.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from mailtrack.batch.allocator import keep_freed_memory
from mailtrack.batch.items import Item, Partition
from mailtrack.batch.job import Job
from mailtrack.batch.rewriter import Rewriter
from mailtrack.exceptions import ArgumentError, MailtrackError

__all__ = ["Engine", "EngineError", "in_process", "process_pool"]

#: ``engine(job, chunks)`` -> one partition per chunk, in order (see the module's description).
Engine = Callable[[Job, Iterable[Sequence[Item]]], Iterator[Partition]]


class EngineError(MailtrackError):
    """The engine could not go on (a worker process died); outputs already written are whole, the rest are not written."""


def in_process(job: Job, chunks: Iterable[Sequence[Item]]) -> Iterator[Partition]:
    """The plain engine: every chunk rewritten in this process, one after the other."""
    rewriter = Rewriter(job)
    for items in chunks:
        yield rewriter.partition(items)


# -- the process pool ---------------------------------------------------------------------------

_WORKER: Rewriter | None = None
#: How often a worker checks that the batch process is still there.
_WATCH_SECONDS = 0.5


def _start_worker(job: Job, batch_pid: int) -> None:
    """A pool worker's initializer: keep the job's rewriter; leave Ctrl-C to the batch process, which stops the pool.

    The worker keeps the memory it frees for the next message (:mod:`~mailtrack.batch.allocator`).
    """
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()
    _WORKER = Rewriter(job)
    threading.Thread(target=_exit_with, args=(batch_pid,), name="mailtrack-batch-watch", daemon=True).start()


def _exit_with(pid: int) -> None:
    """Exit when process ``pid`` is gone: a batch killed with SIGKILL cannot stop its pool, whose workers would wait forever."""
    while _alive(pid):
        time.sleep(_WATCH_SECONDS)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # killed, not yet reaped by its parent
    except (OSError, IndexError):
        return True


def _rewrite_in_worker(items: Sequence[Item]) -> Partition:
    assert _WORKER is not None, "the pool's initializer did not run"
    return _WORKER.partition(items)


def _context() -> multiprocessing.context.BaseContext:
    """Fresh worker processes that do not inherit the parent's threads (a progress display's, say): forkserver or spawn."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        context.set_forkserver_preload(["mailtrack.batch.engines"])
    return context


def process_pool(workers: int, *, in_flight: int | None = None) -> Engine:
    """An engine running ``workers`` processes; each gets the job once (the pool's initializer).

    At most ``in_flight`` chunks (default: twice the workers) are submitted
    and not yet yielded, so memory does not grow with the number of messages;
    partitions are yielded in submission order.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ArgumentError(f"workers must be a whole number of at least 1, not {workers!r}")
    limit = in_flight if in_flight is not None else 2 * workers
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ArgumentError(f"in_flight must be a whole number of at least 1, not {in_flight!r}")

    def engine(job: Job, chunks: Iterable[Sequence[Item]]) -> Iterator[Partition]:
        pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_start_worker,
                                   initargs=(job, os.getpid()))
        pending: deque[Future[Partition]] = deque()
        try:
            for items in chunks:
                if items:
                    pending.append(pool.submit(_rewrite_in_worker, items))
                else:
                    done: Future[Partition] = Future()
                    done.set_result(Partition())
                    pending.append(done)
                while len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            raise EngineError("a worker process stopped unexpectedly (killed, or out of memory)") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return engine
