"""The Dask engine: the partitions of a batch rewritten on a ``dask.distributed`` cluster.

``pip install 'mailtrack[dask]'``, then::

    from mailtrack.batch import Job, run_batch
    from mailtrack.batch.dask_engine import dask_engine

    report = run_batch(job, ["campaign.jsonl"], "out/", engine=dask_engine("tcp://scheduler:8786"))

or ``mailtrack rewrite campaign.jsonl --out out/ --dask tcp://scheduler:8786``.

How the work is split, and why:

* The job (keys, settings) goes to each worker **once**, as a worker plugin
  (:class:`JobPlugin`): every worker of the cluster, and every worker that
  joins or is restarted later, builds its own :class:`~mailtrack.batch.Rewriter`
  when the plugin is set up. Tasks carry only the plugin's name and their
  items, never the keys.
* The machine that runs the batch reads the inputs and writes the outputs
  (the same reader and :class:`~mailtrack.batch.OutputWriter` as the local
  engines, so the layout, the order and the atomic writes are the same);
  each list of items is scattered straight to a worker (not through the
  scheduler, which would carry every message twice) and rewritten there. Workers
  therefore need mailtrack installed (the same version) but no access to
  the input or output paths. At most ``in_flight`` lists are on the cluster
  at once, so memory stays flat however many messages there are.
* Lists are larger than the local pool's (:data:`CHUNK_ITEMS` items, up to
  :data:`CHUNK_BYTES`): a Dask task costs tens of milliseconds of CPU across
  client, scheduler and worker (measured: about 49 ms, against well under one
  for the local pool), so a list of 64 messages spent a fifth of the
  cluster's CPU on moving it; 256 messages (about a second of work) bring the
  cluster within 1.3x of the local pool on the same cores.
* A worker that dies mid-task (killed, out of memory) loses nothing: the
  items it held are still here (until their results are written), so the
  partition is scattered again to a live worker (:data:`RESUBMITS` times at
  most), and since a partition's results come back to this process exactly
  once and are written here with temporary file + rename, no output is lost
  or written twice. With the job's
  fixed ``issued_at`` the bytes are those of a local run.

:func:`rewrite_on_worker` and :func:`register_job` are public for graphs of
your own, whose data the workers read themselves: for a ``dask.bag`` of
:class:`~mailtrack.batch.Item`, ``name = register_job(client, job)`` then
``[dask.delayed(rewrite_on_worker)(part, name) for part in bag.to_delayed()]``
computes one :class:`~mailtrack.batch.Partition` per bag partition.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from mailtrack.batch.engines import EngineError
from mailtrack.batch.items import Item, Partition
from mailtrack.batch.job import Job
from mailtrack.batch.rewriter import Rewriter
from mailtrack.exceptions import ArgumentError, ConfigurationError

try:
    from distributed import Client, WorkerPlugin
except ImportError:  # pragma: no cover - exercised by environments without the extra
    Client = None  # type: ignore[assignment,misc]
    WorkerPlugin = object  # type: ignore[assignment,misc]

__all__ = ["CHUNK_BYTES", "CHUNK_ITEMS", "DaskEngine", "JobPlugin", "dask_engine", "register_job", "rewrite_on_worker"]

#: The Dask engine's chunk bounds (see the module's description): about a second of work per task.
CHUNK_ITEMS = 256
CHUNK_BYTES = 16 << 20

#: Each worker process's rewriters, by plugin name (one per batch running on it).
_REWRITERS: dict[str, Rewriter] = {}
_LOCK = threading.Lock()


def _need_dask() -> None:
    if Client is None:
        raise ConfigurationError("the Dask engine needs dask.distributed: pip install 'mailtrack[dask]'")


class JobPlugin(WorkerPlugin):
    """Gives each worker the job once: ``setup`` builds the worker's rewriter, ``teardown`` drops it."""

    def __init__(self, job: Job, name: str) -> None:
        self.job = job
        self.name = name  # distributed keeps one plugin per name: a second registration replaces the first

    def setup(self, worker: Any) -> None:
        with _LOCK:
            _REWRITERS[self.name] = Rewriter(self.job)

    def teardown(self, worker: Any) -> None:
        with _LOCK:
            _REWRITERS.pop(self.name, None)


def rewrite_on_worker(items: Sequence[Item], name: str) -> Partition:
    """Rewrite ``items`` with the job registered as ``name`` on this worker (a task function)."""
    rewriter = _REWRITERS.get(name)
    if rewriter is None:
        raise EngineError(f"no mailtrack job {name!r} on this worker: register it first (register_job)")
    return rewriter.partition(items)


def register_job(client: Any, job: Job) -> str:
    """Send ``job`` to every worker of ``client``'s cluster once (a worker plugin); the name tasks refer to it by."""
    _need_dask()
    if not isinstance(job, Job):
        raise ArgumentError(f"job must be a mailtrack.batch.Job, not {type(job).__name__}")
    name = f"mailtrack-batch-{uuid.uuid4().hex}"
    client.register_plugin(JobPlugin(job, name))
    return name


