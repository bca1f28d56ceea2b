"""Property tests of Tracker.rewrite_html: total, byte-exact, idempotent, verifiable.

Deterministic (``derandomize=True``) with a few hundred examples per property,
so a run is reproducible and takes well under a minute.
"""

from __future__ import annotations

import html as html_module

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.oracle import (
    ASCII_WS,
    decode_attribute_value,
    expected_pixel_position,
    locate_edits,
    parse_elements,
    restore_original,
)
from support.strategies import BASE_URL, documents, email_html, markup_soup, mutated_documents

import mailtrack

#: Both implementations of the scanner (issue 13): the compiled fast path and the pure-Python reference.
pytestmark = pytest.mark.usefixtures("both_paths")

MESSAGE_ID = "msg-1"
RECIPIENT = "ann@example.com"
METADATA = {"campaign": "spring", "n": 3}
OFF = {"open_tracking": {"enable": False}, "click_tracking": {"enable": False}}

TRACKER = mailtrack.Tracker(secret_keys=["older-key", "newest-key"], base_url=BASE_URL)

PROPERTY = settings(max_examples=250)  # profile: conftest.py
SMALL = settings(PROPERTY, max_examples=120)

# Any str at all, lone surrogates (category Cs) and NUL included.
any_text = st.text(st.characters(exclude_categories=()), max_size=300)
# Text made mostly of markup: tags, comments, links, raw-text elements in random order.
markupish_text = markup_soup


def rewrite(html: str, **kwargs):
    kwargs.setdefault("message_id", MESSAGE_ID)
    kwargs.setdefault("recipient", RECIPIENT)
    kwargs.setdefault("metadata", METADATA)
    kwargs.setdefault("issued_at", 0)
    return TRACKER.rewrite_html(html, **kwargs)


def describe(html: str, result) -> str:
    return f"\ninput={html!r}\noutput={result.html!r}\nlinks={result.links!r}\npixels={result.pixels!r}"


def check_fidelity(html: str, result) -> None:
    """Everything outside the reported edits is untouched: undoing them gives the input back."""
    for link in result.links:
        assert html[link.start : link.end] == link.raw, f"link span does not hold .raw: {link!r}" + describe(html, result)
        if link.quote:
            assert html[link.start - 1] == link.quote and html[link.end] == link.quote, f"quote mismatch {link!r}"
    for skipped in result.skipped:
        assert html[skipped.start : skipped.end] == skipped.raw, f"skipped span does not hold .raw: {skipped!r}"
    restored = restore_original(result.html, result.links, result.pixels)
    assert restored == html, "restoring the original values and removing the pixel does not give the input" + describe(
        html, result
    )


# ---------------------------------------------------------------------------
# never raises, rejects bytes
# ---------------------------------------------------------------------------


@PROPERTY
@given(st.one_of(any_text, markupish_text))
def test_never_raises_on_any_text(html: str) -> None:
    result = rewrite(html)
    assert isinstance(result.html, str)
    check_fidelity(html, result)


@PROPERTY
@given(email_html)
def test_never_raises_on_email_like_html(html: str) -> None:
    result = rewrite(html)
    assert isinstance(result.html, str)
    if BASE_URL + "/o/" not in html:
        assert len(result.pixels) == 1, "one pixel expected for a document without one" + describe(html, result)


@SMALL
@given(st.binary(max_size=200))
def test_bytes_input_is_a_type_error(data: bytes) -> None:
    with pytest.raises(TypeError):
        rewrite(data)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [bytearray(b"<a href='http://x'>"), memoryview(b"<p>"), None, 42, ["<p>"]])
def test_non_str_input_is_a_type_error(value) -> None:
    with pytest.raises(TypeError):
        rewrite(value)


# ---------------------------------------------------------------------------
# byte-exact fidelity
# ---------------------------------------------------------------------------


@PROPERTY
@given(st.one_of(email_html, markup_soup))
def test_restoring_original_values_gives_the_input(html: str) -> None:
    check_fidelity(html, rewrite(html))


@PROPERTY
@given(email_html)
def test_new_values_are_escaped_for_their_quoting(html: str) -> None:
    """Each new value reads back (through an HTML5 tokenizer) as exactly the tracking URL."""
    result = rewrite(html)
    for edit in locate_edits(result.html, result.links, result.pixels):
        if edit.kind != "link":
            continue
        link = edit.item
        assert decode_attribute_value(edit.new, link.quote) == link.tracking_url, (
            f"value {edit.new!r} written with quote {link.quote!r} does not decode to {link.tracking_url!r}"
        )


