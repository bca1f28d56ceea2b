"""The classifier over the hand-labelled request shapes (tests/data/machine_cases.csv): floors, not just a table.

Each row is a real user agent or request shape with the source that documents
it. No person may be labelled a machine (precision 1.0 for every machine
label, recall 1.0 for people), every machine label must be found at least
0.8 of the time, and the table in benchmarks/results/machine-labels.md (which
the README quotes) must be the one this code computes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_machine_labels import PERSON, RESULT, load_cases, scores, table_lines, verdicts  # noqa: E402

from mailtrack.events import MACHINE_LABELS  # noqa: E402


def test_the_cases_are_enough_and_sourced() -> None:
    cases = load_cases()
    assert len(cases) >= 40
    assert len({case.case for case in cases}) == len(cases)
    for case in cases:
        assert case.source.startswith("https://"), case.case
        assert case.kind in ("open", "click", "unsubscribe") and case.method in ("GET", "HEAD", "POST"), case.case
        assert case.label is None or case.label in MACHINE_LABELS, case.case
    negatives = [case for case in cases if case.label is None]
    assert len(negatives) >= 15  # hard negatives: Chrome, Firefox, Safari, Edge, Outlook, Thunderbird, Apple Mail
    assert {case.label for case in cases} >= {None, "apple_mpp", "image_proxy", "link_scanner", "prefetch"}


def test_no_person_is_a_machine_and_each_label_is_found() -> None:
    results = verdicts(load_cases())
    table = scores(results)
    wrongly_machine = [case.case for case, got, _ in results if case.label is None and got is not None]
    assert wrongly_machine == []
    assert table[PERSON][4] == 1.0  # recall of people: every negative stays None
    for label in ("apple_mpp", "image_proxy", "link_scanner", "prefetch"):
        actual, predicted, correct, precision, recall = table[label]
        assert precision == 1.0, (label, table[label])
        assert recall >= 0.8, (label, table[label])
    for case, got, reasons in results:  # a machine verdict always says why; a person's never does
        assert bool(reasons) == (got is not None), case.case


def test_the_written_table_is_this_codes() -> None:
    written = RESULT.read_text(encoding="utf-8")
    for line in table_lines(verdicts(load_cases())):
        assert line in written.splitlines(), f"benchmarks/results/machine-labels.md is stale: {line!r}"
