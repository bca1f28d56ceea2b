"""Adversarial review of issue 14 (the classifier): hostile user agents cost linear time, with the same verdicts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrack import machine
from mailtrack.machine import Classifier

# The two regexes the classifier used before: each quadratic in the agent's length (a 40 kB agent took seconds, a
# 256 kB one, what ``mailtrack serve`` reads in a request's head, minutes of CPU for one request to any token's URL).
OLD_CRAWLER = re.compile(r"[a-z0-9_-]*[a-z]bot/")
OLD_CHROME = re.compile(r"Windows NT [^;)]*[;)].*\bChrome/(\d+)\.")

PIECES = st.sampled_from(["Windows NT ", "Windows NT 10.0", ";", ")", " ", "Chrome/", "Chrome/79.", "Chrome/131.",
                          "xChrome/5.", "bot/", "Googlebot/", "_", "-", "9", "a", "Z", "é", "/", "."])


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=14).map("".join))
def test_the_linear_searches_find_what_the_regexes_found(agent: str) -> None:
    lowered = agent.lower()
    crawler = OLD_CRAWLER.search(lowered)
    assert machine._crawler(lowered) == (crawler.group() if crawler else None)
    chrome = OLD_CHROME.search(agent)
    assert machine._old_chrome(agent) == (chrome.group(1) if chrome else None)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("agent", ["Windows NT ;" * 21_000, "a" * 250_000 + " bot/"], ids=["old-chrome", "crawler"])
def test_a_head_sized_agent_is_classified_in_linear_time(agent: str) -> None:
    """Each of these took minutes of CPU before (quadratic regex backtracking); the click and open URLs reach them."""
    classifier = Classifier(None)
    assert classifier.classify("GET", "click", {"user-agent": agent, "accept-language": "en"}, None, 0, 10**9) == (
        None, ())
    assert classifier.classify("GET", "open", {"user-agent": agent}, None) == (None, ())