@PROPERTY
@given(email_html)
def test_destination_is_the_decoded_stripped_value(html: str) -> None:
    """Rule 3, checked against html5lib's attribute-value decoding of ``.raw``."""
    result = rewrite(html)
    for link in result.links:
        expected = decode_attribute_value(link.raw, link.quote).strip(ASCII_WS)
        assert link.url == expected, f"{link.raw!r} decoded to {link.url!r}, html5lib says {expected!r}"
        assert link.url[:8].lower().startswith(("http://", "https://")), f"non-http destination tracked: {link!r}"


@SMALL
@given(email_html)
def test_tracking_disabled_changes_nothing(html: str) -> None:
    result = rewrite(html, settings=OFF)
    assert result.html == html, describe(html, result)
    assert result.links == [] and result.pixels == []


@SMALL
@given(email_html)
def test_click_tracking_disabled_only_adds_the_pixel(html: str) -> None:
    result = rewrite(html, settings={"click_tracking": {"enable": False}})
    assert result.links == []
    assert len(result.pixels) == 1
    check_fidelity(html, result)


@SMALL
@given(email_html)
def test_open_tracking_disabled_adds_no_pixel(html: str) -> None:
    result = rewrite(html, settings={"open_tracking": {"enable": False}})
    assert result.pixels == [] and result.pixel is None
    full = rewrite(html)
    assert [(link.start, link.tracking_url) for link in result.links] == [(link.start, link.tracking_url) for link in full.links]
    check_fidelity(html, result)


# ---------------------------------------------------------------------------
# idempotence
# ---------------------------------------------------------------------------


@PROPERTY
@given(st.one_of(email_html, markup_soup))
def test_second_pass_is_a_no_op(html: str) -> None:
    first = rewrite(html)
    second = rewrite(first.html)
    assert second.html == first.html, "rewriting the output again changed it" + describe(first.html, second)
    assert second.links == [], f"second pass tracked again: {second.links!r}"
    assert second.pixels == [], "second pass added another pixel"
    # The same hrefs are seen, in the same order; what was tracked is now "already-tracked".
    before = sorted([(link.start, "already-tracked") for link in first.links] + [(s.start, s.reason) for s in first.skipped])
    after = sorted((s.start, s.reason) for s in second.skipped)
    assert [r for _, r in after] == [r for _, r in before], f"second pass classified links differently: {before!r} -> {after!r}"


@SMALL
@given(email_html, st.sampled_from(["msg-2", "other"]))
def test_second_pass_for_another_message_signs_our_urls_again_for_it(html: str, message_id: str) -> None:
    # Issue #8, defect 3: another message's tracking is not taken as this one's.
    first = rewrite(html)
    second = rewrite(first.html, message_id=message_id, recipient="bob@example.com")
    assert [(link.index, link.url) for link in second.links] == [(link.index, link.url) for link in first.links]
    assert all(TRACKER.verify(link.tracking_url).message_id == message_id for link in second.links)
    assert len(second.pixels) == len(first.pixels) <= 1
    assert all(p.replaced and TRACKER.verify(p.html, kind="open").message_id == message_id for p in second.pixels)
    third = rewrite(second.html, message_id=message_id, recipient="bob@example.com")
    assert third.html == second.html


# ---------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------


@PROPERTY
@given(email_html)
def test_every_tracking_url_verifies_to_its_destination(html: str) -> None:
    result = rewrite(html)
    previous = -1
    for link in result.links:
        assert link.tracking_url.startswith(BASE_URL + "/"), link
        v = TRACKER.verify(link.tracking_url)
        assert v.kind == "click", v
        assert v.url == link.url, f"verified {v.url!r}, link destination {link.url!r}"
        assert v.message_id == MESSAGE_ID and v.recipient == RECIPIENT
        assert v.link_index == link.index
        assert dict(v.metadata) == METADATA
        assert link.index > previous, "link indexes must increase in source order"
        previous = link.index
    starts = [link.start for link in result.links]
    assert starts == sorted(starts), "links must be reported in source order"


@SMALL
@given(documents())
def test_pixel_is_a_real_image_element_that_verifies(html: str) -> None:
    result = rewrite(html)
    assert result.pixel is not None
    images = [el for el in parse_elements(result.html) if el.name == "img" and el.attributes.get("src", "").startswith(BASE_URL)]
    assert len(images) == 1, "the pixel must be parsed as exactly one <img> element of the output" + describe(html, result)
    src = images[0].attributes["src"]
    v = TRACKER.verify(src)
    assert (v.kind, v.message_id, v.recipient, dict(v.metadata)) == ("open", MESSAGE_ID, RECIPIENT, METADATA)
    assert v.url is None


