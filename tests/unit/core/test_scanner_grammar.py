"""The pure scanner's faster grammar reads every tag as the grammar it replaced did (issue 13).

``mailtrack.core.scanner`` writes the tag grammar with possessive loops and no
look-ahead after a name or value, and reads the names of the tags it skips as
a trie of the ones it must not skip (``_other_name``) instead of a look-ahead
at every tag. The grammar it had before is kept here as the reference:
on attribute soup built to reach the tokenizer's corner cases, both must end a
tag at the same offset, or both refuse it (a tag cut off by the end of the
input). The scanner as a whole is checked against the compiled one by
``test_speedups.py``.
"""

from __future__ import annotations

import re

import pytest
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


_WORDS = st.lists(st.text(alphabet="abr:", min_size=1, max_size=4), min_size=1, max_size=6)


@settings(max_examples=1500)
@given(_WORDS, st.lists(st.text(alphabet="abr:", min_size=1, max_size=3), max_size=2), st.text(alphabet="abr: >", max_size=7))
def test_other_name_is_the_look_ahead_for_any_words_and_prefixes(words: list[str], prefixes: list[str], name: str) -> None:
    interesting = "|".join([*map(re.escape, words), *(re.escape(p) + rf"[^{_WS}/>]+" for p in prefixes)])
    before = re.compile(rf"(?!(?:{interesting})(?![^{_WS}/>]))[^{_WS}/>]+", re.IGNORECASE | re.ASCII)
    after = re.compile(rf"(?=[^{_WS}/>]){scanner._other_name(words, tuple(prefixes))}", re.IGNORECASE | re.ASCII)
    old, new = before.match(name), after.match(name)
    assert (old and old.end()) == (new and new.end())


_NAME_PIECES = st.sampled_from(["a", "A", "r", "e", "area", "AREA", "b", "body", "Body", "s", "script", "style", "t",
                                "title", "textarea", "x", "xmp", "iframe", "no", "noembed", "noframes", "p",
                                "plaintext", "v", "v:", "V:", ":", "d", "td", "-", "é", " ", "/", ">", "\t"])


@settings(max_examples=3000)
@given(st.lists(_NAME_PIECES, min_size=1, max_size=6).map("".join), st.booleans())
def test_other_name_matches_the_names_the_look_ahead_let_through(name: str, conditional: bool) -> None:
    words = ["a", "area", "body", *scanner._RAW_TEXT]
    interesting = "|".join(words) + (rf"|v:[^{_WS}/>]+" if conditional else "")
    before = re.compile(rf"(?!(?:{interesting})(?![^{_WS}/>]))[a-zA-Z][^{_WS}/>]*", re.IGNORECASE | re.ASCII)
    prefixes = ("v:",) if conditional else ()
    after = re.compile(rf"(?=[a-zA-Z]){scanner._other_name(words, prefixes)}", re.IGNORECASE | re.ASCII)
    old, new = before.match(name), after.match(name)
    assert (old and old.end()) == (new and new.end())


@settings(max_examples=1500)
@given(st.lists(_NAME_PIECES, min_size=1, max_size=6).map("".join), st.booleans())
def test_a_skipped_tag_name_is_never_cut_short_by_backtracking(name: str, conditional: bool) -> None:
    # Python 3.10 has no possessive loops: without a look-ahead at its end, a name's loop gave back characters
    # when the tag's tail failed, and "<v:\t= ='x>" was read as the tag "v" with an attribute ":" (ending at
    # ">") instead of the tag "v:" cut off in a quoted value; both scanners must stop a name only at its end.
    words = ["a", "area", "body", *scanner._RAW_TEXT]
    prefixes = ("v:",) if conditional else ()
    cut = re.compile(rf"(?=[a-zA-Z]){scanner._other_name(words, prefixes)}[^{_WS}/>]", re.IGNORECASE | re.ASCII)
    assert cut.match(name) is None


@pytest.mark.parametrize("text", ["<v:\t= ='\x0bHREF/>", "<b:x = ='x>", "</b:x = ='x>", "<x- = ='x>", "</bo:dy = ='x>"])
def test_a_tag_cut_off_in_a_quoted_value_is_dead_whatever_its_name(text: str) -> None:
    assert scanner.scan_pure(text).truncated_at == 0
    assert scanner.scan_pure("<p>" + text).truncated_at == 3
