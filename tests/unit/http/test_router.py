"""The router: request paths back to the kind of tracking URL and its token."""

from __future__ import annotations

import mailtrack
from mailtrack.http.router import Route, Router

DEFAULT_PATHS = mailtrack.Tracker(["k" * 32], "https://t.example.com").layout.paths


def test_each_kind_path_routes_to_its_kind_with_the_rest_as_token() -> None:
    router = Router("https://t.example.com", {"open": "o", "click": "c", "unsubscribe": "u"})
    assert router.match("/o/abc") == Route("open", "abc")
    assert router.match("/c/a/b.c") == Route("click", "a/b.c")
    assert router.match("/u/") == Route("unsubscribe", "")


def test_paths_outside_the_layout_match_nothing() -> None:
    router = Router("https://t.example.com", DEFAULT_PATHS)
    assert [router.match(path) for path in ("/", "", "/x/abc", "/c", "c/abc", "//c/abc")] == [None] * 6


def test_the_base_url_path_is_the_prefix_of_every_route() -> None:
    router = Router("https://example.com/track/", {"open": "o", "click": "c", "unsubscribe": "u"})
    assert router.match("/track/c/tok") == Route("click", "tok")
    assert router.match("/c/tok") is None


def test_the_longest_kind_path_wins_when_one_is_a_prefix_of_another() -> None:
    router = Router("https://t.example.com", {"click": "t", "open": "t/o", "unsubscribe": "u"})
    assert router.match("/t/o/tok") == Route("open", "tok")
    assert router.match("/t/tok") == Route("click", "tok")