@PROPERTY
@given(st.one_of(email_html, markupish_text))
def test_pixel_goes_where_the_oracle_says(html: str) -> None:
    """Before the last real </body>, else </html>, else at the end (html5lib finds the end tag tokens)."""
    result = rewrite(html)
    expected = expected_pixel_position(html)
    if expected is None:  # the input ends inside a tag/comment/raw text: anywhere the pixel is an image
        images = [
            el
            for el in parse_elements(result.html)
            if el.name == "img" and el.attributes.get("src", "").startswith(BASE_URL + "/o/")
        ]
        assert len(images) == 1, "the pixel must be parsed as an <img> element" + describe(html, result)
    else:
        position = result.pixel.position
        assert position == expected, (
            f"pixel inserted before {html[position : position + 30]!r}, expected before {html[expected : expected + 30]!r}"
            + describe(html, result)
        )


@SMALL
@given(mutated_documents())
def test_pixel_in_truncated_documents_is_an_element(html: str) -> None:
    result = rewrite(html)
    images = [
        el for el in parse_elements(result.html) if el.name == "img" and el.attributes.get("src", "").startswith(BASE_URL + "/o/")
    ]
    assert len(images) == 1, "the pixel must be parsed as exactly one <img> element of the output" + describe(html, result)


@SMALL
@given(email_html, st.integers(0, 4))
def test_max_links_keeps_the_first_links(html: str, max_links: int) -> None:
    limited = mailtrack.Tracker(secret_keys=["older-key", "newest-key"], base_url=BASE_URL, max_links=max_links)
    result = limited.rewrite_html(html, message_id=MESSAGE_ID, recipient=RECIPIENT, metadata=METADATA, issued_at=0)
    full = rewrite(html)
    assert [(link.start, link.url, link.index) for link in result.links] == [
        (link.start, link.url, link.index) for link in full.links if link.index < max_links
    ]
    assert [s.start for s in result.skipped if s.reason == "limit"] == [link.start for link in full.links if link.index >= max_links]
    assert len(result.links) <= max_links
    check_fidelity(html, result)


# ---------------------------------------------------------------------------
# pixel placement, by example
# ---------------------------------------------------------------------------

PIXEL_CASES = {
    "before-body-end": ("<html><body><p>x</p></body></html>", "</body></html>"),
    "last-body-end": ("<body>a</body>b</body>\n</html>", "</body>\n</html>"),
    "body-end-in-comment-ignored": ("<body>a</body><!-- </body> --></html>", "</body><!-- </body> --></html>"),
    "body-end-in-script-ignored": ("<body>a</body><script>'</body>'</script>", "</body><script>'</body>'</script>"),
    "body-end-in-textarea-ignored": ("<body><textarea></body></textarea>x</BODY >", "</BODY >"),
    "body-end-in-attribute-ignored": ('<body><p title="</body>">x</p></body>', "</body>"),
    "body-end-in-conditional-ignored": (
        "<body>x</body><!--[if mso]></body><![endif]-->",
        "</body><!--[if mso]></body><![endif]-->",
    ),
    "no-body-end-uses-html-end": ("<html><p>x</p></html>\n", "</html>\n"),
    "uppercase": ("<BODY>x</BODY></HTML>", "</BODY></HTML>"),
    "fragment-appends": ("<p>x</p>", ""),
    "empty": ("", ""),
}


@pytest.mark.parametrize("html,tail", list(PIXEL_CASES.values()), ids=list(PIXEL_CASES))
def test_pixel_position(html: str, tail: str) -> None:
    result = rewrite(html)
    pixel = result.pixel
    assert pixel is not None
    assert html[pixel.position :] == tail, f"pixel inserted before {html[pixel.position :]!r}, expected before {tail!r}"
    assert result.html == html[: pixel.position] + pixel.html + html[pixel.position :]
    assert "<img" in pixel.html and html_module.escape(BASE_URL) in pixel.html


def test_pixel_not_added_twice_when_already_present() -> None:
    first = rewrite("<body>x</body>")
    again = rewrite(first.html)
    assert again.pixels == [] and again.html == first.html
    other = rewrite(first.html, message_id="other")  # another message's pixel is replaced, not doubled
    assert other.html.count("<img") == 1 and [p.replaced for p in other.pixels] != [""]
