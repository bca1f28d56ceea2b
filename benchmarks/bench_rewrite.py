"""Rewrite benchmark for issue #2: mailtrack against pytracking, a naive bs4 rewrite and a floor.

Run from the repository root::

    .venv/bin/python benchmarks/bench_rewrite.py            # full run, writes benchmarks/results/rewrite.md
    .venv/bin/python benchmarks/bench_rewrite.py --quick    # smoke run (< 30 s), writes benchmarks/results/rewrite-quick.md

Inputs: three generated newsletters (``harness.newsletters.SIZES``) and, when present,
every ``format == html`` file of the shared corpus (``../shared/corpus``).
Contenders (``harness.peers.CONTENDERS``) run interleaved: each repetition runs every
contender once, in an order shuffled afresh per repetition
(``harness.timing.interleaved_order``), so drift and noise on a shared machine,
and the cache state a call inherits from the one before it, hit all of them alike. We report medians, minima and *ratios
within the run*, never absolute goals. Memory (tracemalloc) and bytes per link
are measured in separate, untimed passes. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import re
import shlex
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from harness.newsletters import SIZES, make_newsletter  # noqa: E402
from harness.peers import BASE_URL, CONTENDERS, MESSAGE_ID, METADATA, RECIPIENT, Rewrite, make_tracker  # noqa: E402
from harness.report import header  # noqa: E402
from harness.timing import interleaved_order, time_call  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
README = HERE / "README.md"
RESULTS = HERE / "results"
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
CORPUS_NAME = "corpus"


@dataclass(frozen=True)
class Plan:
    """How long to measure: repetitions stop once ``budget_s`` is spent and ``min_reps`` are done."""

    budget_s: float
    min_reps: int
    max_reps: int
    corpus_budget_s: float
    corpus_min_reps: int
    corpus_memory: bool


FULL = Plan(budget_s=40.0, min_reps=15, max_reps=1001, corpus_budget_s=60.0, corpus_min_reps=7, corpus_memory=True)
QUICK = Plan(budget_s=1.5, min_reps=3, max_reps=41, corpus_budget_s=0.0, corpus_min_reps=1, corpus_memory=False)


@dataclass
class Workload:
    """One row of the tables: a generated newsletter, or the whole corpus as one aggregate."""

    name: str
    docs: list[str]
    generated: bool
    target_links: int = 0
    notes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # one per document (corpus: path in the corpus)

    @property
    def size_bytes(self) -> int:
        return sum(len(doc.encode("utf-8")) for doc in self.docs)


@dataclass
class Result:
    """Everything measured on one workload."""

    workload: Workload
    times: dict[str, list[int]] = field(default_factory=dict)  # contender -> ns per repetition
    failed: dict[str, str] = field(default_factory=dict)  # contender -> why it is not in this row
    peak: dict[str, int] = field(default_factory=dict)  # contender -> peak traced bytes during one call
    input_object_bytes: int = 0  # sys.getsizeof of the input str (PEP 393: 1, 2 or 4 bytes per char)
    per_link: dict[str, float] = field(default_factory=dict)  # contender -> mean bytes added per <a> link
    rewritten: dict[str, int] = field(default_factory=dict)  # contender -> hrefs now pointing at BASE_URL/c/
    extra: dict[str, str] = field(default_factory=dict)  # free-form measurements for the notes
    timed_docs: int = 0  # documents in the timed set (corpus: those every contender handles)
    timed_bytes: int = 0

    def median_ns(self, name: str) -> float | None:
        samples = self.times.get(name)
        return statistics.median(samples) if samples else None

    def min_ns(self, name: str) -> float | None:
        samples = self.times.get(name)
        return min(samples) if samples else None

    def ratio(self, num: str, den: str) -> float | None:
        a, b = self.median_ns(num), self.median_ns(den)
        return a / b if a is not None and b else None

    def min_ratio(self, num: str, den: str) -> float | None:
        a, b = self.min_ns(num), self.min_ns(den)
        return a / b if a is not None and b else None


# -- inputs ----------------------------------------------------------------------------


def generated_workloads() -> list[Workload]:
    """The three generated newsletters of issue #2."""
    return [
        Workload(name, [make_newsletter(target, links)], generated=True, target_links=links)
        for name, target, links in SIZES
    ]


