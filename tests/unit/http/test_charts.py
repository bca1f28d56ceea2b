"""The dashboard's inline SVG charts (mailtrack.http.charts): well-formed XML, exact data attributes, scaling, escaping."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtrack.exceptions import ArgumentError, MailtrackError
from mailtrack.http.charts import Series, bar_chart, compact, escape, hbar_chart, nice_scale

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = ['"><script>alert(1)</script>', "a&b<c>'d\"", "\x00\x01\x0b\ufffe control", "\ud800 lone surrogate",
           "]]><!-- -->", "javascript:alert(1)"]


def parse(svg: str) -> ET.Element:
    """The chart parsed as XML (a parse error fails the test: the chart must be well-formed)."""
    return ET.fromstring(svg)


def series(opens: list[int], unique: list[int] | None = None) -> Series:
    return Series("opens", "Opens", "#9ec5e8", opens, unique, "unique-opens", "Unique opens", "#1f5f9e")


def test_a_bar_chart_is_accessible_well_formed_xml_with_each_groups_numbers() -> None:
    keys = ["2024-03-01", "2024-03-02", "2024-03-03"]
    clicks = Series("clicks", "Clicks", "#f6c08f", [4, 0, 2])
    root = parse(bar_chart(keys, [series([12, 3, 0], [9, 3, 0]), clicks], title="Opens & clicks per day"))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img" and root.get("aria-label") == "Opens & clicks per day"
    assert root[0].tag == f"{SVG}title" and root[0].text == "Opens & clicks per day"
    groups = root.findall(f".//{SVG}g[@class='group']")
    assert [(g.get("data-key"), g.get("data-opens"), g.get("data-unique-opens"), g.get("data-clicks")) for g in groups] \
        == [("2024-03-01", "12", "9", "4"), ("2024-03-02", "3", "3", "0"), ("2024-03-03", "0", "0", "2")]
    bars = groups[0].findall(f"{SVG}rect[@class='bar']")
    assert [(bar.get("data-series"), bar.get("data-value")) for bar in bars] == [
        ("opens", "12"), ("unique-opens", "9"), ("clicks", "4")]
    tooltip = bars[0].find(f"{SVG}title")
    assert tooltip is not None and tooltip.text == "2024-03-01\nOpens: 12\nUnique opens: 9\nClicks: 4"
    legend = [text.text for text in root.findall(f".//{SVG}g[@class='legend']/{SVG}text")]
    assert legend == ["Opens", "Unique opens", "Clicks"]


def test_bar_heights_are_proportional_and_inside_the_plot() -> None:
    root = parse(bar_chart(["a", "b"], [series([50, 25])], title="t"))
    bars = {bar.get("data-value"): bar for bar in root.iter(f"{SVG}rect") if bar.get("class") == "bar"}
    full, half = float(bars["50"].get("height", "")), float(bars["25"].get("height", ""))
    assert full == pytest.approx(2 * half, abs=0.02)
    # both bars stand on the same baseline
    assert float(bars["50"].get("y", "")) + full == pytest.approx(float(bars["25"].get("y", "")) + half, abs=0.02)


@pytest.mark.parametrize("maximum", [1, 7, 99, 12_345, 987_654_321, 10**15 + 3])
def test_the_axis_scales_to_large_numbers(maximum: int) -> None:
    top, step = nice_scale(maximum)
    assert top >= maximum and top % step == 0 and top // step <= 10
    assert str(step).strip("0") in ("1", "2", "5")
    root = parse(bar_chart(["a", "b"], [series([maximum, maximum // 2])], title="t", height=300))
    tick_labels = [text.text for text in root.findall(f".//{SVG}g[@class='axis']/{SVG}text")][: top // step + 1]
    assert tick_labels[0] == "0" and tick_labels[-1] == compact(top)
    heights = [float(bar.get("height", "")) for bar in root.iter(f"{SVG}rect") if bar.get("class") == "bar"]
    plot = [float(line.get("y2", "")) - float(line.get("y1", "")) for line in root.iter(f"{SVG}line")
            if line.get("class") == "axis-line" and line.get("x1") == line.get("x2")][0]
    assert 0 < max(heights) <= plot + 1e-6


@given(st.integers(min_value=0, max_value=10**18))
def test_nice_scale_always_covers_the_maximum(maximum: int) -> None:
    top, step = nice_scale(maximum)
    assert top >= max(maximum, 1) and step >= 1 and top % step == 0 and top // step <= 10


def test_compact_labels() -> None:
    assert [compact(n) for n in (0, 950, 9_999, 12_000, 1_500_000, 2 * 10**9)] == [
        "0", "950", "9,999", "12k", "1.5M", "2G"]


def test_no_data_says_so_instead_of_drawing_axes() -> None:
    for svg in (bar_chart([], [series([])], title="Per day"), bar_chart(["a"], [series([0])], title="Per day"),
                hbar_chart([], series([]), title="Links", empty="no clicks yet")):
        root = parse(svg)
        assert root.get("role") == "img"
        assert [text.text for text in root.iter(f"{SVG}text")] in (["no events yet"], ["no clicks yet"])
        assert root.findall(f".//{SVG}g[@class='group']") == []


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_keys_and_labels_are_escaped_and_stay_well_formed(hostile: str) -> None:
    for svg in (bar_chart([hostile, "ok"], [series([1, 2])], title=hostile, rotate_labels=True),
                hbar_chart([hostile], series([3], [1]), title=hostile)):
        assert "<script" not in svg and "<!--" not in svg
        root = parse(svg)
        group = root.find(f".//{SVG}g[@class='group']")
        assert group is not None
        # what survives is the text itself, with only the characters XML cannot hold replaced
        assert group.get("data-key") == re.sub("[\x00-\x08\x0b\x0c\ud800\ufffe]", "\ufffd", hostile)


def test_escape_handles_markup_quotes_and_xml_illegal_characters() -> None:
    assert escape('<a href="x">\'&') == "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;"
    assert escape("a\x00b\x1fc\ud800d") == "a\ufffdb\ufffdc\ufffdd"
    assert escape(5) == "5"


def test_hbar_chart_rows_carry_their_numbers() -> None:
    root = parse(hbar_chart(["https://e.com/a", "https://e.com/b"], series([10, 4], [6, 4]), title="Top links"))
    rows = root.findall(f".//{SVG}g[@class='group']")
    assert [(r.get("data-key"), r.get("data-opens"), r.get("data-unique-opens")) for r in rows] == [
        ("https://e.com/a", "10", "6"), ("https://e.com/b", "4", "4")]
    widths = [float(bar.get("width", "")) for bar in rows[0].findall(f"{SVG}rect[@class='bar']")]
    assert widths[0] > widths[1] > 0


def test_bad_series_are_argument_errors() -> None:
    with pytest.raises(ArgumentError):
        Series("Opens!", "Opens", "#000", [1])
    with pytest.raises(ArgumentError):
        Series("opens", "Opens", "#000", [1, 2], [1], "unique-opens")
    with pytest.raises(ArgumentError):
        Series("opens", "Opens", "#000", [-1])
    with pytest.raises(MailtrackError):
        bar_chart(["a", "b"], [series([1])], title="t")
