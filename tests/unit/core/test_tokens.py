"""Tokens: signing, verification, purposes, rotation, expiry and every kind of bad input."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner
from support.helpers import BASE_URL, make_tracker, rewrite

import mailtrack
from mailtrack.core.tokens import MAX_TOKEN_LENGTH

T0 = 1_700_000_000


def reference_sign(tracker: mailtrack.Tracker, kind: str, payload_part: str, issued_at: int) -> str:
    """Sign with itsdangerous' own ``TimestampSigner.sign``: the reference for the fast signing path."""
    base = tracker.codec._signers[kind]

    class FixedTime(TimestampSigner):
        def get_timestamp(self) -> int:
            return issued_at

    signer = FixedTime(base.secret_keys, salt=base.salt, key_derivation=base.key_derivation,
                       digest_method=base.digest_method, algorithm=base.algorithm)
    return signer.sign(payload_part).decode("ascii")


def click_url(tracker: mailtrack.Tracker, url: str = "https://x.example/?a=1&b=2", **kw: object) -> str:
    kw.setdefault("issued_at", T0)
    return tracker.tracking_url("click", message_id="msg-1", recipient="ann@example.com", url=url, **kw)  # type: ignore[arg-type]


def test_round_trip_every_kind(tracker: mailtrack.Tracker) -> None:
    for kind in ("click", "open", "unsubscribe"):
        url = tracker.tracking_url(
            kind, message_id="m\u00e9", recipient="r@x.example", url="https://x.example/\u00fc" if kind == "click" else None,
            link_index=7, metadata={"campaign": "spring", "n": 1}, issued_at=T0,
        )
        v = tracker.verify(url)
        assert v.kind == kind and v.message_id == "m\u00e9" and v.recipient == "r@x.example"
        assert v.metadata == {"campaign": "spring", "n": 1}
        assert v.issued_at == datetime.fromtimestamp(T0, timezone.utc)
        if kind == "click":
            assert (v.url, v.link_index) == ("https://x.example/\u00fc", 7)
        else:
            assert v.url is None and v.link_index is None
        assert tracker.verify(v.token).kind == kind  # a bare token works too


def test_deterministic(tracker: mailtrack.Tracker) -> None:
    assert click_url(tracker) == click_url(tracker)
    assert click_url(tracker) == click_url(make_tracker())
    html = '<a href="https://x.example/">x</a><body></body>'
    assert rewrite(tracker, html).html == rewrite(make_tracker(), html).html


def test_fast_signing_path_matches_itsdangerous(signed_tracker: mailtrack.Tracker) -> None:
    tracker = signed_tracker  # reads the payload: the signed format
    token = click_url(tracker).rsplit("/", 1)[1]
    payload = token.split(".")[0]
    assert reference_sign(tracker, "click", payload, T0) == token


def test_purposes_are_separate(tracker: mailtrack.Tracker) -> None:
    token = click_url(tracker).rsplit("/", 1)[1]
    with pytest.raises(mailtrack.InvalidToken) as info:
        tracker.verify(f"{BASE_URL}/o/{token}")
    assert info.value.reason == "purpose"
    with pytest.raises(mailtrack.InvalidToken) as info:
        tracker.verify(token, kind="unsubscribe")
    assert info.value.reason == "purpose"
    open_url = tracker.tracking_url("open", message_id="m", recipient="r", issued_at=T0)
    with pytest.raises(mailtrack.InvalidToken) as info:
        tracker.verify(open_url.replace("/o/", "/c/"))
    assert info.value.reason == "purpose"


def test_key_rotation() -> None:
    old = mailtrack.Tracker(["key-1"], BASE_URL)
    rotated = mailtrack.Tracker(["key-1", "key-2"], BASE_URL)
    retired = mailtrack.Tracker(["key-2"], BASE_URL)
    old_url = click_url(old)
    new_url = click_url(rotated)
    assert old_url != new_url  # the newest key signs
    assert rotated.verify(old_url).url == rotated.verify(new_url).url == "https://x.example/?a=1&b=2"
    assert retired.verify(new_url).kind == "click"
    with pytest.raises(mailtrack.InvalidToken) as info:
        retired.verify(old_url)
    assert info.value.reason == "signature"


