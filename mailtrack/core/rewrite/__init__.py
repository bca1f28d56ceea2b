"""Rewrite one body, HTML or plain text, as a :class:`~mailtrack.core.rewrite.plan.RewritePlan` says.

``plan`` (what to do), ``rules`` (placeholders and opt-outs), ``links`` (the
per-link decision and the message's link book), ``html`` and ``text`` (the two
body kinds), ``footer`` (subscription tracking) and ``splice`` (apply edits).
"""

from mailtrack.core.rewrite.html import pixel_html, rewrite_html, rewrite_html_edits
from mailtrack.core.rewrite.plan import RewritePlan, Unsubscribe
from mailtrack.core.rewrite.splice import Edits, splice
from mailtrack.core.rewrite.text import rewrite_text, rewrite_text_edits
from mailtrack.core.urlfinder import find_urls

__all__ = [
    "Edits",
    "RewritePlan",
    "Unsubscribe",
    "find_urls",
    "pixel_html",
    "rewrite_html",
    "rewrite_html_edits",
    "rewrite_text",
    "rewrite_text_edits",
    "splice",
]
