"""Privacy mode: truncated addresses, user-agent families, durations, and the Recorder applying them everywhere.

The Recorder is the one place events enter, so these tests record through a
real Recorder over a real SQLite store (the store suites run purge and forget
against PostgreSQL too: tests/unit/storage/test_retention.py) and look at
what the store, the webhook outbox, the callback sinks and the spool got.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from mailtrack.config import Config
from mailtrack.delivery.privacy import FAMILIES, Privacy, parse_duration, truncate_ip, user_agent_family
from mailtrack.delivery.recorder import Recorder
from mailtrack.delivery.spool import Spool
from mailtrack.events import CallbackSink, TrackingEvent
from mailtrack.exceptions import ArgumentError, ConfigurationError, MailtrackError
from mailtrack.storage.sqlite import SQLiteStore

# Real user agents, each with where it comes from, and the family privacy mode keeps.
AGENTS = [
    # Chrome 120 on Windows (Chrome's own UA string, reduced form since Chrome 101)
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
     "Safari/537.36", "Chrome"),
    # Chrome on Android
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile "
     "Safari/537.36", "Chrome"),
    # Firefox 121 on Windows
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox"),
    # Safari 17 on macOS
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
     "Safari/605.1.15", "Safari"),
    # Apple Mail on macOS (WebKit without a browser token)
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)", "Apple Mail"),
    # Edge 120
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
     "Safari/537.36 Edg/120.0.2210.91", "Edge"),
    # Outlook for Windows (Microsoft 365)
    ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)", "Outlook"),
    # Outlook's older image fetcher
    ("Mozilla/4.0 (compatible; ms-office; MSOffice 16)", "Outlook"),
    # Thunderbird 115
    ("Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0", "Thunderbird"),
    # Gmail's image proxy (Google's documented agent)
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "Gmail image proxy"),
    # Yahoo Mail's image proxy
    ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "Yahoo image proxy"),
    # command-line clients, scanners and anything unknown
    ("curl/8.4.0", "other"),
    ("python-requests/2.31.0", "other"),
    ("", None),
]


@pytest.mark.parametrize(("address", "kept"), [
    ("203.0.113.77", "203.0.113.0"),
    ("203.0.113.0", "203.0.113.0"),  # idempotent
    ("10.1.2.255", "10.1.2.0"),
    ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
    ("2001:db8:85a3::", "2001:db8:85a3::"),
    ("2001:DB8:ffff:ffff::1", "2001:db8:ffff::"),
    ("::ffff:203.0.113.77", "::ffff:203.0.113.0"),  # a dual-stack socket's IPv4 client
    ("fe80::1%eth0", "fe80::"),
    ("::1", "::"),
    ("not an address", None),
    ("", None),
    (None, None),
])
def test_truncate_ip_keeps_the_ipv4_24_and_the_ipv6_48(address: str | None, kept: str | None) -> None:
    assert truncate_ip(address) == kept


@pytest.mark.parametrize(("agent", "family"), AGENTS)
def test_user_agents_reduce_to_a_small_closed_set_of_families(agent: str, family: str | None) -> None:
    assert user_agent_family(agent) == family
    assert family is None or family in FAMILIES
    assert user_agent_family(family) == family  # idempotent: a family is its own family


def test_privacy_modes_are_checked_up_front() -> None:
    with pytest.raises(ConfigurationError, match="truncate"):
        Privacy(ip="mask")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="family"):
        Privacy(user_agent="browser")  # type: ignore[arg-type]
    assert not Privacy().reduces
    assert Privacy(ip="none").reduces and Privacy(user_agent="family").reduces


def test_apply_reduces_the_event_and_its_raw_request_and_leaves_the_rest() -> None:
    agent = AGENTS[0][0]
    event = TrackingEvent("clicked", datetime(2024, 5, 1, tzinfo=timezone.utc), "m1", "a@x.test", url="https://x.test/",
                          user_agent=agent, ip="203.0.113.77", referer="https://mail.example/",
                          esp_event={"remote_addr": "203.0.113.77", "headers": {
                              "user-agent": agent, "x-forwarded-for": "203.0.113.77", "accept": "*/*"}})
    assert Privacy().apply(event) is event
    reduced = Privacy(ip="truncate", user_agent="family").apply(event)
    assert (reduced.ip, reduced.user_agent) == ("203.0.113.0", "Chrome")
    assert reduced.esp_event == {"remote_addr": "203.0.113.0", "headers": {"accept": "*/*"}}
    assert (reduced.event_id, reduced.url, reduced.referer, reduced.recipient) == (
        event.event_id, event.url, event.referer, event.recipient)
    gone = Privacy(ip="none", user_agent="none").apply(event)
    assert (gone.ip, gone.user_agent, gone.esp_event) == (None, None, {"remote_addr": None, "headers": {"accept": "*/*"}})
    only_ip = Privacy(ip="truncate").apply(event)
    assert only_ip.user_agent == agent and only_ip.esp_event is not None
    assert only_ip.esp_event["headers"] == {"user-agent": agent, "accept": "*/*"}
    assert Privacy(ip="truncate", user_agent="family").apply(reduced) == reduced  # idempotent


@pytest.mark.parametrize(("text", "seconds"), [
    ("90d", 90 * 86400), ("30d", 30 * 86400), ("12h", 12 * 3600), ("30m", 1800), ("45s", 45), ("2w", 14 * 86400),
    (" 1.5D ", 1.5 * 86400),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["90", "d", "90 days", "-5d", "0d", "1e3d", "90d12h", "", "9" * 400 + "d", None, 90])
def test_bad_durations_are_argument_errors(text: Any) -> None:
    with pytest.raises(ArgumentError) as caught:
        parse_duration(text)
    assert isinstance(caught.value, MailtrackError)


def test_config_reads_privacy_from_arguments_and_variables() -> None:
    assert Config().privacy == Privacy()  # the default: full values, as before
    config = Config.from_sources({"privacy_ip": "truncate"}, {"MAILTRACK_PRIVACY_USER_AGENT": "family",
                                                              "MAILTRACK_PRIVACY_IP": "none",
                                                              "MAILTRACK_PURGE_AFTER": "90d"})
    assert config.privacy == Privacy(ip="truncate", user_agent="family")  # an argument wins over its variable
    assert config.purge_after == 90 * 86400
    for env, named in (({"MAILTRACK_PRIVACY_IP": "mask"}, "MAILTRACK_PRIVACY_IP"),
                       ({"MAILTRACK_PRIVACY_USER_AGENT": "browser"}, "MAILTRACK_PRIVACY_USER_AGENT"),
                       ({"MAILTRACK_PURGE_AFTER": "90"}, "MAILTRACK_PURGE_AFTER")):
        with pytest.raises(ConfigurationError, match=named):
            Config.from_sources(None, env)
    with pytest.raises(ConfigurationError, match="--purge-after"):
        Config(purge_after=-1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    made = SQLiteStore(tmp_path / "events.sqlite")
    yield made
    made.close()


def click(**kwargs: Any) -> TrackingEvent:
    return TrackingEvent("clicked", datetime(2024, 5, 1, tzinfo=timezone.utc), "m1", "a@x.test", url="https://x.test/",
                         link_index=0, user_agent=AGENTS[6][0], ip="2001:db8:85a3:8d3:1319:8a2e:370:7348", **kwargs)


def test_the_recorder_reduces_before_the_store_the_outbox_and_the_sinks(store: SQLiteStore, tmp_path: Path) -> None:
    seen: list[TrackingEvent] = []
    recorder = Recorder(store, [CallbackSink(seen.append)], outbox=["https://hook.example/"],
                        spool_dir=tmp_path / "spool", privacy=Privacy(ip="truncate", user_agent="family"))
    try:
        returned = recorder.record(click())
    finally:
        recorder.close()
    (stored,) = store.events()
    (item,) = store.outbox_claim("https://hook.example/", now=2e9, lease=60)
    for event in (returned, stored, item.event, *seen):
        assert (event.ip, event.user_agent) == ("2001:db8:85a3::", "Outlook")
    assert len(seen) == 1


def test_events_spooled_without_privacy_mode_are_reduced_when_moved_into_the_store(store: SQLiteStore,
                                                                                   tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    left = Spool(spool_dir)
    left.append_many([click(), click()])  # what a process without privacy mode left behind
    left.rotate()  # closed (unlocked), as a dead process's file is
    assert "2001:db8:85a3:8d3" in "".join(path.read_text() for path in spool_dir.iterdir() if path.is_file())
    recorder = Recorder(store, spool_dir=spool_dir, privacy=Privacy(ip="none", user_agent="none"))
    try:
        assert recorder.wait_recovered(30)
    finally:
        recorder.close()
    stored = store.events()
    assert len(stored) == 2 and all(event.ip is None and event.user_agent is None for event in stored)


def test_a_store_down_spools_the_reduced_event_never_the_full_one(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    missing = SQLiteStore(tmp_path / "db.sqlite")
    (tmp_path / "db.sqlite").unlink()
    (tmp_path / "db.sqlite").mkdir()  # the store cannot open its file now: the recorder spools
    recorder = Recorder(missing, spool_dir=spool_dir, retry_interval=3600, max_retry_interval=3600,
                        privacy=Privacy(ip="truncate", user_agent="family"))
    try:
        recorder.record(click())
        lines = [json.loads(line) for path in sorted(spool_dir.glob("*")) if path.is_file()
                 for line in path.read_text().splitlines() if line.startswith("{")]
    finally:
        recorder.close()
        missing.close()
    assert lines, "the event was spooled"
    assert all((line["ip"], line["user_agent"]) == ("2001:db8:85a3::", "Outlook") for line in lines)


def test_the_recorder_takes_only_a_privacy(store: SQLiteStore) -> None:
    with pytest.raises(ConfigurationError):
        Recorder(store, privacy="truncate")  # type: ignore[arg-type]


def test_family_without_ua_parser_is_refused_at_start_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ua_parser", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(ConfigurationError, match=r"mailtrack\[privacy\]"):
        Privacy(user_agent="family")
    with pytest.raises(ConfigurationError, match="--privacy-user-agent"):
        Config.from_sources(None, {"MAILTRACK_PRIVACY_USER_AGENT": "family"})
    assert Privacy(ip="truncate", user_agent="none").reduce_ip("203.0.113.9") == "203.0.113.0"  # the rest still works


def test_the_purger_purges_by_its_clock_and_survives_a_store_that_cannot_be_written(store: SQLiteStore,
                                                                                     tmp_path: Path) -> None:
    from mailtrack.storage.purger import Purger

    day = 86400.0
    stamp = datetime(2024, 5, 1, tzinfo=timezone.utc)
    store.record_many([click(), TrackingEvent("opened", stamp, "m2", "b@x.test")])
    now = stamp.timestamp() + 10 * day
    purger = Purger(store, 30 * day, clock=lambda: now)
    assert purger.purge_once().events == 0 and store.count() == 2  # ten days old: kept
    now += 30 * day
    assert purger.purge_once().events == 2 and store.count() == 0
    assert (purger.runs, purger.purged.events) == (2, 2)
    (tmp_path / "events.sqlite").unlink()
    (tmp_path / "events.sqlite").mkdir()  # the file is now a directory: every write fails
    store.close()
    assert purger.purge_once().events == 0 and purger.runs == 2  # logged, no exception, tried again next time
    with pytest.raises(ConfigurationError):
        Purger(store, 0)
