"""The per-link and per-message shortcuts of the pure path answer exactly as the code they replaced.

Each shortcut (issue 13, "quick wins on the pure path") skips work the common
case does not need; each test here runs the straightforward version it
replaced beside it, on hypothesis inputs built to reach the corner cases, and
asks for the same answer (or the same error).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mailtrack
from mailtrack.core.rewrite.links import tokens_after
from mailtrack.core.tokens import check_claims

PREFIX = "https://t.example.com/o/"


def tokens_after_by_regex(html: str, prefix: str) -> list[tuple[str, int]]:
    """What ``tokens_after`` did before: one regex pass over the whole document."""
    if prefix not in html:
        return []
    return [(m.group(1).rstrip("."), m.start(1)) for m in re.finditer(re.escape(prefix) + r"([A-Za-z0-9_.-]+)", html)]


# Pieces that make prefixes overlap tokens and each other: "https" is token-shaped, so is "t.example.com".
_PIECES = st.sampled_from([PREFIX, PREFIX[:-1], "https://", "t.example.com", "/o/", "abc", "A-_", ".", "..", "x.y.z",
                           " ", '"', "<", "é", "\ud800", "/", "?", ""])


@given(st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=40).map("".join))
def test_tokens_after_finds_what_the_regex_pass_found(html: str) -> None:
    assert tokens_after(html, PREFIX) == tokens_after_by_regex(html, PREFIX)


@pytest.mark.parametrize(
    "html",
    [
        "",
        PREFIX,
        PREFIX + PREFIX + "tok",
        PREFIX + "abc" + PREFIX + "def",  # the first token swallows the "https" of the second prefix: one match
        PREFIX + "a." + PREFIX.removesuffix("/") + "b",
        PREFIX + "https" + PREFIX[5:] + "x",  # the same, with a token that is only "https"
        "x" * 10 + PREFIX + "tok. and " + PREFIX + "." + PREFIX,
    ],
)
def test_tokens_after_pinned_cases(html: str) -> None:
    assert tokens_after(html, PREFIX) == tokens_after_by_regex(html, PREFIX)


def check_claims_by_round_trip(message_id: Any, recipient: Any, metadata: Any, tags: Any = ()) -> None:
    """What ``check_claims`` did before: encode every part, then a whole JSON round trip."""
    value = [message_id, recipient, dict(metadata or {}), list(tags)]
    for name, part in zip(("message_id", "recipient", "metadata", "tags"), value, strict=True):
        try:
            json.dumps(part, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise mailtrack.ArgumentError(f"{name} must be JSON text: {exc}") from None
    dumped = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
    if json.loads(dumped) != value:
        raise mailtrack.ArgumentError("metadata must survive JSON unchanged: use str keys, lists (not tuples), and JSON types")


class _Str(str):
    pass


class _Int(int):
    pass


_TEXT = st.one_of(st.text(max_size=6), st.sampled_from(["\ud800", "a\udfff", "é", ""]), st.builds(_Str, st.text(max_size=3)))
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**64 - 1, 2**64, -(2**64), 10**30, -0.0, math.inf, -math.inf, math.nan, 1e308]),
    st.floats(),
    st.builds(_Int, st.integers()),
    _TEXT,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(_TEXT, st.integers(), st.none()), inner, max_size=3),
    ),
    max_leaves=12,
)


def _outcome(check: Any, *args: Any) -> str:
    try:
        check(*args)
    except mailtrack.ArgumentError as exc:
        return f"ArgumentError: {exc}"
    except Exception as exc:  # the same foreign error is the same answer
        return f"{type(exc).__name__}: {exc}"
    return "ok"


@settings(max_examples=400)
@given(_TEXT, st.one_of(st.none(), _TEXT), st.one_of(st.none(), st.dictionaries(st.text(max_size=4), _VALUES, max_size=4)),
       st.lists(_TEXT, max_size=3))
def test_check_claims_answers_as_the_round_trip_did(message_id: str, recipient: str | None, metadata: Any,
                                                    tags: list[str]) -> None:
    assert _outcome(check_claims, message_id, recipient, metadata, tags) == _outcome(
        check_claims_by_round_trip, message_id, recipient, metadata, tags
    )


def test_check_claims_of_a_cycle_a_wide_structure_or_a_huge_int_is_left_to_the_round_trip() -> None:
    looped: list[Any] = []
    looped.append(looped)
    wide = {"k": [[0] * 100] * 200}  # 20,000 values: over the shortcut's budget, still plain JSON
    huge = 10**5000  # more digits than str() writes by default: json.dumps refuses it
    for metadata in ({"a": looped}, wide, {"a": [looped] * 5000}, {"a": huge}):
        assert _outcome(check_claims, "m", "r", metadata) == _outcome(check_claims_by_round_trip, "m", "r", metadata)
