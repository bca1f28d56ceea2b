"""Settings in SendGrid's shape, and a clear error (never a crash) for every kind of bad input."""

from __future__ import annotations

import re
from typing import Any

import pytest
from support.helpers import BASE_URL, make_tracker, rewrite

import mailtrack

HTML = '<html><body><a href="https://x.example/">x</a></body></html>'


@pytest.mark.parametrize(
    "settings, clicks, pixels",
    [
        (None, 1, 1),
        ({}, 1, 1),
        ({"click_tracking": {"enable": False}}, 0, 1),
        ({"open_tracking": {"enable": False}}, 1, 0),
        ({"click_tracking": {"enable": True, "enable_text": True}, "open_tracking": {"enable": True}}, 1, 1),
        ({"subscription_tracking": {"enable": False}, "ganalytics": {"enable": False}}, 1, 1),
        (mailtrack.TrackingSettings(click_tracking=mailtrack.ClickTracking(enable=False)), 0, 1),
        (mailtrack.TrackingSettings(open_tracking=mailtrack.OpenTracking(enable=False)), 1, 0),
    ],
)
def test_settings_shapes(tracker: mailtrack.Tracker, settings: Any, clicks: int, pixels: int) -> None:
    result = rewrite(tracker, HTML, settings=settings)
    assert (len(result.links), len(result.pixels)) == (clicks, pixels)


def test_settings_round_trip() -> None:
    data = {"click_tracking": {"enable": False, "enable_text": True},
            "open_tracking": {"enable": True, "substitution_tag": "%open%"},
            "subscription_tracking": {"enable": False, "text": "Bye <% %>", "html": "<p><% Bye %></p>",
                                      "substitution_tag": "[unsub]"},
            "ganalytics": {"enable": False, "utm_source": "news", "utm_medium": "email", "utm_term": "",
                           "utm_content": "hero", "utm_campaign": "spring"}}
    settings = mailtrack.TrackingSettings.from_dict(data)
    assert settings.to_dict() == data
    assert mailtrack.TrackingSettings.from_dict(settings.to_dict()) == settings
    assert mailtrack.TrackingSettings().to_dict() == {
        "click_tracking": {"enable": True, "enable_text": False}, "open_tracking": {"enable": True},
        "subscription_tracking": {"enable": False}, "ganalytics": {"enable": False}}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"click_tracking": {"enable": "yes"}}, "click_tracking.enable must be a boolean"),
        ({"click_tracking": {"enable": 1}}, "click_tracking.enable must be a boolean"),
        ({"click_tracking": {"enable_text": None}}, "click_tracking.enable_text must be a boolean"),
        ({"open_tracking": {"enable": "false"}}, "open_tracking.enable must be a boolean"),
        ({"open_tracking": {"substitution_tag": 5}}, "open_tracking.substitution_tag must be a string"),
        ({"open_tracking": {"substitution_tag": " "}}, "open_tracking.substitution_tag must be a non-empty string"),
        ({"click_tracking": {"enabled": True}}, "click_tracking.enabled is not a known setting"),
        ({"click": {"enable": True}}, "click must be a boolean (per-message shorthand"),
        ({"clicks": True}, "clicks is not a known setting"),
        ({"click_tracking": True}, "click_tracking must be an object"),
        ({"ganalytics": {"utm_sauce": "x"}}, "ganalytics.utm_sauce is not a known setting"),
        ("open", "settings must be a TrackingSettings"),
        ([("click_tracking", {})], "settings must be a TrackingSettings"),
    ],
)
def test_bad_settings_name_the_field(tracker: mailtrack.Tracker, settings: Any, message: str) -> None:
    with pytest.raises(mailtrack.SettingsError, match=re.escape(message)):
        rewrite(tracker, HTML, settings=settings)


@pytest.mark.parametrize(
    "build",
    [
        lambda: mailtrack.TrackingSettings(click_tracking=None),  # type: ignore[arg-type]
        lambda: mailtrack.TrackingSettings(open_tracking={"enable": True}),  # type: ignore[arg-type]
    ],
)
def test_settings_object_checks_its_parts(build: Any) -> None:
    with pytest.raises(mailtrack.SettingsError):
        build()


def test_settings_error_is_a_mailtrack_error() -> None:
    with pytest.raises(mailtrack.MailtrackError) as info:
        mailtrack.ClickTracking(enable="on")  # type: ignore[arg-type]
    assert isinstance(info.value, mailtrack.SettingsError) and info.value.path == "click_tracking.enable"


