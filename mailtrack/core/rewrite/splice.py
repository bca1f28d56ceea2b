"""Apply edits to a text in one pass: ``(start, end, replacement)`` spans, everything else copied.

The rewriters never re-serialize a document; they collect these spans and splice them.
"""

from __future__ import annotations

from operator import itemgetter

from mailtrack.core import speedups

#: ``(start, end, replacement)`` spans of the input, sorted by start: what a rewrite changed.
Edits = list[tuple[int, int, str]]


_START = itemgetter(0)  # a C-level sort key: no Python call per edit


def splice(source: str, edits: Edits) -> str:
    """``source`` with each ``(start, end, replacement)`` applied; insertions at one offset keep their order."""
    if not edits:
        return source
    edits.sort(key=_START)
    compiled = speedups.compiled
    if compiled is not None:
        spliced: str | None = compiled.splice(source, edits)  # one allocation; None for spans it leaves to the loop below
        if spliced is not None:
            return spliced
    out: list[str] = []
    pos = 0
    for start, end, replacement in edits:
        out.append(source[pos:start])
        out.append(replacement)
        pos = end
    out.append(source[pos:])
    return "".join(out)
