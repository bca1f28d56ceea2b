"""The serve benchmark's workload: recipients, signed URLs, and the seeded request sequence both generators replay.

One line per request in ``sequence.tsv``: kind (``o``/``c``), path, expected status, expected Location (clicks),
user agent, tab-separated.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
SECRET_KEY = "bench-serve-key"
BASE_URL = "https://t.example.com"
HOST_HEADER = "t.example.com"
MESSAGES = 8
LINKS_PER_MESSAGE = 4
NEWSLETTER_BYTES = 6_000
SEQUENCE_LENGTH = 50_000
OPEN_SHARE = 0.7
SEED = 4
RESPONSE_TIMEOUT_S = 10.0  # a response slower than this is an error (both generators)
#: Real-world pixel fetchers and browsers, so stored user agents look like production ones.
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
)
EXPECTED = {"o": 200, "c": 302}
KIND_NAMES = {"o": "open", "c": "click"}
EVENT_TYPES = {"o": "opened", "c": "clicked"}


@dataclass
class Workload:
    recipients: int
    pixels: int
    links: int
    distinct_urls: int
    sequence_file: Path
    opens: int  # in the sequence
    clicks: int
    build_s: float


def build_workload(recipients: int, folder: Path) -> Workload:
    """Sign every recipient's pixel and links with ``rewrite_html`` and write the request sequence file.

    One line per request: kind (``o``/``c``), path, expected status, expected Location (clicks), user agent,
    tab-separated; both generators read it.
    """
    from harness.newsletters import make_newsletter
    from mailtrack import Tracker

    started = time.perf_counter()
    tracker = Tracker(secret_keys=[SECRET_KEY], base_url=BASE_URL)
    issued_at = int(time.time()) - 3600  # mailed an hour ago
    newsletters = [make_newsletter(NEWSLETTER_BYTES, LINKS_PER_MESSAGE, seed=m) for m in range(MESSAGES)]
    src = re.compile(r'src="([^"]+)"')
    pixels: list[str] = []
    clicks: list[tuple[str, str]] = []
    for r in range(recipients):
        m = r % MESSAGES
        identity = {
            "message_id": f"campaign-{m}",
            "recipient": f"user{r:05d}@example.com",
            "metadata": {"campaign": f"spring-{m}", "list": "weekly"},
            "issued_at": issued_at,
        }
        result = tracker.rewrite_html(newsletters[m], **identity)  # type: ignore[arg-type]
        assert result.pixel is not None and len(result.links) == LINKS_PER_MESSAGE, (r, len(result.links))
        match = src.search(result.pixel.html)
        assert match is not None
        pixel = match.group(1)
        assert pixel == tracker.tracking_url("open", **identity)  # type: ignore[arg-type]
        pixels.append(_path(pixel))
        clicks += [(_path(link.tracking_url), link.url) for link in result.links]
    rng = random.Random(SEED)
    opens = 0
    lines = []
    for _ in range(SEQUENCE_LENGTH):
        agent = rng.choice(USER_AGENTS)
        if rng.random() < OPEN_SHARE:
            opens += 1
            lines.append(f"o\t{rng.choice(pixels)}\t200\t\t{agent}")
        else:
            path, location = rng.choice(clicks)
            assert "\t" not in location and "\n" not in location
            lines.append(f"c\t{path}\t302\t{location}\t{agent}")
    sequence_file = folder / "sequence.tsv"
    sequence_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Workload(
        recipients=recipients,
        pixels=len(pixels),
        links=len(clicks),
        distinct_urls=len(set(pixels)) + len({p for p, _ in clicks}),
        sequence_file=sequence_file,
        opens=opens,
        clicks=SEQUENCE_LENGTH - opens,
        build_s=time.perf_counter() - started,
    )


def _path(url: str) -> str:
    assert url.startswith(BASE_URL + "/"), url
    return url[len(BASE_URL) :]
