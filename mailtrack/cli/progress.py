"""What a batch shows while it runs: a progress bar on a terminal (rich), and each bad input as it is met.

The bar goes to stderr, only when stderr is a terminal and rich is installed
(``pip install 'mailtrack[cli]'``); otherwise nothing but the errors is
printed. The bar is removed when the run ends, so the summary stands alone.
"""

from __future__ import annotations

import importlib.util
import sys
from types import TracebackType
from typing import Any

from mailtrack.batch import Report

__all__ = ["BatchProgress"]


class BatchProgress:
    """A context manager whose :meth:`update` is :func:`~mailtrack.batch.run_batch`'s ``progress`` callback."""

    def __init__(self, *, enabled: bool, total: int | None) -> None:
        self._listed = 0
        self._bar: Any = None
        self._task: Any = None
        if enabled and importlib.util.find_spec("rich") is not None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("rewriting"), BarColumn(), DownloadColumn(),
                                 TextColumn("{task.fields[messages]} messages, {task.fields[rate]}/s"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=True)
            self._task = self._bar.add_task("rewrite", total=total, messages=0, rate="0")

    def __enter__(self) -> BatchProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, report: Report, read: int | None) -> None:
        """Move the bar to ``read`` bytes (None: leave it) and list the errors met since the last call."""
        for failure in report.summary.errors[self._listed:]:
            line = f"mailtrack rewrite: {failure.where}: {failure.reason}"
            if self._bar is not None:
                self._bar.console.print(line, markup=False, highlight=False)
            else:
                print(line, file=sys.stderr)
        self._listed = len(report.summary.errors)
        if self._bar is not None and read is not None:
            self._bar.update(self._task, completed=read, messages=report.summary.messages,
                             rate=f"{report.messages_per_second:.0f}")
