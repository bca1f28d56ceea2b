"""Adversarial review of issue 14 (stateful verdicts in the stores): broadcast messages, whose tokens name no reader."""

from __future__ import annotations

from typing import Any

from tests.unit.storage.test_verdicts import assert_stats_exact, by_id, event


def test_two_readers_of_a_broadcast_clicking_within_a_second_are_not_a_burst(backend: Any) -> None:
    """A broadcast body (``recipient=None``) is one copy read by many people: its clicks name no reader, so the
    stateful verdicts must not take two people's clicks of different links, a second apart, for one scanner's burst
    (nor every click within a minute of one scanner's honeypot click for that scanner's)."""
    store = backend.open()
    ann = store.record(event("clicked", 10, link=0, recipient=None, ip="203.0.113.5"))
    bob = store.record(event("clicked", 10.5, link=1, recipient=None, ip="198.51.100.7"))
    store.record(event("clicked", 30, link=-1, recipient=None, machine="honeypot"))  # a scanner, for one copy
    cat = store.record(event("clicked", 40, link=2, recipient=None, ip="192.0.2.9"))
    now = by_id(store)
    assert [now[e.event_id].machine for e in (ann, bob, cat)] == [None, None, None]
    assert_stats_exact(store)
