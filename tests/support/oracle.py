"""An independent reference for "which links does a compliant HTML parser see".

This module is the test suite's oracle. It must never import mailtrack: it
re-derives, from the spec of the rewrite rules and from a real HTML5 parser,
which ``href`` values a document holds and which of them should be tracked,
so that tests can compare mailtrack's hand-written byte-offset scanner with it.

Why html5lib and not lxml
-------------------------
html5lib implements the WHATWG HTML tokenizer and tree builder (in pure
Python): character references in attribute values (including the "legacy
named reference followed by ``=`` or an alphanumeric stays as written" rule),
first-of-duplicate attributes, RCDATA/RAWTEXT/script-data states with the
"appropriate end tag" rule, bogus comments (``<!x>``, ``<?x>``, ``</1>``),
abrupt comment closings (``<!-->``, ``--!>``), EOF inside tags and comments,
and the insertion modes that switch the tokenizer (``<title>`` in the body is
RCDATA, ``<noscript>`` is a normal element when scripting is off). lxml uses
libxml2's HTML parser, which is an HTML 4 era parser that is *not* HTML5
compliant: it does not know the HTML5 comment and bogus-comment rules, it
repairs markup differently (e.g. it ends comments and attribute values at
different places, treats ``<title>``/``<textarea>`` content differently and
decodes entities without the attribute-value legacy rule), so it would
disagree with both the spec and mail clients in exactly the corner cases the
differential test exists to probe.

How the oracle works
--------------------
The document is parsed with html5lib using an instrumented tree builder that
records, in the order the tree builder processes tokens (= source order), every
element created *from a start tag token* and every comment token. Clones made
by the adoption agency algorithm or by "reconstruct the active formatting
elements" are not recorded (they carry a copy of the original ``href`` but do
not correspond to any attribute in the source), and elements that are no longer
in the final tree (``<frameset>`` removing ``<body>``) are dropped. Then:

* ``href`` of HTML-namespace ``a``/``area`` elements are links;
* a comment whose data matches ``[if ...]> ... <![endif]`` (case-insensitive)
  is an Outlook conditional comment: its content is parsed with
  ``html5lib.parseFragment`` (context ``div``) with the same instrumentation,
  and ``href`` of ``a``, ``area`` and ``v:*`` elements count; those links are
  placed at the position of the comment in document order.

Each link is then classified with an independent implementation of the rules
(scheme, placeholder, opt-out; see :func:`classify`).

Deliberate, known differences between the oracle and mailtrack
---------------------------------------------------------------
Found by running the differential tests (generated documents, markup soup and
the corpus); each one is pinned by an example in
``tests/test_differential.py::DIFFERENCES`` so that a change on either side is
noticed. In every case the divergent markup does not occur in the corpus
(every corpus file agrees exactly) and the difference follows from mailtrack
being a byte-offset scanner that switches tokenizer state by tag name, without
a tree builder (see ``mailtrack/scanner.py``).

1. Foreign content (``<svg>``, ``<math>``). ``<svg><a href>``/``<math><a href>``
   (also ``area``) create SVG/MathML elements, not HTML links: the oracle
   ignores them, mailtrack tracks them. The tree builder also switches
   tokenizer rules inside foreign content: ``<style>``, ``<title>``,
   ``<textarea>``... there are ordinary elements (not raw text), ``<svg><title>``
   is an HTML integration point whose content is HTML again (a link the oracle
   sees and mailtrack hides as RCDATA), and ``<![CDATA[ ... ]]>`` is a CDATA
   section (text) instead of a bogus comment ending at the first ``>``.
   (``<foreignObject>`` and ``<math><mi>`` switch back to HTML: both agree.)
2. Script "double escaped" state: in ``<script><!--<script></script><a href=x>
   </script>`` the tokenizer keeps everything up to the *second*
   ``</script>`` as script text; mailtrack ends the script at the first one.
3. ``<select>``: html5lib 1.1 implements the pre-2025 "in select" insertion
   mode, which drops ``<a>``/``<area>`` start tags inside ``<select>`` (the
   current spec, since the customizable-select change, keeps them); mailtrack
   tracks them.
4. ``<frameset>``: in a frameset document everything after ``<frameset>`` is
   dropped by the tree builder, and a ``<frameset>`` after links in the body
   (``<a>`` does not clear frameset-ok) removes the body from the tree. The
   oracle only counts elements still in the final tree; mailtrack tracks them.
5. Input preprocessing: the HTML parser normalises CR LF and lone CR to LF and
   replaces U+0000 in attribute values with U+FFFD; mailtrack's
   ``charrefs.decode_attribute`` now does the same (so this is no longer a
   difference; the differential test's normalisation is a no-op for it). The
   differential test counts ``invalid`` like tracked, because the rules of the
   brief do not cover control characters or hosts browsers refuse; the
   oracle's ``trackable`` excludes control characters.
6. An unterminated conditional comment at the end of the input
   (``<!--[if mso]><a href=x><![endif]`` and no ``-->``): the tokenizer still
   emits a comment whose data ends with ``<![endif]``, so the oracle parses its
   content; mailtrack requires the closing ``-->`` and leaves it alone.
7. ``http:///host/`` and ``http://\\host/`` (extra slashes or backslashes):
   browsers skip them and open ``http://host/``; the oracle counts it as
   http(s), mailtrack wants a host right after ``//`` and skips it as
   ``scheme`` (left untracked: safe; ``verify`` refuses such destinations
   too). The differential test maps the oracle's verdict accordingly. Both
   agree that ``http://``, ``http://?q`` (no host) and ``https:host`` (no
   ``//``) are not tracked.

Not differences, but worth knowing: ``<template>`` contents are parsed as
ordinary elements by html5lib 1.1 and both count links there (a browser would
keep them in an inert fragment); ``<noscript>`` is a normal element (scripting
is off in mail) for both; ``<base href>`` is ignored by both, so relative links
stay untracked even where a client would resolve them against the base.

Pixel placement (:func:`expected_pixel_position`): the oracle records the
position of every ``</body>``/``</html>`` end tag *token* (so ``</body>``
inside comments, raw text or attribute values does not count). When there is
none, the rule says "append"; mailtrack instead inserts before an unterminated
tag/comment/raw-text element at the end, because appended markup would be
swallowed by it. The oracle returns None in that case and the tests only check
that the pixel is a real ``<img>`` element of the output.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import html5lib
from html5lib import _tokenizer
from html5lib.constants import namespaces, tokenTypes
from html5lib.treebuilders import getTreeBuilder

__all__ = [
    "CORPUS_DIR",
    "OPT_OUTS",
    "CorpusFile",
    "LocatedEdit",
    "OracleLink",
    "classify",
    "corpus_html_files",
    "decode_attribute_value",
    "end_tag_positions",
    "expected_pixel_position",
    "extract_links",
    "has_control",
    "is_http",
    "is_placeholder",
    "locate_edits",
    "parse_elements",
    "restore_original",
    "tracked_destinations",
]

HTML_NS = namespaces["html"]
_END_TAG = tokenTypes["EndTag"]
ASCII_WS = "\t\n\f\r "


# --------------------------------------------------------------------------
# html5lib instrumentation
# --------------------------------------------------------------------------

_EtreeBuilder = getTreeBuilder("etree")


class _RecordingTreeBuilder(_EtreeBuilder):  # type: ignore[misc, valid-type]
    """An etree tree builder that logs elements created from tokens, and comments."""

    def reset(self) -> None:
        super().reset()
        self.events: list[tuple[str, object, object]] = []
        self._cloning = False

    def reconstructActiveFormattingElements(self):
        # Clones of formatting elements are inserted through insertElement with a
        # synthetic token; they repeat an attribute that is already recorded.
        self._cloning = True
        try:
            return super().reconstructActiveFormattingElements()
        finally:
            self._cloning = False

    def insertElementNormal(self, token):
        element = super().insertElementNormal(token)
        self._record(token, element)
        return element

    def insertElementTable(self, token):
        element = super().insertElementTable(token)
        self._record(token, element)  # no-op when insertElementNormal already did it
        return element

    def _record(self, token, element) -> None:
        if self._cloning:
            return
        if self.events and self.events[-1][2] is element:
            return
        self.events.append(("element", token, element))

    def insertComment(self, token, parent=None):
        super().insertComment(token, parent)
        self.events.append(("comment", token, None))


@dataclass(frozen=True)
class ParsedElement:
    name: str  # lower-cased local name, e.g. "a", "v:roundrect"
    namespace: str
    attributes: dict[str, str]  # only plain (non-namespaced) attribute names


def _parse_events(text: str, fragment: bool) -> list[tuple[str, object]]:
    """Elements (from start tags, still in the tree) and comment data, in token order."""
    parser = html5lib.HTMLParser(tree=_RecordingTreeBuilder, namespaceHTMLElements=True)
    if fragment:
        parser.parseFragment(text, container="div")
    else:
        parser.parse(text)
    builder = parser.tree
    in_tree: set[int] | None = None  # fragments: nothing is removed in a div context
    if not fragment:
        in_tree = {id(node) for node in builder.document._element.iter()}
    out: list[tuple[str, object]] = []
    for kind, token, element in builder.events:
        if kind == "comment":
            out.append(("comment", token["data"]))
            continue
        if in_tree is not None and id(element._element) not in in_tree:
            continue
        attrs = {k: v for k, v in token["data"].items() if isinstance(k, str)}
        out.append(
            (
                "element",
                ParsedElement(token["name"], token.get("namespace") or HTML_NS, attrs),
            )
        )
    return out


def parse_elements(text: str, fragment: bool = False) -> list[ParsedElement]:
    """Every element created from a start tag (document order), for ad-hoc checks."""
    return [item for kind, item in _parse_events(text, fragment) if kind == "element"]  # type: ignore[misc]


# --------------------------------------------------------------------------
# Rules, implemented independently from the brief
# --------------------------------------------------------------------------

_CONDITIONAL = re.compile(r"\A\[if[^\]]*\]>(?P<content>.*)<!\[endif\]\Z", re.IGNORECASE | re.DOTALL)

#: attribute name -> value that opts out (None: any value, presence is enough).
OPT_OUTS: dict[str, str | None] = {
    "clicktracking": "off",
    "data-pm-no-track": None,
    "ses:no-track": None,
    "data-msys-clicktrack": "0",
    "mc:disable-tracking": None,
    "disable-tracking": "true",
    "data-mautic-disable-tracking": "true",
}

_PLACEHOLDERS = [
    re.compile(r"\{\{.*?\}\}", re.DOTALL),  # {{ }}
    re.compile(r"\{%.*?%\}", re.DOTALL),  # {% %}
    re.compile(r"\*\|.*?\|\*", re.DOTALL),  # *|X|*
    re.compile(r"<%.*?%>", re.DOTALL),  # <% %>
    re.compile(r"\$\{.*?\}", re.DOTALL),  # ${ }
]
_PERCENT_TAG = re.compile(r"%([A-Za-z_][A-Za-z0-9_.-]*)%")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_WHOLE_SQUARE = re.compile(r"\A\[[^\[\]]+\]\Z")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


_HTTP_PREFIX = re.compile(r"https?://", re.IGNORECASE)


def is_http(url: str) -> bool:
    """An absolute http(s) URL (scheme in any case) with a non-empty host.

    Like the URL standard for special schemes, extra slashes (or backslashes)
    after ``//`` are skipped before the host: ``http:///host/`` has host
    ``host``; ``http://?q`` has none and is not a URL at all.
    """
    m = _HTTP_PREFIX.match(url)
    if m is None:
        return False
    rest = url[m.end() :].lstrip("/\\")
    host = re.split(r"[/\\?#]", rest, maxsplit=1)[0]
    return bool(host)


def _percent_tag(url: str) -> bool:
    """``%tag%`` (SendGrid substitution), told apart from percent-encoding like ``%E2%80``."""
    for m in _PERCENT_TAG.finditer(url):
        # "%E2%80": the closing % starts a percent-escape, so this is encoding, not a tag.
        if _HEX2.match(url, m.end()):
            continue
        return True
    # finditer does not overlap: "%a%b%" also contains "%b%" starting at the 2nd "%".
    for i in range(len(url)):
        if url[i] == "%":
            m = _PERCENT_TAG.match(url, i)
            if m and not _HEX2.match(url, m.end()):
                return True
    return False


def is_placeholder(url: str) -> bool:
    return any(p.search(url) for p in _PLACEHOLDERS) or bool(_WHOLE_SQUARE.match(url)) or _percent_tag(url)


def has_control(url: str) -> bool:
    return _CONTROL.search(url) is not None


def _opted_out(attrs: dict[str, str]) -> bool:
    for name, wanted in OPT_OUTS.items():
        if name in attrs and (wanted is None or attrs[name].strip(ASCII_WS).lower() == wanted):
            return True
    return False


# --------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class OracleLink:
    url: str  # decoded (by the parser) and stripped of ASCII whitespace
    tag: str  # "a", "area", "v:roundrect", ...
    conditional: bool  # found inside an Outlook conditional comment
    attributes: dict[str, str] = field(repr=False)
    http: bool = False
    placeholder: bool = False
    opted_out: bool = False
    control: bool = False

    @property
    def reason(self) -> str | None:
        """Why the rules leave it alone, first match in this order: empty, opt-out, placeholder, scheme."""
        if not self.url:
            return "empty"
        if self.opted_out:
            return "opt-out"
        if self.placeholder:
            return "placeholder"
        if not self.http:
            return "scheme"
        return None

    @property
    def trackable(self) -> bool:
        """What the rules say should become a click URL (ignoring max_links/already-tracked)."""
        return bool(self.url) and self.http and not self.placeholder and not self.opted_out and not self.control


def classify(url: str, tag: str, conditional: bool, attrs: dict[str, str]) -> OracleLink:
    return OracleLink(
        url=url,
        tag=tag,
        conditional=conditional,
        attributes=attrs,
        http=is_http(url),
        placeholder=is_placeholder(url),
        opted_out=_opted_out(attrs),
        control=has_control(url),
    )


def _links_from(text: str, fragment: bool, conditional: bool) -> Iterator[OracleLink]:
    for kind, item in _parse_events(text, fragment):
        if kind == "comment":
            if conditional:
                continue  # the content of a conditional comment is not searched for more of them
            m = _CONDITIONAL.match(item)  # type: ignore[arg-type]
            if m:
                yield from _links_from(m.group("content"), True, True)
            continue
        el: ParsedElement = item  # type: ignore[assignment]
        if el.namespace != HTML_NS:
            continue
        name = el.name
        if not (name in ("a", "area") or (conditional and name.startswith("v:") and len(name) > 2)):
            continue
        if "href" not in el.attributes:
            continue
        url = el.attributes["href"].strip(ASCII_WS)
        yield classify(url, name, conditional, el.attributes)


def extract_links(html: str) -> list[OracleLink]:
    """Every ``href`` a compliant parser sees (rule 1), in document order, classified."""
    return list(_links_from(html, False, False))


def tracked_destinations(html: str) -> list[str]:
    """Destinations the rules say to track, in document order."""
    return [link.url for link in extract_links(html) if link.trackable]


def decode_attribute_value(raw: str, quote: str) -> str:
    """What the tokenizer makes of ``raw`` written as an attribute value with ``quote``.

    Includes the parser's input preprocessing (CR LF -> LF, NUL -> U+FFFD).
    """
    if quote == "" and raw == "":
        return ""
    elements = parse_elements(f"<a href={quote}{raw}{quote}>", fragment=True)
    assert elements and elements[0].name == "a", (raw, quote)
    return elements[0].attributes["href"]


# --------------------------------------------------------------------------
# Where the open pixel belongs
# --------------------------------------------------------------------------


class _PositionTokenizer(_tokenizer.HTMLTokenizer):
    """Notes where (in the preprocessed stream) each ``</body>``/``</html>`` end tag token ends."""

    def closeTagOpenState(self):
        self.tag_start = self.stream.position()
        return super().closeTagOpenState()

    def __iter__(self):
        for token in super().__iter__():
            if token["type"] == _END_TAG and token.get("name", "").lower() in ("body", "html"):
                self.end_tags.append((token["name"].lower(), self.tag_start))
            yield token


class _PositionParser(html5lib.HTMLParser):
    def _parse(self, stream, innerHTML=False, container="div", scripting=False, **kwargs):
        # html5lib.HTMLParser._parse, with the tokenizer swapped for the recording one.
        self.innerHTMLMode = innerHTML
        self.container = container
        self.scripting = scripting
        self.tokenizer = _PositionTokenizer(stream, parser=self, **kwargs)
        self.tokenizer.end_tags = []
        self.reset()
        self.mainLoop()


_PROBE = "oracle-probe:pixel"


def _preprocessed_offsets(html: str) -> tuple[str, list[int]]:
    """The text after CR LF / CR -> LF, and for each of its offsets the offset in ``html``."""
    out: list[str] = []
    index: list[int] = []
    i = 0
    n = len(html)
    while i < n:
        c = html[i]
        index.append(i)
        if c == "\r":
            out.append("\n")
            i += 2 if i + 1 < n and html[i + 1] == "\n" else 1
        else:
            out.append(c)
            i += 1
    index.append(n)
    return "".join(out), index


def end_tag_positions(html: str) -> list[tuple[str, int]]:
    """``(name, offset of "<")`` of every ``</body>``/``</html>`` end tag token, in order."""
    parser = _PositionParser(tree=_RecordingTreeBuilder, namespaceHTMLElements=True)
    parser.parse(html)
    text, index = _preprocessed_offsets(html)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    found = []
    for name, (line, col) in parser.tokenizer.end_tags:
        start = line_starts[line - 1] + col - 2  # the tag starts 2 characters before: "</"
        original = index[start]
        assert html[original : original + 2 + len(name)].lower() == "</" + name, (html, original)
        found.append((name, original))
    return found


def expected_pixel_position(html: str) -> int | None:
    """Where the pixel rule puts the pixel: before the last real ``</body>``, else ``</html>``, else the end.

    Returns None when appending at the end would not give an element (the
    input ends inside a tag, comment or raw-text element): the rule does not
    say where the pixel goes then, only that it must still be an image.
    """
    ends = end_tag_positions(html)
    for wanted in ("body", "html"):
        positions = [pos for name, pos in ends if name == wanted]
        if positions:
            return positions[-1]
    probe = f'<img src="{_PROBE}">'
    if any(el.name == "img" and el.attributes.get("src") == _PROBE for el in parse_elements(html + probe)):
        return len(html)
    return None


# --------------------------------------------------------------------------
# Helpers shared by the test modules (no mailtrack imports either)
# --------------------------------------------------------------------------

CORPUS_DIR = Path(__file__).resolve().parents[3] / "shared" / "corpus"


@dataclass(frozen=True)
class CorpusFile:
    path: str  # relative to CORPUS_DIR
    encoding: str
    row: dict[str, str]

    @property
    def full_path(self) -> Path:
        return CORPUS_DIR / self.path

    def read(self) -> str:
        """The file as text, byte-exact (no newline translation)."""
        codec = self.encoding.split("/")[0] or "utf-8"
        if codec in ("ascii", "us-ascii"):
            codec = "utf-8"  # a superset; a stray byte would show up as an error rather than be lost
        return self.full_path.read_bytes().decode(codec)


def corpus_html_files() -> list[CorpusFile]:
    """The ``format == html`` rows of ``MANIFEST.tsv`` (empty when the corpus is absent)."""
    manifest = CORPUS_DIR / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [CorpusFile(r["path"], r.get("encoding", "utf-8"), r) for r in rows if r.get("format") == "html"]


@dataclass(frozen=True)
class LocatedEdit:
    """One change of a rewrite, located in both the input and the output."""

    kind: str  # "link" or "pixel"
    item: object  # the TrackedLink / PixelInsertion
    in_start: int
    in_end: int
    out_start: int
    out_end: int
    original: str  # input[in_start:in_end]
    new: str  # output[out_start:out_end]


_UNQUOTED_VALUE = re.compile(r"[^\t\n\f\r >]*")


def locate_edits(output: str, links: Iterable[object], pixels: Iterable[object]) -> list[LocatedEdit]:
    """Find every change of a rewrite in its output.

    Uses only what the result promises: each tracked link's ``start``/``end``/
    ``raw``/``quote`` (a span of the *input*) and each pixel's ``position``/
    ``html``/``replaced``. The output positions are derived by walking the edits
    in input order and adding up the length changes; the extent of each new
    value in the output is found from its quoting (up to the closing quote, or
    up to whitespace or ``>`` when unquoted). Raises AssertionError when the
    output is not laid out as the result describes.
    """
    edits: list[tuple[int, int, str, object]] = []
    for link in links:
        edits.append((link.start, 0, "link", link))  # type: ignore[attr-defined]
    for pixel in pixels:
        edits.append((pixel.position, 1, "pixel", pixel))  # type: ignore[attr-defined]
    edits.sort(key=lambda e: (e[0], e[1]))
    located: list[LocatedEdit] = []
    delta = 0  # output offset - input offset
    previous_out_end = 0
    for in_start, _, kind, item in edits:
        o = in_start + delta
        assert o >= previous_out_end, f"edits overlap at input offset {in_start}"
        if kind == "link":
            quote = item.quote  # type: ignore[attr-defined]
            if quote:
                e = output.find(quote, o)
                assert e != -1, f"no closing {quote} after the new value at output offset {o}"
            else:
                e = _UNQUOTED_VALUE.match(output, o).end()  # type: ignore[union-attr]
            in_end = item.end  # type: ignore[attr-defined]
            original = item.raw  # type: ignore[attr-defined]
        else:
            html = item.html  # type: ignore[attr-defined]
            assert output.startswith(html, o), f"pixel html not found at output offset {o}"
            e = o + len(html)
            original = getattr(item, "replaced", "")
            in_end = in_start + len(original)
        located.append(LocatedEdit(kind, item, in_start, in_end, o, e, original, output[o:e]))
        delta += (e - o) - (in_end - in_start)
        previous_out_end = e
    return located


def restore_original(output: str, links: Iterable[object], pixels: Iterable[object]) -> str:
    """Undo a rewrite: put every original link value back and take the pixel(s) out."""
    pieces: list[str] = []
    pos = 0
    for edit in locate_edits(output, links, pixels):
        pieces.append(output[pos : edit.out_start])
        pieces.append(edit.original)
        pos = edit.out_end
    pieces.append(output[pos:])
    return "".join(pieces)