def corpus_workload(root: Path) -> Workload | None:
    """Every html file listed in the corpus MANIFEST.tsv, or None when the corpus is absent."""
    manifest = root / "MANIFEST.tsv"
    if not manifest.is_file():
        return None
    with manifest.open(encoding="utf-8", newline="") as fh:
        rows = [row for row in csv.DictReader(fh, delimiter="\t") if row.get("format") == "html"]
    docs = [(root / row["path"]).read_text(encoding="utf-8", errors="replace") for row in rows]
    return Workload(CORPUS_NAME, docs, generated=False, labels=[row["path"] for row in rows])


# -- measurement -----------------------------------------------------------------------


def load_contenders() -> tuple[dict[str, Rewrite], dict[str, str]]:
    """Build every contender; one that cannot be built (not importable yet) is reported, not fatal."""
    built: dict[str, Rewrite] = {}
    missing: dict[str, str] = {}
    for name, factory in CONTENDERS.items():
        try:
            built[name] = factory()
        except Exception as exc:  # noqa: BLE001 - any import/constructor failure just drops the column
            missing[name] = f"{type(exc).__name__}: {exc}"
    return built, missing


def warm_up(result: Result, contenders: dict[str, Rewrite]) -> list[str]:
    """Run every contender once on every document; return the documents all of them handle.

    A contender that fails on a generated input is dropped from that row. On the
    corpus, failures are counted per contender and the timed set is the files
    every contender rewrites, so all columns time the same work.
    """
    docs = result.workload.docs
    ok = [True] * len(docs)
    for name, fn in contenders.items():
        failures: dict[str, int] = {}
        for i, doc in enumerate(docs):
            try:
                fn(doc)
            except Exception as exc:  # noqa: BLE001 - pytracking raises AttributeError/ValueError on some inputs
                ok[i] = False
                key = f"{type(exc).__name__}: {str(exc)[:60]}"
                failures[key] = failures.get(key, 0) + 1
        if failures:
            count = sum(failures.values())
            detail = "; ".join(f"{n}× {k}" for k, n in sorted(failures.items(), key=lambda kv: -kv[1]))
            result.failed[name] = f"failed on {count} of {len(docs)} document(s): {detail}"
    kept = [doc for doc, good in zip(docs, ok, strict=False) if good]
    if not result.workload.generated and len(kept) < len(docs):
        result.workload.notes.append(
            f"timed on the {len(kept)} of {len(docs)} files every contender rewrites "
            f"({len(docs) - len(kept)} excluded because a contender raised)"
        )
        for name in list(result.failed):
            result.workload.notes.append(f"{name}: {result.failed.pop(name)}")
    return kept


def run_interleaved(
    result: Result, contenders: dict[str, Rewrite], docs: list[str], budget_s: float, min_reps: int, max_reps: int
) -> None:
    """Repetitions of every contender (order shuffled each time) until the time budget is spent."""
    names = [name for name in contenders if name not in result.failed]
    times: dict[str, list[int]] = {name: [] for name in names}
    started = time.monotonic()
    for rep in range(max_reps):
        for name in interleaved_order(names, rep):
            times[name].append(time_call(contenders[name], docs))
        if rep + 1 >= min_reps and time.monotonic() - started >= budget_s:
            break
    result.times = times


def peak_bytes(fn: Rewrite, doc: str) -> int:
    """Peak bytes allocated by one call (output included), as tracemalloc sees them.

    tracemalloc traces Python's allocators only: libxml2's own C allocations
    (lxml, hence pytracking and bs4+lxml) are invisible, so their figures are
    lower bounds. mailtrack and the floor allocate only through Python.
    """
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn(doc)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    del out
    return peak


_REWRITTEN = re.compile(r"""href\s*=\s*["']?""" + re.escape(BASE_URL + "/c/"), re.IGNORECASE)


def _written_len(value: str) -> int:
    """UTF-8 length of an attribute value as written in double quotes (``&`` as ``&amp;``)."""
    return len(value.replace("&", "&amp;").replace('"', "&quot;").encode("utf-8"))


def a_hrefs(doc: str) -> list[str | None]:
    """``href`` of every ``<a>`` in document order, as lxml's HTML parser reads them (entities decoded)."""
    import lxml.html

    parser = lxml.html.HTMLParser(encoding="utf-8")
    tree = lxml.html.document_fromstring(doc.encode("utf-8"), parser=parser)
    return [a.get("href") for a in tree.iter("a")]


