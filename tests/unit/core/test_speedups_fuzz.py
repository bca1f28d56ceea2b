"""A few seconds of the differential fuzz run (tests/support/fuzz.py) in the normal suite (issue 13).

CI runs it for five minutes against an AddressSanitizer build (tests/support/sanitize.py); here it
runs for ``MAILTRACK_FUZZ_SECONDS`` (default 3) against the installed extension, with fixed seeds, and
a deliberately wrong "extension" shows that a difference is caught and reported with its document.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from support import fuzz

from mailtrack.core.scanner import scan_pure

needs_extension = pytest.mark.skipif(fuzz.compiled_module() is None, reason="the C extension is not built")
pytestmark = pytest.mark.calls_extension  # the main pass runs these; tasks.py test's pure pass skips them


@needs_extension
def test_compiled_and_pure_paths_agree_on_fuzzed_documents() -> None:
    stats = fuzz.run(float(os.environ.get("MAILTRACK_FUZZ_SECONDS", "3")), batch=50, first_seed=0)
    assert stats.examples >= 50 and stats.batches >= 1


try:
    from mailtrack.core import _speedups as _built
except ImportError:  # pragma: no cover - depends on the build
    _built = None  # type: ignore[assignment]


@pytest.mark.skipif(_built is None, reason="the C extension is not built: the broken twin borrows its other functions")
def test_a_difference_is_caught_and_names_the_document() -> None:
    def scan(text: str, link_tag: type[Any]) -> tuple[Any, ...]:
        result = scan_pure(text)
        return (result.links[1:], result.body_start_end, result.body_end, result.html_end, result.truncated_at)  # drops a link

    # The extension with a broken scanner: everything else (signers, the link loop, splice) is the real one.
    broken = SimpleNamespace(**{name: getattr(_built, name) for name in dir(_built) if not name.startswith("__")})
    broken.scan = scan
    with pytest.raises(AssertionError, match="scan differs on"):
        fuzz.run(0, batch=200, first_seed=0, native=broken)  # type: ignore[arg-type]


def test_the_documents_reach_the_constructs_the_issue_names() -> None:
    wanted = ("<![CDATA[", "<!--[if", "<script", "<textarea", "&#", "&amp", "\ud800", "\U0001f600", "\x00", "<a", "'", '"')
    seen: set[str] = set()
    sizes: list[int] = []

    @settings(max_examples=400)
    @given(fuzz.fuzz_documents())
    def sample(text: str) -> None:
        seen.update(piece for piece in wanted if piece in text)
        sizes.append(len(text))

    sample()
    assert set(wanted) - seen == set()
    assert max(sizes) > 50_000 and min(sizes) == 0
