"""A generated campaign: N personalized ~30 KB messages as JSON lines, for the batch benchmark.

One multipart/alternative newsletter (``make_newsletter(25_000, 40)`` wrapped
to 78 columns, plus its plain-text alternative, both 8bit UTF-8) is built
once with the stdlib, with placeholders where each copy differs: the
recipient's name and address in ``To``, the ``Message-ID``, a greeting and a
per-recipient account link in both bodies. Each record is that message with
the placeholders filled in, as ``{"raw": ..., "metadata": {...}}``: about
32 KB a line. Deterministic, streamed to disk (memory does not grow with N).
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

from harness.newsletters import make_newsletter

__all__ = ["record", "template", "write_campaign"]

HTML_BYTES, HTML_LINKS = 25_000, 40
BOUNDARY = "mailtrack-batch-bench"
#: Every copy replaces these (ASCII, so 8bit bodies stay valid whatever goes in).
NAME, ADDRESS, ID = "PERSON_NAME_", "PERSON_ADDRESS_", "PERSON_ID_"
_FIRST = ("Ann", "Bob", "Chloé", "Dmitri", "Eva", "Fatima", "Gus", "Hana", "Ines", "Jürgen")


def template() -> str:
    """The message with placeholders, as text (8bit UTF-8 bodies)."""
    from bench_message import text_alternative, wrap_html  # the same body shapes as the whole-message benchmark

    html = wrap_html(make_newsletter(HTML_BYTES, HTML_LINKS))
    greeting = (f'<p style="margin:0">Hello {NAME}, <a href="https://shop.example.com/account?u={ID}&amp;src=mail">'
                "your account</a></p>\n")
    body_at = html.index(">", html.index("<body")) + 1
    html = html[:body_at] + "\n" + greeting + html[body_at:]
    text = text_alternative(html)  # it carries the greeting and the account link too
    msg = EmailMessage()
    msg["From"] = "Example Shop <news@shop.example.com>"
    msg["To"] = f"{NAME} <{ADDRESS}>"
    msg["Subject"] = "Nouveautés du printemps — jusqu’à −20 %"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<spring-2026.{ID}@shop.example.com>"
    msg.set_content(text, cte="8bit")
    msg.add_alternative(html, subtype="html", cte="8bit")
    msg.set_boundary(BOUNDARY)
    return msg.as_bytes().decode("utf-8")


def record(message: str, n: int) -> str:
    """Copy ``n`` of ``message`` (the template) as one JSON line (no line break)."""
    name = f"{_FIRST[n % len(_FIRST)]}{n}"
    filled = message.replace(NAME, name).replace(ADDRESS, f"{name.lower()}@example.org").replace(ID, f"{n:07d}")
    return json.dumps({"raw": filled, "metadata": {"campaign": "spring-2026"}}, ensure_ascii=False)


def write_campaign(path: Path, count: int) -> int:
    """Write ``count`` records to ``path``; returns the file's size in bytes."""
    message = template()
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for n in range(count):
            out.write(record(message, n) + "\n")
    return path.stat().st_size