def bytes_per_link(before: list[str | None], after: list[str | None]) -> float | None:
    """Mean growth of the http(s) ``<a href>`` values, pairing links by document order."""
    if len(before) != len(after):
        return None
    deltas = [
        _written_len(new) - _written_len(old)
        for old, new in zip(before, after, strict=False)
        if old is not None and new is not None and old.startswith(("http://", "https://")) and new != old
    ]
    return sum(deltas) / len(deltas) if deltas else None


def measure_outputs(result: Result, contenders: dict[str, Rewrite]) -> None:
    """Untimed passes on a generated input: peak memory, bytes added per link, links rewritten."""
    doc = result.workload.docs[0]
    result.input_object_bytes = sys.getsizeof(doc)
    before = a_hrefs(doc)
    for name, fn in contenders.items():
        if name in result.failed:
            continue
        result.peak[name] = peak_bytes(fn, doc)
        out = fn(doc)
        result.rewritten[name] = len(_REWRITTEN.findall(out))
        per_link = bytes_per_link(before, a_hrefs(out))
        if per_link is not None:
            result.per_link[name] = per_link
    if "mailtrack" in contenders and "mailtrack" not in result.failed:
        # Cross-check from the library's own account, VML links included: the
        # document is spliced, so (output - input - pixel) / links must agree.
        tracker = make_tracker()
        res = tracker.rewrite_html(doc, message_id=MESSAGE_ID, recipient=RECIPIENT, metadata=METADATA)
        links = res.links
        if links:
            from mailtrack.core.charrefs import escape_attribute

            by_links = sum(
                len(escape_attribute(link.tracking_url, link.quote or '"').encode("utf-8")) - len(link.raw.encode("utf-8"))
                for link in links
            ) / len(links)
            pixel = sum(len(p.html.encode("utf-8")) - len(p.replaced.encode("utf-8")) for p in res.pixels)
            by_doc = (len(res.html.encode("utf-8")) - len(doc.encode("utf-8")) - pixel) / len(links)
            result.extra["mailtrack_links"] = (
                f"{len(links)} links tracked (all `<a>` and VML), skipped: "
                + (", ".join(f"{s.reason}" for s in res.skipped) or "none")
            )
            result.extra["mailtrack_check"] = (
                f"mean over result.links {by_links:.1f} B, (output − input − pixel) / links {by_doc:.1f} B"
            )


def corpus_memory(result: Result, fn: Rewrite) -> None:
    """mailtrack's peak ÷ input over corpus files of 10 KB or more (smaller ones are fixed-overhead bound)."""
    rows = []
    for doc, label in zip(result.workload.docs, result.workload.labels, strict=False):
        size = len(doc.encode("utf-8"))
        if size >= 10_000:
            peak = peak_bytes(fn, doc)
            rows.append((peak / size, peak / sys.getsizeof(doc), size, label))
    if rows:
        rows.sort()
        worst, worst_str, size, label = rows[-1]
        result.extra["corpus_memory"] = (
            f"mailtrack peak ÷ input over the {len(rows)} corpus files ≥ 10 KB: median "
            f"{statistics.median(r[0] for r in rows):.2f}× UTF-8 ({statistics.median(r[1] for r in rows):.2f}× str), "
            f"worst {worst:.2f}× UTF-8 ({worst_str:.2f}× str) on `{label}` ({size:,} B)"
        )


# -- report ----------------------------------------------------------------------------


def _ms(ns: float | None) -> str:
    if ns is None:
        return "—"
    ms = ns / 1e6
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _x(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}×"


def _versions() -> str:
    parts = []
    for dist in ("mailtrack", "pytracking", "lxml", "beautifulsoup4"):
        try:
            parts.append(f"{dist} {importlib_metadata.version(dist)}")
        except importlib_metadata.PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    try:
        import mailtrack

        parts[0] = f"mailtrack {mailtrack.__version__} (from {Path(mailtrack.__file__).parent})"
    except Exception:  # noqa: BLE001 - absent or broken: the distribution line stays
        pass
    return ", ".join(parts)


