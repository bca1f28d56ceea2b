"""Summaries of partitions merge into the run's: counts add up, errors keep their order."""

from __future__ import annotations

import pickle
from collections import Counter

from mailtrack.batch import Failure, Summary


def test_summaries_merge() -> None:
    a = Summary(messages=2, parts=3, links_tracked=5, links_skipped=Counter(scheme=1), seconds=0.5)
    a.fail("a.eml", "bad")
    b = Summary(messages=1, parts=1, links_tracked=1, links_skipped=Counter(scheme=2, placeholder=1),
                undecodable_parts=1, unencodable_parts=2, seconds=0.25)
    b.fail("in.mbox", "not an mbox", message=False)
    total = Summary.total([a, b])
    assert total == a + b
    assert (total.messages, total.failed, total.parts, total.links_tracked) == (3, 1, 4, 6)
    assert total.links_skipped == Counter(scheme=3, placeholder=1)
    assert total.errors == [Failure("a.eml", "bad"), Failure("in.mbox", "not an mbox")]
    assert a.messages == 2 and len(a.errors) == 1  # + makes a new summary
    assert pickle.loads(pickle.dumps(total)) == total


def test_the_json_shape() -> None:
    summary = Summary(messages=1, links_skipped=Counter(scheme=2, limit=1), seconds=0.12345)
    summary.fail("x.jsonl line 3", "not valid JSON")
    assert summary.to_dict() == {
        "messages": 1, "failed": 1, "parts": 0, "links_tracked": 0, "links_skipped": {"limit": 1, "scheme": 2},
        "undecodable_parts": 0, "unencodable_parts": 0,
        "errors": [{"input": "x.jsonl line 3", "reason": "not valid JSON"}], "seconds": 0.123,
    }
