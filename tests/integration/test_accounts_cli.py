"""``mailtrack apikey`` and ``mailtrack subuser`` through ``main()``: keys printed once, stored hashed, revoked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailtrack.cli import main
from mailtrack.storage.sqlite import SQLiteStore


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_keys_and_subusers_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "t.sqlite")
    status, key, err = run(capsys, "apikey", "create", "--db", db)
    key = key.strip()
    assert status == 0 and key.startswith("mt.") and "shown once" in err and key not in err
    assert run(capsys, "subuser", "create", "sub1", "--db", db)[0] == 0
    status, sub_key, _ = run(capsys, "apikey", "create", "--db", db, "--subuser", "sub1", "--scopes",
                             "tracking_settings.read", "--name", "ro")
    sub_key = sub_key.strip()
    assert status == 0
    store = SQLiteStore(db)
    parent_key, ro_key = store.authenticate(key), store.authenticate(sub_key)
    assert parent_key is not None and parent_key.account == "parent"
    assert ro_key is not None and ro_key.account == "sub1" and ro_key.scopes == {"tracking_settings.read"}

    status, listing, _ = run(capsys, "apikey", "list", "--db", db)
    assert status == 0 and key not in listing and sub_key not in listing
    assert parent_key.prefix in listing and "sub1 (ro)" in listing and "active" in listing
    status, listing, _ = run(capsys, "apikey", "list", "--db", db, "--subuser", "sub1", "--json")
    assert [json.loads(line)["key_id"] for line in listing.splitlines()] == [ro_key.key_id]

    assert run(capsys, "apikey", "revoke", ro_key.key_id, "--db", db)[0] == 0
    assert store.authenticate(sub_key) is None
    assert "revoked" in run(capsys, "apikey", "list", "--db", db, "--subuser", "sub1")[1]
    assert run(capsys, "subuser", "list", "--db", db)[1] == "sub1\n"
    assert run(capsys, "subuser", "delete", "sub1", "--db", db)[0] == 0
    assert run(capsys, "subuser", "list", "--db", db)[1] == ""
    store.close()


@pytest.mark.parametrize(("argv", "status", "message"), [
    (["apikey", "create", "--subuser", "nobody"], 2, "no subuser called 'nobody'"),
    (["subuser", "delete", "parent"], 1, "no subuser called 'parent'"),
    (["subuser", "delete", "nobody"], 1, "no subuser called 'nobody'"),
    (["apikey", "revoke", "ffffffffffff"], 1, "no API key"),
    (["subuser", "create", "bad name"], 1, "an account name is"),
    (["subuser", "create", "x", "--account-name", "other"], 1, "parent account is 'parent'"),
])
def test_mistakes_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], status: int,
                                      message: str) -> None:
    db = str(tmp_path / "t.sqlite")
    assert run(capsys, "subuser", "create", "sub1", "--db", db)[0] == 0
    got, out, err = run(capsys, *argv, "--db", db)
    assert (got, out) == (status, "") and message in err and "Traceback" not in err


def test_apikey_needs_a_database(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILTRACK_DB", raising=False)
    status, _, err = run(capsys, "apikey", "list")
    assert status == 2 and "--db" in err
