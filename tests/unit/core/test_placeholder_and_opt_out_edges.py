"""Placeholders and opt-outs at their edges: empty lists, custom flags, single names, bad configuration.

Written against mutation testing (``python3 tasks.py mutate``): each test is a
configuration a user may write and what they would see happen to their links.
"""

from __future__ import annotations

import re

import pytest
from support.helpers import assert_left_alone, make_tracker, tracked

import mailtrack
from mailtrack.core.rewrite.rules import DEFAULT_OPT_OUTS, OptOuts, PlaceholderMatcher, _common_substring


# -- placeholders ---------------------------------------------------------------------------------
def test_no_placeholder_patterns_means_every_link_is_tracked() -> None:
    none = make_tracker(placeholder_patterns=[])
    assert tracked(none, '<a href="https://x.example/{{id}}">') == ["https://x.example/{{id}}"]
    assert PlaceholderMatcher([]).search("anything") is False


def test_custom_patterns_keep_exactly_their_own_flags() -> None:
    both = make_tracker(placeholder_patterns=[re.compile(r"@@id.@@", re.IGNORECASE | re.DOTALL)])
    assert_left_alone(both, '<a href="https://x.example/@@ID\n@@">', "placeholder")
    plain = make_tracker(placeholder_patterns=[re.compile(r"@@id@@")])
    assert tracked(plain, '<a href="https://x.example/@@ID@@">') == ["https://x.example/@@ID@@"]  # no flag, no IGNORECASE
    spaced = make_tracker(placeholder_patterns=[re.compile(r"@@ id @@")])
    assert tracked(spaced, '<a href="https://x.example/@@id@@">') == ["https://x.example/@@id@@"]  # no VERBOSE either


def test_patterns_attribute_lists_each_source_with_its_flags_inline() -> None:
    matcher = PlaceholderMatcher([r"\{\{", re.compile("a"), re.compile("b", re.MULTILINE)])
    assert matcher.patterns == (r"\{\{", "a", "(?m:b)")


def test_a_pattern_of_the_wrong_type_is_named() -> None:
    with pytest.raises(TypeError) as info:
        PlaceholderMatcher([5])  # type: ignore[list-item]
    assert str(info.value) == "placeholder patterns must be str or compiled str patterns, not 5"


def test_invalid_placeholder_regex_is_a_configuration_error() -> None:
    with pytest.raises(mailtrack.ConfigurationError):
        make_tracker(placeholder_patterns=["("])


@pytest.mark.parametrize(
    "url, plain",
    [
        ("https://x.example/a?b=c", True),
        ("HTTP://x.example/", True),
        ("https://x.example/{{id}}", False),  # could hold a placeholder
        ("https://x.example/%id%", False),
        ("https://x.example/\x01", False),  # not a valid destination
        ("mailto:a@x.example", False),
    ],
)
def test_plain_http_recognises_links_that_need_no_further_checks(url: str, plain: bool) -> None:
    assert PlaceholderMatcher().plain_http(url) is plain
    assert PlaceholderMatcher(["@@"]).plain_http(url) is False  # custom lists always take the full path


# -- opt-outs -------------------------------------------------------------------------------------
def test_empty_opt_out_map_opts_nothing_out() -> None:
    none = make_tracker(opt_out_attributes={})
    assert tracked(none, '<a clicktracking="off" data-pm-no-track href="https://x.example/">') == ["https://x.example/"]


def test_a_single_custom_opt_out_attribute_works() -> None:
    single = make_tracker(opt_out_attributes={"data-skip": None})
    assert_left_alone(single, '<a data-skip href="https://x.example/">x</a>', "opt-out")
    assert tracked(single, '<a href="https://x.example/">') == ["https://x.example/"]


def test_opt_out_names_with_nothing_in_common_all_work() -> None:
    custom = make_tracker(opt_out_attributes={"foo": None, "bar": "1"})
    assert_left_alone(custom, '<a foo href="https://x.example/">x</a>', "opt-out")
    assert_left_alone(custom, '<a bar=1 href="https://x.example/">x</a>', "opt-out")
    assert tracked(custom, '<a bar=2 href="https://x.example/">') == ["https://x.example/"]


