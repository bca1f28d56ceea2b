"""After a run: what the database, the spool and the server's log hold, and whether the run passed.

The same checks for every store: the store-specific reads are :class:`~harness.serve.stores.Target`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from harness.serve.server import Sample
from harness.serve.stores import Target


@dataclass
class RunResult:
    generator: str
    store: str  # sqlite or postgres
    load: dict[str, Any]
    server_command: str
    banner: str
    os_threads: int | None
    server_cpu_s: float | None
    database_cpu_s: float | None  # PostgreSQL's processes; None for SQLite (in the server)
    load_wall_s: float
    loadavg_before: tuple[float, float, float] | None
    loadavg_after: tuple[float, float, float] | None
    settle_s: float
    stored_running: int
    wal_bytes: int | None  # SQLite only
    samples: list[Sample]
    stop_how: str
    stop_s: float
    exit_code: int | None
    stored: int
    stored_by_type: dict[str, int]
    first_by_type: dict[str, int]
    firsts_rows: dict[str, int]
    spool_files: int
    spool_nonempty: int
    spool_lines: int
    log_counts: dict[str, int]
    queue_depth_max: int
    other_log_lines: list[str]

    @property
    def successful(self) -> int:
        return sum(self.load["ok"].values())

    @property
    def errors(self) -> int:
        return sum(self.load["errors"].values())

    @property
    def difference(self) -> int:
        return self.stored - self.successful

    @property
    def in_flight(self) -> int:
        return int(self.load["in_flight_at_cutoff"])

    def events_match(self) -> bool:
        """Python: stored == successful, per type. wrk: 0 <= stored - successful <= requests in flight at its cut-off."""
        for event_type, ok in self.load["ok"].items():
            extra = self.stored_by_type.get(event_type, 0) - ok
            limit = self.load["issued"][event_type] - ok if self.in_flight else 0
            if not 0 <= extra <= max(limit, 0):
                return False
        return 0 <= self.difference <= self.in_flight and set(self.stored_by_type) <= set(self.load["ok"])

    def passed(self) -> bool:
        """Zero errors, events stored == successful responses, nothing left in a spool, a clean exit."""
        return self.errors == 0 and self.events_match() and self.spool_lines == 0 and self.exit_code == 0 and self.successful > 0

    def warnings(self) -> list[str]:
        """What did not fail the run but should not happen: store writes that fell back to the spool."""
        found = []
        if self.log_counts.get("store write failed"):
            locked = f" ({self.log_counts.get('database is locked', 0):,} `database is locked`)" if self.store == "sqlite" else ""
            found.append(f"{self.log_counts['store write failed']:,} store writes spooled{locked}")
        if self.log_counts.get("spool retry failed"):
            found.append(f"{self.log_counts['spool retry failed']:,} spool retries failed")
        if self.stored_running != self.stored:
            found.append(f"{self.stored - self.stored_running:+,} events reached the store only at shutdown")
        return found


#: (name, regex) of the server's stderr lines we count; any other line is quoted in the notes.
LOG_PATTERNS = (
    ("store write failed", r"store write failed"),
    ("database is locked", r"database is locked"),
    ("spool retry failed", r"retry (from spool )?failed"),
    ("Traceback", r"Traceback"),
    ("Task queue depth", r"Task queue depth is"),
)



def read_outcome(target: Target, log: str) -> dict[str, Any]:
    """The :class:`RunResult` fields read once the server has stopped: events stored, spool files, log lines."""
    counts = target.counts()
    spool = target.spool_files()
    log_lines = log.splitlines()
    depths = [int(d) for d in re.findall(r"Task queue depth is (\d+)", log)]
    known = re.compile("|".join(p for _, p in LOG_PATTERNS))
    other = [line for line in log_lines if line.strip() and not known.search(line)]
    return {
        "stored": counts.stored,
        "stored_by_type": counts.by_type,
        "first_by_type": counts.first_by_type,
        "firsts_rows": counts.firsts_rows,
        "spool_files": len(spool),
        "spool_nonempty": sum(1 for p in spool if p.stat().st_size),
        "spool_lines": sum(len(p.read_bytes().splitlines()) for p in spool),
        "log_counts": {name: sum(1 for line in log_lines if re.search(pattern, line)) for name, pattern in LOG_PATTERNS},
        "queue_depth_max": max(depths, default=0),
        "other_log_lines": other[:10],
    }
