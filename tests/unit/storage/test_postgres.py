"""What only the PostgreSQL store has: its URL and schema, migrations, outages and restarts, cross-server races.

Everything the two stores share is tested on both in test_sqlite.py, test_queries.py and test_accounts.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from support.postgres import Cluster, free_port

from mailtrack.config import Config
from mailtrack.events import TrackingEvent
from mailtrack.exceptions import ConfigurationError
from mailtrack.storage.base import StoreError, StoreUnavailable
from mailtrack.storage.dsn import is_postgres_url, masked

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'mailtrack[postgres]'")
from mailtrack.storage.postgres import MIGRATIONS, PostgresStore  # noqa: E402

pytestmark = pytest.mark.path_independent  # storage only: checked in conftest.py

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def event(event_type: str = "opened", message_id: str = "m1", recipient: str | None = "a@x", **kwargs: Any) -> TrackingEvent:
    kwargs.setdefault("timestamp", T0)
    if event_type == "clicked":
        kwargs.setdefault("url", "https://example.com/")
    return TrackingEvent(event_type=event_type, message_id=message_id, recipient=recipient, **kwargs)


@pytest.fixture
def schema(postgres_cluster: Cluster) -> Iterator[str]:
    name = postgres_cluster.new_schema()
    yield name
    with psycopg.connect(postgres_cluster.url, autocommit=True) as db:
        db.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def store(postgres_cluster: Cluster, schema: str) -> Iterator[PostgresStore]:
    store = PostgresStore(postgres_cluster.url, schema=schema)
    yield store
    store.close()


def test_urls_are_told_from_paths_and_passwords_never_shown() -> None:
    assert is_postgres_url("postgresql://u@h/db") and is_postgres_url("postgres://h/db")
    assert not is_postgres_url("events.sqlite") and not is_postgres_url("/var/lib/postgresql/x.sqlite")
    assert masked("postgresql://ann:s3cret@db.example:5432/mt") == "postgresql://ann:***@db.example:5432/mt"
    assert masked("postgresql://db.example/mt?user=ann&password=s3cret&sslmode=require") == \
        "postgresql://db.example/mt?user=ann&password=***&sslmode=require"
    assert masked("events.sqlite") == "events.sqlite"
    config = Config(db="postgresql://ann:s3cret@db.example/mt")
    assert "s3cret" not in repr(config) and "postgresql://ann:***@db.example/mt" in repr(config)
    assert config.db == "postgresql://ann:s3cret@db.example/mt"  # the store gets the real one


def test_schema_version_is_recorded_and_migrating_again_is_a_no_op(store: PostgresStore, postgres_cluster: Cluster,
                                                                  schema: str) -> None:
    assert store.version == len(MIGRATIONS)
    store.record(event())
    again = PostgresStore(postgres_cluster.url, schema=schema)
    assert again.version == len(MIGRATIONS) and again.count() == 1
    with psycopg.connect(postgres_cluster.url) as db:
        assert db.execute(f"SELECT version FROM {schema}.mailtrack_schema").fetchall() == [(len(MIGRATIONS),)]
    again.close()


def test_database_from_the_future_is_refused_and_left_alone(store: PostgresStore, postgres_cluster: Cluster,
                                                           schema: str) -> None:
    with psycopg.connect(postgres_cluster.url, autocommit=True) as db:
        db.execute(f"UPDATE {schema}.mailtrack_schema SET version = 99")
    with pytest.raises(StoreError, match=rf"schema version 99.*knows up to {len(MIGRATIONS)}") as caught:
        PostgresStore(postgres_cluster.url, schema=schema)
    assert not isinstance(caught.value, StoreUnavailable)
    with psycopg.connect(postgres_cluster.url) as db:
        assert db.execute(f"SELECT version FROM {schema}.mailtrack_schema").fetchall() == [(99,)]


@pytest.mark.parametrize("url", ["events.sqlite", "mysql://u@h/db", "", None])
def test_what_is_no_postgresql_url_is_refused(url: Any) -> None:
    with pytest.raises(ConfigurationError, match="postgresql://"):
        PostgresStore(url)


@pytest.mark.parametrize("bad", [{"schema": "Robert'); DROP"}, {"schema": ""}, {"busy_timeout": 0},
                                 {"pool_timeout": -1}, {"pool_size": 0}])
def test_bad_options_are_configuration_errors(postgres_cluster: Cluster, bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PostgresStore(postgres_cluster.url, **bad)


def test_an_unreachable_server_is_unavailable_and_the_password_stays_secret() -> None:
    url = f"postgresql://ann:hunter22@127.0.0.1:{free_port()}/mt?connect_timeout=2"
    with pytest.raises(StoreUnavailable) as caught:
        PostgresStore(url)
    assert "hunter22" not in str(caught.value) and "ann:***@127.0.0.1" in str(caught.value)
    assert isinstance(caught.value.cause, psycopg.OperationalError)


def test_a_wrong_password_is_unavailable_without_showing_it(postgres_cluster: Cluster) -> None:
    url = postgres_cluster.url.replace("mailtrack@", "mailtrack:hunter22@") + "?dbname=no_such_db"
    with pytest.raises(StoreUnavailable) as caught:
        PostgresStore(url)
    assert "hunter22" not in str(caught.value) and "no_such_db" in str(caught.value)


def test_the_store_reconnects_after_the_server_restarts(store: PostgresStore, postgres_cluster: Cluster) -> None:
    store.record(event(message_id="before"))
    postgres_cluster.restart()  # every pooled connection is cut
    assert store.record(event(message_id="after")).first is True  # a dead connection is replaced, not used
    assert [e.message_id for e in store.events()] == ["before", "after"]


def test_a_stopped_pool_is_reopened_on_use(store: PostgresStore) -> None:
    store.record(event())
    store.close()
    assert store.count() == 1  # close() released the connections; the next call takes new ones


def test_record_many_decides_first_in_order_and_stores_each_event_id_once(store: PostgresStore) -> None:
    a1, a2, b1 = event(recipient="a"), event(recipient="a"), event(recipient="b")
    c1, c2 = event("clicked", recipient="a", tags=("t",)), event("clicked", recipient="a", url="https://other/")
    stored = store.record_many([a1, a2, b1, a1, c1, c2], outbox=["https://hook/"])
    assert [e.first for e in stored] == [True, False, True, True, True, False]
    assert [e.event_id for e in stored] == [e.event_id for e in (a1, a2, b1, a1, c1, c2)]
    assert store.count() == 5 and len(store.outbox_rows()) == 5
    assert store.events() == [a1.with_first(True), a2.with_first(False), b1.with_first(True), c1.with_first(True),
                              c2.with_first(False)]  # ids in the batch's order
    again = store.record_many([a2, event(recipient="c")])
    assert [e.first for e in again] == [False, True] and store.count() == 6
    [link] = [row for row in store.grouped_stats(_query(), "link") if row.key == "https://other/"]
    assert (link.clicks, link.unique_clicks) == (1, 1)  # the first click on that link, though not the first click
    assert store.record_many([]) == []


def _query() -> Any:
    from mailtrack.storage.base import EventQuery

    return EventQuery()


def test_first_is_decided_once_across_servers_racing_on_the_same_recipient(store: PostgresStore,
                                                                          postgres_cluster: Cluster,
                                                                          schema: str) -> None:
    servers = [PostgresStore(postgres_cluster.url, schema=schema) for _ in range(3)]
    start = threading.Barrier(len(servers) * 2)
    results: list[bool] = []
    errors: list[BaseException] = []

    def hit(server: PostgresStore) -> None:
        try:
            start.wait(30)
            for i in range(30):
                batch = [event(kind, message_id=f"m{i % 5}", recipient=f"r{i % 3}")
                         for kind in ("opened", "clicked", "opened")]
                results.extend(e.first for e in server.record_many(batch))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hit, args=(server,)) for server in servers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for server in servers:
        server.close()
    assert errors == []
    stored = store.events()
    assert len(stored) == len(results) == 6 * 30 * 3
    firsts = [(e.event_type, e.message_id, e.recipient) for e in stored if e.first]
    assert len(firsts) == len(set(firsts)) == len({(e.event_type, e.message_id, e.recipient) for e in stored})
    assert sum(results) == len(firsts)
    # the first of each key has the lowest id of its key: ids follow commit order
    seen: set[tuple[Any, ...]] = set()
    for e in stored:
        key = (e.event_type, e.message_id, e.recipient)
        assert e.first is (key not in seen)
        seen.add(key)
    [total] = store.grouped_stats(_query(), "message", campaign_key="campaign")[:1]
    assert total.opens is not None


def test_claims_by_several_servers_never_overlap(store: PostgresStore, postgres_cluster: Cluster, schema: str) -> None:
    for i in range(60):
        store.record(event(message_id=f"m{i}"), outbox=["https://hook/"])
    servers = [PostgresStore(postgres_cluster.url, schema=schema) for _ in range(3)]
    claimed: list[list[int]] = [[] for _ in servers]
    now = T0.timestamp()

    def claim(n: int) -> None:
        while True:
            items = servers[n].outbox_claim("https://hook/", now, lease=60, limit=7)
            if not items:
                return
            claimed[n] += [item.id for item in items]

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(len(servers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for server in servers:
        server.close()
    every = [item for items in claimed for item in items]
    assert len(every) == len(set(every)) == 60


def test_a_read_only_database_is_unavailable(store: PostgresStore, postgres_cluster: Cluster) -> None:
    with psycopg.connect(postgres_cluster.url, autocommit=True) as db:
        db.execute(f"ALTER DATABASE {postgres_cluster.database} SET default_transaction_read_only = on")
    try:
        store.close()  # new connections pick the setting up
        with pytest.raises(StoreUnavailable, match="read-only"):
            store.record(event())
    finally:
        with psycopg.connect(postgres_cluster.url, autocommit=True, options="-c default_transaction_read_only=off") as db:
            db.execute(f"ALTER DATABASE {postgres_cluster.database} RESET default_transaction_read_only")
    store.close()
    assert store.record(event()).first is True


def test_open_store_and_build_service_pick_postgresql_by_url(postgres_cluster: Cluster, schema: str) -> None:
    from mailtrack.service import build_service, open_account_store, open_store

    url = f"{postgres_cluster.url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_cluster.url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    events, accounts = open_store(url, create=False), open_account_store(url)
    assert isinstance(events, PostgresStore) and isinstance(accounts, PostgresStore)
    events.record(event())
    accounts.create_account("parent")
    service = build_service(Config(secret_keys=("k" * 32,), base_url="https://t.example", db=url))
    try:
        assert isinstance(service.recorder.store, PostgresStore)
        assert service.recorder.store.count() == 1
        assert service.recorder.store.account("parent") is not None
        # PostgreSQL writes its rollups in each event's transaction: it has no roll(), so serve starts no roller
        assert service.roller is None and not hasattr(service.recorder.store, "roll")
    finally:
        service.close()
        events.close()
        accounts.close()