def test_foreign_key_and_salt() -> None:
    ours = mailtrack.Tracker(["k"], BASE_URL)
    for other in (mailtrack.Tracker(["other"], BASE_URL), mailtrack.Tracker(["k"], BASE_URL, salt="someone-else")):
        with pytest.raises(mailtrack.InvalidToken) as info:
            ours.verify(click_url(other))
        assert info.value.reason == "signature"


def tamper(url: str, part: int, new: str) -> str:
    head, token = url.rsplit("/", 1)
    parts = token.split(".")
    parts[part] = new
    return head + "/" + ".".join(parts)


def test_tampering_is_refused(signed_tracker: mailtrack.Tracker) -> None:
    tracker = signed_tracker  # reads the payload: the signed format
    url = click_url(tracker)
    payload = json.loads(base64.urlsafe_b64decode(url.rsplit("/", 1)[1].split(".")[0] + "=="))
    payload[3] = "https://evil.example/"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    cases = [
        tamper(url, 0, forged),  # swap the destination
        tamper(url, 1, "AAAAAA"),  # change the timestamp
        tamper(url, 2, "A" * 22),  # another signature
        url[:-1] + ("A" if url[-1] != "A" else "B"),  # flip the last character
        url[:-5],  # truncated
    ]
    for bad in cases:
        with pytest.raises(mailtrack.InvalidToken) as info:
            tracker.verify(bad)
        assert info.value.reason == "signature", bad


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("", "malformed"),
        ("no-dots", "malformed"),
        ("a.b", "malformed"),
        ("a..b.c", "malformed"),
        ("\u00e9.a.b", "malformed"),
        ("a.b.c d", "malformed"),
        ("x" * (MAX_TOKEN_LENGTH + 1), "oversized"),
        ("https://evil.example/c/a.b.c", "not-ours"),
        (BASE_URL + "/elsewhere/a.b.c", "not-ours"),
        (BASE_URL + "/c/a.b.c/extra", "not-ours"),
        (BASE_URL + "/c/", "malformed"),
    ],
)
def test_malformed_input(tracker: mailtrack.Tracker, bad: str, reason: str) -> None:
    with pytest.raises(mailtrack.InvalidToken) as info:
        tracker.verify(bad)
    assert info.value.reason == reason
    assert isinstance(info.value, mailtrack.MailtrackError)


def test_verify_wants_text(tracker: mailtrack.Tracker) -> None:
    with pytest.raises(TypeError):
        tracker.verify(b"a.b.c")  # type: ignore[arg-type]


def _signed(tracker: mailtrack.Tracker, raw_payload: bytes, kind: str = "click") -> str:
    payload = base64.urlsafe_b64encode(raw_payload).rstrip(b"=").decode()
    return reference_sign(tracker, kind, payload, T0)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b'["m","r",0,"javascript:alert(1)"]', "destination"),
        (b'["m","r",0,"https://x.example/\\r\\nSet-Cookie: a=b"]', "destination"),
        (b'["m","r",0,"//evil.example/"]', "destination"),
        (b'["m","r",0,"data:text/html,x"]', "destination"),
        (b"not json", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b'{"url": "https://x.example/"}', "malformed"),
        (b'["m","r","0","https://x.example/"]', "malformed"),
        (b'["m","r",0]', "malformed"),
        (b'["m",1,0,"https://x.example/"]', "malformed"),
        (b'["m","r",0,"https://x.example/",[]]', "malformed"),
    ],
)
def test_signed_but_unacceptable_payloads(tracker: mailtrack.Tracker, payload: bytes, reason: str) -> None:
    """Even a token signed with our key is refused when its content is unsafe or malformed."""
    with pytest.raises(mailtrack.InvalidToken) as info:
        tracker.verify(_signed(tracker, payload))
    assert info.value.reason == reason


