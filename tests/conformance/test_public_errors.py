"""Bad input to any public function raises a MailtrackError subclass: never ValueError, TypeError, UnicodeError, ...

Hypothesis throws arbitrary values (wrong types, huge and hostile strings,
surrogates, nested containers) at every public entry point of the core and
the pure adapters. Anything may be refused; nothing may escape as a stdlib
exception, and nothing may hang (each example is small; a generous hang guard
covers the whole test).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import mailtrack
from mailtrack import MailtrackError, TrackingSettings

BASE = "https://t.example.com"
TRACKER = mailtrack.Tracker(["k" * 32], BASE)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(["", " ", "\x00", "\ud800", "https://", BASE, BASE + "/c/", "[", "a@b", "é", "\r\n", "{{", "%"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4),
                            st.tuples(inner, inner)),
    max_leaves=8,
)
texts = st.one_of(st.text(max_size=200), st.sampled_from(["<a href='https://x.com/'>x</a>", "see https://x.com/ now"]))


def _only_ours(call: Any, *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except MailtrackError:
        pass


pytestmark = pytest.mark.timeout(600)


@settings(max_examples=300)
@given(html=st.one_of(texts, values), message_id=values, recipient=values, metadata=values, issued_at=values, settings_=values)
def test_rewrite_html_and_text_refuse_only_with_mailtrack_errors(
    html: Any, message_id: Any, recipient: Any, metadata: Any, issued_at: Any, settings_: Any
) -> None:
    for method in (TRACKER.rewrite_html, TRACKER.rewrite_text):
        _only_ours(method, html, message_id=message_id, recipient=recipient, metadata=metadata,
                   issued_at=issued_at, settings=settings_)


@settings(max_examples=300)
@given(message=st.one_of(values, texts, st.builds(lambda h, b: f"To: a@x\nMessage-ID: <m@x>\n{h}\n\n{b}", texts, texts)),
       message_id=st.one_of(st.none(), values), recipient=st.one_of(st.none(), values), force=values)
def test_rewrite_message_refuses_only_with_mailtrack_errors(message: Any, message_id: Any, recipient: Any, force: Any) -> None:
    _only_ours(TRACKER.rewrite_message, message, message_id=message_id, recipient=recipient, force=force)


@settings(max_examples=300)
@given(value=st.one_of(values, st.text(max_size=300).map(lambda t: BASE + t), st.text(max_size=300).map(lambda t: BASE + "/c/" + t)),
       max_age=values, kind=values)
def test_verify_refuses_only_with_mailtrack_errors(value: Any, max_age: Any, kind: Any) -> None:
    _only_ours(TRACKER.verify, value)
    _only_ours(TRACKER.verify, value, max_age=max_age, kind=kind)


@settings(max_examples=200)
@given(kind=values, message_id=values, recipient=values, url=values, link_index=values, metadata=values)
def test_tracking_url_refuses_only_with_mailtrack_errors(
    kind: Any, message_id: Any, recipient: Any, url: Any, link_index: Any, metadata: Any
) -> None:
    _only_ours(TRACKER.tracking_url, kind, message_id=message_id, recipient=recipient, url=url,
               link_index=link_index, metadata=metadata)


@settings(max_examples=200)
@given(keys=values, base_url=values, options=st.dictionaries(
    st.sampled_from(["paths", "max_links", "placeholder_patterns", "opt_out_attributes", "pixel_position", "settings",
                     "salt", "signature_size", "compress_tokens", "max_clock_skew"]), values, max_size=3))
@example(keys="\ud800", base_url="HTTP://A", options={})  # found by this test: a surrogate key, then a bool
@example(keys=True, base_url=BASE, options={})
def test_tracker_construction_refuses_only_with_mailtrack_errors(keys: Any, base_url: Any, options: Any) -> None:
    _only_ours(mailtrack.Tracker, keys, base_url, **options)


@settings(max_examples=300)
@given(data=values, section=values)
def test_settings_refuse_only_with_mailtrack_errors(data: Any, section: Any) -> None:
    _only_ours(TrackingSettings.from_dict, data)
    _only_ours(TrackingSettings.from_account, data)
    _only_ours(TrackingSettings().patch, section, data)
    _only_ours(TrackingSettings().merged, data)


@settings(max_examples=300)
@given(value=st.one_of(st.text(max_size=300), values))
def test_smtpapi_header_refuses_only_with_mailtrack_errors(value: Any) -> None:
    from mailtrack.core.smtpapi import parse_smtpapi

    _only_ours(parse_smtpapi, value)


@settings(max_examples=300)
@given(body=values, header=st.one_of(values, st.text(max_size=80), st.builds("t={},v1={}".format, st.text(max_size=12), st.text(max_size=70))),
       secrets=values, tolerance=values)
def test_webhook_signature_check_refuses_only_with_mailtrack_errors(body: Any, header: Any, secrets: Any, tolerance: Any) -> None:
    _only_ours(mailtrack.verify_signature, body, header, secrets)
    _only_ours(mailtrack.verify_signature, body, header, "s" * 32, tolerance=tolerance)


@settings(max_examples=200)
@given(fields=st.dictionaries(
    st.sampled_from(["event_type", "timestamp", "message_id", "recipient", "url", "link_index", "metadata"]), values, max_size=4))
def test_tracking_events_refuse_only_with_mailtrack_errors(fields: Any) -> None:
    base: dict[str, Any] = {"event_type": "opened", "timestamp": datetime(2026, 1, 1, tzinfo=timezone.utc),
                            "message_id": "m", "recipient": "r@x"}
    _only_ours(mailtrack.TrackingEvent, **{**base, **fields})
    _only_ours(mailtrack.TrackingEvent.from_dict, {**base, "timestamp": "2026-01-01T00:00:00Z", **fields})


def _endpoints(**options: Any) -> Any:
    return mailtrack.Endpoints(TRACKER, **options)


def _rewrite_text(**options: Any) -> Any:
    return TRACKER.rewrite_text("see https://x.com/ now", message_id="m", recipient="r@x", **options)


def _tracker(**options: Any) -> Any:
    tracker = mailtrack.Tracker(["k" * 32], BASE, **options)
    return tracker.rewrite_html("<a href='https://x.com/'>x</a>", message_id="m", recipient="r@x")


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: _rewrite_text(exclude=None), id="rewrite_text exclude=None"),
        pytest.param(lambda: _rewrite_text(exclude=5), id="rewrite_text exclude=5"),
        pytest.param(lambda: _rewrite_text(exclude=[["https://x.com/"]]), id="rewrite_text exclude of lists"),
        pytest.param(lambda: _tracker(placeholder_patterns="(("), id="placeholder pattern that does not compile"),
        pytest.param(lambda: _tracker(placeholder_patterns=5), id="placeholder_patterns=5"),
        pytest.param(lambda: _tracker(placeholder_patterns=["x", "(?i)y"]), id="placeholder patterns that do not join"),
        pytest.param(lambda: _tracker(placeholder_patterns=["(?P<a>x)", "(?P<a>y)"]), id="placeholder group names twice"),
        pytest.param(lambda: _tracker(paths=[("click", "x")]), id="paths as a list"),
        pytest.param(lambda: _tracker(paths=5), id="paths=5"),
        pytest.param(lambda: _tracker(digest_method="sha1"), id="digest_method as a name"),
        pytest.param(lambda: _tracker(signature_size="16"), id="signature_size as a str"),
        pytest.param(lambda: _tracker(clock="now"), id="clock not callable"),
        pytest.param(lambda: _endpoints(trusted_proxies=["proxy.internal"]), id="trusted proxy not an address"),
        pytest.param(lambda: _endpoints(trusted_proxies=None), id="trusted_proxies=None"),
        pytest.param(lambda: _endpoints(trusted_proxies=[10]), id="trusted proxy an int"),
        pytest.param(lambda: mailtrack.EventType.for_kind("visit"), id="EventType.for_kind of an unknown kind"),
    ],
)
def test_bad_options_and_arguments_are_refused_with_mailtrack_errors(call: Any) -> None:
    """Inputs the hypothesis tests above rarely or never reach (found by an adversarial pass over issue #8)."""
    with pytest.raises(MailtrackError):
        call()


def test_one_trusted_proxy_given_as_a_str_is_one_network() -> None:
    endpoints = mailtrack.Endpoints(TRACKER, trusted_proxies="10.0.0.0/8")
    assert endpoints._trusted("10.1.2.3") and not endpoints._trusted("192.0.2.1")


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda db: mailtrack.Endpoints(TRACKER, trusted_proxies=["not-an-address"]), id="endpoints-proxy-garbage"),
        pytest.param(lambda db: mailtrack.Endpoints(TRACKER, trusted_proxies=None), id="endpoints-proxies-none"),
        pytest.param(lambda db: mailtrack.Endpoints("not a tracker"), id="endpoints-no-tracker"),
        pytest.param(lambda db: mailtrack.WebhookDelivery(mailtrack.SQLiteStore(db), 5, "s" * 32), id="webhook-url-int"),
        pytest.param(lambda db: mailtrack.WebhookDelivery(mailtrack.SQLiteStore(db), None, "s" * 32), id="webhook-url-none"),
        pytest.param(lambda db: mailtrack.Recorder(None, outbox="https://hooks.example/"), id="recorder-outbox-one-str"),
        pytest.param(lambda db: mailtrack.Recorder(None, outbox=[5]), id="recorder-outbox-int"),
    ],
)
def test_adapter_constructors_refuse_bad_configuration_with_configuration_error(build: Any, tmp_path: Path) -> None:
    with pytest.raises(mailtrack.ConfigurationError):
        accepted = build(tmp_path / "events.sqlite")
        if isinstance(accepted, mailtrack.Recorder):  # stop its threads before the test fails
            accepted.close()
