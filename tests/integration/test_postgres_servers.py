"""Several machines on one PostgreSQL database: three ``mailtrack serve`` processes, one killed with kill -9 mid-load.

The proof issue 12 asks for: under a bounded mixed load (opens, clicks and
one-click unsubscribes from several client threads, the same message and
recipients hit through every server), one server is killed with SIGKILL and
started again. Afterwards every request that was answered (a 200 with the GIF
or the unsubscribe confirmation, a 302 with its Location) has its event in
the database exactly once, and each (type, message, recipient) has exactly
one ``first``: the earliest stored.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.helpers import BASE_URL, make_tracker, wait_until
from support.postgres import Cluster

pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'mailtrack[postgres]'")
pytest.importorskip("waitress", reason="serve needs waitress")

KEYS = "older-key,newest-key"  # make_tracker()'s keys, newest last
REQUESTS = 600
CLIENTS = 6
GIF_TYPE = "image/gif"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

pytestmark = pytest.mark.skipif(os.name != "posix" or not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")


class Serve:
    """One ``mailtrack serve --db postgresql://...`` process, started in ``workdir`` (where its spool lives)."""

    def __init__(self, url: str, workdir: Path, number: int) -> None:
        self.out = workdir / f"serve-{number}-{time.time_ns()}.out"
        with open(self.out, "wb") as out, open(self.out.with_suffix(".err"), "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailtrack", "serve", "--db", url, "--secret-key", KEYS, "--base-url", BASE_URL,
                 "--port", "0", "--threads", "6"], stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=workdir,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        self.port = wait_until(self._port, 60, what="mailtrack serve to report its port")

    def _port(self) -> int | None:
        for line in self.out.read_text(errors="replace").splitlines():
            if line.startswith("mailtrack: serving ") and " on http://127.0.0.1:" in line:
                return int(line.split(" on http://127.0.0.1:", 1)[1].split()[0])
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited {self.proc.returncode}: {self.out.with_suffix('.err').read_text()}")
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def database(postgres_cluster: Cluster) -> Iterator[tuple[str, str]]:
    """A fresh schema and the ``--db`` URL that puts mailtrack's tables in it (libpq ``options``)."""
    import psycopg

    schema = postgres_cluster.new_schema()
    with psycopg.connect(postgres_cluster.url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    yield f"{postgres_cluster.url}?options=-csearch_path%3D{schema}", schema
    with psycopg.connect(postgres_cluster.url, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


def requests_for(count: int) -> list[tuple[str, str]]:
    """(method, path) per request: opens, clicks and one-click unsubscribes of 3 messages x 8 recipients."""
    tracker = make_tracker()
    made = []
    for i in range(count):
        message_id, recipient = f"m{i % 3}", f"r{(i // 3) % 8}@example.com"
        if i % 5 == 4:
            url = tracker.tracking_url("unsubscribe", message_id=message_id, recipient=recipient)
            made.append(("POST", url[len(BASE_URL):]))
        elif i % 5 in (1, 3):
            url = tracker.tracking_url("click", message_id=message_id, recipient=recipient,
                                       url=f"https://x.example/{i % 2}", link_index=i % 2)
            made.append(("GET", url[len(BASE_URL):]))
        else:
            made.append(("GET", tracker.tracking_url("open", message_id=message_id, recipient=recipient)[len(BASE_URL):]))
    return made


def test_three_servers_one_killed_with_kill_9_stored_equals_answered(database: tuple[str, str], tmp_path: Path) -> None:
    from mailtrack.storage.postgres import PostgresStore

    url, schema = database
    servers = [Serve(url, tmp_path, n) for n in range(3)]
    ports = [server.port for server in servers]
    requests = requests_for(REQUESTS)
    answered: set[str] = set()
    failed: dict[str, str] = {}
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(n, len(requests), CLIENTS):
            method, path = requests[i]
            agent = f"load-{i}"
            port = ports[(i // CLIENTS + n) % 3]  # the same message and recipients through every server
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request(method, path, body=b"List-Unsubscribe=One-Click" if method == "POST" else None,
                                   headers={"User-Agent": agent, "Accept-Language": "en",
                                            **(FORM if method == "POST" else {})})
                reply = connection.getresponse()
                body = reply.read()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failed[agent] = repr(exc)
                continue
            finally:
                connection.close()
            complete = ((reply.status == 200 and (reply.getheader("Content-Type") == GIF_TYPE or b"no longer" in body))
                        or (reply.status == 302 and bool(reply.getheader("Location"))))
            with lock:
                if complete:
                    answered.add(agent)
                else:
                    failed[agent] = f"HTTP {reply.status}"

    try:
        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(answered) >= REQUESTS // 4, timeout=120, interval=0.002, what="a quarter answered")
        os.kill(servers[1].proc.pid, signal.SIGKILL)
        assert servers[1].proc.wait(10) == -signal.SIGKILL
        wait_until(lambda: len(failed) >= 1 or len(answered) >= REQUESTS * 3 // 4, timeout=60, interval=0.002)
        servers[1] = Serve(url, tmp_path, 3)  # restarted: recovers whatever the killed process spooled
        ports[1] = servers[1].port
        for thread in threads:
            thread.join(180)
        assert not any(thread.is_alive() for thread in threads)
        assert len(failed) >= 1, "the kill should have cost some requests"
        assert REQUESTS // 4 <= len(answered) < REQUESTS

        store = PostgresStore(url)
        try:
            wait_until(lambda: answered <= {e.user_agent for e in store.events()}, timeout=30,
                       what="every answered request's event in the database")
            events = store.events()
        finally:
            store.close()
    finally:
        for server in servers:
            server.stop()

    agents = Counter(e.user_agent for e in events)
    assert answered <= set(agents), sorted(answered - set(agents))[:10]
    assert set(agents) <= {f"load-{i}" for i in range(REQUESTS)}  # nothing made up
    assert [agent for agent, n in agents.items() if n > 1] == []  # no request stored twice
    assert len({e.event_id for e in events}) == len(events)
    kinds = Counter(e.event_type.value for e in events)
    assert kinds["opened"] and kinds["clicked"] and kinds["unsubscribed"], kinds
    groups: dict[tuple[str, str, str | None], list[bool]] = {}
    for event in events:  # in id order
        groups.setdefault((event.event_type.value, event.message_id, event.recipient), []).append(bool(event.first))
    for key, firsts in groups.items():
        assert firsts[0] is True and firsts.count(True) == 1, (key, firsts)
    assert len(groups) > 24  # many keys, each hit through several servers