def test_max_age_uses_the_trackers_clock() -> None:
    now = [T0 + 100.0]
    tracker = mailtrack.Tracker(["k"], BASE_URL, clock=lambda: now[0])
    url = click_url(tracker)  # signed at T0
    assert tracker.verify(url).url  # no max_age: any age
    assert tracker.verify(url, max_age=100).kind == "click"
    with pytest.raises(mailtrack.ExpiredToken) as info:
        tracker.verify(url, max_age=60)
    assert isinstance(info.value, mailtrack.InvalidToken) and info.value.reason == "expired"
    assert info.value.issued_at == datetime.fromtimestamp(T0, timezone.utc)
    fresh = mailtrack.Tracker(["k"], BASE_URL, clock=lambda: 1e9)  # signs and verifies on its own clock
    assert fresh.verify(fresh.tracking_url("open", message_id="m", recipient="r"), max_age=3600).kind == "open"


def test_tokens_from_the_future() -> None:
    now = [float(T0)]
    tracker = mailtrack.Tracker(["k"], BASE_URL, clock=lambda: now[0])
    url = click_url(tracker, issued_at=T0 + 200)  # a signing host 200 s ahead
    assert tracker.verify(url, max_age=60).kind == "click"  # within the default 300 s skew
    ahead = click_url(tracker, issued_at=T0 + 3600)
    with pytest.raises(mailtrack.InvalidToken) as info:
        tracker.verify(ahead, max_age=60)
    assert info.value.reason == "future" and not isinstance(info.value, mailtrack.ExpiredToken)
    assert tracker.verify(ahead).kind == "click"  # without max_age, time does not matter
    strict = mailtrack.Tracker(["k"], BASE_URL, clock=lambda: now[0], max_clock_skew=0)
    with pytest.raises(mailtrack.InvalidToken):
        strict.verify(url, max_age=60)


@pytest.mark.parametrize("max_age", [float("nan"), float("inf"), -1, "10", True])
def test_bad_max_age(tracker: mailtrack.Tracker, max_age: object) -> None:
    with pytest.raises(mailtrack.MailtrackError, match="max_age"):
        tracker.verify(click_url(tracker), max_age=max_age)  # type: ignore[arg-type]


@pytest.mark.parametrize("insert", ["\r\n", "\t", " ", "\x00", "\x85"])
def test_whitespace_or_controls_anywhere_are_refused(tracker: mailtrack.Tracker, insert: str) -> None:
    url = click_url(tracker)
    for bad in (url[:30] + insert + url[30:], url + insert, insert + url):
        with pytest.raises(mailtrack.InvalidToken) as info:
            tracker.verify(bad)
        assert info.value.reason == "malformed"


def test_query_string_on_a_tracking_url_is_ignored(tracker: mailtrack.Tracker) -> None:
    assert tracker.verify(click_url(tracker) + "?utm_source=forwarded").url == "https://x.example/?a=1&b=2"


def test_expired_forgery_is_a_signature_error() -> None:
    tracker = mailtrack.Tracker(["k"], BASE_URL)
    forged = mailtrack.Tracker(["other"], BASE_URL)
    with pytest.raises(mailtrack.InvalidToken) as info:
        tracker.verify(click_url(forged), max_age=1)
    assert info.value.reason == "signature"


def test_compression_option_round_trips() -> None:
    packed = mailtrack.Tracker(["k"], BASE_URL, compress_tokens=True)
    plain = mailtrack.Tracker(["k"], BASE_URL)
    long_url = "https://shop.example.com/products/summer/item?utm_source=newsletter&utm_medium=email&utm_campaign=x"
    a, b = click_url(packed, long_url), click_url(plain, long_url)
    assert len(a) < len(b)
    assert packed.verify(a).url == long_url
    assert plain.verify(a).url == long_url  # reading a compressed token needs no option


