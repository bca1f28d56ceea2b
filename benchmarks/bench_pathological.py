"""Pathological inputs (issue #8, defect 2): every rewrite must take time linear in its input.

Run from the repository root::

    .venv/bin/python benchmarks/bench_pathological.py           # 100 KB, 400 KB, 1.6 MB -> benchmarks/results/pathological.md
    .venv/bin/python benchmarks/bench_pathological.py --quick   # 25 KB, 100 KB, 400 KB, smoke run -> results/pathological-quick.md

Each family is an input shape that once made a rewrite quadratic, or that
could (unclosed placeholders, closing brackets after a text URL, unclosed
comments, tags and attributes, entities, ``<a`` without ``>``, thousands of tiny
links past ``max_links``, runs of ``http://`` ...). Each runs at three sizes,
4x apart; the report gives the best of a few runs and the growth ratio per 4x
of size: about 4 is linear, about 16 quadratic. No threshold is asserted here
or in the tests (``tests/unit/core/test_linear_time.py`` runs every family at
1 MB under a generous hang guard): the machine is shared and noisy.

``FAMILIES`` is imported by that test, so both use the same inputs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.report import header  # noqa: E402

import mailtrack  # noqa: E402

BASE_URL = "https://t.example.com"
IDENTITY = {"message_id": "msg-1", "recipient": "ann@example.com", "issued_at": 1_700_000_000}
#: Every kind of tracking on, text links included: the most work per input.
ALL_ON: dict[str, Any] = {
    "click_tracking": {"enable": True, "enable_text": True},
    "open_tracking": {"enable": True},
    "subscription_tracking": {"enable": True},
}
UNSUBSCRIBE_TAG: dict[str, Any] = {**ALL_ON, "subscription_tracking": {"enable": True, "substitution_tag": "[unsub]"}}
OPEN_TAG: dict[str, Any] = {**ALL_ON, "open_tracking": {"enable": True, "substitution_tag": "[open]"}}


def repeat(unit: str, size: int, head: str = "", tail: str = "") -> str:
    """``head`` + ``unit`` repeated to about ``size`` characters + ``tail``."""
    return head + unit * max(1, size // len(unit)) + tail


@dataclass(frozen=True)
class Family:
    """One pathological input shape: ``build(size)`` gives about ``size`` characters of it."""

    name: str
    kind: str  # "html", "text" or "message" (a multipart/alternative message with both bodies)
    build: Callable[[int], str]
    settings: dict[str, Any] = field(default_factory=lambda: ALL_ON)


def _attr(unit: str) -> Callable[[int], str]:
    return lambda size: repeat(unit, size, '<html><body><a href="https://x.example/', '">x</a></body></html>')


def _text_url(unit: str) -> Callable[[int], str]:
    return lambda size: repeat(unit, size, "see https://x.example/", " thanks\n")


FAMILIES: tuple[Family, ...] = (
    # placeholders opened and never closed, inside a link
    Family("html: {{ in href", "html", _attr("{{")),
    Family("html: {% in href", "html", _attr("{%")),
    Family("html: <% in href", "html", _attr("<%")),
    Family("html: ${ in href", "html", _attr("${")),
    Family("html: *| in href", "html", _attr("*|a")),
    Family("html: %tag in href", "html", _attr("%ab")),
    Family("html: [ in href", "html", lambda n: repeat("[", n, '<a href="[', '">x</a>')),
    # character references
    Family("html: & in href", "html", _attr("&")),
    Family("html: &amp;x in href", "html", _attr("&ampx")),
    Family("html: &#x in href", "html", _attr("&#x")),
    Family("html: &copy=1 in href", "html", _attr("&copy=1")),
    # markup left open
    Family("html: <!-- unclosed", "html", lambda n: repeat("<!--", n, "<body>")),
    Family("html: <!--[if unclosed", "html", lambda n: repeat("<!--[if mso]>", n, "<body>")),
    Family("html: conditional links", "html", lambda n: repeat("<a href=https://x.example/>", n, "<!--[if mso]>", "<![endif]-->")),
    Family("html: <a without >", "html", lambda n: repeat("<a ", n)),
    Family("html: <a href=\" unclosed", "html", lambda n: repeat('<a href="', n)),
    Family("html: <a x= unclosed", "html", lambda n: repeat("<a x=", n)),
    Family("html: <x a=' unclosed", "html", lambda n: repeat("<x a='", n)),
    Family("html: lone <", "html", lambda n: repeat("<", n)),
    Family("html: </ and <! and <?", "html", lambda n: repeat("</<!<?", n)),
    Family("html: <title> unclosed", "html", lambda n: repeat("<title>", n)),
    Family("html: many attributes", "html", lambda n: repeat(" x=y", n, "<a", ' href="https://x.example/">x</a>')),
    # many links, most past max_links
    Family("html: tiny links", "html", lambda n: repeat('<a href="https://x.example/">x</a>', n)),
    Family("html: tiny links + unsub tag", "html", lambda n: repeat('<a href="https://x.example/">[unsub]</a>', n),
           UNSUBSCRIBE_TAG),
    Family("html: open tag", "html", lambda n: repeat("<p>[open]</p>", n), OPEN_TAG),
    # our own prefixes, repeated
    Family("html: open prefix", "html", lambda n: repeat(BASE_URL + "/o/", n)),
    Family("html: forged click links", "html", lambda n: repeat(f'<a href="{BASE_URL}/c/a.b.c">x</a>', n)),
    Family("html: unsubscribe prefix", "html", lambda n: repeat(BASE_URL + "/u/a.b.c ", n)),
    # plain text
    Family("text: ) after URL", "text", _text_url(")")),
    Family("text: ] after URL", "text", _text_url("]")),
    Family("text: } after URL", "text", _text_url("}")),
    Family("text: ). after URL", "text", _text_url(").")),
    Family("text: ( in URL", "text", _text_url("(")),
    Family("text: [ in URL", "text", _text_url("[")),
    Family("text: {{ in URL", "text", _text_url("{{")),
    Family("text: ${ in URL", "text", _text_url("${")),
    Family("text: <% in URL", "text", _text_url("<%")),
    Family("text: |* in URL", "text", _text_url("|*")),
    Family("text: http:// run", "text", lambda n: repeat("http://", n)),
    Family("text: tiny URLs", "text", lambda n: repeat("https://x.example/ ", n)),
    Family("text: unsub tag", "text", lambda n: repeat("[unsub] ", n), UNSUBSCRIBE_TAG),
    # whole messages: both bodies pathological
    Family("message: {{ and )", "message", lambda n: repeat("{{", n // 2) + "\0" + repeat(")", n // 2)),
    Family("message: <a and ${", "message", lambda n: repeat("<a ", n // 2) + "\0" + repeat("${", n // 2)),
)


def message_bytes(payload: str) -> bytes:
    """A multipart/alternative message: the part of ``payload`` before NUL in an href of the HTML body, the rest in a text URL."""
    html_part, _, text_part = payload.partition("\0")
    message = EmailMessage()
    message["From"] = "shop@x.example"
    message["To"] = "ann@example.com"
    message["Subject"] = "pathological"
    message["Message-ID"] = "<msg-1@x.example>"
    message.set_content(f"see https://x.example/{text_part} thanks\n", cte="quoted-printable")
    message.add_alternative(f'<html><body><a href="https://x.example/{html_part}">x</a></body></html>', subtype="html",
                            cte="quoted-printable")
    return message.as_bytes()


def make_tracker() -> mailtrack.Tracker:
    return mailtrack.Tracker(secret_keys=["older-key", "newest-key"], base_url=BASE_URL)


def run(tracker: mailtrack.Tracker, family: Family, document: str | bytes) -> Any:
    """Rewrite ``document`` (built by ``family``) the way its kind says."""
    if family.kind == "html":
        assert isinstance(document, str)
        return tracker.rewrite_html(document, settings=family.settings, **IDENTITY)  # type: ignore[arg-type]
    if family.kind == "text":
        assert isinstance(document, str)
        return tracker.rewrite_text(document, settings=family.settings, **IDENTITY)  # type: ignore[arg-type]
    return tracker.rewrite_message(document, settings=family.settings, issued_at=IDENTITY["issued_at"])


def build(family: Family, size: int) -> str | bytes:
    document = family.build(size)
    return message_bytes(document) if family.kind == "message" else document


def measure(tracker: mailtrack.Tracker, family: Family, size: int, repetitions: int) -> float:
    """Best of ``repetitions`` runs, in seconds (the minimum is the least noisy on a shared machine)."""
    document = build(family, size)
    best = float("inf")
    for _ in range(repetitions):
        start = time.perf_counter()
        run(tracker, family, document)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repetition: a smoke run (seconds)")
    parser.add_argument("--out", type=Path, help="report file (default benchmarks/results/pathological[-quick].md)")
    parser.add_argument("--only", help="run only families whose name contains this text")
    args = parser.parse_args(argv)
    sizes = (25_000, 100_000, 400_000) if args.quick else (100_000, 400_000, 1_600_000)
    repetitions = 1 if args.quick else 3
    out_path = args.out or HERE / "results" / ("pathological-quick.md" if args.quick else "pathological.md")
    tracker = make_tracker()
    families = [f for f in FAMILIES if not args.only or args.only in f.name]

    labels = [f"{size // 1000:,} KB" for size in sizes]
    rows = [
        "| family | " + " | ".join(labels) + " | " + " | ".join(f"x{b} / x{a}" for a, b in zip(labels, labels[1:], strict=False)) + " |",
        "|---|" + "---:|" * (2 * len(sizes) - 1),
    ]
    worst = 0.0
    for family in families:
        times = [measure(tracker, family, size, repetitions) for size in sizes]
        ratios = [b / a if a > 0 else float("nan") for a, b in zip(times, times[1:], strict=False)]
        worst = max([worst, *ratios[-1:]])
        rows.append(
            f"| {family.name.replace('|', chr(92) + '|')} | " + " | ".join(f"{t * 1000:.1f} ms" for t in times) + " | "
            + " | ".join(f"{r:.1f}" for r in ratios) + " |"
        )
        print(rows[-1], file=sys.stderr, flush=True)

    command = "python benchmarks/bench_pathological.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    versions = f"mailtrack {importlib_metadata.version('mailtrack')}" if _installed("mailtrack") else "mailtrack (source)"
    report = "\n".join([
        *header("Pathological inputs: time against size", command.strip(), "quick" if args.quick else "full", versions),
        "",
        f"Best of {repetitions} run(s) per size; the ratio columns divide the time at one size by the time at the size "
        "4x smaller: about 4 is linear, about 16 quadratic. Tiny times are dominated by noise and fixed costs, so "
        "ratios under 4 are common at the small sizes. Each kind of tracking is on, text links included.",
        "",
        *rows,
        "",
        f"Largest ratio at the largest step: {worst:.1f}.",
        "",
    ])
    print(report)
    out_path.write_text(report, encoding="utf-8")
    print(f"wrote {out_path}", file=sys.stderr)
    return 0


def _installed(name: str) -> bool:
    try:
        importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
