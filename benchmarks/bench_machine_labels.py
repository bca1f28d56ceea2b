"""The machine-event classifier on the hand-labelled request shapes: precision and recall per label, and its cost.

Run from the repository root::

    .venv/bin/python benchmarks/bench_machine_labels.py            # print the table and the timing
    .venv/bin/python benchmarks/bench_machine_labels.py --write    # and write benchmarks/results/machine-labels.md

The shapes are ``tests/data/machine_cases.csv`` (each row: the request, its
label by hand, and where its user agent or shape is documented); the
classifier runs with the shipped ranges file, as ``mailtrack serve`` does.
``tests/unit/test_machine_cases.py`` asserts the floors (no person labelled a
machine; recall of at least 0.8 for each machine label) and that the written
table is the one this code computes. The timing is one ``timeit`` per shape
kind on a shared machine: an order of magnitude, not a threshold.
"""

from __future__ import annotations

import argparse
import csv
import sys
import timeit
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "data" / "machine_cases.csv"
RESULT = ROOT / "benchmarks" / "results" / "machine-labels.md"
SIGNED_AT = 1_700_000_000.0  # the rows give seconds since signing; any signing time will do
PERSON = "person"  # the table's name for the verdict None


@dataclass(frozen=True)
class Case:
    """One labelled request shape."""

    case: str
    kind: str
    method: str
    headers: dict[str, str]
    ip: str | None
    seconds: float | None
    label: str | None
    source: str
    note: str


def load_cases(path: Path = CASES) -> list[Case]:
    """The rows of the cases file (``#`` lines are comments)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    cases = []
    for row in csv.DictReader(lines):
        headers = {"user-agent": row["user_agent"]} if row["user_agent"] else {}
        for pair in filter(None, (part.strip() for part in row["headers"].split(" | "))):
            name, _, value = pair.partition(":")
            headers[name.strip().lower()] = value.strip()
        cases.append(Case(row["case"], row["kind"], row["method"], headers, row["ip"] or None,
                          float(row["seconds"]) if row["seconds"] else None, row["label"] or None, row["source"],
                          row["note"]))
    return cases


def verdicts(cases: Iterable[Case]) -> list[tuple[Case, str | None, tuple[str, ...]]]:
    """Each case with the shipped classifier's label and reasons."""
    from mailtrack.machine import default_classifier

    classifier = default_classifier()
    out = []
    for case in cases:
        issued = SIGNED_AT if case.seconds is not None else None
        now = SIGNED_AT + case.seconds if case.seconds is not None else None
        label, reasons = classifier.classify(case.method, case.kind, case.headers, case.ip, issued, now)
        out.append((case, label, reasons))
    return out


def scores(results: list[tuple[Case, str | None, tuple[str, ...]]]) -> dict[str, tuple[int, int, int, float, float]]:
    """Per label (``person`` for None): (cases, predicted, correct, precision, recall); 1.0 where nothing to divide."""
    labels = sorted({case.label or PERSON for case, _, _ in results} | {got or PERSON for _, got, _ in results},
                    key=lambda name: (name != PERSON, name))
    table = {}
    for name in labels:
        actual = sum(1 for case, _, _ in results if (case.label or PERSON) == name)
        predicted = sum(1 for _, got, _ in results if (got or PERSON) == name)
        correct = sum(1 for case, got, _ in results if (case.label or PERSON) == name == (got or PERSON))
        table[name] = (actual, predicted, correct, correct / predicted if predicted else 1.0,
                       correct / actual if actual else 1.0)
    return table


def table_lines(results: list[tuple[Case, str | None, tuple[str, ...]]]) -> list[str]:
    """The Markdown table of :func:`scores`, then the cases it got wrong."""
    lines = ["| label | cases | labelled so | correct | precision | recall |", "|---|---:|---:|---:|---:|---:|"]
    for name, (actual, predicted, correct, precision, recall) in scores(results).items():
        lines.append(f"| {name} | {actual} | {predicted} | {correct} | {precision:.2f} | {recall:.2f} |")
    wrong = [(case, got) for case, got, _ in results if case.label != got]
    lines.append("")
    lines.append(f"{len(results)} cases; wrong: " + (", ".join(f"`{case.case}` ({case.label or PERSON} labelled "
                                                             f"{got or PERSON})" for case, got in wrong) or "none"))
    return lines


def timing() -> list[str]:
    """Microseconds per verdict for three common shapes (one timeit each, best of 5)."""
    from mailtrack.machine import default_classifier

    classify = default_classifier().classify
    chrome = {"user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                            "Chrome/131.0.0.0 Safari/537.36", "accept-language": "en-US"}
    gmail = {"user-agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"}
    shapes = {
        "a reader's click (IPv4, nothing matches)": lambda: classify("GET", "click", chrome, "203.0.113.5", 0.0, 3600.0),
        "a reader's open (IPv6)": lambda: classify("GET", "open", chrome, "2001:db8::5", 0.0, 60.0),
        "a Gmail proxy open": lambda: classify("GET", "open", gmail, "66.249.84.1", 0.0, 60.0),
        "a Safe Links click (EOP range)": lambda: classify("GET", "click", chrome, "40.107.218.12", 0.0, 2.0),
    }
    lines = []
    for name, call in shapes.items():
        number = 20_000
        best = min(timeit.repeat(call, number=number, repeat=5)) / number
        lines.append(f"- {name}: {best * 1e6:.1f} µs per verdict")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write", action="store_true", help=f"write {RESULT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    results = verdicts(load_cases())
    table = table_lines(results)
    cost = timing()
    text = "\n".join([
        "# Machine-event labels on hand-labelled request shapes",
        "",
        f"- cases: `tests/data/machine_cases.csv` ({len(results)} rows, each with its source); classifier: "
        "`mailtrack.machine` with the shipped `mailtrack/data/machine_ranges.csv`",
        "- command: `PYTHONPATH=. python benchmarks/bench_machine_labels.py --write`",
        f"- python: CPython {sys.version.split()[0]}",
        "",
        *table,
        "",
        "## Cost per verdict (timeit, best of 5, shared 2-core machine)",
        "",
        *cost,
        "",
    ])
    print(text)
    if args.write:
        RESULT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