def test_decompression_bomb_is_refused(tracker: mailtrack.Tracker) -> None:
    import zlib

    from mailtrack.core.tokens import _ZDICT

    body = b'["m","r",0,"https://x.example/' + b"a" * 200_000 + b'"]'
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    packed = base64.urlsafe_b64encode(deflate.compress(body) + deflate.flush()).rstrip(b"=").decode()
    token = reference_sign(tracker, "click", "." + packed, T0)
    assert len(token) < MAX_TOKEN_LENGTH
    with pytest.raises(mailtrack.InvalidToken) as info:
        tracker.verify(token)
    assert info.value.reason == "malformed"


def test_tokens_are_compact_versus_pytracking_shape(tracker: mailtrack.Tracker) -> None:
    """Same data as pytracking's base64(JSON) token, fewer bytes (the benchmark measures real pytracking)."""
    url = "https://shop.example.com/p/123?utm_source=news&id=9"
    ours = click_url(tracker, url, metadata={"campaign": "spring"})
    theirs = base64.urlsafe_b64encode(json.dumps(
        {"metadata": {"message_id": "msg-1", "recipient": "ann@example.com", "campaign": "spring"}, "url": url}
    ).encode()).decode()
    assert len(ours) - len(BASE_URL + "/c/") < len(theirs)


def test_tracking_url_refuses_bad_destinations(tracker: mailtrack.Tracker) -> None:
    for bad in ("javascript:alert(1)", "https://x.example/\nx", "/relative", None):
        with pytest.raises(mailtrack.MailtrackError):
            tracker.tracking_url("click", message_id="m", recipient="r", url=bad)
    with pytest.raises(mailtrack.MailtrackError):
        tracker.tracking_url("bounce", message_id="m", recipient="r")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"link_index": True},
        {"link_index": 1.5},
        {"link_index": "1"},
        {"link_index": -1},
        {"issued_at": float("inf")},
        {"issued_at": float("nan")},
        {"issued_at": 2**64},
        {"metadata": {"n": float("nan")}},
        {"metadata": {"t": (1, 2)}},
        {"metadata": {"nested": {1: 2}}},
    ],
)
def test_tracking_url_refuses_what_would_not_verify_back(tracker: mailtrack.Tracker, kwargs: dict[str, object]) -> None:
    with pytest.raises(mailtrack.MailtrackError):
        click_url(tracker, **kwargs)


def test_metadata_round_trips_exactly(tracker: mailtrack.Tracker) -> None:
    metadata = {"campaign": "spring \u00e9\U0001F600", "n": 1, "f": 1.5, "ok": True, "none": None, "list": [1, "a", {"b": []}]}
    assert tracker.verify(click_url(tracker, metadata=metadata)).metadata == metadata


def test_mixed_str_and_bytes_keys() -> None:
    old = mailtrack.Tracker([b"k1"], BASE_URL)
    mixed = mailtrack.Tracker([b"k1", "k2"], BASE_URL)
    assert mixed.verify(click_url(old)).kind == "click"
    assert mailtrack.Tracker("k2", BASE_URL).verify(click_url(mixed)).kind == "click"


# -- verify never raises anything but InvalidToken/ExpiredToken for any input ------------------------------

@pytest.mark.parametrize(
    "value",
    [
        BASE_URL + "//[/c/x.y.z",
        BASE_URL + "/[/c/x.y.z",
        BASE_URL + "/c/[x.y.z",
        BASE_URL + "//[::1/c/x.y.z",
        BASE_URL + "//a]/c/x.y.z",
        BASE_URL + "//\uff0f@x/c/x.y.z",
        BASE_URL + "/c/x.y.z?[",
        "https://[",
        "[",
        ":",
    ],
)
def test_verify_of_a_url_urllib_cannot_split_raises_invalid_token(tracker: mailtrack.Tracker, value: str) -> None:
    with pytest.raises(mailtrack.InvalidToken):
        tracker.verify(value)