@dataclass(frozen=True)
class Goal:
    """One acceptance goal of issue #2 and how it came out."""

    text: str
    measured: str
    passed: bool | None  # None: could not be measured


def _mem_ratio(result: Result, name: str, basis: str) -> float | None:
    """Peak of ``name`` as a multiple of the input: ``utf8`` bytes or the ``str`` object's size."""
    if name not in result.peak:
        return None
    size = result.workload.size_bytes if basis == "utf8" else result.input_object_bytes
    return result.peak[name] / size


def evaluate_goals(results: list[Result]) -> list[Goal]:
    """The goals of issues #2 and #13, each checked on every row it applies to."""
    goals: list[Goal] = []
    by_name = {r.workload.name: r for r in results}

    ratios = [(n, by_name[n].ratio("pytracking", "mailtrack")) for n in ("60KB", "500KB", CORPUS_NAME) if n in by_name]
    goals.append(
        Goal(
            "≥ 10× faster than pytracking at 60 KB and 500 KB, and on the corpus (median ÷ median; issues #2 and #13: "
            "the mailtrack column is the compiled path where it is built)",
            ", ".join(f"{n}: {_x(r, 1)}" for n, r in ratios),
            None if any(r is None for _, r in ratios) else all(r is not None and r >= 10 for _, r in ratios),
        )
    )
    pure = [(n, by_name[n].ratio("pytracking", "mailtrack-pure")) for n in ("60KB", "500KB", CORPUS_NAME) if n in by_name]
    if any(r is not None for _, r in pure):
        goals.append(
            Goal(
                "pure path ≥ 4× faster than pytracking at 60 KB, 500 KB and on the corpus (issue #13; median ÷ median)",
                ", ".join(f"{n}: {_x(r, 1)}" for n, r in pure),
                None if any(r is None for _, r in pure) else all(r is not None and r >= 4 for _, r in pure),
            )
        )
    floors = [(r.workload.name, r.ratio("mailtrack", "floor")) for r in results]
    goals.append(
        Goal(
            "within 3× of the floor (mailtrack ÷ floor ≤ 3, every input)",
            ", ".join(f"{n}: {_x(v)}" for n, v in floors),
            None if any(v is None for _, v in floors) else all(v is not None and v <= 3 for _, v in floors),
        )
    )
    for basis, label in (("utf8", "UTF-8 bytes of the input"), ("str", "the input `str` object")):
        mem = [(r.workload.name, _mem_ratio(r, "mailtrack", basis), _mem_ratio(r, "floor", basis)) for r in results if r.workload.generated]
        goals.append(
            Goal(
                f"peak memory < 3× the input size: tracemalloc peak ÷ {label} (generated inputs; floor for reference)",
                ", ".join(f"{n}: {_x(v)} (floor {_x(f)})" for n, v, f in mem),
                None if any(v is None for _, v, _ in mem) else all(v is not None and v < 3 for _, v, _ in mem),
            )
        )
    mem = [(r.workload.name, _mem_ratio(r, "mailtrack", "str")) for r in results if r.workload.generated]
    goals.append(
        Goal(
            "peak memory < 2× the input `str` object (issue #13; generated inputs, the mailtrack column)",
            ", ".join(f"{n}: {_x(v)}" for n, v in mem),
            None if any(v is None for _, v in mem) else all(v is not None and v < 2 for _, v in mem),
        )
    )
    per_link = [
        (r.workload.name, r.per_link.get("mailtrack"), r.per_link.get("pytracking")) for r in results if r.workload.generated
    ]
    goals.append(
        Goal(
            "bytes added per link below pytracking's (generated inputs)",
            ", ".join(
                f"{n}: {'—' if m is None else f'{m:.0f}'} vs {'—' if p is None else f'{p:.0f}'} B" for n, m, p in per_link
            ),
            None if any(m is None or p is None for _, m, p in per_link) else all(m < p for _, m, p in per_link if m and p),
        )
    )
    return goals


