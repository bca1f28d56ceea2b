"""Google Analytics: utm_* parameters added to tracked destinations before signing."""

from __future__ import annotations

import pytest
from support.helpers import links_only, make_tracker

import mailtrack
from mailtrack.core.urls import add_query_parameters

GA = {"ganalytics": {"enable": True, "utm_source": "news letter", "utm_medium": "email", "utm_term": "",
                     "utm_campaign": "spring \u00e9t\u00e9"}, "open_tracking": {"enable": False}}
ADDED = "utm_source=news%20letter&utm_medium=email&utm_campaign=spring%20%C3%A9t%C3%A9"


@pytest.mark.parametrize(
    "href, destination",
    [
        ("https://x.example/", f"https://x.example/?{ADDED}"),
        ("https://x.example/p?a=1&amp;b=%2F#top", f"https://x.example/p?a=1&b=%2F&{ADDED}#top"),
        ("https://x.example/p?utm_source=keep&amp;x", "https://x.example/p?utm_source=keep&x&utm_medium=email&utm_campaign="
                                                      "spring%20%C3%A9t%C3%A9"),  # the link's own parameter wins
        ("https://x.example/#frag?not=query", f"https://x.example/?{ADDED}#frag?not=query"),
        ("https://x.example/p?", f"https://x.example/p?{ADDED}"),
    ],
)
def test_html_destinations_get_utm_parameters(href: str, destination: str) -> None:
    tracker = make_tracker()
    result = links_only(tracker, f'<a href="{href}">x</a>', settings=GA)
    (link,) = result.links
    assert link.url == destination and link.raw == href
    assert tracker.verify(link.tracking_url).url == destination


def test_text_destinations_get_them_too() -> None:
    tracker = make_tracker()
    settings = {**GA, "click_tracking": {"enable_text": True}}
    result = tracker.rewrite_text("Shop https://x.example/a.", message_id="m", recipient="r", settings=settings)
    assert tracker.verify(result.links[0].tracking_url).url == f"https://x.example/a?{ADDED}"


def test_off_by_default_and_only_for_tracked_links() -> None:
    tracker = make_tracker()
    assert links_only(tracker, '<a href="https://x.example/">x</a>').links[0].url == "https://x.example/"
    html = '<a href="https://x.example/" clicktracking="off">x</a><a href="{{u}}">y</a>'
    result = links_only(tracker, html, settings=GA)
    assert result.html == html and result.links == []


def test_account_settings_supply_the_parameters() -> None:
    account = mailtrack.TrackingSettings.from_account(
        {"google_analytics": {"enabled": True, "utm_source": "sendgrid.com", "utm_medium": "email", "utm_term": "",
                              "utm_content": "", "utm_campaign": "website"}}
    )
    tracker = make_tracker(settings=account)
    link = links_only(tracker, '<a href="https://x.example/">x</a>').links[0]
    assert link.url == "https://x.example/?utm_source=sendgrid.com&utm_medium=email&utm_campaign=website"
    off = links_only(tracker, '<a href="https://x.example/">x</a>', settings={"ganalytics": {"enable": False}})
    assert off.links[0].url == "https://x.example/"


def test_second_pass_adds_nothing() -> None:
    tracker = make_tracker()
    first = links_only(tracker, '<a href="https://x.example/">x</a>', settings=GA)
    assert links_only(tracker, first.html, settings=GA).html == first.html


@pytest.mark.parametrize(
    "url",
    ["https://x.example/", "https://x.example/?a=1&b=2#f", "https://x.example/?utm_medium=a", "https://x.example/?&", "https://x.example/?a"],
)
def test_existing_query_and_fragment_are_kept_exactly(url: str) -> None:
    out = add_query_parameters(url, (("utm_medium", "e mail"), ("utm_source", "")))
    base, _, fragment = url.partition("#")
    assert out.startswith(base) and out.endswith(fragment)
    assert out.count("utm_medium") == 1


def test_semicolon_separated_parameters_count_as_present() -> None:
    assert add_query_parameters("https://a.example/?a=1;utm_source=x", (("utm_source", "s"),)) == "https://a.example/?a=1;utm_source=x"
