"""The open pixel: what it is, where it goes, substitution tags, Gmail clipping."""

from __future__ import annotations

import html5lib
import pytest
from support.helpers import BASE_URL, make_tracker, rewrite

import mailtrack

CLICK_OFF = {"click_tracking": {"enable": False}}


def pixel_url(result: mailtrack.HtmlResult) -> str:
    assert result.pixel is not None
    return result.pixel.html.split('src="', 1)[1].split('"', 1)[0]


def test_pixel_markup(tracker: mailtrack.Tracker) -> None:
    result = rewrite(tracker, "<html><body>hi</body></html>", settings=CLICK_OFF)
    doc = html5lib.parse(result.html, namespaceHTMLElements=False)
    (img,) = doc.findall(".//img")
    assert img.get("width") == "1" and img.get("height") == "1"
    assert img.get("alt") == "" and img.get("border") == "0"
    style = img.get("style")
    assert "display:none" not in style.replace(" ", "")
    for rule in ("height:1px", "width:1px", "border:0", "margin:0", "padding:0"):
        assert rule in style
    verified = tracker.verify(img.get("src"))
    assert (verified.kind, verified.message_id, verified.recipient) == ("open", "msg-1", "ann@example.com")


@pytest.mark.parametrize(
    "html, marker",
    [
        ("<html><body><p>x</p></body></html>", "</body>"),
        ("<html><body><p>x</p></BODY >\n</html>", "</BODY >"),
        # the last real </body>, not one in a comment, a script or a conditional comment
        ("<body>a</body><!-- </body> --><script>'</body>'</script>"
         "<!--[if mso]></body><![endif]--><p>b</p></body></html>", "</body></html>"),
        ("<html><p>no body end</p></html>", "</html>"),
        ("<html><p>x</p><!-- </html> --></html  >", "</html  >"),
    ],
)
def test_pixel_before_last_real_body_end(tracker: mailtrack.Tracker, html: str, marker: str) -> None:
    result = rewrite(tracker, html, settings=CLICK_OFF)
    at = html.rindex(marker)
    assert result.pixel is not None and result.pixel.position == at
    assert result.html == html[:at] + result.pixel.html + html[at:]


@pytest.mark.parametrize(
    "html, at",
    [
        ("<p>fragment</p>", 15),
        ("", 0),
        ("<p>cut off <img src='x", 11),  # never inside a tag cut off by the end
        ("<p>open comment <!-- never closed", 16),
        ("<p>x</p><script>never closed", 8),
    ],
)
def test_pixel_without_body_or_html(tracker: mailtrack.Tracker, html: str, at: int) -> None:
    result = rewrite(tracker, html, settings=CLICK_OFF)
    assert result.pixel is not None and result.pixel.position == at
    assert result.html == html[:at] + result.pixel.html + html[at:]


def test_pixel_top_position() -> None:
    top = make_tracker(pixel_position="top")
    html = '<html><head><title><body></title></head><BODY class="x">hello</body></html>'
    result = rewrite(top, html, settings=CLICK_OFF)
    at = html.index("hello")
    assert result.html == html[:at] + result.pixel.html + html[at:]  # type: ignore[union-attr]
    # per call too, and without <body> it falls back to the bottom rule
    result = rewrite(make_tracker(), "<p>x</p></html>", settings=CLICK_OFF, pixel_position="top")
    assert result.pixel is not None and result.pixel.position == len("<p>x</p>")


def test_substitution_tag_replaces_every_occurrence(tracker: mailtrack.Tracker) -> None:
    html = "<html><body>[open]<p>x</p><div>[open]</div></body></html>"
    settings = {"open_tracking": {"enable": True, "substitution_tag": "[open]"}, "click_tracking": {"enable": False}}
    result = rewrite(tracker, html, settings=settings)
    pixel = result.pixels[0].html
    assert result.html == html.replace("[open]", pixel)
    assert [p.position for p in result.pixels] == [html.index("[open]"), html.rindex("[open]")]
    assert rewrite(tracker, result.html, settings=settings).html == result.html  # idempotent


def test_substitution_tag_missing_falls_back_with_warning(tracker: mailtrack.Tracker) -> None:
    settings = {"open_tracking": {"substitution_tag": "%open%"}}
    result = rewrite(tracker, "<body>x</body>", settings=settings)
    assert result.pixel is not None and result.pixel.position == len("<body>x")
    assert any("not found" in w for w in result.warnings)


