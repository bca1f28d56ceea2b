"""Inline SVG charts rendered in Python for the dashboard: no JavaScript, no CDN, no build step for users.

Two charts: :func:`bar_chart` (groups of vertical bars along an x axis: days,
campaigns) and :func:`hbar_chart` (one horizontal bar per row: a campaign's
top links). Each series may carry an *inner* series drawn inside its bars
(unique opens inside opens), since an inner count never exceeds its outer one.

What they emit is well-formed XML (an ``<svg>`` element that an XML parser
reads as well as an HTML one) and accessible: ``role="img"`` with an
``aria-label`` and a ``<title>`` first, and a ``<title>`` tooltip on every bar.
Every group carries its numbers as data attributes (``data-key="2024-03-01"
data-opens="12" data-unique-opens="9"``) so a test, or a user's own script,
reads the exact values without parsing pixels. Labels are attacker-controlled
(campaign names, URLs come from tracked messages): everything goes through
:func:`escape`, which also replaces the characters XML cannot hold.

The y axis scales to the data: its top is a "nice" number (1, 2 or 5 times a
power of ten, times the tick count) at or above the largest value, with tick
labels shortened (``12k``, ``3.5M``) when they grow long.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailtrack.exceptions import ArgumentError

__all__ = ["Series", "bar_chart", "compact", "escape", "hbar_chart", "nice_scale"]

# Characters XML 1.0 cannot hold even as references (C0 controls but tab/LF/CR, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def escape(value: object) -> str:
    """``value`` as text safe in HTML and XML content and in quoted attributes (quotes escaped, controls replaced)."""
    return html.escape(_NOT_XML.sub("\ufffd", str(value)), quote=True)


@dataclass(frozen=True)
class Series:
    """One series of a chart: ``values`` per group, drawn in ``color`` and named ``label`` in the legend.

    ``name`` names the data attribute (``data-<name>``) and must be a lowercase
    identifier with hyphens. ``inner`` values (each at most its outer value, e.g. the
    unique count inside the total) are drawn inside the bars, named ``inner_name``
    and ``inner_label``, in ``inner_color``.
    """

    name: str
    label: str
    color: str
    values: Sequence[int]
    inner: Sequence[int] | None = None
    inner_name: str = ""
    inner_label: str = ""
    inner_color: str = ""

    def __post_init__(self) -> None:
        for name in (self.name, *([self.inner_name] if self.inner is not None else [])):
            if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
                raise ArgumentError(f"a series name is a lowercase identifier (data-NAME), not {name!r}")
        if self.inner is not None and len(self.inner) != len(self.values):
            raise ArgumentError("inner must have one value per group, as values has")
        if any(value < 0 for value in self.values) or any(value < 0 for value in self.inner or ()):
            raise ArgumentError("chart values are counts: none may be negative")


def nice_scale(maximum: int, ticks: int = 5) -> tuple[int, int]:
    """``(top, step)`` of an axis showing 0..``maximum`` in about ``ticks`` steps of 1, 2 or 5 times a power of ten.

    Integer arithmetic throughout, so counts of any size scale exactly; ``top`` >= ``maximum`` and >= 1.
    """
    if maximum <= ticks:
        return max(maximum, 1), 1
    raw = -(-maximum // ticks)  # the smallest step that reaches maximum in `ticks` steps
    magnitude = 10 ** (len(str(raw)) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return -(-maximum // step) * step, step


def compact(value: int) -> str:
    """An axis label: ``950``, ``9,500``, ``95k``, ``1.5M``, ``2G`` (exact below 10,000)."""
    if value < 10_000:
        return f"{value:,}"
    for divisor, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if value >= divisor:
            text = f"{value / divisor:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return str(value)  # pragma: no cover - every value >= 10,000 met a divisor


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _n(number: float) -> str:
    """A coordinate: two decimals at most, no trailing zeros."""
    return f"{number:.2f}".rstrip("0").rstrip(".")


def _svg_open(width: int, height: int, label: str, css_class: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" viewBox="0 0 {width} {height}" '
            f'width="100%" preserveAspectRatio="xMinYMin meet" role="img" aria-label="{escape(label)}">'
            f"<title>{escape(label)}</title>")


def _empty(width: int, height: int, title: str, css_class: str, message: str) -> str:
    return (_svg_open(width, height, f"{title}: {message}", css_class)
            + f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" class="empty">{escape(message)}</text>'
            "</svg>")


def _legend(series: Sequence[Series], x: float, y: float) -> str:
    parts = ['<g class="legend">']
    for one in series:
        entries = [(one.color, one.label)] + ([(one.inner_color, one.inner_label)] if one.inner is not None else [])
        for color, label in entries:
            parts.append(f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="10" height="10" fill="{escape(color)}"/>'
                         f'<text x="{_n(x + 14)}" y="{_n(y)}">{escape(label)}</text>')
            x += 22 + 7 * len(label)
    parts.append("</g>")
    return "".join(parts)


def _data_attributes(series: Sequence[Series], index: int) -> str:
    attributes = []
    for one in series:
        attributes.append(f' data-{one.name}="{int(one.values[index])}"')
        if one.inner is not None:
            attributes.append(f' data-{one.inner_name}="{int(one.inner[index])}"')
    return "".join(attributes)


def _tooltip(key: str, series: Sequence[Series], index: int) -> str:
    lines = [key]
    for one in series:
        lines.append(f"{one.label}: {int(one.values[index]):,}")
        if one.inner is not None:
            lines.append(f"{one.inner_label}: {int(one.inner[index]):,}")
    return escape("\n".join(lines))


def bar_chart(keys: Sequence[str], series: Sequence[Series], *, title: str, labels: Sequence[str] | None = None,
              empty: str = "no events yet", width: int = 820, height: int = 300, rotate_labels: bool = False,
              css_class: str = "chart") -> str:
    """Grouped vertical bars: one group per key (``data-key``), one bar per series, inner bars inside.

    ``labels`` (default: the keys) are what the x axis shows, thinned to about
    a dozen and shortened; the full key is in each group's tooltip. With no
    keys, or every value zero, the chart says ``empty`` instead.
    """
    if any(len(one.values) != len(keys) for one in series):
        raise ArgumentError("every series needs one value per key")
    maximum = max((max(one.values, default=0) for one in series), default=0)
    if not keys or maximum == 0:
        return _empty(width, height, title, css_class, empty)
    shown = list(labels if labels is not None else keys)
    left, right, top, bottom = 64, 12, 34, 70 if rotate_labels else 34
    plot_w, plot_h = width - left - right, height - top - bottom
    axis_top, step = nice_scale(maximum)
    slot = plot_w / len(keys)
    bar_w = slot * 0.8 / max(len(series), 1)
    parts = [_svg_open(width, height, title, css_class), _legend(series, left, 16), '<g class="axis">']
    for tick in range(0, axis_top + 1, step):
        y = top + plot_h - plot_h * tick / axis_top
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{_n(y)}" y2="{_n(y)}" class="grid"/>'
                     f'<text x="{left - 6}" y="{_n(y + 4)}" text-anchor="end">{compact(tick)}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" class="axis-line"/>'
                 f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" class="axis-line"/>')
    every = max(1, -(-len(keys) // 12))
    for index, label in enumerate(shown):
        if index % every:
            continue
        x = left + slot * (index + 0.5)
        y = top + plot_h + 16
        text = escape(_shorten(str(label), 16))
        if rotate_labels:
            parts.append(f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="end" '
                         f'transform="rotate(-35 {_n(x)} {_n(y)})">{text}</text>')
        else:
            parts.append(f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="middle">{text}</text>')
    parts.append("</g>")
    for index, key in enumerate(keys):
        x0 = left + slot * index
        tooltip = _tooltip(str(key), series, index)
        parts.append(f'<g class="group" data-key="{escape(key)}"{_data_attributes(series, index)}>'
                     f'<rect class="hit" x="{_n(x0)}" y="{top}" width="{_n(slot)}" height="{plot_h}">'
                     f"<title>{tooltip}</title></rect>")
        for number, one in enumerate(series):
            x = x0 + slot * 0.1 + bar_w * number
            bars = [(one.name, one.values[index], one.color, bar_w, x)]
            if one.inner is not None:
                bars.append((one.inner_name, one.inner[index], one.inner_color, bar_w * 0.5, x + bar_w * 0.25))
            for name, value, color, w, bx in bars:
                h = plot_h * value / axis_top
                parts.append(f'<rect class="bar" data-series="{name}" data-value="{int(value)}" x="{_n(bx)}" '
                             f'y="{_n(top + plot_h - h)}" width="{_n(w)}" height="{_n(h)}" fill="{escape(color)}">'
                             f"<title>{tooltip}</title></rect>")
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(keys: Sequence[str], series: Series, *, title: str, empty: str = "no clicks yet", width: int = 820,
               css_class: str = "chart hchart") -> str:
    """One horizontal bar per key (a row: ``data-key`` and the values), its label on the left, its value on the right."""
    if len(series.values) != len(keys):
        raise ArgumentError("the series needs one value per key")
    maximum = max(series.values, default=0)
    row, top = 24, 30
    height = top + row * max(len(keys), 1) + 8
    if not keys or maximum == 0:
        return _empty(width, max(height, 80), title, css_class, empty)
    label_w, value_w = 300, 90
    plot_w = width - label_w - value_w
    parts = [_svg_open(width, height, title, css_class), _legend([series], label_w, 16)]
    for index, key in enumerate(keys):
        y = top + row * index
        tooltip = _tooltip(str(key), [series], index)
        value = series.values[index]
        parts.append(f'<g class="group" data-key="{escape(key)}"{_data_attributes([series], index)}>'
                     f'<rect class="hit" x="0" y="{y}" width="{width}" height="{row}"><title>{tooltip}</title></rect>'
                     f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(_shorten(str(key), 44))}</text>')
        bars = [(series.name, value, series.color, 4)]
        if series.inner is not None:
            bars.append((series.inner_name, series.inner[index], series.inner_color, 9))
        for name, amount, color, inset in bars:
            w = plot_w * amount / maximum
            parts.append(f'<rect class="bar" data-series="{name}" data-value="{int(amount)}" x="{label_w}" '
                         f'y="{y + inset}" width="{_n(w)}" height="{row - 2 * inset}" fill="{escape(color)}">'
                         f"<title>{tooltip}</title></rect>")
        parts.append(f'<text x="{_n(label_w + plot_w * value / maximum + 6)}" y="{y + 16}">{value:,}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
