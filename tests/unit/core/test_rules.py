"""One test (or a table of cases) for each link rule of issue #2."""

from __future__ import annotations

import pytest
from support.helpers import BASE_URL, assert_left_alone, links_only, make_tracker, rewrite, tracked

import mailtrack


# -- rule 1: which elements and contexts ------------------------------------------
@pytest.mark.parametrize(
    "html, expected",
    [
        ('<a href="https://a.example/">x</a>', ["https://a.example/"]),
        ('<map><area href="https://area.example/" alt=""></map>', ["https://area.example/"]),
        ('<link href="https://css.example/s.css"><img src="https://img.example/i.png">', []),
        ('<base href="https://base.example/"><abbr href="https://abbr.example/">', []),
        ('<!--[if mso]><v:roundrect href="https://vml.example/" arcsize="10%"></v:roundrect><![endif]-->',
         ["https://vml.example/"]),
        ('<!--[if mso]><v:rect href="https://rect.example/"/><v:oval HREF="https://oval.example/"/><![endif]-->',
         ["https://rect.example/", "https://oval.example/"]),
        ('<!--[if gte mso 9]><a href="https://mso-a.example/">x</a><![endif]-->', ["https://mso-a.example/"]),
        ('<!--[if mso | IE]><table><tr><td><a href="https://ie.example/">x</a><![endif]-->', ["https://ie.example/"]),
        # VML outside a conditional comment is not what Outlook renders and not an HTML link
        ('<v:roundrect href="https://bare-vml.example/"></v:roundrect>', []),
        # downlevel-revealed: the content is ordinary HTML
        ('<!--[if !mso]><!--><a href="https://not-mso.example/">x</a><!--<![endif]-->', ["https://not-mso.example/"]),
    ],
)
def test_rule1_tracked_elements(tracker: mailtrack.Tracker, html: str, expected: list[str]) -> None:
    assert tracked(tracker, html) == expected


@pytest.mark.parametrize(
    "container",
    [
        "<!-- {} -->",
        "<!--{}-->",
        "<!--[if mso]>{}-->",  # no <![endif]: not a conditional block
        "<script>{}</script>",
        '<script type="text/template">{}</SCRIPT >',
        "<style>{}</style>",
        "<textarea>{}</textarea>",
        "<title>{}</title>",
        "<xmp>{}</xmp>",
        "<iframe>{}</iframe>",
        "<noembed>{}</noembed>",
        "<noframes>{}</noframes>",
        "<plaintext>{}",
        "<!DOCTYPE {}>",
        "<?php {} ?>",
        "<img alt='{}'>",
        '<td title="{}">',
    ],
)
def test_rule1_nothing_inside_comments_and_raw_text(tracker: mailtrack.Tracker, container: str) -> None:
    hidden = container.format('<a href="https://hidden.example/">x</a>'.replace("'", '"') if "'" in container else
                              '<a href="https://hidden.example/">x</a>')
    if container.startswith('<td title="'):
        hidden = container.format("<a href='https://hidden.example/'>x</a>")
    html = hidden + '<a href="https://visible.example/">y</a>'
    expected = [] if container.startswith("<plaintext>") else ["https://visible.example/"]
    assert tracked(tracker, html) == expected


def test_rule1_raw_text_needs_its_own_end_tag(tracker: mailtrack.Tracker) -> None:
    html = ('<script></scripts><a href="https://in-script.example/"></script>'
            '<style></style x="</style>"><a href="https://after.example/">')
    assert tracked(tracker, html) == ["https://after.example/"]


def test_rule1_comment_edge_syntax(tracker: mailtrack.Tracker) -> None:
    # <!--> and <!---> are complete comments; --!> closes a comment
    html = ('<!--><a href="https://1.example/"><!---><a href="https://2.example/">'
            '<!-- x --!><a href="https://3.example/"><!-- <a href="https://no.example/"> -- >')
    assert tracked(tracker, html) == ["https://1.example/", "https://2.example/", "https://3.example/"]


# -- rule 2: attribute syntax -------------------------------------------------------
@pytest.mark.parametrize(
    "tag",
    [
        '<a href="https://x.example/">',
        "<a href='https://x.example/'>",
        "<a href=https://x.example/>",
        '<A HREF="https://x.example/">',
        '<a Href = "https://x.example/" >',
        '<a\nhref\n=\n"https://x.example/"\n>',
        '<a\r\nhref\t=\r\n\'https://x.example/\'>',
        '<a class="b"href="https://x.example/">',  # no space after a quoted value
        '<a / href="https://x.example/" / >',
        '<a href="https://x.example/" href="https://second.example/">',  # first one counts
        '<a HREF="https://x.example/" href="https://second.example/">',
        '<a title=">" href="https://x.example/">',
    ],
)
def test_rule2_attribute_syntax(tracker: mailtrack.Tracker, tag: str) -> None:
    assert tracked(tracker, tag + "x</a>") == ["https://x.example/"]