def render(results: list[Result], names: list[str], missing: dict[str, str], plan_name: str, command: str) -> str:
    """The markdown report: header, four tables, goal check, notes."""
    lines = [
        *header("mailtrack rewrite benchmark", command, plan_name, _versions()),
        "- method: contenders interleaved in one process (each repetition runs each once, in an order shuffled afresh: each follows every other about equally often), "
        "GC collected (survivors frozen, so it walks only new objects) before and disabled during each timed call, one warm-up call each; "
        "ratios are median ÷ median within this run (min ÷ min in parentheses).",
        "",
    ]
    for name, why in missing.items():
        lines.append(f"- **{name} not measured**: {why}")
    if missing:
        lines.append("")

    lines += ["## Time per input (ms: median, min in parentheses)", ""]
    lines.append("| input | size | reps | " + " | ".join(names) + " |")
    lines.append("|---|--:|--:|" + "--:|" * len(names))
    for r in results:
        w = r.workload
        reps = len(next(iter(r.times.values()))) if r.times else 0
        label = w.name if w.generated else f"{w.name}: sum over {r.timed_docs} files"
        cells = [
            f"{_ms(r.median_ns(n))} ({_ms(r.min_ns(n))})" if n in r.times else "failed" if n in r.failed else "—" for n in names
        ]
        lines.append(f"| {label} | {r.timed_bytes / 1000:,.0f} KB | {reps} | " + " | ".join(cells) + " |")
    lines.append("")

    lines += ["## Ratios (same run)", ""]
    lines.append(
        "pytracking ÷ floor is the most any rewriter could gain over pytracking (the floor does the least work possible)."
    )
    lines.append("")
    lines.append(
        "mailtrack-pure is mailtrack with its compiled speedups switched off (issue 13); "
        "its column shows — where the speedups are not built or MAILTRACK_PURE=1 is set."
    )
    lines.append("")
    lines.append(
        "mailtrack issues opaque tokens (AES-SIV, the default since issue 14), mailtrack-signed the signed format "
        "(HMAC-SHA256): mailtrack ÷ mailtrack-signed is the price of encrypted tokens."
    )
    lines.append("")
    lines.append(
        "| input | pytracking ÷ mailtrack | pytracking ÷ mailtrack-pure | mailtrack-pure ÷ mailtrack | bs4 ÷ mailtrack "
        "| mailtrack ÷ mailtrack-signed | mailtrack ÷ floor | mailtrack-signed ÷ floor | pytracking ÷ floor |"
    )
    lines.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        cells = []
        for num, den in (("pytracking", "mailtrack"), ("pytracking", "mailtrack-pure"), ("mailtrack-pure", "mailtrack"),
                         ("bs4", "mailtrack"), ("mailtrack", "mailtrack-signed"), ("mailtrack", "floor"),
                         ("mailtrack-signed", "floor"), ("pytracking", "floor")):
            cells.append(f"{_x(r.ratio(num, den))} ({_x(r.min_ratio(num, den))})")
        lines.append(f"| {r.workload.name} | " + " | ".join(cells) + " |")
    lines.append("")

    gen = [r for r in results if r.workload.generated]
    lines += [
        "## Peak memory during one call (tracemalloc, output included)",
        "",
        "Multiple of the input's UTF-8 size; in parentheses, of the input `str` object "
        "(CPython stores a str with any emoji at 4 bytes per character). "
        "† lower bound: libxml2's C allocations are invisible to tracemalloc.",
        "",
        "| input | UTF-8 size | str object | " + " | ".join(n + ("†" if n in ("pytracking", "bs4") else "") for n in names) + " |",
        "|---|--:|--:|" + "--:|" * len(names),
    ]
    for r in gen:
        size = r.workload.size_bytes
        cells = [
            f"{r.peak[n] / size:.2f}× ({r.peak[n] / r.input_object_bytes:.2f}×)" if n in r.peak else "—" for n in names
        ]
        lines.append(
            f"| {r.workload.name} | {size:,} B | {r.input_object_bytes:,} B | " + " | ".join(cells) + " |"
        )
    lines.append("")

    lines += [
        "## Bytes added per tracked link",
        "",
        "Every `<a href>` value read with lxml before and after the rewrite, paired in document order; "
        "mean of (new − old) over the http(s) links that changed, lengths as written in HTML "
        "(UTF-8, `&` counted as `&amp;`). This ignores re-serialization changes elsewhere in the "
        "document (pytracking drops the doctype, bs4/lxml re-quote and re-indent). "
        "Links rewritten = hrefs pointing at the click endpoint afterwards, VML ones included "
        "(lxml-based rewriters cannot see VML inside conditional comments).",
        "",
        "| input | links (a + VML) | " + " | ".join(f"{n} B/link" for n in names) + " | " + " | ".join(f"{n} rewritten" for n in names) + " |",
        "|---|--:|" + "--:|" * (2 * len(names)),
    ]
    for r in gen:
        per = [f"{r.per_link[n]:.0f}" if n in r.per_link else "—" for n in names]
        cnt = [str(r.rewritten[n]) if n in r.rewritten else "—" for n in names]
        lines.append(f"| {r.workload.name} | {r.workload.target_links} | " + " | ".join(per + cnt) + " |")
    lines.append("")

    lines += ["## Goals (issues #2 and #13)", "", "| goal | measured | result |", "|---|---|---|"]
    for goal in evaluate_goals(results):
        verdict = "n/a" if goal.passed is None else "PASS" if goal.passed else "FAIL"
        lines.append(f"| {goal.text} | {goal.measured} | **{verdict}** |")
    lines.append("")

    notes: list[str] = []
    for r in results:
        for note in r.workload.notes:
            notes.append(f"{r.workload.name}: {note}")
        for name, why in r.failed.items():
            notes.append(f"{r.workload.name}: {name} {why}")
        for key in ("mailtrack_links", "mailtrack_check", "corpus_memory"):
            if key in r.extra:
                notes.append(f"{r.workload.name}: {r.extra[key]}")
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def update_readme(path: Path, report: str) -> None:
    """Put ``report`` between the results markers of ``path``: title dropped, headings demoted one level."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no {README_START} ... {README_END} block to update")
    lines = [line for line in report.strip().splitlines() if not line.startswith("# ")]
    body = "\n".join("#" + line if line.startswith("#") else line for line in lines).strip()
    path.write_text(text[: start + len(README_START)] + "\n" + body + "\n" + text[end:], encoding="utf-8")


# -- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, no corpus memory pass (< 30 s)")
    parser.add_argument(
        "--out", type=Path, default=None, help="markdown report (default benchmarks/results/rewrite.md; rewrite-quick.md with --quick)"
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="shared corpus folder (default ../shared/corpus)")
    parser.add_argument("--no-corpus", action="store_true", help="generated inputs only")
    parser.add_argument(
        "--update-readme", action="store_true", help="also replace the results block of benchmarks/README.md with this report"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    out_path: Path = args.out or RESULTS / ("rewrite-quick.md" if args.quick else "rewrite.md")
    command = shlex.join(["python", "benchmarks/bench_rewrite.py", *(sys.argv[1:] if argv is None else argv)])

    contenders, missing = load_contenders()
    for name, why in missing.items():
        print(f"warning: {name} not measured: {why}", file=sys.stderr)
    names = [name for name in CONTENDERS if name in contenders]

    workloads = generated_workloads()
    if not args.no_corpus:
        corpus = corpus_workload(args.corpus)
        if corpus is None:
            print(f"note: no corpus at {args.corpus}; skipping it", file=sys.stderr)
        else:
            workloads.append(corpus)

    results: list[Result] = []
    started = time.monotonic()
    for workload in workloads:
        result = Result(workload)
        print(f"{workload.name}: {len(workload.docs)} doc(s), {workload.size_bytes:,} B ...", file=sys.stderr, flush=True)
        docs = warm_up(result, contenders)
        result.timed_docs, result.timed_bytes = len(docs), sum(len(doc.encode("utf-8")) for doc in docs)
        live = {n: fn for n, fn in contenders.items() if n not in result.failed}
        if workload.generated:
            run_interleaved(result, live, docs, plan.budget_s, plan.min_reps, plan.max_reps)
            measure_outputs(result, live)
        else:
            run_interleaved(result, live, docs, plan.corpus_budget_s, plan.corpus_min_reps, plan.max_reps)
            if plan.corpus_memory and "mailtrack" in live:
                corpus_memory(result, live["mailtrack"])
        results.append(result)
    report = render(results, names, missing, "quick" if args.quick else "full", command)
    report += f"\nTotal wall time: {time.monotonic() - started:.0f} s.\n"
    print(report)
    out_path.write_text(report, encoding="utf-8")
    print(f"wrote {out_path}", file=sys.stderr)
    if args.update_readme:
        update_readme(README, report)
        print(f"updated {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
