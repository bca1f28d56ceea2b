"""The one-match fast paths of the destination check give the full check's answer at every edge.

``check_destination`` settles most links with one expression, and the
rewriter's rules use the same expression minus the placeholder trigger
characters (``plain_destination``). A fast path may only say "yes" when the
full check would: these inputs sit exactly on each of its limits (host
length, A-labels in any case, ports, characters it admits), so a fast path
that says "yes" one step too far is caught.
"""

from __future__ import annotations

import pytest

from mailtrack.core.rewrite.rules import PlaceholderMatcher
from mailtrack.core.urls import _check, as_uri, check_destination, destination_problem, plain_destination

LABEL = "a" * 63
HOST_253 = ".".join([LABEL, LABEL, LABEL, "b" * 61])  # 63*3 + 61 + 3 dots = 253
assert len(HOST_253) == 253


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        (f"https://{HOST_253}/", True),
        (f"https://{HOST_253}a/", False),  # 254: one past the limit
        (f"https://{HOST_253}./", True),  # a trailing dot does not count toward the limit
        ("https://x.example:65535/", True),
        ("https://x.example:65536/", False),
        ("https://x.example:0/", True),
        ("https://x.example:99999/", False),
        ("https://xn--fa-hia.de/", True),  # a valid A-label: the full check decides, and agrees
        ("https://xn--zz-zz.de/", False),  # an A-label that does not decode
        ("https://XN--ZZ-ZZ.de/", False),  # the same in capitals
        ("https://Xn--zz-zz.de/", False),
        ("https://a--b.example/", True),  # "--" that is no A-label
        ("https://x.example/a b", True),  # a space: accepted by the full check (percent-encoded to redirect), not by the fast paths
        ("https://x.example/\x7f", False),  # DEL
        ("https://x.example/\x01", False),
        ("https://x.example/~!*'();:@&=+$,/?#[]", True),  # every printable delimiter after the host
    ],
)
def test_fast_paths_agree_with_the_full_check_at_every_limit(url: str, accepted: bool) -> None:
    full = _check(url)
    assert (not isinstance(full, str)) is accepted
    assert (destination_problem(url) is None) is accepted
    assert (not isinstance(check_destination(url), str)) is accepted
    if not accepted:  # neither fast path may say yes where the full check says no
        assert plain_destination()(url) is False
        assert PlaceholderMatcher().plain_http(url) is False
    if " " in url:  # the fast paths take printable ASCII only; the full check takes the rest
        assert plain_destination()(url) is False


def test_a_port_is_read_whole_by_the_fast_path() -> None:
    plain = plain_destination()
    assert plain("https://x.example:65535/") and not plain("https://x.example:65536/")
    assert not plain("https://x.example:6553699/")  # more than five digits never matches
    assert check_destination("https://x.example:65535/") != "invalid"
    assert isinstance(check_destination("https://x.example:70000/"), str)


def test_the_plain_test_admits_exactly_the_printable_ascii_it_is_not_told_to_exclude() -> None:
    plain = plain_destination("{%|<[$")
    for ch in map(chr, range(0x21, 0x7F)):
        assert plain(f"https://x.example/{ch}") is (ch not in "{%|<[$"), ch
    for ch in (" ", "\t", "\x00", "\x7f", "é", "\u2028"):
        assert plain(f"https://x.example/{ch}") is False, repr(ch)
    assert plain_destination()("https://x.example/{%") is True  # nothing excluded: all printable ASCII


def test_a_long_url_on_a_short_host_is_still_plain() -> None:
    url = "https://x.example/" + "p" * 400
    assert plain_destination()(url) and destination_problem(url) is None


def test_the_redirect_form_escapes_every_non_uri_character_completely() -> None:
    assert as_uri("https://x.example/a b/é?q=ü#f r") == "https://x.example/a%20b/%C3%A9?q=%C3%BC#f%20r"
    assert as_uri("https://x.example/ /") == "https://x.example/%20/"


def test_a_closing_right_before_the_opening_is_no_placeholder() -> None:
    assert PlaceholderMatcher().search("https://x.example/}}{{") is False
    assert PlaceholderMatcher().search("https://x.example/%>x<%") is False


def test_paths_that_are_no_mapping_are_named_in_the_error() -> None:
    from mailtrack.core.urls import UrlLayout
    from mailtrack.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"^paths must be a mapping of kind -> path, not int$"):
        UrlLayout.create("https://t.example.com", 5)  # type: ignore[arg-type]