@pytest.mark.parametrize(
    "tag",
    [
        '<a b= href="https://x.example/">',  # href="..." is b's unquoted value
        '<a data-href="https://x.example/">',
        '<ahref="https://x.example/">',
        '<a hre f="https://x.example/">',
        '<a href="https://x.example/',  # cut off by the end of the input: not a tag
    ],
)
def test_rule2_not_an_href(tracker: mailtrack.Tracker, tag: str) -> None:
    assert tracked(tracker, tag) == []


# -- rule 3: destination decoding ---------------------------------------------------
@pytest.mark.parametrize(
    "raw, destination",
    [
        ("https://x.example/?a=1&amp;b=2", "https://x.example/?a=1&b=2"),
        ("https://x.example/?a=1&#38;b=2", "https://x.example/?a=1&b=2"),
        ("https://x.example/?a=1&#x26;b=2", "https://x.example/?a=1&b=2"),
        ("https://x.example/?q=caf&eacute;", "https://x.example/?q=café"),
        ("https://x.example/?a=1&amp;amp;b=2", "https://x.example/?a=1&amp;b=2"),  # decoded exactly once
        ("https://x.example/?a=1&copy=2", "https://x.example/?a=1&copy=2"),  # legacy name + "=": kept in attributes
        ("https://x.example/?a=1&lang=en", "https://x.example/?a=1&lang=en"),
        ("  https://x.example/a%20b  ", "https://x.example/a%20b"),
        ("\n\thttps://x.example/\n", "https://x.example/"),
        ("https://x.example/A/../b?Q=%7e#Frag", "https://x.example/A/../b?Q=%7e#Frag"),  # nothing else normalized
    ],
)
def test_rule3_destination(tracker: mailtrack.Tracker, raw: str, destination: str) -> None:
    result = links_only(tracker, f'<a href="{raw}">x</a>')
    assert [link.url for link in result.links] == [destination]
    assert tracker.verify(result.links[0].tracking_url).url == destination


# -- rule 4: only http(s) ---------------------------------------------------------------
@pytest.mark.parametrize("url", ["HTTPS://X.EXAMPLE/", "Http://x.example/"])
def test_rule4_http_any_case(tracker: mailtrack.Tracker, url: str) -> None:
    assert tracked(tracker, f'<a href="{url}">') == [url]


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("mailto:ann@example.com", "scheme"),
        ("tel:+15551234", "scheme"),
        ("sms:+15551234", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("data:text/html,hi", "scheme"),
        ("ftp://files.example/", "scheme"),
        ("/relative/path", "scheme"),
        ("relative.html", "scheme"),
        ("//proto-relative.example/", "scheme"),
        ("#top", "scheme"),
        ("https:no-slashes.example", "scheme"),
        ("http://\\evil.example/", "scheme"),  # browsers read "\\" as "/": no host
        ("http://&#92;evil.example/", "scheme"),
        ("http:///x.example/", "scheme"),
        ("http://", "scheme"),
        ("", "empty"),
        ("   ", "empty"),
        ("https://x.example/&#10;split", "invalid"),  # a decoded newline inside the URL
    ],
)
def test_rule4_left_alone_and_reported(tracker: mailtrack.Tracker, raw: str, reason: str) -> None:
    html = f'<a href="{raw}">x</a>'
    result = links_only(tracker, html)
    assert result.links == []
    assert [(s.raw, s.reason) for s in result.skipped] == [(raw, reason)]
    assert result.html == html


# -- rule 5: placeholders -----------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        "{{action_url}}",
        "https://x.example/{{ user.id }}/profile",
        "{% url 'home' %}",
        "*|UNSUB|*",
        "https://x.example/?e=*|EMAIL|*",
        "&lt;%asm_group_unsubscribe_raw_url%&gt;",
        "<%= link %>",
        "%unsubscribe_url%",
        "https://x.example/?u=%user_id%",
        "[Unsubscribe_Preferences]",
        "${link}",
        "https://x.example/${path}",
    ],
)
def test_rule5_placeholders(tracker: mailtrack.Tracker, raw: str) -> None:
    assert_left_alone(tracker, f'<a href="{raw}">x</a>', "placeholder")


@pytest.mark.parametrize(
    "url",
    [
        "https://x.example/caf%C3%A9%20menu",  # percent-encoding is not a %tag%
        "https://x.example/a%2Fb%2Fc",
        "https://x.example/[not-whole-value]",
        "https://x.example/?q={not-double}",
    ],
)
def test_rule5_lookalikes_are_tracked(tracker: mailtrack.Tracker, url: str) -> None:
    assert tracked(tracker, f'<a href="{url}">') == [url]


