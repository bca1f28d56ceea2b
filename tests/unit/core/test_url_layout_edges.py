"""Tracking URL layout, added query parameters and the redirect form, at their edges.

Written against mutation testing (``python3 tasks.py mutate``): the host/path
boundary of "ours", what ``base_url`` and ``paths`` accept (and the words of
each refusal), blank and trailing query parameters, and the ``Location`` form
of destinations with userinfo, IDN hosts, ports and empty ``?`` or ``#``.
"""

from __future__ import annotations

import pytest

from mailtrack.core.urls import UrlLayout, add_query_parameters, as_uri, destination_problem
from mailtrack.exceptions import ConfigurationError

BASE = "https://t.example.com"


# -- which URLs are ours ----------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".evil.net", "X", "x.example", ":8080", "@evil.net"])
def test_base_url_followed_by_more_authority_is_not_ours(suffix: str) -> None:
    assert UrlLayout.create(BASE).is_ours(BASE + suffix) is False


@pytest.mark.parametrize("suffix", ["", "/", "?x=1", "#top", "/c/token"])
def test_base_url_itself_or_followed_by_path_query_or_fragment_is_ours(suffix: str) -> None:
    assert UrlLayout.create(BASE).is_ours(BASE + suffix) is True
    assert UrlLayout.create(BASE).is_ours((BASE + suffix).upper().replace("/C/TOKEN", "/c/token")) is True


def test_split_finds_kind_and_token_under_custom_paths() -> None:
    layout = UrlLayout.create(BASE + "/X/", {"click": "/X/", "open": "track/o/"})
    assert layout.base_url == BASE + "/X"  # the trailing "/" goes, the "X" stays
    assert layout.prefix("click") == BASE + "/X/X/"
    assert layout.prefix("open") == BASE + "/X/track/o/"
    assert layout.split(BASE + "/X/X/tok.en") == ("click", "tok.en")
    assert layout.split(BASE + "/X/track/o/tok") == ("open", "tok")
    assert layout.split(BASE + "/X/u/tok") == ("unsubscribe", "tok")
    assert layout.split(BASE + "/X/X/tok/more") is None


def test_plain_http_base_url_is_accepted() -> None:
    assert UrlLayout.create("http://t.example.com").prefix("click") == "http://t.example.com/c/"


# -- what create refuses, in words ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "base_url, paths, message",
    [
        ("https://t.example.com/#x", None,
         "base_url must be an absolute http(s) URL without query or fragment: 'https://t.example.com/#x'"),
        ("ftp://t.example.com", None,
         "base_url must be an absolute http(s) URL without query or fragment: 'ftp://t.example.com'"),
        ("\u00a0https://t.example.com", None,  # only ASCII whitespace is trimmed
         "base_url must be an absolute http(s) URL without query or fragment: '\\xa0https://t.example.com'"),
        ("https://b\u00fccher.example", None,
         "base_url must be ASCII (an IDN host as punycode, xn--...; a path percent-encoded): 'https://b\u00fccher.example'"),
        (BASE, {"bounce": "b"}, "paths has an unknown kind 'bounce'; expected one of click, open, unsubscribe"),
        (BASE, {"click": " c"}, "paths.click must be a URL path like 'c' or 'track/click', not ' c'"),
        (BASE, {"click": "o"}, "paths must differ for click, open and unsubscribe"),
    ],
)
def test_bad_layout_is_refused_with_a_clear_message(base_url: str, paths: dict[str, str] | None, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        UrlLayout.create(base_url, paths)
    assert str(info.value) == message


def test_base_url_of_the_wrong_type_is_named() -> None:
    with pytest.raises(TypeError) as info:
        UrlLayout.create(5)  # type: ignore[arg-type]
    assert str(info.value) == "base_url must be a str, not int"


def test_a_path_spelled_with_capital_x_is_kept() -> None:
    assert UrlLayout.create(BASE, {"click": "X"}).prefix("click") == BASE + "/X/"


# -- added query parameters ------------------------------------------------------------------------------
def test_a_parameter_present_with_a_blank_value_is_not_added_again() -> None:
    url = "https://x.example/?utm_source=&a=1"
    assert add_query_parameters(url, (("utm_source", "news"),)) == url


def test_a_query_ending_in_ampersand_gets_no_second_one() -> None:
    assert add_query_parameters("https://x.example/?a=1&", (("b", "2"),)) == "https://x.example/?a=1&b=2"


# -- destinations ------------------------------------------------------------------------------------------
def test_control_characters_are_named_as_the_problem() -> None:
    assert destination_problem("https://x.example/\x01") == "control"


@pytest.mark.parametrize(
    "url, uri",
    [
        ("https://x.example/a b", "https://x.example/a%20b"),
        ("https://b\u00fccher.example/\u00fc?q=\u00e4#\u00f6", "https://xn--bcher-kva.example/%C3%BC?q=%C3%A4#%C3%B6"),
        ("https://user:pw@b\u00fccher.example:8080/p", "https://user:pw@xn--bcher-kva.example:8080/p"),
        ("https://b\u00fccher.example/p", "https://xn--bcher-kva.example/p"),
        ("https://x.example/\u00e9#", "https://x.example/%C3%A9#"),  # an empty fragment is kept
        ("https://x.example/\u00e9?", "https://x.example/%C3%A9?"),  # ... and an empty query
        ("https://x.example/\u00e9#a?b#c", "https://x.example/%C3%A9#a?b#c"),  # "?" after "#" is fragment
        ("https://x.example/?a=1", "https://x.example/?a=1"),
    ],
)
def test_redirect_form_of_a_destination(url: str, uri: str) -> None:
    assert as_uri(url) == uri
