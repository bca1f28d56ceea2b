"""Adversarial review of issue 14 (machine verdicts at the endpoints): defects found, each with its reproducer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.helpers import BASE_URL

import mailtrack
from mailtrack.delivery.privacy import Privacy
from mailtrack.delivery.recorder import Recorder
from mailtrack.events import CallbackSink, TrackingEvent
from mailtrack.http.endpoints import Endpoints, Request
from mailtrack.machine import Classifier, MachineRanges
from mailtrack.storage.sqlite import SQLiteStore

GMAIL_PROXY = {"user-agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
               "accept-language": "en", "content-type": "application/x-www-form-urlencoded"}
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
           "accept-language": "en", "content-type": "application/x-www-form-urlencoded"}
RANGES = MachineRanges.parse("network,label,source,retrieved\n198.51.100.0/24,image_proxy,https://example.org/r,2026-11-30\n")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "events.sqlite")
    yield store
    store.close()


def unsubscribe_path(tracker: mailtrack.Tracker) -> str:
    return tracker.tracking_url("unsubscribe", message_id="msg-1", recipient="ann@example.com")[len(BASE_URL):]


@pytest.mark.parametrize(("headers", "remote"), [(GMAIL_PROXY, "203.0.113.5"), (BROWSER, "198.51.100.7")],
                         ids=["image-proxy-agent", "image-proxy-network"])
def test_a_machine_labelled_image_proxy_never_unsubscribes_with_a_bare_post(
        tracker: mailtrack.Tracker, store: SQLiteStore, headers: dict[str, str], remote: str) -> None:
    """Issue 14: a one-click unsubscribe POST is never honoured from a known machine without RFC 8058's body.

    The endpoint refused only ``link_scanner`` and ``prefetch`` verdicts, so an image proxy (by its user agent or by a
    network the ranges file labels ``image_proxy``) replaying the URL as a bare POST unsubscribed the reader.
    """
    seen: list[TrackingEvent] = []
    recorder = Recorder(store, [CallbackSink(seen.append)], retry_interval=0.05, privacy=Privacy())
    try:
        endpoints = Endpoints(tracker, recorder, classifier=Classifier(RANGES))
        target = unsubscribe_path(tracker)
        bare = endpoints.handle(Request("POST", target, headers=headers, remote_addr=remote, body=b""))
        assert b"will no longer receive" not in bare.body and b'<form method="post">' in bare.body
        # with RFC 8058's body it is honoured (a provider relaying its user's request), labelled as what it is
        done = endpoints.handle(Request("POST", target, headers=headers, remote_addr=remote,
                                        body=b"List-Unsubscribe=One-Click"))
        assert b"will no longer receive" in done.body
    finally:
        recorder.close()
    assert [(e.event_type, e.machine) for e in store.events()] == [("unsubscribed", "image_proxy")]


def test_a_honeypot_click_is_no_persons_with_classification_off(tracker: mailtrack.Tracker,
                                                                 store: SQLiteStore) -> None:
    """With ``machine_ranges="off"`` every verdict was None, so the honeypot link's 204 recorded a person's click:
    the honeypot, opt-in, then added a unique click to the stats for every scanner that followed it."""
    honeypot = mailtrack.Tracker(secret_keys=["older-key", "newest-key"], base_url=BASE_URL, honeypot=True)
    target = honeypot.honeypot_url(message_id="msg-1", recipient="ann@example.com")[len(BASE_URL):]
    recorder = Recorder(store, [], retry_interval=0.05, privacy=Privacy())
    try:
        response = Endpoints(honeypot, recorder, classifier=None).handle(
            Request("GET", target, headers=BROWSER, remote_addr="203.0.113.5"))
    finally:
        recorder.close()
    assert response.status == 204
    assert [(e.link_index, e.machine, e.first) for e in store.events()] == [(-1, "honeypot", False)]
