"""Whole-message benchmark: ``Tracker.rewrite_message`` on a typical ~30 KB multipart/alternative newsletter.

Run from the repository root::

    .venv/bin/python benchmarks/bench_message.py            # full run (~2.5 min), writes benchmarks/results/message.md
    .venv/bin/python benchmarks/bench_message.py --quick    # smoke run (seconds), writes benchmarks/results/message-quick.md

Input: one ``make_newsletter(25_000, 40)`` HTML body, wrapped into lines of at most
78 characters, plus a plain-text alternative carrying the same ``<a>`` links, built
with the stdlib ``EmailMessage`` three times: quoted-printable bodies (what most
senders produce), 8bit and base64. Each is serialized to bytes once, up front.

Six calls per variant run interleaved in one process (each repetition runs all
eighteen, in an order shuffled afresh: ``harness.timing.interleaved_order``), so
drift, noise and the cache state a call inherits from the one before hit all of
them alike: (a) ``rewrite_html`` on the decoded HTML, (b) that plus
``rewrite_text`` on the decoded text, (c) ``rewrite_message(bytes)``, (d)
``rewrite_message(EmailMessage)`` and (e) the stdlib round trip a naive
integration pays without any tracking (parse, ``get_body``, ``get_content``,
``set_content``, ``as_bytes``), and (f) the stdlib just parsing and re-serializing
(``message_from_bytes`` + ``as_bytes``, policy.default: issue 13's floor, which
``rewrite_message`` should beat twice over). We report medians and ratios within the run,
never absolute goals: (c) ÷ (b) is the MIME overhead. A separate untimed pass
diffs input and output lines to count bytes changed outside the lines holding
links. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import binascii
import cProfile
import difflib
import email
import email.policy
import html as html_lib
import pstats
import re
import shlex
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness.newsletters import count_trackable_links, make_newsletter  # noqa: E402
from harness.peers import BASE_URL, MESSAGE_ID, METADATA, RECIPIENT, SECRET_KEYS  # noqa: E402
from harness.report import header  # noqa: E402
from harness.timing import interleaved_order, time_call  # noqa: E402  (GC collected before and disabled during the timed span)

HTML_BYTES, HTML_LINKS = 25_000, 40
WRAP = 78  # RFC 5322's recommended line length; tags are never split, so a few lines are longer
ISSUED_AT = 1_795_000_000  # fixed, so every call signs the same tokens and outputs compare equal
BOUNDARY = "mailtrack-bench-boundary"
DATE = "Mon, 23 Nov 2026 10:00:00 +0000"
#: (name, Content-Transfer-Encoding of both bodies)
VARIANTS: tuple[tuple[str, str], ...] = (("qp", "quoted-printable"), ("8bit", "8bit"), ("base64", "base64"))
#: (key, heading) of the six timed calls, in report order.
CALLS: tuple[tuple[str, str], ...] = (
    ("a", "(a) rewrite_html"),
    ("b", "(b) rewrite_html + rewrite_text"),
    ("c", "(c) rewrite_message(bytes)"),
    ("d", "(d) rewrite_message(EmailMessage)"),
    ("e", "(e) stdlib parse + set_content + as_bytes"),
    ("f", "(f) stdlib parse + as_bytes"),
)


@dataclass(frozen=True)
class Plan:
    """How long to measure: repetitions stop once ``budget_s`` is spent and ``min_reps`` are done."""

    budget_s: float
    min_reps: int
    max_reps: int


FULL = Plan(budget_s=120.0, min_reps=31, max_reps=5001)
QUICK = Plan(budget_s=0.5, min_reps=3, max_reps=41)


# -- inputs ----------------------------------------------------------------------------


def wrap_html(doc: str, width: int = WRAP) -> str:
    """``doc`` with long lines broken at spaces between words or between two adjacent tags.

    A tag (comments and their contents up to the first ``>`` included) is never
    split and no attribute value changes; a break between words replaces the
    space, so the text reads the same.
    """
    out: list[str] = []
    for line in doc.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        atoms: list[tuple[str, str | None]] = []  # (text, separator before it if a break may go there)
        for token in re.split(r"(<[^>]*>)", line):
            if not token:
                continue
            if token.startswith("<"):
                after_tag = bool(atoms) and atoms[-1][0].endswith(">")
                atoms.append((token, "" if after_tag else None))
            else:
                for i, word in enumerate(token.split(" ")):
                    atoms.append((word, " " if i else None))
        current = ""
        for text, sep in atoms:
            if sep is not None and current and len(current) + len(sep) + len(text) > width:
                out.append(current)
                current = text
            else:
                current += (sep or "") + text
        out.append(current)
    return "\n".join(out)


_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_A = re.compile(r"""<a\b[^>]*?\shref=(["'])(.*?)\1[^>]*>(.*?)</a>""", re.DOTALL | re.IGNORECASE)
_ALT = re.compile(r"""\balt="([^"]*)\"""")
_BLOCK_END = re.compile(r"</(?:p|h1|h2|tr|table|div)>|<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


def text_alternative(doc: str) -> str:
    """The plain-text part an ESP derives from ``doc``: its text, each http(s) ``<a>`` as ``label (URL)``."""
    body = _COMMENT.sub("", doc[doc.index("<body") :])  # MSO blocks (VML buttons) go: text clients never see them
    body = " ".join(body.split())  # source line breaks are spaces; paragraphs come from the block ends below

    def link(match: re.Match[str]) -> str:
        url, inner = html_lib.unescape(match.group(2)), match.group(3)
        label = _TAG.sub("", inner).strip() or " ".join(_ALT.findall(inner))
        return f"{label} ({url})" if url.startswith(("http://", "https://")) else label

    body = _BLOCK_END.sub("\n", _A.sub(link, body))
    paragraphs = []
    for chunk in html_lib.unescape(_TAG.sub("", body)).split("\n"):
        words = chunk.replace("\u00a0", " ").replace("\u200c", "").replace("\u034f", "").split()
        if words:
            paragraphs.append(textwrap.fill(" ".join(words), 76, break_long_words=False, break_on_hyphens=False))
    return "\n\n".join(paragraphs) + "\n"


@dataclass
class Variant:
    """One serialized message and what the timed calls take from it."""

    name: str
    cte: str
    raw: bytes  # serialized once
    obj: EmailMessage  # the object it was serialized from, for (d)
    html: str  # the bodies as the stdlib decodes them from ``raw``, for (a) and (b)
    text: str


def build_variant(name: str, cte: str, html: str, text: str) -> Variant:
    """The multipart/alternative message with both bodies in ``cte``, and its decoded bodies."""
    msg = EmailMessage()
    msg["From"] = "Example Shop <news@example.com>"
    msg["To"] = RECIPIENT
    msg["Subject"] = "Nouveautés du printemps — jusqu’à −20 %"
    msg["Date"] = DATE
    msg["Message-ID"] = f"<{MESSAGE_ID}@example.com>"
    msg.set_content(text, cte=cte)
    msg.add_alternative(html, subtype="html", cte=cte)
    msg.set_boundary(BOUNDARY)  # deterministic bytes (the stdlib draws a random one otherwise)
    raw = msg.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    bodies = {}
    for subtype in ("html", "plain"):
        part = parsed.get_body(preferencelist=(subtype,))
        assert part is not None and str(part.get("content-transfer-encoding")) == cte, (name, subtype)
        bodies[subtype] = part.get_content()
    assert bodies["html"] == html and bodies["plain"] == text, f"{name}: the stdlib does not read back the bodies"
    assert isinstance(msg, EmailMessage)
    return Variant(name, cte, raw, msg, bodies["html"], bodies["plain"])


def build_variants() -> list[Variant]:
    html = wrap_html(make_newsletter(HTML_BYTES, HTML_LINKS))
    assert count_trackable_links(html) == HTML_LINKS
    assert max(len(line.encode("utf-8")) for line in html.splitlines()) <= 998, "8bit needs lines of at most 998 octets"
    text = text_alternative(html)
    return [build_variant(name, cte, html, text) for name, cte in VARIANTS]


# -- the timed calls -------------------------------------------------------------------


def make_tracker() -> Any:
    """Default options, except that plain-text links are tracked too (``click_tracking.enable_text``)."""
    import mailtrack

    return mailtrack.Tracker(
        secret_keys=SECRET_KEYS, base_url=BASE_URL, settings={"click_tracking": {"enable": True, "enable_text": True}}
    )


IDENTITY: dict[str, Any] = {"message_id": MESSAGE_ID, "recipient": RECIPIENT, "metadata": METADATA, "issued_at": ISSUED_AT}


def stdlib_roundtrip(raw: bytes) -> bytes:
    """What a naive integration pays without tracking anything: parse, read and set both bodies, serialize."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    for subtype in ("html", "plain"):
        part = msg.get_body(preferencelist=(subtype,))
        assert part is not None
        cte = str(part.get("content-transfer-encoding", "7bit"))
        part.set_content(part.get_content(), subtype=subtype, cte=cte)
    return msg.as_bytes()


def stdlib_parse_serialize(raw: bytes) -> bytes:
    """Issue 13's floor: the stdlib parsing the message and writing it back, nothing read or changed."""
    return email.message_from_bytes(raw, policy=email.policy.default).as_bytes()


def calls_for(tracker: Any, v: Variant) -> dict[str, Callable[[], object]]:
    """The six timed calls on variant ``v``, keyed as in ``CALLS``."""

    def a() -> object:
        return tracker.rewrite_html(v.html, **IDENTITY)

    def b() -> object:
        return tracker.rewrite_html(v.html, **IDENTITY), tracker.rewrite_text(v.text, **IDENTITY)

    def c() -> object:
        return tracker.rewrite_message(v.raw, **IDENTITY)

    def d() -> object:
        return tracker.rewrite_message(v.obj, **IDENTITY)

    def e() -> object:
        return stdlib_roundtrip(v.raw)

    def f() -> object:
        return stdlib_parse_serialize(v.raw)

    return {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f}


@dataclass
class Series:
    """Nanoseconds per repetition of each call of each variant (one sample per call per repetition)."""

    times: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (variant, call) -> ns

    def median(self, variant: str, call: str) -> float:
        return statistics.median(self.times[variant, call])

    def min(self, variant: str, call: str) -> float:
        return min(self.times[variant, call])

    def ratio(self, variant: str, num: str, den: str) -> tuple[float, float]:
        """median ÷ median and min ÷ min."""
        return (
            self.median(variant, num) / self.median(variant, den),
            self.min(variant, num) / self.min(variant, den),
        )

    @property
    def reps(self) -> int:
        return min(len(samples) for samples in self.times.values()) if self.times else 0


def run_interleaved(calls: dict[tuple[str, str], Callable[[], object]], plan: Plan) -> Series:
    """Every call once per repetition (order shuffled each time) until the budget is spent."""
    keys = list(calls)
    series = Series({key: [] for key in keys})
    started = time.monotonic()
    for rep in range(plan.max_reps):
        for key in interleaved_order(keys, rep):
            series.times[key].append(time_call(lambda fn: fn(), (calls[key],)))
        if rep + 1 >= plan.min_reps and time.monotonic() - started >= plan.budget_s:
            break
    return series


# -- fidelity ----------------------------------------------------------------------------

_LINK = re.compile(rb"""href\s*=\s*["']?https?://|(?<![\w"'=/])https?://""", re.IGNORECASE)
_PIXEL_SPOT = re.compile(rb"</body", re.IGNORECASE)


def logical_lines(raw: bytes, *, qp: bool, boundary: bytes) -> list[bytes]:
    """Lines of ``raw``; with ``qp``, body lines joined across soft line breaks (a trailing ``=``)."""
    lines = raw.splitlines(keepends=True)
    if not qp:
        return lines
    out: list[bytes] = []
    current = b""
    in_headers = True
    for line in lines:
        content = line.rstrip(b"\r\n")
        if in_headers or content.startswith(b"--" + boundary):
            out.append(line)
            in_headers = in_headers and content != b""
            continue
        current += line
        if not content.endswith(b"="):
            out.append(current)
            current = b""
    if current:
        out.append(current)
    return out


@dataclass
class Fidelity:
    """Input vs output lines: which changed, and whether they hold a link (or the pixel's spot)."""

    label: str
    lines: int = 0
    link_lines: int = 0  # input lines holding a trackable link or the pixel's spot
    changed: int = 0  # input lines replaced or deleted, plus output lines inserted
    changed_link: int = 0
    changed_other: int = 0  # should be 0
    bytes_other: int = 0  # bytes of those lines, input and output side; should be 0
    growth: int = 0  # output size − input size, bytes
    note: str = ""


def line_fidelity(label: str, before: list[bytes], after: list[bytes], decode: Callable[[bytes], bytes]) -> Fidelity:
    """Diff ``before``/``after`` line by line; a changed line must hold a link or the pixel's spot."""

    def holds(line: bytes) -> bool:
        plain = decode(line)
        return bool(_LINK.search(plain) or _PIXEL_SPOT.search(plain))

    result = Fidelity(label, lines=len(before), link_lines=sum(map(holds, before)))
    result.growth = sum(map(len, after)) - sum(map(len, before))
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        old, new = before[i1:i2], after[j1:j2]
        flags = [holds(line) for line in old]
        result.changed += len(old) if old else len(new)
        result.changed_link += sum(flags)
        result.changed_other += flags.count(False) if old else len(new)
        result.bytes_other += sum(len(line) for line, f in zip(old, flags, strict=False) if not f)
        if not any(flags):  # nothing in the hunk could explain the new lines
            result.bytes_other += sum(map(len, new))
    return result


def _qp_decode(line: bytes) -> bytes:
    return binascii.a2b_qp(line)


def _bodies(raw: bytes) -> dict[str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    out = {}
    for subtype in ("html", "plain"):
        part = msg.get_body(preferencelist=(subtype,))
        assert part is not None
        out[subtype] = part.get_content()
    return out


def measure_fidelity(tracker: Any, variants: list[Variant]) -> tuple[list[Fidelity], list[str]]:
    """Untimed: raw lines (QP and 8bit) and decoded body lines (every variant) before and after rewriting."""
    rows: list[Fidelity] = []
    notes: list[str] = []
    boundary = BOUNDARY.encode("ascii")
    for v in variants:
        res = tracker.rewrite_message(v.raw, **IDENTITY)
        out: bytes = res.message
        again = tracker.rewrite_message(v.raw, **IDENTITY).message
        obj_out = tracker.rewrite_message(v.obj, **IDENTITY).message.as_bytes()
        html_alone = tracker.rewrite_html(v.html, **IDENTITY)
        text_alone = tracker.rewrite_text(v.text, **IDENTITY)
        back = _bodies(out)
        encodings = ", ".join(
            f"{p.content_type} {p.transfer_encoding}→{p.new_transfer_encoding or p.transfer_encoding}" for p in res.parts
        )
        notes.append(
            f"{v.name}: {len(res.links)} links tracked ({len(html_alone.links)} HTML + {len(text_alone.links)} text "
            f"when rewritten alone), {len(res.skipped)} skipped; parts: {encodings}; "
            f"stdlib reads the output back: HTML body {'==' if back['html'] == html_alone.html else '!='} "
            f"rewrite_html's output, text body {'==' if back['plain'] == text_alone.text else '!='} rewrite_text's; "
            f"same bytes on a second call: {'yes' if again == out else 'no'}; "
            f"(d) gives an EmailMessage whose as_bytes() is (c)'s output: {'yes' if obj_out == out else 'no'}"
            + (f"; warnings: {res.warnings}" if res.warnings else "")
        )
        if v.cte == "base64":
            rows.append(Fidelity(f"{v.name}: raw lines", note="n/a: a base64 body is re-encoded whole, by design"))
        else:
            qp = v.cte == "quoted-printable"
            rows.append(
                line_fidelity(
                    f"{v.name}: raw lines" + (" (soft breaks joined)" if qp else ""),
                    logical_lines(v.raw, qp=qp, boundary=boundary),
                    logical_lines(out, qp=qp, boundary=boundary),
                    _qp_decode if qp else (lambda line: line),
                )
            )
        before, after = _bodies(v.raw), back
        decoded = Fidelity(f"{v.name}: decoded body lines")
        for subtype in ("html", "plain"):
            part = line_fidelity(
                "",
                [line.encode("utf-8") for line in before[subtype].splitlines(keepends=True)],
                [line.encode("utf-8") for line in after[subtype].splitlines(keepends=True)],
                lambda line: line,
            )
            for name in ("lines", "link_lines", "changed", "changed_link", "changed_other", "bytes_other", "growth"):
                setattr(decoded, name, getattr(decoded, name) + getattr(part, name))
        rows.append(decoded)
    return rows, notes


# -- report ------------------------------------------------------------------------------


def _us(ns: float) -> str:
    us = ns / 1e3
    return f"{us:,.0f}" if us >= 100 else f"{us:.3g}"


def _per_s(ns: float) -> str:
    return f"{1e9 / ns:,.0f}"


def _x(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.2f}× ({pair[1]:.2f}×)"


def _mailtrack_version() -> str:
    try:
        import mailtrack

        return f"mailtrack {mailtrack.__version__} (from {Path(mailtrack.__file__).parent})"
    except Exception:  # noqa: BLE001 - report what the distribution says instead
        try:
            return f"mailtrack {importlib_metadata.version('mailtrack')}"
        except importlib_metadata.PackageNotFoundError:
            return "mailtrack (not installed)"


def render(
    variants: list[Variant], series: Series, fidelity: list[Fidelity], notes: list[str], plan_name: str, command: str
) -> str:
    lines = [
        *header("mailtrack whole-message benchmark", command, plan_name, _mailtrack_version()),
        (
            f"- input: `make_newsletter({HTML_BYTES:_}, {HTML_LINKS})` wrapped to {WRAP}-column lines (tags unsplit) as the "
            "HTML body, its text with each http(s) `<a>` as `label (URL)` as the plain-text body; multipart/alternative "
            "built with `EmailMessage`, serialized once with `as_bytes()` (default policy, LF line ends)"
        ),
        (
            f"- tracker: default options plus `click_tracking.enable_text` (text links tracked too); message_id `{MESSAGE_ID}`, "
            f"recipient `{RECIPIENT}`, metadata {METADATA}, fixed `issued_at` for every call"
        ),
        (
            "- method: the 18 calls (6 per variant) interleaved in one process (each repetition runs each once, in an "
            "order shuffled afresh), GC collected (survivors frozen, so it walks only new objects) before and disabled during each timed call, one warm-up call each; "
            "ratios are median ÷ median within this run (min ÷ min in parentheses)."
        ),
        "",
        "## Inputs",
        "",
        "| variant | Content-Transfer-Encoding | message | HTML body (decoded) | text body (decoded) | lines |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for v in variants:
        lines.append(
            f"| {v.name} | {v.cte} | {len(v.raw):,} B | {len(v.html.encode('utf-8')):,} B | "
            f"{len(v.text.encode('utf-8')):,} B | {len(v.raw.splitlines()):,} |"
        )
    lines += [
        "",
        f"## Time per message (µs: median, min in parentheses; {series.reps} repetitions)",
        "",
        "| variant | " + " | ".join(heading for _, heading in CALLS) + " |",
        "|---|" + "--:|" * len(CALLS),
    ]
    for v in variants:
        cells = [f"{_us(series.median(v.name, k))} ({_us(series.min(v.name, k))})" for k, _ in CALLS]
        lines.append(f"| {v.name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Messages per second (from the median)",
        "",
        "| variant | " + " | ".join(heading for _, heading in CALLS) + " |",
        "|---|" + "--:|" * len(CALLS),
    ]
    for v in variants:
        lines.append(f"| {v.name} | " + " | ".join(_per_s(series.median(v.name, k)) for k, _ in CALLS) + " |")
    lines += [
        "",
        "## MIME overhead (same run)",
        "",
        (
            "MIME overhead = (c) ÷ (b): the whole message against rewriting its two decoded bodies. "
            "Added per message = median (c) − median (b). ((c) − (b)) ÷ (e) compares that added cost with "
            "what the stdlib alone takes to parse and re-serialize the message; (c) ÷ ((b) + (e)) compares "
            "rewrite_message with a naive integration (stdlib round trip plus the body rewrites), estimated from the medians."
        ),
        "",
        (
            "| variant | MIME overhead (c) ÷ (b) | added per message (c) − (b) | (c) messages/s | (b) ÷ (a) | "
            "(d) ÷ (c) | ((c) − (b)) ÷ (e) | (c) ÷ ((b) + (e)) | (f) ÷ (c) |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for v in variants:
        n = v.name
        med = {k: series.median(n, k) for k, _ in CALLS}
        lows = {k: series.min(n, k) for k, _ in CALLS}
        added, added_min = med["c"] - med["b"], lows["c"] - lows["b"]
        lines.append(
            f"| {n} | {_x(series.ratio(n, 'c', 'b'))} | {_us(added)} µs ({_us(added_min)} µs) | {_per_s(med['c'])} | "
            f"{_x(series.ratio(n, 'b', 'a'))} | {_x(series.ratio(n, 'd', 'c'))} | "
            f"{added / med['e']:.2f}× ({added_min / lows['e']:.2f}×) | "
            f"{med['c'] / (med['b'] + med['e']):.2f}× ({lows['c'] / (lows['b'] + lows['e']):.2f}×) | "
            f"{_x(series.ratio(n, 'f', 'c'))} |"
        )
    goal = {v.name: series.ratio(v.name, "f", "c")[0] for v in variants}
    lines += [
        "",
        "## Goal (issue 13)",
        "",
        "| goal | measured | result |",
        "|---|---|---|",
        (
            "| rewrite_message(bytes) at least 2× faster than the stdlib parsing and re-serializing the same message, "
            "(f) ÷ (c) ≥ 2 (median ÷ median) | " + ", ".join(f"{name}: {value:.2f}×" for name, value in goal.items())
            + f" | **{'PASS' if all(value >= 2 for value in goal.values()) else 'FAIL'}** |"
        ),
    ]
    lines += [
        "",
        "## Fidelity: lines changed outside the lines holding links",
        "",
        (
            'Untimed. Input and output lines diffed (difflib); a line "holds a link" if it has an http(s) `href` or a '
            "bare http(s) URL (text), or the `</body>` the open pixel goes before. Raw lines: the message bytes, "
            "quoted-printable lines joined across soft line breaks and decoded for the test. Decoded: both bodies as "
            "the stdlib reads them from input and output. Bytes outside = bytes of changed lines that hold no link "
            "(input and output side); it should be 0."
        ),
        "",
        (
            "| what | lines | holding links | changed | changed, holding links | changed, holding none | "
            "bytes changed outside the rewritten lines | size growth |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for f in fidelity:
        if f.note:
            lines.append(f"| {f.label} | {f.note} | | | | | | |")
        else:
            lines.append(
                f"| {f.label} | {f.lines:,} | {f.link_lines:,} | {f.changed:,} | {f.changed_link:,} | "
                f"{f.changed_other:,} | **{f.bytes_other:,}** | {f.growth:+,} B |"
            )
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------


def profile(tracker: Any, variant: Variant, calls: int = 300) -> None:
    """cProfile over ``calls`` rewrite_message(bytes) calls; the top functions by own time to stdout."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        tracker.rewrite_message(variant.raw, **IDENTITY)
    profiler.disable()
    print(f"cProfile: {calls} × rewrite_message(bytes) on the {variant.name} variant")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, for a smoke run (seconds)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown report (default benchmarks/results/message.md; message-quick.md with --quick)",
    )
    parser.add_argument(
        "--profile",
        choices=[name for name, _ in VARIANTS],
        default=None,
        help="instead of timing, print a cProfile of rewrite_message(bytes) on this variant",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    out_path: Path = args.out or HERE / "results" / ("message-quick.md" if args.quick else "message.md")
    command = shlex.join(["python", "benchmarks/bench_message.py", *(sys.argv[1:] if argv is None else argv)])

    started = time.monotonic()
    tracker = make_tracker()
    variants = build_variants()
    if args.profile:
        profile(tracker, next(v for v in variants if v.name == args.profile))
        return 0
    calls: dict[tuple[str, str], Callable[[], object]] = {}
    for v in variants:
        print(f"{v.name}: {len(v.raw):,} B message ({v.cte})", file=sys.stderr, flush=True)
        for key, fn in calls_for(tracker, v).items():
            fn()  # warm-up
            calls[v.name, key] = fn
    series = run_interleaved(calls, plan)
    fidelity, notes = measure_fidelity(tracker, variants)
    report = render(variants, series, fidelity, notes, "quick" if args.quick else "full", command)
    report += f"\nTotal wall time: {time.monotonic() - started:.0f} s.\n"
    print(report)
    out_path.write_text(report, encoding="utf-8")
    print(f"wrote {out_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