def _connect(cluster: Any) -> tuple[Any, bool]:
    """A client for ``cluster`` (an address, or a Client to use as is) and whether it is ours to close."""
    _need_dask()
    if isinstance(cluster, Client):
        return cluster, False
    if not isinstance(cluster, str) or not cluster:
        raise ArgumentError(f"the Dask cluster is a scheduler address such as tcp://host:8786 or a Client, not {cluster!r}")
    try:
        return Client(cluster, timeout="10s", set_as_default=False), True  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise ConfigurationError(f"cannot reach the Dask scheduler at {cluster}: {exc}") from None


def dask_engine(cluster: Any, *, in_flight: int | None = None) -> DaskEngine:
    """An :data:`~mailtrack.batch.Engine` running the partitions on the Dask cluster ``cluster``.

    ``cluster`` is a scheduler address (``tcp://host:8786``; the client is
    made when the batch starts and closed when it ends) or a
    ``distributed.Client`` (used, not closed). At most ``in_flight`` lists of
    items (default: twice the cluster's worker threads when the batch starts)
    are on the cluster at once; partitions come back in input order. The
    engine asks :func:`~mailtrack.batch.run_batch` for lists of
    :data:`CHUNK_ITEMS` items (``chunk_items=`` there overrides it).
    """
    _need_dask()
    if in_flight is not None and (isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1):
        raise ArgumentError(f"in_flight must be a whole number of at least 1, not {in_flight!r}")
    if not isinstance(cluster, (str, Client)) or not cluster:
        raise ArgumentError(f"the Dask cluster is a scheduler address such as tcp://host:8786 or a Client, not {cluster!r}")
    return DaskEngine(cluster, in_flight)


class DaskEngine:
    """The engine :func:`dask_engine` makes: call it as ``engine(job, chunks)``; made by :func:`dask_engine`, which checks its arguments."""

    chunk_items = CHUNK_ITEMS
    chunk_bytes = CHUNK_BYTES

    def __init__(self, cluster: Any, in_flight: int | None) -> None:
        self.cluster = cluster
        self.in_flight = in_flight

    def __call__(self, job: Job, chunks: Iterable[Sequence[Item]]) -> Iterator[Partition]:
        client, own = _connect(self.cluster)
        name = None
        pending: deque[Any] = deque()
        try:
            name = register_job(client, job)
            threads = sum(client.nthreads().values()) or 1
            limit = self.in_flight or 2 * threads
            for items in chunks:
                pending.append((list(items), _send(client, list(items), name) if items else None))
                while len(pending) >= limit:
                    yield _result(client, name, *pending.popleft())
            while pending:
                yield _result(client, name, *pending.popleft())
        finally:
            for _, future in pending:
                if future is not None:
                    future.cancel()
            if name is not None:
                try:
                    client.unregister_worker_plugin(name)
                except Exception:  # noqa: BLE001 - a cluster already gone: nothing left to clean
                    pass
            if own:
                client.close()


#: How many times a partition is sent again after the worker holding it was lost.
RESUBMITS = 3
#: Seconds to wait before the first resend (then twice that, ...).
_BACKOFF = 0.25


def _submit(client: Any, items: list[Item], name: str) -> Any:
    """Send ``items`` straight to a worker (not through the scheduler) and rewrite them there."""
    [data] = client.scatter([items], direct=True, hash=False)
    return client.submit(rewrite_on_worker, data, name, pure=False)


def _send(client: Any, items: list[Item], name: str) -> Any:
    """:func:`_submit`, or None when it failed now (the worker chosen died as it was sent): :func:`_result` sends it again."""
    try:
        return _submit(client, items, name)
    except Exception:  # noqa: BLE001 - a lost worker or connection; retried, and reported, by _result
        return None


def _result(client: Any, name: str, items: list[Item], future: Any) -> Partition:
    """The partition for ``items``, waited for; sent again if its worker was lost; other failures as :class:`EngineError`.

    Scattered items live on one worker only: if that worker dies they are
    gone and the task cannot rerun by itself, so the items (still held here,
    until their results are written) are scattered again to a live worker.
    ``future`` is None for items not sent yet (or whose sending failed).
    """
    if not items:
        return Partition()
    for attempt in range(RESUBMITS + 1):
        try:
            if future is None:
                future = _submit(client, items, name)
            partition = client.gather(future, direct=True)
        except EngineError:
            raise
        except Exception as exc:  # a lost worker (its data with it), KilledWorker, a lost scheduler, ...
            if attempt == RESUBMITS or client.status != "running":
                raise EngineError(f"the Dask cluster could not rewrite a partition: {type(exc).__name__}: {exc}") from None
            future = None
            time.sleep(_BACKOFF * (attempt + 1))  # let the scheduler see the worker gone before choosing another
            continue
        if not isinstance(partition, Partition):
            raise EngineError(f"a Dask worker returned {type(partition).__name__}, not a Partition")
        return partition
    raise AssertionError("unreachable")  # pragma: no cover
