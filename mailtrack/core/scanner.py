"""A byte-offset HTML scanner: where are the link attributes, where does the body end.

The rewriter must change a few attribute values and nothing else, so it never
builds a tree. This module reads the document the way the WHATWG HTML tokenizer
does (tag and attribute syntax, comments, bogus comments, raw-text and RCDATA
elements, end of file inside a tag) and reports offsets into the original
string. All the skipping of uninteresting markup happens inside one compiled
regular expression, so the Python-level work is proportional to the number of
links, not to the size of the document. ``scan`` runs the same scanner compiled
(``_speedups.c``, when built; see ``mailtrack.core.speedups``): ``scan_pure`` is
the reference it is tested against, byte for byte.

What counts as a link (issue #2, rule 1):

* ``href`` of ``<a>`` and ``<area>``;
* inside an Outlook conditional comment ``<!--[if ...]> ... <![endif]-->``, whose
  content the HTML parser treats as comment text but Outlook renders, ``href`` of
  ``<a>``, ``<area>`` and any VML element (``<v:roundrect>``, ``<v:rect>``, ...).

Known, deliberate simplifications against a full tree builder (listed in
``tests/oracle.py`` and each pinned by ``tests/test_differential.py``): the
tokenizer state is switched by tag name alone, so ``<style>``/``<title>`` inside ``<svg>`` are treated as raw text,
and the script "double-escaped" state (``<!--<script>`` inside a script) is not
modelled; mail clients strip scripts and SVG style blocks anyway.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mailtrack.core import speedups

__all__ = ["Attribute", "LinkTag", "ScanResult", "parse_attributes", "scan", "scan_pure", "text_occurrences"]

# The tokenizer treats CR as LF after input preprocessing, so CR is whitespace too.
_WS = r"\t\n\f\r "

# One attribute, exactly as the tokenizer states "before attribute name" ..
# "after attribute value" read it: a name, then "=" and a value, or no value.
# The grammar is written so that no input can be split in two ways (names and
# unquoted values run to their end, a value must follow "="), which keeps the
# expression linear even when it fails at EOF. Every loop is possessive
# (Python 3.11+): the grammar never needs to give back what a loop took, so this
# changes no result, and the engine then neither saves a backtracking point
# per skipped tag (memory in proportion to the markup between two links) nor
# needs a look-ahead to stop a name or value where it ends (each of those costs
# time per attribute of every tag of a document).
_P = "+" if sys.version_info >= (3, 11) else ""
# Where a possessive loop cannot stop early, the look-aheads that end a name or
# value are only needed without one (3.10).
_NAME = rf"[^{_WS}/>][^{_WS}/>=]*{_P}" + ("" if _P else rf"(?![^{_WS}/>=])")  # first char may be "="
# The common attribute, name="value" with no space around "=", first: its own alternative
# is one literal test and one loop, where the general one below tries each way of spacing and
# quoting in turn (7 % fewer steps for the scanner on a typical newsletter, issue 13). It
# matches exactly what the general alternative would match there. Only where every loop is
# possessive (3.11+): without that, a tag failing at EOF could retry each attribute both ways.
_VALUE = (
    ('(?:="[^"]*+"|' if _P else "(?:")
    + rf"[{_WS}]*{_P}=[{_WS}]*{_P}"  # "=" with optional space around it
    rf"(?:\"[^\"]*{_P}\"|'[^']*{_P}'|[^{_WS}>\"'][^{_WS}>]*{_P}{'' if _P else rf'(?![^{_WS}>])'}|(?=>))"  # value
    rf"|(?![{_WS}]*=))"  # or no value at all
)
_ATTR = _NAME + _VALUE
# The inside of a tag after its name: separators, then attributes each followed
# by its separators (none after a quoted value), up to ">".
_SEPARATORS = rf"[{_WS}/]*{_P}"
_TAG_TAIL = rf"{_SEPARATORS}(?:{_ATTR}{_SEPARATORS})*{_P}>"
_TAG_NAME_END = rf"(?![^{_WS}/>])"
# After a name's loop that runs to its end: a possessive loop (3.11+) cannot give characters back; without one
# (3.10) a failing tail would backtrack into the name and read its rest as an attribute ("<v:\t= ='x>" as
# the tag "v" with an attribute ":"), so the name's end is required.
_NAME_RUN_END = "" if _P else _TAG_NAME_END
# The first ``href`` of a link tag, captured by the scanner itself so that the
# common case needs no attribute parsing in Python: non-href attributes, then
# the href with its value in one of three groups by quoting.
_HREF_NAME = rf"href(?![^{_WS}/>=])"
_HREF = (
    rf"(?P<href>{_HREF_NAME}(?:[{_WS}]*{_P}=[{_WS}]*{_P}"
    rf"(?:\"(?P<hdq>[^\"]*)\"|'(?P<hsq>[^']*)'|(?P<huq>[^{_WS}>\"'][^{_WS}>]*{_P}(?![^{_WS}>]))|(?=>))"
    rf"|(?![{_WS}]*=)))"
)

# Elements whose content the tokenizer reads as text (RAWTEXT, RCDATA, script
# data, PLAINTEXT). ``noscript`` is not among them: scripting is off in mail.
_RAW_TEXT = ("script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext")


def _other_name(words: list[str], prefixes: tuple[str, ...] = ()) -> str:
    """A tag name, read to its end, that is none of ``words`` and does not start with one of ``prefixes`` plus a
    name character (lower-case ASCII; the scanner ignores case).

    After ``(?=[a-zA-Z])`` it matches what ``(?!(?:words|prefixes[^ws/>]+)(?![^ws/>]))[a-zA-Z][^ws/>]*``
    matches (ws: whitespace), written as a trie of the words with no look-ahead but where a name could end as
    a word's prefix: a negative look-ahead runs at every tag of a document, which this spelling spares most of
    them (issue 13).
    """
    stop = f"{_WS}/>"
    children: dict[str, tuple[list[str], tuple[str, ...]]] = {}
    for word in words:
        if word:
            children.setdefault(word[0], ([], ()))[0].append(word[1:])
    for prefix in prefixes:
        if prefix:
            tails, inner = children.setdefault(prefix[0], ([], ()))
            children[prefix[0]] = (tails, (*inner, prefix[1:]))
    alternatives = []
    if "" not in prefixes:  # any further character makes the name a prefix's: nothing more may follow
        alternatives.append(f"[^{re.escape(''.join(children))}{stop}][^{stop}]*{_P}{_NAME_RUN_END}")
        alternatives += [re.escape(char) + _other_name(*children[char]) for char in sorted(children)]
    if "" not in words:
        alternatives.append(_TAG_NAME_END)  # the name ends here, a proper prefix of a word
    return f"(?:{'|'.join(alternatives)})" if alternatives else "(?!)"


def _master(link_tags: str, other_name: str) -> re.Pattern[str]:
    """Build the scanner for one context.

    ``link_tags`` is an alternation of the link tag names; ``other_name``
    matches the name of every start tag that is skipped (not those, ``body``
    or a raw-text element), to its end.
    """
    interesting_end = rf"(?:body|html){_TAG_NAME_END}"
    # Markup that cannot hold a link and never changes the tokenizer state.
    other = (
        rf"<(?=[a-zA-Z]){other_name}{_TAG_TAIL}"  # start tag
        rf"|</(?!{interesting_end})[a-zA-Z][^{_WS}/>]*{_P}{_NAME_RUN_END}{_TAG_TAIL}"  # end tag
        r"|<!--(?!\[if)(?:-?>|.*?--!?>)"  # plain comment (also <!--> and <!--->)
        rf"|<!(?!--)[^>]*{_P}>"  # doctype, CDATA-as-bogus-comment, other bogus comments
        rf"|<\?[^>]*{_P}>"  # processing-instruction-like bogus comment
        rf"|</(?![a-zA-Z])[^>]*{_P}>"  # </> (ignored) and </ + non-letter (bogus comment)
        r"|<(?![a-zA-Z!/?])"  # a lone "<" is text
    )
    return re.compile(
        rf"[^<]*{_P}(?:(?:{other})[^<]*{_P})*{_P}"
        r"(?:"
        rf"(?P<cond><!--\[if.*?--!?>)"
        rf"|(?P<link><(?P<lname>{link_tags}){_TAG_NAME_END}"
        rf"(?:{_SEPARATORS}(?:(?!{_HREF_NAME}){_ATTR}{_SEPARATORS})*{_P}{_HREF})?{_TAG_TAIL})"
        rf"|(?P<raw><(?P<rname>{'|'.join(_RAW_TEXT)}){_TAG_NAME_END}{_TAG_TAIL})"
        rf"|(?P<body><body{_TAG_NAME_END}{_TAG_TAIL})"
        rf"|(?P<end></(?P<ename>body|html){_TAG_NAME_END}{_TAG_TAIL})"
        r"|(?P<eof>\Z)"
        # A tag, comment or bogus comment cut off by the end of the input: nothing after it is markup.
        r"|(?P<dead><.*)"
        r")",
        re.IGNORECASE | re.DOTALL | re.ASCII,
    )


_OUTER = _master("a|area", _other_name(["a", "area", "body", *_RAW_TEXT]))
_CONDITIONAL = _master(rf"a|area|v:[^{_WS}/>]+", _other_name(["a", "area", "body", *_RAW_TEXT], ("v:",)))
_CONDITIONAL_COMMENT = re.compile(r"<!--\[if[^\]]*\]>", re.IGNORECASE | re.ASCII)
_ENDIF = re.compile(r"<!\[endif\](?:--!?>)?\Z", re.IGNORECASE | re.ASCII)
# "Appropriate end tag" of a raw-text element, then the rest of that end tag.
_RAW_END = {name: re.compile(rf"</{name}(?=[{_WS}/>])", re.IGNORECASE | re.ASCII) for name in _RAW_TEXT}
_TAIL = re.compile(_TAG_TAIL)

# One token at a time, for finding text in the data state (substitution tags).
_TOKEN = re.compile(
    r"(?P<text>[^<]+|<(?![a-zA-Z!/?]))"
    rf"|<(?P<rname>{'|'.join(_RAW_TEXT)}){_TAG_NAME_END}{_TAG_TAIL}"
    rf"|</?[a-zA-Z][^{_WS}/>]*{_TAG_NAME_END}{_TAG_TAIL}"
    r"|<!--(?:-?>|.*?--!?>)|<!(?!--)[^>]*>|<\?[^>]*>|</(?![a-zA-Z])[^>]*>"
    r"|(?P<dead><.*)",
    re.IGNORECASE | re.DOTALL | re.ASCII,
)

# Attribute iteration inside a tag already known to be complete. Searching skips
# the separators (whitespace and "/"), since any other character starts a name.
_ATTR_ITER = re.compile(
    rf"(?P<name>[^{_WS}/>][^{_WS}/>=]*)"
    rf"(?:[{_WS}]*=[{_WS}]*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<uq>[^{_WS}>\"'][^{_WS}>]*)|(?=>)))?"
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_QUOTES = {"dq": '"', "sq": "'", "uq": ""}
#: Group numbers of the link branch, the same in both scanners (checked below): spans read by number, not name.
_HREF_AT, _HDQ, _HSQ, _HUQ, _LNAME, _LINK = (_OUTER.groupindex[name] for name in ("href", "hdq", "hsq", "huq", "lname", "link"))
assert all(_OUTER.groupindex[name] == _CONDITIONAL.groupindex[name] for name in _OUTER.groupindex)

#: An attribute as the tokenizer keeps it: ``(value, start, end, quote)``, where
#: ``start``/``end`` delimit the raw value in the scanned string without its quotes
#: (both at the end of the name for a valueless attribute) and ``quote`` is '"',
#: "'" or "" (unquoted or no value).
Attribute = tuple[str, int, int, str]


class LinkTag(NamedTuple):
    """A start tag that may carry a tracked link, with its first ``href`` (or None)."""

    tag: str  # lower-cased tag name ("a", "area", "v:roundrect", ...)
    start: int  # offset of "<"
    end: int  # offset after ">"
    href: Attribute | None
    conditional: bool  # inside an Outlook conditional comment

    def attributes(self, text: str) -> dict[str, Attribute]:
        """Every attribute of this tag in ``text`` (the string that was scanned)."""
        return parse_attributes(text, self.start + 1 + len(self.tag), self.end)


@dataclass(slots=True)
class ScanResult:
    """What the rewriter needs to know about a document, as offsets into it."""

    links: list[LinkTag] = field(default_factory=list)
    body_start_end: int | None = None  # offset just after the first real <body ...>
    body_end: int | None = None  # offset of the last real </body ...>
    html_end: int | None = None  # offset of the last real </html ...>
    truncated_at: int | None = None  # start of a tag, comment or raw-text element left open at the end


#: ``LinkTag(*fields)`` without the named tuple's Python-level ``__new__`` (the same object).
_tuple = tuple.__new__


def _lower(name: str) -> str:
    """ASCII-only lower-casing, as the tokenizer does for tag and attribute names."""
    return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


def parse_attributes(text: str, pos: int, end: int) -> dict[str, Attribute]:
    """Read the attributes of a complete tag, from after its name to its ``>`` at ``end - 1``.

    Names are lower-cased (ASCII only, as the tokenizer does); the first of
    repeated names wins.
    """
    attrs: dict[str, Attribute] = {}
    for m in _ATTR_ITER.finditer(text, pos, end):
        name = _lower(m.group("name"))
        if name not in attrs:
            group = m.lastgroup
            if group is None or group == "name":
                attrs[name] = ("", m.end(), m.end(), "")
            else:
                attrs[name] = (m.group(group), m.start(group), m.end(group), _QUOTES[group])
    return attrs


def text_occurrences(text: str, needle: str) -> list[int]:
    """Offsets of ``needle`` where it stands in document text (the data state).

    Occurrences inside tags (attribute values), comments (conditional ones
    included), raw-text elements or after markup cut off at the end are left
    out: replacing those with markup would break the document or hide it.
    """
    found: list[int] = []
    if not needle:
        return found
    pos, end, region = 0, len(text), 0
    match = _TOKEN.match
    while pos < end:
        m = match(text, pos)
        if m is None:  # cannot happen: the dead branch matches any "<"
            break
        if m.lastgroup == "text":
            pos = m.end()
            continue
        found += _find_all(text, needle, region, m.start())
        if m.lastgroup == "dead":
            return found
        pos = m.end()
        if m.lastgroup == "rname":
            closing = _RAW_END[m.group("rname").lower()].search(text, pos)
            tail = None if closing is None else _TAIL.match(text, closing.end())
            if tail is None:
                return found
            pos = tail.end()
        region = pos
    found += _find_all(text, needle, region, end)
    return found


def _find_all(text: str, needle: str, start: int, end: int) -> list[int]:
    found = []
    at = text.find(needle, start, end)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + len(needle), end)
    return found


def scan(text: str) -> ScanResult:
    """Scan ``text`` and return every link tag and the body/html end positions.

    Runs the compiled scanner when speedups are enabled (``mailtrack.core.speedups``),
    else ``scan_pure``; both return the same result for every input.
    """
    native = speedups.compiled
    if native is not None:
        return ScanResult(*native.scan(text, LinkTag))
    return scan_pure(text)


def scan_pure(text: str) -> ScanResult:
    """``scan`` in pure Python: the reference the compiled scanner (``_speedups.c``) is tested against."""
    result = ScanResult()
    _scan(text, 0, len(text), _OUTER, False, result)
    return result


def _matcher(pattern: re.Pattern[str], text: str, pos: int, endpos: int) -> Callable[[], re.Match[str] | None]:
    """Matches ``pattern`` at ``pos``, then each time where the last match ended: ``Pattern.scanner``'s ``match``.

    That method (in CPython's ``re`` since Python 2, undocumented and so not in the type stubs) keeps one
    engine state for the whole loop; each ``pattern.match(text, pos, endpos)`` call would set one up again.
    """
    scanner: Any = pattern.scanner(text, pos, endpos)  # type: ignore[attr-defined]
    match: Callable[[], re.Match[str] | None] = scanner.match
    return match


def _scan(text: str, pos: int, endpos: int, pattern: re.Pattern[str], conditional: bool, result: ScanResult) -> None:
    """Scan ``text[pos:endpos]`` into ``result``; recurses into conditional comments with their own pattern."""
    # A scanner object matches where its last match ended: one engine state for the whole loop, not one per
    # match call (about 1 % of the scan's instructions on a typical newsletter, issue 13). Made again only where the loop
    # moves on by itself (past a raw-text element).
    match = _matcher(pattern, text, pos, endpos)
    while True:
        m = match()
        if m is None:  # cannot happen (the eof branch always matches); be safe anyway
            return
        kind = m.lastgroup
        if kind == "link":  # once per link: the spans it needs by group number, values sliced from the text
            href: Attribute | None = None
            start, stop = m.span(_HDQ)
            if start >= 0:  # the common href: double-quoted
                href = (text[start:stop], start, stop, '"')
            elif m.start(_HREF_AT) >= 0:
                start, stop = m.span(_HSQ)
                if start >= 0:
                    href = (text[start:stop], start, stop, "'")
                else:
                    start, stop = m.span(_HUQ)
                    if start < 0:  # no value: an empty one at the end of the name
                        start = stop = m.end(_HREF_AT)
                    href = (text[start:stop], start, stop, "")
            name = m.group(_LNAME)
            if name != "a":
                name = name.lower() if name.isascii() else name.translate(_ASCII_LOWER)  # _lower(), inlined
            start, stop = m.span(_LINK)  # the link group ends the match
            result.links.append(_tuple(LinkTag, (name, start, stop, href, conditional)))
            if stop >= endpos:
                return
            pos = stop
            continue
        elif kind == "cond":
            start, stop = m.start("cond"), m.end()
            opening = _CONDITIONAL_COMMENT.match(text, start, stop)
            if opening is not None:
                closing = _ENDIF.search(text, opening.end(), stop)
                if closing is not None:
                    _scan(text, opening.end(), closing.start(), _CONDITIONAL, True, result)
        elif kind == "raw":
            name = m.group("rname").lower()
            if name == "plaintext":
                if not conditional and result.truncated_at is None:
                    result.truncated_at = m.start("raw")
                return
            closing = _RAW_END[name].search(text, m.end(), endpos)
            tail = None if closing is None else _TAIL.match(text, closing.end(), endpos)
            if tail is None:  # the element runs to the end of the input
                if not conditional and result.truncated_at is None:
                    result.truncated_at = m.start("raw")
                return
            pos = tail.end()
            if pos >= endpos:
                return
            match = _matcher(pattern, text, pos, endpos)
            continue
        elif kind == "body":
            if not conditional and result.body_start_end is None:
                result.body_start_end = m.end()
        elif kind == "end":
            if not conditional:
                if m.group("ename").lower() == "body":
                    result.body_end = m.start("end")
                else:
                    result.html_end = m.start("end")
        elif kind == "dead":
            if not conditional and result.truncated_at is None:
                result.truncated_at = m.start("dead")
            return
        else:  # eof
            return
        pos = m.end()
        if pos >= endpos:
            return
