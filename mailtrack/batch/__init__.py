"""Campaign batches: rewrite many messages at once, on every core, and on any engine that maps partitions.

The pieces, each in its own module:

* :class:`Job` (:mod:`.job`): keys, base URL, settings, metadata and the
  signing time, plain data that pickles; sent to each worker once.
* :class:`Item` -> :class:`ItemResult` (:mod:`.items`): one message in as
  bytes, its output bytes (or error) out. :class:`Summary` (:mod:`.summary`)
  counts them and merges across partitions.
* :class:`Rewriter` and :func:`rewrite_partition` (:mod:`.rewriter`): the
  work itself, pure (no files), one :class:`Partition` per list of items.
* :func:`plan` and :func:`read_source` (:mod:`.sources`, :mod:`.reading`):
  which files, in which format (.eml, HTML, mbox, JSON lines), streamed into
  items; :class:`OutputWriter` (:mod:`.writer`) writes results back in input
  order, each output whole (:mod:`.atomic`).
* Engines (:mod:`.engines`): :func:`in_process` and :func:`process_pool`;
  any ``engine(job, chunks) -> partitions in order`` works (see
  :data:`Engine`). :func:`run_batch` (:mod:`.runner`) ties it together.

>>> from mailtrack.batch import Job, run_batch, process_pool
>>> job = Job(secret_keys=("k",), base_url="https://t.example.com", issued_at=1_767_225_600)
>>> report = run_batch(job, ["campaign/"], "out/", engine=process_pool(4))  # doctest: +SKIP
"""

from __future__ import annotations

from mailtrack.batch.engines import Engine, EngineError, in_process, process_pool
from mailtrack.batch.items import FORMATS, Format, Item, ItemResult, Partition
from mailtrack.batch.job import Job, issued_at_seconds
from mailtrack.batch.reading import SourceError, read_source
from mailtrack.batch.rewriter import Rewriter, rewrite_partition
from mailtrack.batch.runner import Interrupted, Report, run_batch
from mailtrack.batch.sources import EXTENSIONS, Complete, Ignored, LayoutError, Problem, Source, plan
from mailtrack.batch.summary import Failure, Summary
from mailtrack.batch.writer import OutputWriter

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "Complete",
    "Engine",
    "EngineError",
    "Failure",
    "Format",
    "Ignored",
    "Interrupted",
    "Item",
    "ItemResult",
    "Job",
    "LayoutError",
    "OutputWriter",
    "Partition",
    "Problem",
    "Report",
    "Rewriter",
    "Source",
    "SourceError",
    "Summary",
    "in_process",
    "issued_at_seconds",
    "plan",
    "process_pool",
    "read_source",
    "rewrite_partition",
    "run_batch",
]
