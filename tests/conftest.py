"""Shared fixtures."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import support.flask_mail_charsets  # noqa: F401  (both charset states, before any test imports Flask-Mail)
from hypothesis import HealthCheck, settings
from support.helpers import make_tracker
from support.postgres import Cluster, find_binary
from support.stores import Backend

import mailtrack
from mailtrack.core import speedups

# Property tests are deterministic (same examples on every run and in CI) and
# untimed: this machine is shared, and speed is measured in benchmarks/.
settings.register_profile(
    "mailtrack",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("mailtrack")


#: Set by ``tasks.py test``'s full run, which runs the suite twice side by side: ``main`` for its main pass (the
#: compiled path, the critical path of CI) and ``pure`` for its pure pass (``MAILTRACK_PURE=1``). Each skips what
#: the other runs anyway: the main pass the ``both_paths`` modules' pure half, the pure pass the tests that call
#: the extension directly (``calls_extension``) or reach neither path (``path_independent``). Unset (a plain
#: ``pytest``), nothing is skipped for it.
SPLIT_PASS = "MAILTRACK_SPLIT_PASS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In ``tasks.py test``'s pure pass, skip what would only run the main pass's tests again: the modules marked
    ``calls_extension`` (they call the extension directly whatever ``MAILTRACK_PURE`` says) and the tests marked
    ``path_independent`` (they reach neither path: :func:`_path_independent_tripwire` checks it in the main pass)."""
    if os.environ.get(SPLIT_PASS) != "pure":
        return
    direct = pytest.mark.skip(reason=f"{SPLIT_PASS}=pure: they call the extension directly; the main pass runs them")
    neither = pytest.mark.skip(reason=f"{SPLIT_PASS}=pure: path-independent (checked in the main pass); it runs them")
    for item in items:
        if item.get_closest_marker("calls_extension") is not None:
            item.add_marker(direct)
        elif item.get_closest_marker("path_independent") is not None:
            item.add_marker(neither)


class _Tripwire:
    """Stands in for the compiled module during a ``path_independent`` test: records every name read, then
    answers as the module would (the test runs unchanged; the fixture fails it afterwards if anything was read)."""

    def __init__(self, module: object) -> None:
        self._module = module
        self.read: list[str] = []

    def __getattr__(self, name: str) -> object:
        self.read.append(name)
        return getattr(self._module, name)


@pytest.fixture(autouse=True)
def _path_independent_tripwire(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked ``path_independent`` must not reach the compiled path (checked where it runs compiled)."""
    saved = speedups.compiled
    if request.node.get_closest_marker("path_independent") is None or saved is None:
        yield
        return
    wire = _Tripwire(saved)
    speedups.compiled = wire  # type: ignore[assignment]
    try:
        yield
    finally:
        speedups.compiled = saved
    assert not wire.read, f"marked path_independent, yet it read {sorted(set(wire.read))} from the compiled module"


@pytest.fixture(scope="module", params=["compiled", "pure"])
def both_paths(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a module's tests once on the compiled fast path and once on the pure-Python path (issue 13).

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("both_paths")``. Module-scoped (so
    hypothesis tests may use it); the "compiled" run is skipped, saying why, where the extension is
    not built or ``MAILTRACK_PURE=1`` is set, since it would only repeat the pure run, and the "pure" run is
    skipped in ``tasks.py test``'s main pass (:data:`SPLIT_PASS`), since its pure pass runs it.
    """
    saved = speedups.compiled
    if request.param == "compiled" and saved is None:
        pytest.skip("the compiled path is off (extension not built, or MAILTRACK_PURE=1): the pure run covers it")
    if request.param == "pure" and os.environ.get(SPLIT_PASS) == "main":
        pytest.skip(f"{SPLIT_PASS}=main: the pure pass of this run (MAILTRACK_PURE=1) takes these on the pure path")
    if request.param == "pure":
        speedups.compiled = None
    try:
        yield request.param
    finally:
        speedups.compiled = saved


@pytest.fixture
def tracker() -> mailtrack.Tracker:
    """A tracker with two keys: the newest signs, both verify."""
    return make_tracker()


@pytest.fixture
def signed_tracker() -> mailtrack.Tracker:
    """:func:`tracker` issuing the signed format (readable payload): for tests that read or forge the payload."""
    return make_tracker(token_format="signed")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL server for the whole run (started on first use, stopped at the end).

    Skipped, with the reason, only when PostgreSQL is not installed (``python3 tasks.py test`` installs
    Debian's package when it can) or psycopg is missing; a server that is installed but fails to start fails.
    """
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin); "
                    "python3 tasks.py test installs it with apt-get as root or with CI=true")
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("psycopg_pool") is None:
        pytest.skip("psycopg is not installed: pip install 'mailtrack[postgres]'")
    cluster = Cluster(initdb, pg_ctl).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh database of each kind: a SQLite file in tmp_path, or a new schema in the session's PostgreSQL."""
    if request.param == "sqlite":
        made = Backend("sqlite", path=tmp_path / "events.sqlite")
    else:
        cluster: Cluster = request.getfixturevalue("postgres_cluster")
        made = Backend("postgres", url=cluster.url, schema=cluster.new_schema())
    try:
        yield made
    finally:
        made.close()
