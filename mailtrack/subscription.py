"""Subscription tracking (SendGrid semantics): unsubscribe footers and substitution tags.

``html`` and ``text`` are footers appended to the body; in them ``<% link text %>``
becomes a link to the signed unsubscribe URL (HTML) or the bare URL (text, where
the link text is dropped). A ``substitution_tag`` overrides both: every
occurrence of it is replaced by the bare URL and nothing is appended.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_HTML", "DEFAULT_TEXT", "html_footer", "text_footer"]

#: SendGrid's default footers, used when subscription tracking is on without ``html``/``text``.
DEFAULT_HTML = "<p>If you would like to unsubscribe and stop receiving these emails <% click here %>.</p>"
DEFAULT_TEXT = "If you would like to unsubscribe and stop receiving these emails click here: <% %>."

_TAG = re.compile(r"<%\s*(.*?)\s*%>", re.DOTALL)


def html_footer(template: str, url: str) -> str:
    """``template`` with each ``<% text %>`` made a link to ``url`` (the URL itself when the text is empty)."""
    return _TAG.sub(lambda m: f'<a href="{url}">{m.group(1) or url}</a>', template)


def text_footer(template: str, url: str) -> str:
    """``template`` with each ``<% ... %>`` replaced by the bare ``url``."""
    return _TAG.sub(lambda m: url, template)
