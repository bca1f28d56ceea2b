"""Which files a batch reads, in which format, and where each one's output goes.

Inputs are files and directories (walked recursively, in name order; hidden
entries skipped). The output mirrors the input under the output directory, as
``cp -r`` lays it out: a file ``x/mail.eml`` goes to ``OUT/mail.eml``, a
directory ``x/camp`` to ``OUT/camp/...``. Two inputs that would land on the
same name are refused up front (:class:`LayoutError`).

The format (``eml``, ``html``, ``mbox``, ``jsonl``) comes from ``format`` or,
with ``"auto"``, from the extension (:data:`EXTENSIONS`); a file named on its
own with another extension is recognised by its first bytes, while such a
file found in a directory is ignored (a README or manifest next to the mail).
With an explicit format, every file found in a directory is read in it.

:func:`plan` yields, lazily and in order, a :class:`Source` per file to
rewrite, and a :class:`Problem`, :class:`Complete` (with ``resume``: its
output exists, so it is done) or :class:`Ignored` for the others. Nothing is
read but a few bytes of files whose format is unknown.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from mailtrack.batch.items import FORMATS, Format
from mailtrack.batch.mbox import FIELD, starts_like_mbox
from mailtrack.exceptions import MailtrackError

__all__ = ["EXTENSIONS", "Complete", "Ignored", "LayoutError", "Planned", "Problem", "Source", "plan", "sniff"]

#: File extensions (lower case) and the format they mean with ``format="auto"``.
EXTENSIONS: dict[str, Format] = {".eml": "eml", ".html": "html", ".htm": "html", ".mbox": "mbox", ".jsonl": "jsonl",
                                 ".ndjson": "jsonl"}
_SNIFF_BYTES = 4096


class LayoutError(MailtrackError):
    """The inputs cannot be laid out under the output directory (two would share a name, or one has none)."""


@dataclass(frozen=True)
class Source:
    """One input file: its ``path``, its ``format``, where its ``output`` goes, and ``where`` to call it in messages."""

    path: Path
    output: Path
    format: Format
    size: int
    where: str


class Problem(NamedTuple):
    """An input that cannot be read at all (missing, of an unknown format, would overwrite itself)."""

    where: str
    reason: str


class Complete(NamedTuple):
    """With ``resume``: an input whose output exists, so a run before this one finished it."""

    source: Source


class Ignored(NamedTuple):
    """A file in an input directory that is not of a format the batch reads (``format="auto"``)."""

    where: str


Planned = Source | Problem | Complete | Ignored


def sniff(head: bytes) -> Format | None:
    """The format the first bytes of a file suggest: mbox, then a message, then JSON lines, then HTML; None if none."""
    if starts_like_mbox(head):
        return "mbox"
    if FIELD.match(head):
        return "eml"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        return "jsonl"
    if stripped.startswith(b"<"):
        return "html"
    return None


def _top_name(path: Path) -> str:
    return path.name or path.resolve().name


def plan(inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
         format: Format | Literal["auto"] = "auto", resume: bool = False) -> Iterator[Planned]:
    """What to do with each file under ``inputs``, in order (see the module's description).

    Raises :class:`LayoutError` before yielding anything when two inputs would
    share an output name.
    """
    if format != "auto" and format not in FORMATS:
        raise LayoutError(f"unknown format {format!r} (expected auto or one of: {', '.join(FORMATS)})")
    paths = [Path(name) for name in inputs]
    names: dict[str, str] = {}
    for path in paths:
        name = _top_name(path)
        if not name:
            raise LayoutError(f"{str(path)!r} has no name to lay out under the output directory")
        if name in names:
            raise LayoutError(f"{names[name]!r} and {str(path)!r} would both be written to {name!r} in the output "
                              "directory; rewrite them in two runs, or into two output directories")
        names[name] = str(path)
    return _plan(paths, Path(out), format, resume)


def _plan(paths: list[Path], out: Path, format: Format | Literal["auto"], resume: bool) -> Iterator[Planned]:
    out_resolved = out.resolve()
    for path in paths:
        where = str(path)
        if path.is_dir():
            yield from _walk(path, out / _top_name(path), out_resolved, format, resume)
        elif path.is_file():
            try:
                found = format if format != "auto" else EXTENSIONS.get(path.suffix.lower()) or _sniff_file(path)
            except OSError as exc:
                yield Problem(where, exc.strerror or type(exc).__name__)
                continue
            if found is None:
                yield Problem(where, "cannot tell its format from its name or first bytes; give --format")
            else:
                yield _source(path, out / _top_name(path), found, where, resume)
        elif path.exists():
            yield Problem(where, "not a regular file or directory")
        else:
            yield Problem(where, "no such file or directory")


def _walk(top: Path, out_top: Path, out_resolved: Path, format: Format | Literal["auto"], resume: bool) -> Iterator[Planned]:
    unreadable: list[OSError] = []
    for directory, dirnames, filenames in os.walk(top, onerror=unreadable.append):
        while unreadable:
            error = unreadable.pop(0)
            yield Problem(str(error.filename), error.strerror or type(error).__name__)
        here = Path(directory)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() != out_resolved)
        relative = here.relative_to(top)
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            path = here / filename
            found = format if format != "auto" else EXTENSIONS.get(path.suffix.lower())
            if found is None:
                yield Ignored(str(path))
            else:
                yield _source(path, out_top / relative / filename, found, str(path), resume)
    for error in unreadable:  # the last directory walked could not be read
        yield Problem(str(error.filename), error.strerror or type(error).__name__)


def _source(path: Path, output: Path, format: Format, where: str, resume: bool) -> Planned:
    try:
        size = path.stat().st_size
        if output.exists() and os.path.samefile(output, path):
            return Problem(where, "its output would overwrite it; choose another output directory")
    except OSError as exc:
        return Problem(where, exc.strerror or type(exc).__name__)
    source = Source(path, output, format, size, where)
    return Complete(source) if resume and output.is_file() else source


def _sniff_file(path: Path) -> Format | None:
    with path.open("rb") as file:
        return sniff(file.read(_SNIFF_BYTES))
