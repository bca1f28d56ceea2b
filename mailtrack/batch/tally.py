"""Counting what one rewrite did into a :class:`~mailtrack.batch.Summary`: parts, links, skips, parts left alone."""

from __future__ import annotations

from typing import Any

from mailtrack.batch.summary import Summary
from mailtrack.core.results import HtmlResult, MessageResult, TextResult

__all__ = ["count_html", "count_message", "count_text"]


def count_html(result: HtmlResult, counts: Summary) -> None:
    """One HTML body: one part, its tracked and skipped links."""
    counts.parts += 1
    counts.links_tracked += len(result.links)
    counts.links_skipped.update(skip.reason for skip in result.skipped)


def count_text(result: TextResult, counts: Summary) -> None:
    """One plain-text body: one part, its tracked and skipped links."""
    counts.parts += 1
    counts.links_tracked += len(result.links)
    counts.links_skipped.update(skip.reason for skip in result.skipped)


def count_message(result: MessageResult[Any], counts: Summary) -> None:
    """One whole message: every leaf part, the links of its text parts, the parts left byte for byte."""
    counts.parts += len(result.parts)
    for part in result.parts:
        if part.result is not None:
            counts.links_tracked += len(part.result.links)
            counts.links_skipped.update(skip.reason for skip in part.result.skipped)
        counts.undecodable_parts += part.status == "undecodable"
        counts.unencodable_parts += part.status == "unencodable"