def _urlish() -> st.SearchStrategy[str]:
    piece = st.one_of(
        st.sampled_from(["/", "//", "[", "]", ":", "@", "?", "#", "%", "\\", ".", "c/", "o/", "u/", "\uff0f", "[::1]",
                         "x.y.z", "é"]),
        st.text(max_size=3),
    )
    heads = st.sampled_from([BASE_URL, BASE_URL.upper(), "https://", "http://x", "", "c/", BASE_URL + "/c/"])
    structure = st.sampled_from(["/", "//", "[", "]", ":", "@", "?", "#", "c/", "x.y.z"])
    return st.builds(lambda head, parts: head + "".join(parts), heads,
                     st.one_of(st.lists(structure, max_size=5), st.lists(piece, max_size=8)))


@settings(max_examples=1500)
@example(BASE_URL + "//[/c/x.y.z", None, None)
@given(st.one_of(st.text(), _urlish()), st.sampled_from([None, "click", "open", "unsubscribe"]),
       st.sampled_from([None, 0, 10**9]))
def test_verify_raises_only_invalid_token_for_any_string(value: str, kind: str | None, max_age: int | None) -> None:
    tracker = make_tracker()
    try:
        tracker.verify(value, kind=kind, max_age=max_age)
    except mailtrack.InvalidToken:  # ExpiredToken is one
        pass


@settings(max_examples=300)
@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_verify_of_a_validly_signed_token_with_any_destination_raises_only_invalid_token(destination: str) -> None:
    tracker = make_tracker()
    token = tracker.codec.message_signer("click", "m", "r", None, T0)(0, destination)
    try:
        verified = tracker.verify(BASE_URL + "/c/" + token)
    except mailtrack.InvalidToken as exc:
        assert exc.reason == "destination"
    else:
        assert verified.url == destination


def test_issued_at_takes_an_aware_datetime_and_refuses_other_values_as_argument_errors() -> None:
    from datetime import datetime, timezone

    import mailtrack

    tracker = make_tracker()
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    by_datetime = tracker.rewrite_html('<a href="https://x.example/">x</a>', message_id="m", recipient="r@x", issued_at=when)
    by_seconds = tracker.rewrite_html('<a href="https://x.example/">x</a>', message_id="m", recipient="r@x",
                                      issued_at=int(when.timestamp()))
    assert by_datetime.html == by_seconds.html
    assert tracker.verify(by_datetime.links[0].tracking_url).issued_at == when
    for bad in (datetime(2026, 1, 1), -1, 2**41, "2026-01-01", True):
        with pytest.raises(mailtrack.ArgumentError, match="issued_at"):
            tracker.rewrite_html("x", message_id="m", recipient="r@x", issued_at=bad)  # type: ignore[arg-type]


def test_a_bad_max_age_is_an_argument_error() -> None:
    import mailtrack

    tracker = make_tracker()
    url = tracker.tracking_url("open", message_id="m", recipient="r@x")
    for bad in (-1, "x", float("nan"), float("inf")):
        with pytest.raises(mailtrack.ArgumentError, match="max_age"):
            tracker.verify(url, max_age=bad)  # type: ignore[arg-type]


# -- recipient-less tokens and tags (issue 9) ------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["click", "open", "unsubscribe"]),
    recipient=st.one_of(st.none(), st.text(max_size=40)),
    tags=st.lists(st.text(max_size=20), max_size=5),
    metadata=st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=3),
    compress=st.booleans(),
)
def test_recipient_and_tags_round_trip_exactly(
    kind: str, recipient: str | None, tags: list[str], metadata: dict[str, object], compress: bool
) -> None:
    tracker = make_tracker(compress_tokens=compress)
    url = tracker.tracking_url(kind, message_id="m", recipient=recipient, url="https://x.example/" if kind == "click" else None,
                               metadata=metadata, tags=tags, issued_at=T0)
    verified = tracker.verify(url)
    assert (verified.recipient, verified.tags, dict(verified.metadata)) == (recipient, tuple(tags), metadata)


