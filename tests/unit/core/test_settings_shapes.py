"""Settings in both SendGrid shapes (mail/send and the v3 account API), precedence and PATCH."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from support.helpers import CORPUS, make_tracker, rewrite

import mailtrack

ACCOUNT = {
    "click": {"enabled": False, "enable_text": True},
    "open": {"enabled": True},
    "subscription": {
        "enabled": False,
        "html_content": "<p>Something something unsubscribe <% %> something something</p>\n",
        "landing": "<p>subscribehere</p>\n",
        "plain_content": "Something something unsubscribe <% %> something something",
        "replace": "thetag",
        "url": "http://mydomain.com/parse",
    },
    "google_analytics": {"enabled": False, "utm_campaign": "", "utm_content": "lotsandlotsofcontent",
                         "utm_medium": "", "utm_source": "", "utm_term": ""},
}
OAI = CORPUS.parent / "sendgrid-oai" / "tsg_tracking_settings_v3.json"


def test_account_shape_round_trip() -> None:
    settings = mailtrack.TrackingSettings.from_account(ACCOUNT)
    assert settings.to_account_dict() == ACCOUNT
    assert settings.click_tracking == mailtrack.ClickTracking(enable=False, enable_text=True)
    assert settings.subscription_tracking.substitution_tag == "thetag"
    assert settings.subscription_tracking.text == ACCOUNT["subscription"]["plain_content"]
    assert settings.ganalytics.utm_content == "lotsandlotsofcontent"


@pytest.mark.skipif(not OAI.exists(), reason="../shared/sendgrid-oai is absent")
def test_every_example_of_the_openapi_file_loads_and_round_trips() -> None:
    spec = json.loads(OAI.read_text(encoding="utf-8"))
    seen = 0
    for path, operations in spec["paths"].items():
        section = path.rsplit("/", 1)[1]
        if section == "tracking_settings":
            continue
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                for example in response.get("content", {}).get("application/json", {}).get("examples", {}).values():
                    body = example["value"]
                    loaded = mailtrack.TrackingSettings.from_account({section: body})
                    assert loaded.to_account_dict()[section] == body
                    seen += 1
    assert seen >= 8


def test_precedence_defaults_account_message() -> None:
    account = mailtrack.TrackingSettings.from_account({"click": {"enabled": False}, "open": {"enabled": False}})
    assert account.click_tracking.enable is False and account.click_tracking.enable_text is False  # default kept
    assert account.merged(None) is account
    message = account.merged({"open_tracking": {"enable": True}})  # says nothing about clicks
    assert message.open_tracking.enable is True and message.click_tracking.enable is False
    assert account.merged({"click": True}).click_tracking == mailtrack.ClickTracking(enable=True, enable_text=False)
    whole = mailtrack.TrackingSettings()
    assert account.merged(whole) is whole  # an object is taken whole


def test_tracker_account_settings_apply_to_every_message() -> None:
    tracker = make_tracker(settings=mailtrack.TrackingSettings.from_account({"open": {"enabled": False}}))
    html = '<body><a href="https://x.example/">x</a></body>'
    assert rewrite(tracker, html).pixels == []
    assert len(rewrite(tracker, html, settings={"open": True}).pixels) == 1
    assert rewrite(tracker, html, settings={"click": False}).links == []
    assert tracker.settings.open_tracking.enable is False


@pytest.mark.parametrize(
    "section, body, response",
    [
        ("click", {"enabled": False}, {"enabled": False, "enable_text": False}),
        ("open", {"enabled": False}, {"enabled": False}),
        ("subscription", {"enabled": False, "url": "https://x.example/u", "replace": "[u]"},
         {"enabled": False, "url": "https://x.example/u", "replace": "[u]"}),
        ("google_analytics", {"enabled": True, "utm_source": "news"}, {"enabled": True, "utm_source": "news"}),
    ],
)
def test_patch_returns_new_settings_and_the_response_body(section: str, body: dict[str, Any], response: dict[str, Any]) -> None:
    before = mailtrack.TrackingSettings()
    after, answer = before.patch(section, body)
    assert answer == response
    assert after.to_account_dict()[section] == response
    assert before == mailtrack.TrackingSettings()  # immutable: the original is unchanged


@pytest.mark.parametrize("url", ["https://x.example/u", "HTTP://x.example", "https://[::1]:8080/u?a=1&b=%20#f", "",
                                 None])
def test_a_patched_url_is_a_web_uri_or_unset(url: str | None) -> None:
    settings, answer = mailtrack.TrackingSettings().patch("subscription", {"url": url})
    assert settings.subscription_tracking.url == url and answer.get("url") == url


def test_a_stored_url_from_before_the_check_still_loads() -> None:
    """Only writes are checked: settings stored earlier load as they are (a GET never fails on them)."""
    loaded = mailtrack.TrackingSettings.from_account({"subscription": {"url": "legacy value"}})
    assert loaded.subscription_tracking.url == "legacy value"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.patch("click", {"enable_text": True}), "click.enable_text is not a known setting"),
        (lambda s: s.patch("click", {"enabled": "yes"}), "click.enabled must be a boolean"),
        (lambda s: s.patch("bounce", {}), "bounce is not a tracking setting"),
        (lambda s: s.patch("subscription", {"url": 5}), "subscription.url must be a string"),
        (lambda s: s.patch("subscription", {"url": "not a url"}), "subscription.url must be an absolute http(s) URI"),
        (lambda s: s.patch("subscription", {"url": "mailto:u@example.com"}), "subscription.url must be an absolute"),
        (lambda s: s.patch("subscription", {"url": "https://exämple.com/u"}), "subscription.url must be an absolute"),
        (lambda s: s.patch("subscription", {"url": "https://x.example/a b"}), "subscription.url must be an absolute"),
        (lambda s: s.patch("subscription", {"url": "https://x.example/%zz"}), "subscription.url must be an absolute"),
        (lambda s: s.patch("subscription", {"url": "https://"}), "subscription.url must be an absolute"),
        (lambda s: s.patch("subscription", []), "subscription must be an object"),
        (lambda s: mailtrack.TrackingSettings.from_account({"click": {"enable": True}}),
         "click.enable is not a known setting"),
        (lambda s: mailtrack.TrackingSettings.from_account({"click_tracking": {}}), "click_tracking is not a known setting"),
        (lambda s: mailtrack.TrackingSettings.from_account({"google_analytics": {"utm_source": 1}}),
         "google_analytics.utm_source must be a string"),
        (lambda s: s.merged({"open": "yes"}), "open must be a boolean"),
        (lambda s: s.merged({"ganalytics": {"enable": 1}}), "ganalytics.enable must be a boolean"),
        (lambda s: mailtrack.GoogleAnalytics(utm_term=3), "ganalytics.utm_term must be a string"),  # type: ignore[arg-type]
        (lambda s: mailtrack.SubscriptionTracking(enable="on"), "subscription_tracking.enable must be a boolean"),  # type: ignore[arg-type]
        (lambda s: mailtrack.TrackingSettings(ganalytics=None), "ganalytics must be a GoogleAnalytics"),  # type: ignore[arg-type]
    ],
)
def test_errors_name_the_field(call: Any, message: str) -> None:
    with pytest.raises(mailtrack.SettingsError, match=re.escape(message)):
        call(mailtrack.TrackingSettings())


def test_patched_account_settings_drive_rewriting() -> None:
    settings, _ = mailtrack.TrackingSettings().patch("subscription", {"enabled": True})
    tracker = make_tracker(settings=settings)
    assert len(rewrite(tracker, "<body></body>").unsubscribe) == 1
    assert rewrite(tracker, "<body></body>", settings={"subscription_tracking": {"enable": False}}).unsubscribe == []
