"""``mailtrack rewrite INPUT... --out DIR``: a campaign batch, with progress, a summary and clean stops.

Builds the :class:`~mailtrack.batch.Job` from the one configuration reader
and the options, picks the engine (this process for one worker, a process
pool for more), runs :func:`~mailtrack.batch.run_batch`, lists each bad input
as it is met and prints the summary (``--json``: one JSON object on stdout).
Exit status: 0 all rewritten; 1 some input failed (the others are written);
2 a usage error; 130 stopped by Ctrl-C or SIGTERM (outputs already written are
whole; ``--resume`` finishes the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from mailtrack.batch import Engine, Interrupted, Job, LayoutError, Report, in_process, issued_at_seconds, process_pool
from mailtrack.batch import plan as plan_inputs
from mailtrack.batch import run_batch as run_engine
from mailtrack.batch.allocator import keep_freed_memory
from mailtrack.batch.sources import EXTENSIONS, Source
from mailtrack.cli._common import UsageError, account_settings, cli_wording, json_option, settings
from mailtrack.cli.progress import BatchProgress
from mailtrack.exceptions import ArgumentError, MailtrackError

__all__ = ["issued_at_option", "run", "settings_option"]

#: The exit status of a run stopped by Ctrl-C, as a shell reports a process killed by SIGINT.
INTERRUPTED = 130


def settings_option(value: str | None) -> dict[str, Any] | None:
    """``--settings``: a JSON object given inline, or the name of a file holding one."""
    if value is None:
        return None
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise MailtrackError(f"--settings: cannot read {value!r}: {reason} (give a JSON object or a file holding one)") from None
    parsed = json_option(text, "--settings")
    if not isinstance(parsed, dict):
        raise MailtrackError(f"--settings must be a JSON object (tracking_settings), not {type(parsed).__name__}")
    return parsed


def issued_at_option(value: str | None) -> int | None:
    """``--issued-at``: ISO 8601 with a timezone (``2026-03-01T09:00:00Z``) or seconds since the epoch."""
    if value is None:
        return None
    text = value.strip()
    seconds: float | datetime | None = None
    try:
        seconds = float(text)
    except ValueError:
        pass
    if seconds is None:
        try:
            seconds = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise UsageError(f"--issued-at: {value!r} is neither an ISO 8601 time nor seconds since the epoch") from None
        if seconds.tzinfo is None:
            raise UsageError(f"--issued-at: {value!r} has no timezone; add one, e.g. {text}Z or {text}+02:00")
    try:
        return issued_at_seconds(seconds)
    except ArgumentError as exc:
        raise UsageError(f"--issued-at: {exc}") from None


def _engine(args: argparse.Namespace) -> Engine:
    if args.dask is not None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError("--dask needs mailtrack[dask]: pip install 'mailtrack[dask]'") from None
        if args.workers is not None:
            raise UsageError("--workers sizes the local pool; with --dask the cluster's workers do the work")
        from mailtrack.batch.dask_engine import dask_engine

        try:
            return dask_engine(args.dask)
        except ArgumentError as exc:
            raise UsageError(f"--dask: {exc}") from None
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    return in_process if workers == 1 else process_pool(workers)


def _job(args: argparse.Namespace) -> Job:
    config = settings(args, "secret_keys", "base_url")
    assert config.base_url is not None  # required above
    try:
        given = settings_option(args.settings)
        if config.account is not None:  # defaults < --account < --settings, resolved here once for every worker
            given = account_settings(config).merged(given).to_dict()
        return Job(secret_keys=config.secret_keys, base_url=config.base_url, settings=given,
                   metadata=json_option(args.metadata, "--metadata"), issued_at=_issued_at(args),
                   message_id=args.message_id, recipient=args.recipient, encoding=args.encoding, force=args.force,
                   honeypot=args.honeypot, token_format=config.token_format)
    except ArgumentError as exc:
        raise UsageError(cli_wording(str(exc))) from None


def _issued_at(args: argparse.Namespace) -> int:
    given = issued_at_option(args.issued_at)
    return given if given is not None else issued_at_seconds(datetime.now().astimezone())


def _is_html_file(name: str, format: str) -> bool:
    path = Path(name)
    return path.is_file() and (format == "html" or (format == "auto" and EXTENSIONS.get(path.suffix.lower()) == "html"))


def _total_bytes(args: argparse.Namespace) -> int | None:
    """The size of everything to read, for the progress bar (a walk of the inputs, no reading)."""
    try:
        return sum(entry.size for entry in plan_inputs(args.inputs, args.out, format=args.format, resume=args.resume)
                   if isinstance(entry, Source))
    except MailtrackError:
        return None  # run_batch reports it


def run(args: argparse.Namespace) -> int:
    """``mailtrack rewrite INPUT... --out DIR``."""
    if "-" in args.inputs:
        raise UsageError("- (stdin) cannot be rewritten with --out: name the files")
    job = _job(args)
    if job.recipient is None and any(_is_html_file(name, args.format) for name in args.inputs):
        raise UsageError("HTML inputs need --recipient (an HTML file has no To header to take it from)")
    engine = _engine(args)
    _stop_on_sigterm()
    keep_freed_memory()  # this process reads and writes every message (and rewrites them, with one worker)
    show = sys.stderr.isatty()
    with BatchProgress(enabled=show, total=_total_bytes(args) if show else None) as progress:
        try:
            report = run_engine(job, args.inputs, args.out, engine=engine, format=args.format, resume=args.resume,
                                progress=progress.update)
        except LayoutError as exc:
            raise UsageError(str(exc)) from None
        except Interrupted as exc:
            report = exc.report
        progress.update(report, None)  # the errors not listed yet
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print_summary(report)
    if report.interrupted:
        print(f"mailtrack rewrite: interrupted; the {report.files_written} output(s) written are whole, nothing else "
              "was written; run again with --resume to finish", file=sys.stderr)
        return INTERRUPTED
    return 1 if report.summary.errors else 0


def _stop_on_sigterm() -> None:
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (kill, systemd, docker) stops the batch as Ctrl-C does: cleanly

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background, where it is ignored


def print_summary(report: Report) -> None:
    """The human summary, on stderr."""
    s = report.summary

    def out(line: str) -> None:
        print(line, file=sys.stderr)

    failed = f", {s.failed} failed" if s.failed else ""
    out(f"mailtrack rewrite: {s.messages} message(s) rewritten{failed} in {report.elapsed:.2f} s "
        f"({report.messages_per_second:.1f} messages/s)")
    files = [f"{report.files_written} written"] + [f"{n} {what}" for n, what in (
        (report.files_complete, "already complete (--resume)"), (report.files_ignored, "ignored (not .eml, .html, "
                                                                                        ".mbox or .jsonl)")) if n]
    out(f"  files: {', '.join(files)}")
    out(f"  parts: {s.parts} ({s.undecodable_parts} undecodable, {s.unencodable_parts} unencodable: left as they were)")
    skipped = sum(s.links_skipped.values())
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(s.links_skipped.items()))
    out(f"  links: {s.links_tracked} tracked, {skipped} skipped" + (f" ({reasons})" if reasons else ""))
    out(f"  errors: {len(s.errors)}" + (" (listed above)" if s.errors else ""))
