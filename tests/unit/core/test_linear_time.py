"""Every rewrite is linear time (issue #8, defect 2): 1 MB of each pathological family finishes, correctly.

The families are ``benchmarks/bench_pathological.py``'s (which reports the
growth per 4x of size). No timing is asserted: the machine is shared. The hang
guard is generous; a quadratic path takes hours on 1 MB of these inputs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

import mailtrack
from mailtrack.core.charrefs import escape_attribute
from mailtrack.core.rewrite import splice
from mailtrack.core.rewrite.footer import delimited, html_footer, text_footer
from mailtrack.core.rewrite.rules import PlaceholderMatcher
from mailtrack.core.urlfinder import find_urls

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

from bench_pathological import FAMILIES, Family, build, make_tracker, run  # noqa: E402

#: Both implementations of the scanner (issue 13): the compiled fast path and the pure-Python reference.
pytestmark = pytest.mark.usefixtures("both_paths")

SIZE = 1_000_000


def expected_output(source: str, result: mailtrack.HtmlResult | mailtrack.TextResult, html: bool) -> str:
    """``source`` with exactly the changes the result reports: everything else must be byte-identical."""
    edits = [
        (link.start, link.end, escape_attribute(link.tracking_url, link.quote) if html else link.tracking_url)
        for link in result.links
        if link.start < link.end  # links of a footer we added are inside that footer
    ]
    places = list(result.unsubscribe) + (list(result.pixels) if isinstance(result, mailtrack.HtmlResult) else [])
    edits += [(p.position, p.position + len(p.replaced), p.html) for p in places]
    return splice(source, edits)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_one_megabyte_of_each_family_is_rewritten_correctly(family: Family) -> None:
    tracker = make_tracker()
    document = build(family, SIZE)
    result: Any = run(tracker, family, document)
    if family.kind == "message":
        assert isinstance(document, bytes)
        assert result.html is not None and result.text is not None, "both bodies were read"
        assert result.message.count(b"\n") >= document.count(b"\n") - 2  # still a whole message
        return
    assert isinstance(document, str)
    assert result.html if family.kind == "html" else result.text  # something came out
    output = result.html if family.kind == "html" else result.text
    assert output == expected_output(document, result, family.kind == "html")
    # A second pass over the output changes nothing, in linear time too.
    again: Any = run(tracker, family, output)
    assert (again.html if family.kind == "html" else again.text) == output


# -- the fast paths give what the expressions they replace gave -------------------------------------
PLACEHOLDER_CASES = [
    "https://x.example/{{id}}", "https://x.example/{{", "https://x.example/}}{{", "https://x.example/{{}}",
    "https://x.example/{%x%}", "https://x.example/{%}", "https://x.example/*|*", "https://x.example/*|X|*",
    "https://x.example/*||*", "https://x.example/<%>", "https://x.example/<%%>", "https://x.example/${}",
    "https://x.example/$}{", "https://x.example/%name%", "https://x.example/%name%80", "[tag]", "https://x.example/[tag]",
    "https://x.example/{{a\nb}}", "https://x.example/{{{{{{", "https://x.example/" + "{%" * 50 + "%}",
]


@pytest.mark.parametrize("value", PLACEHOLDER_CASES)
def test_placeholder_search_agrees_with_the_default_expressions(value: str) -> None:
    from mailtrack.core.rewrite.rules import DEFAULT_PLACEHOLDERS

    expected = any(re.search(pattern, value) for pattern in DEFAULT_PLACEHOLDERS)
    assert PlaceholderMatcher().search(value) is expected
    # a custom list holding a default pair keeps its fast path; other patterns still run
    assert PlaceholderMatcher([DEFAULT_PLACEHOLDERS[0], r"@@"]).search(value) is bool(
        re.search(DEFAULT_PLACEHOLDERS[0], value)
    )
    assert PlaceholderMatcher([DEFAULT_PLACEHOLDERS[0], r"@@"]).search(value + "@@") is True


@pytest.mark.parametrize(
    "template",
    ["<% %>", "<%x%>", "a <%  click  here %> b <% %> c", "<%>%>", "<%%>", "<% <% x %> %>", "<%\n\tx\u00a0%>", "<% x",
     "x %> <%", "<%<%%>%>"],
)
def test_footer_tags_are_filled_as_the_old_expression_filled_them(template: str) -> None:
    tag = re.compile(r"<%\s*(.*?)\s*%>", re.DOTALL)
    url = "https://t.example.com/u/x"
    assert html_footer(template, url) == tag.sub(lambda m: f'<a href="{url}">{m.group(1) or url}</a>', template)
    # in text, the URL is kept apart from characters a reader would take as part of it (see delimited)
    assert text_footer(template, url) == tag.sub(lambda m: delimited(url, template[m.end():]), template)


@pytest.mark.parametrize(
    "text",
    ["see https://x.example/a) b", "https://x.example/(a)", "(https://x.example/a).", "https://x.example/a]].",
     "https://x.example/[a]]", "https://x.example/a}", "https://x.example/*|X|*", "https://x.example/a)).),",
     "https://x.example/((a)))", "https://x.example/a*)"],
)
def test_url_ends_are_where_the_recounting_trim_put_them(text: str) -> None:
    def old_trim(start: int, end: int) -> int:
        pairs = {")": "(", "]": "[", "}": "{"}
        while end > start:
            last = text[end - 1]
            if last == "*" and text[end - 2 : end] == "|*":
                break
            if last in ".,;:!?'\u2019\u201d\u00bb*" or last in pairs and text.count(last, start, end) > text.count(
                pairs[last], start, end
            ):
                end -= 1
            else:
                break
        return end

    starts = re.finditer(r"(?<![A-Za-z0-9])[hH][tT][tT][pP][sS]?://[^\s<>\"]+", text)
    assert list(find_urls(text)) == [(m.start(), old_trim(*m.span())) for m in starts if old_trim(*m.span()) > m.start()]


@pytest.mark.timeout(60)
def test_unsubscribe_tag_among_many_tracked_links_is_found_in_linear_time() -> None:
    tracker = mailtrack.Tracker("k", "https://t.example.com", max_links=100_000)
    html = '<a href="https://x.example/">[u]</a>' * 20_000 + "<p>[u]</p>"
    settings = {"subscription_tracking": {"enable": True, "substitution_tag": "[u]"}}
    result = tracker.rewrite_html(html, message_id="m", recipient="r", settings=settings, issued_at=0)
    assert len(result.links) == 20_000
    assert [p.position for p in result.unsubscribe] == [m.start() for m in re.finditer(r"\[u\]", html)]
