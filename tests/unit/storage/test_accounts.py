"""Accounts, subusers, hashed API keys and stored tracking settings, in both stores (SQLite's schema v4)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.stores import Backend

from mailtrack.core.settings import TrackingSettings
from mailtrack.exceptions import ArgumentError, SettingsError
from mailtrack.storage.accounts import ALL_SCOPES, hash_key, split_key
from mailtrack.storage.base import AccountStore, StoreError, UnknownAccount
from mailtrack.storage.sqlite import MIGRATIONS, SQLiteStore

pytestmark = pytest.mark.path_independent  # storage only: checked in conftest.py


@pytest.fixture
def store(backend: Backend) -> Iterator[Any]:
    """A store on a fresh database of each kind."""
    store = backend.open()
    yield store
    store.close()


def test_store_implements_the_account_protocol(store: Any) -> None:
    assert isinstance(store, AccountStore)


def test_upgrade_from_version_3_adds_accounts_and_keeps_events(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    connection = sqlite3.connect(db, isolation_level=None)
    for script in MIGRATIONS[:3]:
        connection.executescript(script)
    connection.execute("PRAGMA user_version = 3")
    connection.execute("INSERT INTO events (event_id, event_type, timestamp, message_id, recipient, first) "
                       "VALUES ('e1', 'opened', 1.0, 'm1', 'a@x', 1)")
    connection.close()
    store = SQLiteStore(db)
    assert store.version == len(MIGRATIONS) and store.count() == 1
    store.create_account("sub1", parent="parent")
    assert [a.name for a in store.accounts()] == ["parent", "sub1"]


def test_subusers_belong_to_the_one_parent(store: Any) -> None:
    sub = store.create_account("sub1", parent="parent")
    assert sub.is_subuser and sub.parent == "parent"
    parent = store.account("parent")
    assert parent is not None and not parent.is_subuser
    store.create_account("sub2", parent="parent")
    assert [(a.name, a.parent) for a in store.accounts()] == [("parent", None), ("sub1", "parent"), ("sub2", "parent")]
    with pytest.raises(StoreError, match="exists already"):
        store.create_account("sub1", parent="parent")
    with pytest.raises(StoreError, match="parent account is 'parent'"):
        store.create_account("x", parent="other")
    with pytest.raises(StoreError, match="parent account is 'parent'"):
        store.create_account("other")
    with pytest.raises(ArgumentError):
        store.create_account("bad name", parent="parent")
    with pytest.raises(ArgumentError):
        store.create_account("parent", parent="parent")


def test_deleting_a_subuser_removes_its_keys_and_settings_but_the_parent_stays(store: Any) -> None:
    store.create_account("sub1", parent="parent")
    _, key = store.create_key("sub1")
    store.patch_tracking_settings("sub1", "open", {"enabled": False})
    store.delete_account("sub1")
    assert store.account("sub1") is None and store.api_keys() == [] and store.authenticate(key) is None
    with pytest.raises(UnknownAccount):
        store.delete_account("sub1")
    with pytest.raises(StoreError, match="only subusers"):
        store.delete_account("parent")
    store.create_account("sub1", parent="parent")
    assert store.account_settings("sub1") == {}  # a new subuser of the same name starts afresh


def test_a_key_is_stored_only_as_its_hash_and_shown_once(store: Any, backend: Backend) -> None:
    store.create_account("parent")
    stored, key = store.create_key("parent", ["tracking_settings.read"], name="ci")
    assert split_key(key) == stored.key_id and key.startswith(stored.prefix)
    assert stored.scopes == {"tracking_settings.read"} and stored.name == "ci"
    dump = backend.dump()
    assert key not in dump and key.split(".")[2] not in dump
    assert hash_key(key) in dump
    assert store.api_keys() == [stored] and store.api_keys("parent") == [stored] and store.api_keys("nobody") == []


def test_authenticate_refuses_wrong_malformed_unknown_and_revoked_keys(store: Any) -> None:
    store.create_account("parent")
    stored, key = store.create_key("parent")
    assert stored.scopes == set(ALL_SCOPES)  # no scopes named: full access, as SendGrid's default
    assert store.authenticate(key) == stored
    last = key[-1]
    assert store.authenticate(key[:-1] + ("A" if last != "A" else "B")) is None  # right id, wrong secret
    assert store.authenticate("mt.000000000000." + key.split(".")[2]) is None  # unknown id
    for junk in ("", "Bearer " + key, key + " ", "SG.x.y", key.upper()):
        assert store.authenticate(junk) is None
    revoked = store.revoke_key(stored.key_id)
    assert revoked.revoked is not None and store.authenticate(key) is None
    assert store.revoke_key(stored.key_id).revoked == revoked.revoked  # revoking twice keeps the first time
    with pytest.raises(StoreError, match="no API key"):
        store.revoke_key("ffffffffffff")


def test_keys_need_a_known_account_and_known_scopes(store: Any) -> None:
    with pytest.raises(UnknownAccount):
        store.create_key("nobody")
    store.create_account("parent")
    with pytest.raises(ArgumentError, match="unknown scope"):
        store.create_key("parent", ["mail.send"])
    with pytest.raises(ArgumentError, match="at least one scope"):
        store.create_key("parent", [])


def test_patch_stores_only_the_fields_it_names(store: Any) -> None:
    store.create_account("sub1", parent="parent")
    assert store.tracking_settings("sub1") == TrackingSettings()
    settings, answer = store.patch_tracking_settings("sub1", "subscription", {"enabled": True, "landing": "<p>bye</p>"})
    assert answer == {"enabled": True, "landing": "<p>bye</p>"}
    _, answer = store.patch_tracking_settings("sub1", "subscription", {"html_content": "<a><% %></a>"})
    assert answer == {"enabled": True, "landing": "<p>bye</p>", "html_content": "<a><% %></a>"}
    assert store.account_settings("sub1") == {
        "subscription": {"enabled": True, "landing": "<p>bye</p>", "html_content": "<a><% %></a>"}}
    assert store.tracking_settings("sub1").subscription_tracking.html == "<a><% %></a>"
    assert store.account_settings("parent") == {}  # the parent's settings are its own


def test_a_refused_patch_writes_nothing(store: Any) -> None:
    store.create_account("sub1", parent="parent")
    store.patch_tracking_settings("sub1", "click", {"enabled": False})
    for section, body in (("click", {"enabled": "yes"}), ("click", {"enable_text": True}), ("open", {"nope": 1}),
                          ("nothing", {}), ("google_analytics", {"utm_source": 3})):
        with pytest.raises(SettingsError):
            store.patch_tracking_settings("sub1", section, body)
    assert store.account_settings("sub1") == {"click": {"enabled": False}}
    with pytest.raises(UnknownAccount):
        store.patch_tracking_settings("nobody", "open", {"enabled": True})


def test_concurrent_patches_of_different_fields_both_land(store: Any) -> None:
    store.create_account("sub1", parent="parent")
    fields = [f"utm_{name}" for name in ("source", "medium", "term", "content", "campaign")]
    errors: list[BaseException] = []

    def patch(field: str) -> None:
        for _ in range(20):
            try:
                store.patch_tracking_settings("sub1", "google_analytics", {field: field})
                return
            except StoreError as exc:  # busy: try again, as a client would
                errors.append(exc)

    threads = [threading.Thread(target=patch, args=(f,)) for f in fields]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.account_settings("sub1")["google_analytics"] == {f: f for f in fields}