def test_bytes_input_is_a_clear_type_error(tracker: mailtrack.Tracker) -> None:
    with pytest.raises(TypeError, match="decode"):
        rewrite(tracker, HTML.encode())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rewrite(tracker, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "html",
    [
        "", "<", "</", "<a", "<a href", "<a href=", '<a href="', "<a href='x", "<!--", "<!-", "<!", "<?", "<![CDATA[",
        "<script>", "<style><a href='https://x.example/'>", "<!--[if mso]>", "<!--[if mso]><a href='https://x.example/'>",
        "<a href=\"https://x.example/\"", "\x00<a\x00href=\x00>", "<a href=\"https://x.example/\ud800\">x</a>",
        "<body><a href=https://x.example/>" * 3, "</body></body></html></html>", "<<<<>>>>", "<a =>", "<a ==''>",
        "<table><tr><td><a href=https://x.example/></td></table></td></tr>", "<body<a href=https://x.example/>",
        "\ufeff<html>", "<a href=\"https://x.example/" + "x" * 10_000 + "\">",
    ],
)
def test_broken_html_never_raises(tracker: mailtrack.Tracker, html: str) -> None:
    result = rewrite(tracker, html)
    assert isinstance(result.html, str)
    for link in result.links:
        assert tracker.verify(link.tracking_url).url == link.url


def test_lone_surrogate_in_a_link_is_skipped(tracker: mailtrack.Tracker) -> None:
    html = '<a href="https://x.example/\ud800">x</a>'
    result = rewrite(tracker, html, settings={"open_tracking": {"enable": False}})
    assert result.html == html and [s.reason for s in result.skipped] == ["invalid"]


def test_oversized_destination_is_skipped(tracker: mailtrack.Tracker) -> None:
    html = f'<a href="https://x.example/{"a" * 9000}">x</a>'
    result = rewrite(tracker, html, settings={"open_tracking": {"enable": False}})
    assert result.html == html and [s.reason for s in result.skipped] == ["too-long"]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"message_id": 5}, TypeError),
        ({"recipient": 7}, TypeError),
        ({"tags": "one-str"}, TypeError),
        ({"tags": ["ok", 3]}, TypeError),
        ({"tags": 5}, TypeError),
        ({"metadata": ["x"]}, TypeError),
        ({"metadata": {1: "x"}}, TypeError),
        ({"metadata": {"x": object()}}, mailtrack.MailtrackError),
        ({"metadata": {"x": "\ud800"}}, mailtrack.MailtrackError),
        ({"issued_at": "now"}, mailtrack.MailtrackError),
        ({"issued_at": -1}, mailtrack.MailtrackError),
        ({"pixel_position": "middle"}, mailtrack.MailtrackError),
    ],
)
def test_bad_call_arguments(tracker: mailtrack.Tracker, kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        rewrite(tracker, HTML, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"secret_keys": []},
        {"secret_keys": [""]},
        {"secret_keys": [None]},
        {"base_url": "ftp://t.example.com"},
        {"base_url": "t.example.com"},
        {"base_url": "https://t.example.com/?x=1"},
        {"base_url": "https://t.example.com/a b"},
        {"base_url": 'https://t.example.com/"'},
        {"base_url": "https://t.example.com/&x"},
        {"base_url": "https://tëst.example"},
        {"base_url": "https://t.example.com/café"},
        {"paths": {"click": "c", "open": "c"}},
        {"paths": {"bounce": "b"}},
        {"paths": {"click": "a b"}},
        {"max_links": -1},
        {"max_links": "10"},
        {"pixel_position": "left"},
        {"signature_size": 4},
        {"opt_out_attributes": {"x": 1}},
        {"opt_out_attributes": {"": None}},
        {"placeholder_patterns": [b"bytes"]},
        {"placeholder_patterns": ["(unclosed"]},
    ],
)
def test_bad_tracker_configuration(kwargs: dict[str, Any]) -> None:
    options: dict[str, Any] = {"secret_keys": ["k"], "base_url": BASE_URL, **kwargs}
    with pytest.raises((mailtrack.MailtrackError, TypeError, re.error)):
        mailtrack.Tracker(**options)


def test_configurable_paths() -> None:
    custom = mailtrack.Tracker(["k"], "https://mail.example.com/track/", paths={"click": "r", "open": "p.gif"})
    result = rewrite(custom, HTML)
    assert result.links[0].tracking_url.startswith("https://mail.example.com/track/r/")
    assert "https://mail.example.com/track/p.gif/" in result.html
    assert custom.verify(result.links[0].tracking_url).kind == "click"


def test_max_links_zero_tracks_nothing() -> None:
    result = rewrite(make_tracker(max_links=0), HTML)
    assert result.links == [] and [s.reason for s in result.skipped] == ["limit"]