def test_substitution_tag_inside_a_tracked_link_is_not_replaced(tracker: mailtrack.Tracker) -> None:
    settings = {"open_tracking": {"substitution_tag": "OPEN"}}
    html = '<a href="https://x.example/OPEN">x</a><p>OPEN</p>'
    result = rewrite(tracker, html, settings=settings)
    assert [p.position for p in result.pixels] == [html.index("<p>OPEN") + 3]
    assert tracker.verify(result.links[0].tracking_url).url == "https://x.example/OPEN"


def test_no_second_pixel(tracker: mailtrack.Tracker) -> None:
    once = rewrite(tracker, "<body>x</body>")
    twice = rewrite(tracker, once.html)
    assert twice.html == once.html and twice.pixels == []
    assert once.html.count(BASE_URL + "/o/") == 1


def test_gmail_clip_is_reported(tracker: mailtrack.Tracker) -> None:
    small = rewrite(tracker, "<body>x</body>")
    assert not small.gmail_clipped
    assert small.warnings == []
    big = rewrite(tracker, "<body>" + "\u00e9" * 60_000 + "</body>")  # 120 KB in UTF-8, 60 K characters
    assert big.gmail_clipped and big.size > mailtrack.GMAIL_CLIP_BYTES
    assert any("Gmail will clip" in w and "pixel_position='top'" in w for w in big.warnings)
    top = rewrite(tracker, "<body>" + "x" * 200_000 + "</body>", pixel_position="top")
    assert any("Gmail will clip" in w for w in top.warnings)
    assert not any("pixel_position" in w for w in top.warnings)


def test_open_tracking_off(tracker: mailtrack.Tracker) -> None:
    result = rewrite(tracker, "<body>x</body>", settings={"open_tracking": {"enable": False}})
    assert result.pixels == [] and result.html == "<body>x</body>"


def test_oversized_metadata_skips_the_pixel_with_a_warning(tracker: mailtrack.Tracker) -> None:
    result = rewrite(tracker, '<body><a href="https://x.example/">x</a></body>', metadata={"k": "v" * 9000})
    assert result.pixels == [] and [s.reason for s in result.skipped] == ["too-long"]
    assert any("8 KiB" in w for w in result.warnings)


def test_text_mentioning_our_prefix_does_not_suppress_the_pixel(tracker: mailtrack.Tracker) -> None:
    html = f"<body><p>Our pixels live under {BASE_URL}/o/ and {BASE_URL.upper()}/O/abc.def.ghi</p></body>"
    result = rewrite(tracker, html)
    assert result.pixel is not None
    assert rewrite(tracker, result.html).pixels == []  # but a real one does


@pytest.mark.parametrize(
    "html, replaced",
    [
        ('<img alt="%open%"><p>%open%</p>', 1),
        ('<a title="%open%" href="https://x.example/">x</a>%open%', 1),
        ('<a href="%open%">x</a><!-- %open% --><title>%open%</title>%open%', 1),
        ('<script>"%open%"</script><style>/*%open%*/</style><p>%open% and %open%</p>', 2),
        ("<!--[if mso]>%open%<![endif]--><div>%open%</div>", 1),
    ],
)
def test_substitution_tag_only_in_text(tracker: mailtrack.Tracker, html: str, replaced: int) -> None:
    settings = {"open_tracking": {"substitution_tag": "%open%"}, "click_tracking": {"enable": False}}
    result = rewrite(tracker, html, settings=settings)
    assert len(result.pixels) == replaced
    assert any("inside markup" in w for w in result.warnings)
    doc = html5lib.parse(result.html, namespaceHTMLElements=False)
    assert len([img for img in doc.iter("img") if (img.get("src") or "").startswith(BASE_URL + "/o/")]) == replaced


def test_substitution_tag_that_is_markup(tracker: mailtrack.Tracker) -> None:
    settings = {"open_tracking": {"substitution_tag": "body"}, "click_tracking": {"enable": False}}
    result = rewrite(tracker, "<body>somebody</body>", settings=settings)
    assert result.html == "<body>some" + result.pixels[0].html + "</body>"


def test_gmail_hint_follows_the_actual_position(tracker: mailtrack.Tracker) -> None:
    no_body = rewrite(tracker, "<p>" + "x" * 200_000 + "</p>", pixel_position="top")  # falls back to the end
    assert any("pixel_position='top'" in w for w in no_body.warnings)
