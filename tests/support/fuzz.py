"""A time-boxed differential fuzz run: the compiled path against the pure-Python reference (issue 13).

Every generated document goes through

* ``_speedups.scan`` (the C scanner, called directly) and ``scanner.scan_pure``: the two ``ScanResult``s
  must be equal;
* ``Tracker.rewrite_html`` once with ``speedups.compiled`` set (whatever C the extension holds at the time:
  the scanner, and anything else the rewrite dispatches to it) and once with it ``None`` (how the
  ``both_paths`` fixture switches paths): the two ``HtmlResult``s (html, links, skipped, pixels, warnings)
  must be equal, or both calls must raise the same ``MailtrackError`` with the same message. Any other
  exception is a crash and fails the run.

Documents: the shared strategies (``email_html``, ``markup_soup``: tags, attributes of every quoting,
comments, Outlook conditional comments, CDATA, character references, raw-text elements), soups of
tokenizer-switching pieces and arbitrary code points (lone surrogates, NUL, astral characters), cut at
any point, widened to UCS2/UCS4, and big ones (a piece repeated up to 20,000 times).

The engine is hypothesis, run in batches of ``--batch`` examples, each batch with its own seed
(``seed + batch number``: a failure prints the seed that replays it), until ``--seconds`` have passed;
a failing example is shrunk before it is reported. atheris (libFuzzer) installs from a wheel here, but
its coverage feedback needs a clang-instrumented extension and its AddressSanitizer runtime is clang's,
which cannot be mixed with the gcc ``libasan`` the sanitizer build (``tests/support/sanitize.py``) uses.

Run as ``python tests/support/fuzz.py --seconds 300`` (``MAILTRACK_FUZZ_SECONDS`` is the default of
``--seconds``); ``tests/unit/core/test_speedups_fuzz.py`` runs it for a few seconds in the normal suite.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # run as a script: make ``support`` importable (tests/ on sys.path)
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import mailtrack
from mailtrack.core import scanner, speedups
from mailtrack.core.scanner import LinkTag, ScanResult, scan_pure
from mailtrack.exceptions import MailtrackError
from support.helpers import make_tracker
from support.strategies import documents, email_html, link_tags, markup_soup, mutated_documents

__all__ = ["FuzzStats", "compiled_module", "fuzz_documents", "main", "run"]

#: Pieces that switch the tokenizer's state, and characters it treats specially.
PIECES = [
    "<", ">", "/", "=", '"', "'", " ", "\t", "\n", "\r", "\r\n", "\f", "-", "!", "?", "[", "]", "&", ";", "#",
    "<!--", "-->", "--!>", "<!-->", "<!--->", "<!---->", "<!--[if mso]>", "<!--[if !mso]><!-->", "<!--<![endif]-->",
    "<![endif]-->", "<![endif]--!>", "<!--[IF gte mso 9]>", "<![ENDIF]-->", "<![CDATA[", "]]>", "<!doctype html>",
    "<?xml x?>", "<?", "</>", "</ x>", "<a", "<A", "<area", "<AREA", "</a>", "</a", "<b", "<abbr", "<bodyx", "</htmlx",
    " href", " HREF", " hReF=", "href=", "=x", "=\"", "='", " title=", " data-x=", " /", "/>",
    "<v:roundrect", "<V:Rect", "<v:", "<v:textbox/>", "</v:roundrect>", "<body", "<BODY>", "</body", "</BODY>",
    "</html", "</html>", "<head>", "</head>", "<title>", "</TITLE ", "<script>", "</script", "</script>", "<style",
    "</style>", "<textarea", "</textarea>", "<xmp>", "</xmp>", "<iframe>", "</iframe>", "<noembed>", "</noembed>",
    "<noframes>", "</noframes >", "<plaintext>", "<table><tr><td>", "</td></tr></table>", "<img src=x>",
    "&amp;", "&AMP;", "&amp", "&#38;", "&#x26;", "&#X26;", "&#0;", "&#128;", "&#xD800;", "&#x110000;", "&#99999999;",
    "&lt;", "&gt;", "&quot;", "&eacute;", "&notin;", "&not", "&#", "&#x", "&;",
    "https://x.example/", "http://t.example.com/c/a.b.c", "HTTPS://Y.EXAMPLE/?a=1&amp;b=2", "mailto:a@b.example",
    "javascript:x", "{{url}}", "*|UNSUB|*", "%%link%%", "[[x]]", "data:,x", "#top", "//x.example",
    "x", "é", "ß", "\u2603", "\U0001f600", "\x00", "\ud800", "\udfff", "\udbff\udc00", "\ufffd", "\u212a",
    "\u0131", "\u017f", "\u0130", "\x85", "\u2028", "\ufeff",
]

_any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=())  # surrogates too
_chunk = st.one_of(
    st.sampled_from(PIECES),
    st.sampled_from(PIECES),
    st.text(_any_char, max_size=6),
    link_tags(),
)
_soup = st.lists(_chunk, max_size=80).map("".join)


@st.composite
def _big(draw: st.DrawFn) -> str:
    """A document with one piece repeated many times (deep or huge constructs), inside soup."""
    piece = draw(st.one_of(st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("".join),
                           st.text(_any_char, min_size=1, max_size=4)))
    times = draw(st.one_of(st.integers(1, 64), st.integers(1_000, 20_000)))
    return draw(_soup) + piece * times + draw(_soup)


_base = st.one_of(email_html, markup_soup, documents(), mutated_documents(), _soup, _soup, _big(),
                  st.text(_any_char, max_size=300))
#: The largest document a run builds (the pure path must stay quick enough for many examples).
MAX_LENGTH = 400_000


@st.composite
def fuzz_documents(draw: st.DrawFn) -> str:
    """One HTML-ish document: a base document, maybe cut or wrapped in soup, maybe widened to UCS2 or UCS4."""
    text: str = draw(_base)
    how = draw(st.integers(0, 5))
    if how == 1:
        text = text[: draw(st.integers(0, len(text)))]
    elif how == 2:
        text = text[draw(st.integers(0, len(text))):]
    elif how == 3:
        text = draw(_soup) + text + draw(_soup)
    return (text + draw(st.sampled_from(["", "", "", "\u0100", "\U0001f600"])))[:MAX_LENGTH]


def compiled_module() -> ModuleType | None:
    """``mailtrack.core._speedups`` when it is built and loads (even under ``MAILTRACK_PURE=1``), else None."""
    try:
        from mailtrack.core import _speedups
    except ImportError:
        return None
    return _speedups


Outcome = tuple[str, object]


def _outcome(call: Callable[[], object]) -> Outcome:
    """What ``call`` returned, or the MailtrackError it raised (any other exception is a crash: it propagates)."""
    try:
        return ("returned", call())
    except MailtrackError as error:
        return ("raised", (type(error).__name__, str(error)))


@dataclass
class FuzzStats:
    """What a run did: examples compared, batches of hypothesis run, seconds taken, the first seed."""

    examples: int = 0
    batches: int = 0
    seconds: float = 0.0
    seed: int = 0


def run(seconds: float, *, batch: int = 200, first_seed: int = 0, report: Callable[[str], None] | None = None,
        native: ModuleType | None = None) -> FuzzStats:
    """Compare the compiled and pure paths on generated documents for ``seconds`` (at least one batch).

    Raises AssertionError on the first difference (after shrinking), and lets a crash's exception through.
    Needs the compiled extension: RuntimeError when it is missing, since a run would compare pure with pure.
    ``native`` stands in for the extension (the tests pass a broken one to see a difference caught).
    """
    native = native or compiled_module()
    if native is None:
        raise RuntimeError("mailtrack.core._speedups is not built: nothing to compare the pure path with")
    tracker = make_tracker()
    stats = FuzzStats(seed=first_seed)
    saved = speedups.compiled

    def compare(text: str, open_tracking: bool) -> None:
        stats.examples += 1
        pure_scan = scan_pure(text)
        compiled_scan = ScanResult(*native.scan(text, LinkTag))
        assert compiled_scan == pure_scan, f"scan differs on {text[:300]!r}"
        options = {} if open_tracking else {"settings": {"open_tracking": {"enable": False}}}

        def rewrite() -> object:
            return tracker.rewrite_html(text, message_id="msg-1", recipient="ann@example.com",
                                        issued_at=1_700_000_000, **options)  # type: ignore[arg-type]

        try:
            speedups.compiled = native
            assert scanner.scan(text) == pure_scan
            fast = _outcome(rewrite)
            speedups.compiled = None
            slow = _outcome(rewrite)
        finally:
            speedups.compiled = saved
        assert fast == slow, f"rewrite_html differs on {text[:300]!r}:\ncompiled {fast!r:.2000}\npure     {slow!r:.2000}"

    started = time.monotonic()
    while stats.batches == 0 or time.monotonic() - started < seconds:
        configured = settings(max_examples=batch, deadline=None, database=None, derandomize=False,
                              phases=(Phase.generate, Phase.shrink), print_blob=True,
                              suppress_health_check=list(HealthCheck))(given(fuzz_documents(), st.booleans())(compare))
        seed(first_seed + stats.batches)(configured)()
        stats.batches += 1
        if report is not None and stats.batches % 10 == 0:
            report(f"fuzz: {stats.examples} examples in {time.monotonic() - started:.0f}s")
    stats.seconds = time.monotonic() - started
    return stats


def main(argv: list[str] | None = None) -> int:
    """The command line: run for ``--seconds``; ``--expect-dir`` checks which extension file was loaded."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("MAILTRACK_FUZZ_SECONDS", "300")),
                        help="how long to run (default: $MAILTRACK_FUZZ_SECONDS or 300)")
    parser.add_argument("--batch", type=int, default=200, help="examples per hypothesis batch (default 200)")
    parser.add_argument("--seed", type=int, default=None, help="the first batch's seed (default: random, printed)")
    parser.add_argument("--expect-dir", type=Path, default=None,
                        help="fail unless mailtrack.core._speedups was loaded from under this directory")
    args = parser.parse_args(argv)
    native = compiled_module()
    if native is None:
        print("fuzz: FAILED: mailtrack.core._speedups is not built (pip install -e ., or setup.py build_ext --inplace)")
        return 1
    where = Path(native.__file__ or "").resolve()
    print(f"fuzz: compiled module {where}; mailtrack from {Path(mailtrack.__file__ or '').resolve().parent}", flush=True)
    if args.expect_dir is not None and not where.is_relative_to(args.expect_dir.resolve()):
        print(f"fuzz: FAILED: expected the extension under {args.expect_dir}")
        return 1
    first_seed = random.SystemRandom().randrange(2**32) if args.seed is None else args.seed
    print(f"fuzz: {args.seconds:.0f}s, first seed {first_seed} (--seed {first_seed} replays the run)", flush=True)
    stats = run(args.seconds, batch=args.batch, first_seed=first_seed, report=lambda line: print(line, flush=True))
    print(f"fuzz: {stats.examples} examples in {stats.batches} batches, {stats.seconds:.0f}s: "
          "0 differences, 0 crashes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
