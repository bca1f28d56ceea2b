"""``mailtrack events`` and ``mailtrack stats`` with the Events API's filters, --group-by and --limit (in process)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailtrack.cli import main
from mailtrack.events import TrackingEvent
from mailtrack.storage.base import EventQuery
from mailtrack.storage.sqlite import SQLiteStore

DAY0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "events.sqlite"
    store = SQLiteStore(path)
    for i in range(40):
        store.record(TrackingEvent(
            event_type=["opened", "clicked", "unsubscribed", "opened"][i % 4], message_id=f"m{i % 5}",
            recipient=None if i % 7 == 0 else f"r{i % 3}@x", url="https://e.com/a" if i % 4 == 1 else None,
            timestamp=DAY0 + timedelta(hours=6 * i), metadata={"campaign": f"c{i % 2}", "wave": str(i % 3)},
            tags=("news",) if i % 3 else ("promo",)))
    store.close()
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_events_filters_and_limit_match_the_store(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = SQLiteStore(db)
    query = EventQuery(event_type="opened", metadata=(("campaign", "c1"), ("wave", "2")),
                       since=(DAY0 + timedelta(days=2)).timestamp(), tag="news")
    expected = [event.to_dict() for event in reversed(store.find(query, limit=1000).events)]
    store.close()
    status, out, _ = run(capsys, "events", "--db", str(db), "--json", "--type", "opened", "--metadata", "campaign=c1",
                         "--metadata", "wave=2", "--since", "2024-03-03", "--tag", "news")
    assert status == 0 and [json.loads(line) for line in out.splitlines()] == expected and expected
    status, out, _ = run(capsys, "events", "--db", str(db), "--json", "--limit", "3")
    assert [json.loads(line)["timestamp"] for line in out.splitlines()] == [
        f"2024-03-10T{h:02d}:00:00Z" for h in (6, 12, 18)]  # the newest three, oldest first
    status, out, _ = run(capsys, "events", "--db", str(db), "--recipient", "", "--until", "2024-03-03")
    assert status == 0 and len(out.splitlines()) == 2 and "(no recipient)" in out


def test_stats_group_by_is_the_apis_answer(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "stats", "--db", str(db), "--json", "--group-by", "campaign", "--campaign-key", "wave")
    assert status == 0
    body = json.loads(out)
    assert body["group_by"] == "campaign" and [row["key"] for row in body["data"]] == ["0", "1", "2"]
    store = SQLiteStore(db)
    assert body["data"] == [row.to_dict() for row in store.grouped_stats(EventQuery(), "campaign", campaign_key="wave")]
    store.close()
    status, out, _ = run(capsys, "stats", "--db", str(db), "--group-by", "day", "--tag", "news")
    assert status == 0 and out.splitlines()[0].startswith("2024-03-01: opens ")
    status, out, _ = run(capsys, "stats", "--db", str(db), "--group-by", "link")
    assert out == "https://e.com/a: clicks 10 (10 unique)\n"
    status, out, _ = run(capsys, "stats", "--db", str(db))  # no filter, no --group-by: the per-message report as before
    assert out.startswith("m0: ")


def test_events_show_a_subusers_account(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "accounts.sqlite"
    store = SQLiteStore(path)
    store.record(TrackingEvent(event_type="opened", message_id="m-sub", recipient="a@x", timestamp=DAY0, account="sub1"))
    store.record(TrackingEvent(event_type="opened", message_id="m-parent", recipient="a@x", timestamp=DAY0))
    store.close()
    status, out, _ = run(capsys, "events", "--db", str(path))
    assert status == 0 and "m-sub a@x first account=sub1 " in out and "account=" not in out.splitlines()[1]
    status, out, _ = run(capsys, "events", "--db", str(path), "--json")
    assert [json.loads(line).get("account") for line in out.splitlines()] == ["sub1", None]


def test_stats_limit_and_cursor_page_like_the_api(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = SQLiteStore(db)
    whole = [row.to_dict() for row in store.grouped_stats(EventQuery(), "day")]
    store.close()
    assert len(whole) == 10
    rows, cursor, pages = [], None, 0
    while True:
        status, out, err = run(capsys, "stats", "--db", str(db), "--json", "--limit", "4",
                               *(["--cursor", cursor] if cursor else []))
        body = json.loads(out)
        assert status == 0 and body["group_by"] == "day" and len(body["data"]) <= 4
        rows += body["data"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert rows == whole and pages == 3
    status, out, err = run(capsys, "stats", "--db", str(db), "--group-by", "message", "--limit", "2")
    assert status == 0 and [line.split(":")[0] for line in out.splitlines()] == ["m0", "m1"]
    assert err.startswith("more groups follow: --cursor ")


@pytest.mark.parametrize(("args", "status", "message"), [
    (["stats", "--limit", "0"], 1, "--limit must be from 1 to 1000"),
    (["stats", "--limit", "1001"], 1, "--limit must be from 1 to 1000"),
    (["stats", "--cursor", "nonsense"], 1, "--cursor is not a cursor"),
    (["events", "--since", "soon"], 1, "--since must be ISO 8601"),
    (["events", "--limit", "0"], 1, "--limit must be from 1 to 1000"),
    (["events", "--metadata", "campaign"], 2, "--metadata takes KEY=VALUE"),
    (["stats", "--until", "2024-03-01", "--since", "2024-03-02"], 1, "--until must be later than since"),
    (["stats", "--group-by", "campaign", "--campaign-key", ""], 1, "--campaign-key must not be empty"),
])
def test_bad_filters_are_one_line_errors(db: Path, capsys: pytest.CaptureFixture[str], args: list[str], status: int,
                                         message: str) -> None:
    code, out, err = run(capsys, *args, "--db", str(db))
    assert code == status and out == "" and message in err and len(err.splitlines()) == 1


def test_events_machine_filter_and_stats_machine_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14: ``mailtrack events --machine none|any|<label>``; ``mailtrack stats`` shows machines beside people."""
    path = tmp_path / "events.sqlite"
    store = SQLiteStore(path)
    person = store.record(TrackingEvent(event_type="opened", message_id="m", recipient="a@x", timestamp=DAY0))
    mpp = store.record(TrackingEvent(event_type="opened", message_id="m", recipient="b@x", timestamp=DAY0,
                                     machine="apple_mpp", machine_reasons=("Apple's proxy",)))
    store.close()
    for machine, wanted in (("none", [person]), ("any", [mpp]), ("apple_mpp", [mpp]), ("prefetch", [])):
        status, out, _ = run(capsys, "events", "--db", str(path), "--json", "--machine", machine)
        assert status == 0 and [json.loads(line)["event_id"] for line in out.splitlines()] == \
            [event.event_id for event in wanted], machine
    status, out, _ = run(capsys, "events", "--db", str(path))
    assert status == 0 and "machine=apple_mpp" in out
    status, out, _ = run(capsys, "stats", "--db", str(path), "--group-by", "message")
    assert status == 0 and "opens 1 (1 unique)" in out and "machines: opens 1, clicks 0, unsubscribes 0" in out
