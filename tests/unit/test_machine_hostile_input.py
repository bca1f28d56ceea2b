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


OLD_MULTIPART = re.compile(rb'name="?List-Unsubscribe"?\r?\n(?:[^\r\n]+\r?\n)*\r?\nOne-Click\r?\n')
BODY_PIECES = st.sampled_from([b"\r\n", b"\n", b'Content-Disposition: form-data; name="List-Unsubscribe"',
                               b"name=List-Unsubscribe", b"One-Click", b"--x", b"Content-Type: text/plain", b"a"])


@settings(max_examples=400, deadline=None)
@given(st.lists(BODY_PIECES, max_size=16).map(b"".join))
def test_the_multipart_one_click_pass_finds_what_the_regex_found(body: bytes) -> None:
    assert machine._multipart_one_click(body) == (OLD_MULTIPART.search(body) is not None)


def test_a_multipart_body_of_name_lines_is_read_in_one_pass() -> None:
    """64 kB of ``name=List-Unsubscribe`` lines took the regex 1.4 s of CPU for each unsubscribe POST."""
    assert not machine.one_click_body(b"name=List-Unsubscribe\n" * 2970, "multipart/form-data; boundary=x")
    rfc_8058 = (b'--x\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--x--\r\n')
    assert machine.one_click_body(rfc_8058, "multipart/form-data; boundary=x")