def test_rule5_placeholder_list_is_configurable() -> None:
    custom = make_tracker(placeholder_patterns=[r"@@\w+@@"])
    html = '<a href="https://x.example/@@id@@">a</a><a href="{{kept-as-url-now}}">b</a><a href="https://x.example/{{y}}">'
    result = links_only(custom, html)
    assert [(s.raw, s.reason) for s in result.skipped] == [
        ("https://x.example/@@id@@", "placeholder"),
        ("{{kept-as-url-now}}", "scheme"),
    ]
    assert [link.url for link in result.links] == ["https://x.example/{{y}}"]


# -- rule 6: opt-out attributes ------------------------------------------------------------
@pytest.mark.parametrize(
    "attribute",
    [
        'clicktracking="off"',
        "clicktracking=OFF",
        "data-pm-no-track",
        'data-pm-no-track=""',
        "ses:no-track",
        'data-msys-clicktrack="0"',
        "mc:disable-tracking",
        'disable-tracking="true"',
        'data-mautic-disable-tracking="true"',
    ],
)
def test_rule6_opt_out(tracker: mailtrack.Tracker, attribute: str) -> None:
    assert_left_alone(tracker, f'<a {attribute} href="https://x.example/">x</a>', "opt-out")  # attribute kept


@pytest.mark.parametrize(
    "attribute",
    ['clicktracking="on"', 'data-msys-clicktrack="1"', 'disable-tracking="false"', 'title="clicktracking=off"'],
)
def test_rule6_not_an_opt_out(tracker: mailtrack.Tracker, attribute: str) -> None:
    assert tracked(tracker, f'<a {attribute} href="https://x.example/">') == ["https://x.example/"]


# -- rule 7: our own links, idempotence ------------------------------------------------------
def test_rule7_second_pass_is_a_no_op(tracker: mailtrack.Tracker) -> None:
    html = '<html><body><a href="https://x.example/">x</a><a href="https://y.example/">y</a></body></html>'
    first = rewrite(tracker, html)
    second = rewrite(tracker, first.html)
    assert second.html == first.html
    assert second.links == [] and second.pixels == []
    assert [s.reason for s in second.skipped] == ["already-tracked", "already-tracked"]
    assert first.html.count(BASE_URL + "/o/") == 1


def test_rule7_our_links_count_toward_the_limit() -> None:
    limited = make_tracker(max_links=2)
    ours = links_only(limited, '<a href="https://0.example/">0</a>').links[0].tracking_url  # this message's
    html = f'<a href="{ours}">0</a><a href="https://1.example/">1</a><a href="https://2.example/">2</a>'
    result = links_only(limited, html)
    assert [link.url for link in result.links] == ["https://1.example/"]
    assert [s.reason for s in result.skipped] == ["already-tracked", "limit"]
    assert result.links[0].index == 1


def test_rule7_a_forged_link_under_our_base_url_is_not_verified_and_not_counted() -> None:
    limited = make_tracker(max_links=1)
    html = f'<a href="{BASE_URL}/c/abc">0</a><a href="https://1.example/">1</a>'
    result = links_only(limited, html)
    assert [(link.index, link.url) for link in result.links] == [(0, "https://1.example/")]
    assert [s.reason for s in result.skipped] == ["not-verified"]
    assert result.html.startswith(f'<a href="{BASE_URL}/c/abc">')


# -- rule 8: max_links ---------------------------------------------------------------------------
def test_rule8_default_limit_is_1000(tracker: mailtrack.Tracker) -> None:
    html = "".join(f'<a href="https://x.example/{i}">{i}</a>' for i in range(1005))
    result = links_only(tracker, html)
    assert len(result.links) == 1000
    assert [link.index for link in result.links] == list(range(1000))
    assert [(s.raw, s.reason) for s in result.skipped] == [(f"https://x.example/{i}", "limit") for i in range(1000, 1005)]


def test_rule8_limit_counts_only_tracked_links() -> None:
    limited = make_tracker(max_links=1)
    html = '<a href="mailto:a@b.example">m</a><a href="https://1.example/">1</a><a href="https://2.example/">2</a>'
    result = links_only(limited, html)
    assert [link.url for link in result.links] == ["https://1.example/"]
    assert [s.reason for s in result.skipped] == ["scheme", "limit"]


