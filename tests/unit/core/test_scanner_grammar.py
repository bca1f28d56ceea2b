"""The pure scanner's faster grammar reads every tag as the grammar it replaced did (issue 13).

``mailtrack.core.scanner`` writes the tag grammar with possessive loops and no
look-ahead after a name or value, factors the names of the tags it must not
skip by their first letters (``_alternation``), and reads a link's spans
from ``Match.regs``. The grammar it had before is kept here as the reference:
on attribute soup built to reach the tokenizer's corner cases, both must end a
tag at the same offset, or both refuse it (a tag cut off by the end of the
input). The scanner as a whole is checked against the compiled one by
``test_speedups.py``.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrack.core import scanner

_WS = r"\t\n\f\r "
# The grammar before issue 13's second pass, verbatim: look-aheads end names and unquoted values.
_OLD_ATTR = (
    rf"[^{_WS}/>][^{_WS}/>=]*(?![^{_WS}/>=])"
    rf"(?:[{_WS}]*=[{_WS}]*"
    rf"(?:\"[^\"]*\"|'[^']*'|[^{_WS}>\"'][^{_WS}>]*(?![^{_WS}>])|(?=>))"
    rf"|(?![{_WS}]*=))"
)
_OLD_TAG_TAIL = rf"(?:[{_WS}/]|{_OLD_ATTR})*>"
_OLD = re.compile(_OLD_TAG_TAIL, re.ASCII | re.DOTALL)
_NEW = re.compile(scanner._TAG_TAIL, re.ASCII | re.DOTALL)

_PIECES = ["a", "href", "x", "=", " = ", '"', "'", ">", "/", "/>", " ", "\t", "\n", "\r", "\f", "<", "<a ", '="v"',
           "='v'", "=v", "= ", '"x>"', "'>'", "=>", "==", "é", "\x00"]


@settings(max_examples=3000)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_the_tag_tail_ends_where_the_old_grammar_ended(tail: str) -> None:
    old, new = _OLD.match(tail), _NEW.match(tail)
    assert (old and old.end()) == (new and new.end())


@given(st.text(alphabet=" \t=\"'/>xé<", max_size=40))
def test_the_tag_tail_on_any_mix_of_its_special_characters(tail: str) -> None:
    old, new = _OLD.match(tail), _NEW.match(tail)
    assert (old and old.end()) == (new and new.end())


_WORDS = st.lists(st.text(alphabet="abrs", min_size=1, max_size=5), min_size=1, max_size=8)


@given(_WORDS, st.text(alphabet="abrs", max_size=6))
def test_alternation_matches_exactly_the_words(words: list[str], text: str) -> None:
    factored = re.compile(f"(?:{scanner._alternation(words)})\\Z")
    assert bool(factored.match(text)) == (text in words)


@given(_WORDS, st.text(alphabet="abrs ", max_size=8))
def test_alternation_before_a_name_end_matches_as_the_plain_alternation(words: list[str], text: str) -> None:
    end = rf"(?![^{_WS}/>])"
    plain = re.compile(f"(?:{'|'.join(map(re.escape, words))}){end}")
    factored = re.compile(f"(?:{scanner._alternation(words)}){end}")
    old, new = plain.match(text), factored.match(text)
    assert (old and old.end()) == (new and new.end())


def test_the_alternation_of_the_skipped_names() -> None:
    assert scanner._alternation(["a", "area", "body"]) == "(?:a(?:rea)?|body)"
    assert scanner._alternation(["style", "script"]) == "s(?:cript|tyle)"


_FULL_START_TAG = re.compile(rf"[a-zA-Z][^{_WS}/>]*{_OLD_TAG_TAIL}", re.ASCII | re.DOTALL)
_FAST_START_TAG = re.compile(rf"[a-zA-Z](?:{scanner._PLAIN_TAG_REST}|[^{_WS}/>]*{scanner._TAG_TAIL})", re.ASCII | re.DOTALL)
_TAG_PIECES = ["td", "p", " ", "\n", "class", "style", '="x y"', "='v'", "=v", "=", '"', "'", "/", ">", "/>", "<", "é",
               '=""', " / ", "\t", "a=b>"]


@settings(max_examples=3000)
@given(st.lists(st.sampled_from(_TAG_PIECES), max_size=25).map("".join))
def test_a_start_tag_tried_the_plain_way_first_ends_where_the_full_grammar_ends_it(tag: str) -> None:
    full, fast = _FULL_START_TAG.match("p" + tag), _FAST_START_TAG.match("p" + tag)
    assert (full and full.end()) == (fast and fast.end())