@pytest.mark.parametrize(
    "url", ["https://x.example/track", "https://x.example/track/clicktracking-off", "https://x.example/?ses:no-track"]
)
def test_a_link_that_merely_mentions_track_or_an_opt_out_name_is_tracked(tracker: mailtrack.Tracker, url: str) -> None:
    assert tracked(tracker, f'<a href="{url}" title="no-track">') == [url]


def test_opt_out_value_is_trimmed_of_ascii_whitespace_only(tracker: mailtrack.Tracker) -> None:
    assert_left_alone(tracker, '<a clicktracking=" off\t" href="https://x.example/">x</a>', "opt-out")
    nbsp = '<a clicktracking="off&nbsp;" href="https://x.example/">'
    assert tracked(tracker, nbsp) == ["https://x.example/"]  # U+00A0 is not whitespace to HTML


@pytest.mark.parametrize(
    "attributes, message",
    [
        (["clicktracking"], "opt_out_attributes must be a mapping of name -> value or None, not ['clicktracking']"),
        ({"": None}, "opt_out_attributes maps a non-empty str name to a str or None, not '': None"),
        ({"x": 0}, "opt_out_attributes maps a non-empty str name to a str or None, not 'x': 0"),
    ],
)
def test_malformed_opt_out_configuration_is_named(attributes: object, message: str) -> None:
    with pytest.raises(TypeError) as info:
        OptOuts(attributes)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize(
    "names, common",
    [
        (tuple(DEFAULT_OPT_OUTS), "track"),
        (("data-a", "data-b"), "data-"),
        (("ses:no-track", "clicktracking"), "track"),
        (("xabcx", "yabcy"), "abc"),
        (("foo", "bar"), ""),
        (("ab",), ""),  # shorter than 3 characters: not worth a search
        ((), ""),
    ],
)
def test_prefilter_is_the_longest_substring_every_name_holds(names: tuple[str, ...], common: str) -> None:
    """The one plain-text search that rules most tags out before any attribute is parsed."""
    assert _common_substring(names) == common


# -- the linear-time delimiter search (issue 8, defect 2) answers as the expressions did ----------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://x.example/{{a}} {{", True),  # a later opening without its closing does not hide the first pair
        ("https://x.example/{{abc", False),  # an opening alone
        ("https://x.example/}} then {{", False),  # a closing only before the opening
        ("https://x.example/{}}", False),  # the closing must start after the whole opening
        ("https://x.example/{{}}", True),  # right after it
        ("https://x.example/?a={%b%}", True),
        ("https://x.example/%>x<%", False),
        ("https://x.example/${x", False),
        ("https://x.example/${x}", True),
    ],
)
def test_delimiter_pairs_need_a_closing_after_their_opening(value: str, expected: bool) -> None:
    from mailtrack.core.rewrite.rules import PlaceholderMatcher

    assert PlaceholderMatcher().search(value) is expected
    regex = re.compile("|".join(f"(?:{p})" for p in mailtrack.DEFAULT_PLACEHOLDERS))
    assert (regex.search(value) is not None) is expected  # the expressions they stand for agree


def test_placeholder_errors_say_what_to_do() -> None:
    from mailtrack.core.rewrite.rules import PlaceholderMatcher

    with pytest.raises(mailtrack.ArgumentError, match=r"^placeholder_patterns must be a pattern or an iterable of them, not 5$"):
        PlaceholderMatcher(5)  # type: ignore[arg-type]
    with pytest.raises(mailtrack.ConfigurationError, match=r"^placeholder pattern '\(' does not compile: "):
        PlaceholderMatcher(["("])
    with pytest.raises(mailtrack.ConfigurationError) as caught:
        PlaceholderMatcher(["x", "(?i)y"])
    assert str(caught.value).startswith("placeholder patterns cannot be searched together (")
    assert str(caught.value).endswith(
        "): put flags in a scoped group like (?i:...), and give each named group its own name")