def test_a_body_tracked_without_a_recipient_names_none_in_every_token(tracker: mailtrack.Tracker) -> None:
    html = '<a href="https://x.example/a">a</a><body></body>'
    result = tracker.rewrite_html(html, message_id="digest-1", issued_at=T0, tags=["weekly"])
    urls = [link.tracking_url for link in result.links]
    assert urls and all(tracker.verify(url).recipient is None for url in urls)
    pixel = result.html.split('src="')[1].split('"')[0]
    assert (tracker.verify(pixel).recipient, tracker.verify(pixel).tags) == (None, ("weekly",))
    text = tracker.rewrite_text("see https://x.example/b", message_id="digest-1", settings={"click_tracking": {"enable_text": True}})
    assert tracker.verify(text.links[0].tracking_url).recipient is None


def test_tokens_without_tags_keep_their_exact_0_1_format(signed_tracker: mailtrack.Tracker) -> None:
    tracker = signed_tracker  # reads the payload: the signed format
    """No tags and a recipient: the payload is what 0.1 signed, so old and new tokens read alike both ways."""
    url = tracker.tracking_url("open", message_id="m", recipient="r", issued_at=T0)
    token = url.rsplit("/", 1)[1]
    assert base64.urlsafe_b64decode(token.split(".")[0] + "==") == b'["m","r"]'
    assert tracker.verify(url).tags == ()
    tagged = tracker.tracking_url("open", message_id="m", recipient="r", tags=["a"], issued_at=T0)
    assert base64.urlsafe_b64decode(tagged.rsplit("/", 1)[1].split(".")[0] + "==") == b'["m","r",{},["a"]]'


def test_another_messages_tags_are_signed_again_on_a_second_pass(tracker: mailtrack.Tracker) -> None:
    first = tracker.rewrite_html('<a href="https://x.example/">x</a>', message_id="m", recipient="r", tags=["old"])
    again = tracker.rewrite_html(first.html, message_id="m", recipient="r", tags=["new"])
    assert tracker.verify(again.links[0].tracking_url).tags == ("new",)
    kept = tracker.rewrite_html(first.html, message_id="m", recipient="r")
    assert kept.html == first.html


def test_an_account_is_signed_in_after_metadata_and_tags_and_old_tokens_still_verify() -> None:
    """The payload's seventh place: ``[mid, rcpt, (idx, url,) metadata, tags, account]``; without one, nothing changes."""
    import base64 as b64
    import json as jsonlib

    from mailtrack.core.tokens import TokenCodec
    from mailtrack.exceptions import InvalidToken as Refused

    codec = TokenCodec("k", token_format="signed")  # reads the payload

    def payload(token: str) -> object:
        data = token.split(".")[0]
        return jsonlib.loads(b64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))

    plain = codec.message_signer("open", "m", "a@x", None, 1_700_000_000)()
    assert plain == codec.message_signer("open", "m", "a@x", None, 1_700_000_000, (), None)()  # the bytes of before
    assert payload(plain) == ["m", "a@x"] and codec.loads(plain, kind="open").account is None
    signed = codec.message_signer("open", "m", "a@x", None, 1_700_000_000, (), "sub1")()
    assert payload(signed) == ["m", "a@x", {}, [], "sub1"]
    assert codec.loads(signed, kind="open").account == "sub1"
    click = codec.message_signer("click", "m", None, {"c": 1}, 1_700_000_000, ("t",), "sub1")(2, "https://e.com/")
    claims = codec.loads(click, kind="click")
    assert (claims.account, claims.tags, dict(claims.metadata), claims.url) == ("sub1", ("t",), {"c": 1}, "https://e.com/")
    bad = codec.message_signer("open", "m", "a@x", None, 1_700_000_000, (), 5)()  # type: ignore[arg-type]
    with pytest.raises(Refused):
        codec.loads(bad, kind="open")
    too_long = codec.message_signer("open", "m", "a@x", None, 1_700_000_000, (), "s\",\"extra")()
    assert codec.loads(too_long, kind="open").account == 's","extra'  # JSON-escaped: still one account
