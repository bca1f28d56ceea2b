"""Every HTML file of the shared corpus (../shared/corpus) rewrites with exact fidelity.

Real third-party templates (compiled MJML, Foundation/Inky sources, Outlook
conditional comments with VML buttons, client-generated replies, template
placeholders). Per file: no crash; undoing the reported edits gives the input
back byte for byte; with tracking disabled the output *is* the input; a second
pass changes nothing; every click URL verifies to its destination; the pixel
sits where the oracle says. ``.eml`` rows are MIME messages: a later issue.
The whole module skips when the corpus is absent (it is not shipped).
"""

from __future__ import annotations

import pytest
from support.oracle import corpus_html_files, expected_pixel_position, parse_elements, restore_original
from support.strategies import BASE_URL

import mailtrack

TRACKER = mailtrack.Tracker(secret_keys=["older-key", "newest-key"], base_url=BASE_URL)
OFF = {"open_tracking": {"enable": False}, "click_tracking": {"enable": False}}
CORPUS = corpus_html_files()

#: Skipped without the corpus; run on both implementations of the scanner (issue 13).
pytestmark = [pytest.mark.skipif(not CORPUS, reason="../shared/corpus is absent"), pytest.mark.usefixtures("both_paths")]
per_file = pytest.mark.parametrize("entry", CORPUS, ids=[c.path for c in CORPUS])


def _rewrite(html: str, **kwargs):
    kwargs.setdefault("message_id", "msg-1")
    kwargs.setdefault("recipient", "ann@example.com")
    kwargs.setdefault("metadata", {"campaign": "corpus"})
    kwargs.setdefault("issued_at", 0)
    return TRACKER.rewrite_html(html, **kwargs)


@per_file
def test_rewrite_is_byte_exact(entry) -> None:
    html = entry.read()
    result = _rewrite(html)
    for link in result.links:
        assert html[link.start : link.end] == link.raw, f"{entry.path}: link span does not hold .raw: {link!r}"
    restored = restore_original(result.html, result.links, result.pixels)
    if restored != html:
        at = next((i for i, (a, b) in enumerate(zip(restored, html, strict=False)) if a != b), min(len(restored), len(html)))
        pytest.fail(
            f"{entry.path}: restored output differs from the input at offset {at}: {restored[at - 40 : at + 40]!r} vs {html[at - 40 : at + 40]!r}"
        )
    assert len(result.pixels) == 1, f"{entry.path}: expected one pixel, got {result.pixels!r} ({result.warnings})"


@per_file
def test_tracking_disabled_is_identity(entry) -> None:
    html = entry.read()
    result = _rewrite(html, settings=OFF)
    assert result.html == html, f"{entry.path}: output with open and click tracking off differs from the input"
    assert result.links == [] and result.pixels == []


@per_file
def test_second_pass_is_a_no_op(entry) -> None:
    first = _rewrite(entry.read())
    second = _rewrite(first.html)  # the same message: another message's URLs would be signed again (issue #8)
    assert second.html == first.html, f"{entry.path}: a second rewrite changed the output"
    assert second.links == [] and second.pixels == []
    assert sum(s.reason == "already-tracked" for s in second.skipped) == len(first.links)


@per_file
def test_links_verify(entry) -> None:
    result = _rewrite(entry.read())
    for link in result.links:
        v = TRACKER.verify(link.tracking_url)
        assert (v.kind, v.url, v.message_id, v.recipient, v.link_index) == (
            "click",
            link.url,
            "msg-1",
            "ann@example.com",
            link.index,
        ), f"{entry.path}: {link.raw!r} verified as {v!r}"
        assert dict(v.metadata) == {"campaign": "corpus"}


@per_file
def test_pixel_position(entry) -> None:
    html = entry.read()
    result = _rewrite(html)
    expected = expected_pixel_position(html)
    if expected is not None:
        assert result.pixel.position == expected, (
            f"{entry.path}: pixel at {result.pixel.position} ({html[result.pixel.position :][:30]!r}), "
            f"oracle says {expected} ({html[expected:][:30]!r})"
        )
    images = [el for el in parse_elements(result.html) if el.name == "img" and el.attributes.get("src", "").startswith(BASE_URL)]
    assert len(images) == 1, f"{entry.path}: the pixel is not parsed as an <img> element"


@per_file
def test_placeholders_are_left_alone(entry) -> None:
    """The manifest's regex-level ``has_placeholder_href`` agrees with the placeholder skips."""
    result = _rewrite(entry.read())
    placeholder_skips = [s.raw for s in result.skipped if s.reason == "placeholder"]
    if entry.row.get("has_placeholder_href") == "1":
        assert placeholder_skips, f"{entry.path}: the manifest lists placeholder hrefs, none was skipped as one"
    else:
        assert not placeholder_skips, f"{entry.path}: skipped as placeholders: {placeholder_skips!r}"
    for link in result.links:
        assert "{{" not in link.url and "*|" not in link.url, f"{entry.path}: tracked a placeholder {link.url!r}"