# -- rule 9: quoting ----------------------------------------------------------------------------
@pytest.mark.parametrize("quote", ['"', "'", ""])
def test_rule9_quoting_kept_and_escaped(quote: str) -> None:
    amp_tracker = mailtrack.Tracker(["k"], "https://t.example.com/x", paths={"click": "c"})
    html = f"<a href={quote}https://x.example/?a=1&amp;b=2{quote} class=btn>x</a>"
    result = links_only(amp_tracker, html)
    (link,) = result.links
    assert result.html == f"<a href={quote}{link.tracking_url}{quote} class=btn>x</a>"
    assert link.quote == quote


def test_rule9_ampersands_in_tracking_url_are_escaped() -> None:
    from mailtrack.core.charrefs import decode_attribute, escape_attribute

    for quote in ('"', "'", ""):
        value = "https://t.example/c/x?a=1&b='2'\"<>= \t"
        assert decode_attribute(escape_attribute(value, quote)) == value
        assert "&b" not in escape_attribute(value, quote)


# -- the document outside the link values -------------------------------------------------------
def test_everything_else_byte_identical(tracker: mailtrack.Tracker) -> None:
    html = (
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\">\r\n<HTML><Body bgcolor=#fff>\r\n"
        "<!-- keep &amp; me --><p>caf&eacute; &nbsp; \u00e9\u2014\U0001F600</p><table><tr><td><p></td></table>"
        "<a  class='x'  HREF = 'https://x.example/?a&amp;b'  >link</a></Body></HTML>\r\n"
    )
    result = rewrite(tracker, html)
    (link,) = result.links
    start = html.index("https://x.example/")
    new = link.tracking_url
    expected_links = html[:start] + new + html[start + len(link.raw):]
    pixel_at = expected_links.index("</Body>")
    assert result.html == expected_links[:pixel_at] + result.pixel.html + expected_links[pixel_at:]  # type: ignore[union-attr]


def test_disabled_tracking_returns_input_unchanged(tracker: mailtrack.Tracker) -> None:
    html = '<html><body><a href="https://x.example/">x</a></body></html>'
    off = {"click_tracking": {"enable": False}, "open_tracking": {"enable": False}}
    result = rewrite(tracker, html, settings=off)
    assert result.html == html and result.links == [] and result.pixels == []


@pytest.mark.parametrize(
    "raw, destination",
    [
        ("https://x.example/&#1;", "https://x.example/\x01"),  # kept (html.unescape would drop it)
        ("https://x.example/&#x80;", "https://x.example/\u20ac"),  # C1 table
        ("https://x.example/&#0;", "https://x.example/\ufffd"),
        ("https://x.example/&#xD800;", "https://x.example/\ufffd"),
        ("https://x.example/&#" + "9" * 6000 + ";", "https://x.example/\ufffd"),
        ("https://x.example/&#x" + "0" * 40 + "41;", "https://x.example/A"),
        ("https://x.example/&#;", "https://x.example/&#;"),
    ],
)
def test_rule3_numeric_references_as_the_tokenizer(raw: str, destination: str) -> None:
    from mailtrack.core.charrefs import decode_attribute

    assert decode_attribute(raw) == destination


def test_placeholder_patterns_keep_their_flags_and_a_single_string_is_one_pattern() -> None:
    import re

    by_flag = make_tracker(placeholder_patterns=[re.compile(r"@@id@@", re.IGNORECASE)])
    assert_left_alone(by_flag, '<a href="https://x.example/@@ID@@">', "placeholder")
    single = make_tracker(placeholder_patterns="@@")
    assert_left_alone(single, '<a href="https://x.example/@@">', "placeholder")
    assert tracked(single, '<a href="https://x.example/@">') == ["https://x.example/@"]


# -- the one-match fast path agrees with the full checks ------------------------------------------
from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mailtrack.core.rewrite.rules import PlaceholderMatcher  # noqa: E402
from mailtrack.core.urls import destination_problem  # noqa: E402

_URLISH = st.builds(
    lambda scheme, host, port, rest: f"{scheme}://{host}{port}{rest}",
    st.sampled_from(["http", "https", "HTTPS", "ftp"]),
    st.one_of(st.from_regex(r"[A-Za-z0-9_.-]{1,80}", fullmatch=True), st.text(max_size=20),
              st.sampled_from(["127.1", "xn--fa-hia.de", "a" * 64 + ".com", "x." * 130 + "com", "[::1]"])),
    st.sampled_from(["", ":80", ":65535", ":65536", ":99999", ":"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("é\x00\u2028"), max_size=30),
)


@given(_URLISH)
@example("https://x.example/a?b=1")
@example("https://127.1/")
@example("https://x.example:65536/")
@example("https://x.example/{{name}}")
def test_the_plain_link_fast_path_answers_as_the_full_checks(url: str) -> None:
    matcher = PlaceholderMatcher()
    if matcher.plain_http(url):
        assert destination_problem(url) is None and not matcher.search(url)
