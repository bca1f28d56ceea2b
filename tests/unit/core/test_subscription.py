"""Subscription tracking (SendGrid semantics): footers, <% %> links, substitution tags, idempotence."""

from __future__ import annotations

import html5lib
import pytest
from support.helpers import BASE_URL, make_tracker, rewrite

import mailtrack

ON = {"subscription_tracking": {"enable": True}, "open_tracking": {"enable": False}}


def unsubscribe_hrefs(document: str) -> list[str]:
    tree = html5lib.parse(document, namespaceHTMLElements=False)
    return [a.get("href") for a in tree.iter("a") if (a.get("href") or "").startswith(BASE_URL + "/u/")]


def test_default_html_footer_before_body_end() -> None:
    tracker = make_tracker()
    html = '<html><body><a href="https://x.example/">x</a></body></html>'
    result = rewrite(tracker, html, settings=ON)
    (footer,) = result.unsubscribe
    assert footer.position == html.index("</body>")
    assert "If you would like to unsubscribe" in footer.html
    (href,) = unsubscribe_hrefs(result.html)
    verified = tracker.verify(href)
    assert (verified.kind, verified.message_id, verified.recipient) == ("unsubscribe", "msg-1", "ann@example.com")
    assert [link.url for link in result.links] == ["https://x.example/"]  # the unsubscribe link is not click-wrapped


def test_custom_footers_and_link_text() -> None:
    tracker = make_tracker()
    settings = {"subscription_tracking": {"enable": True, "html": "<p>Bye? <% <b>Leave</b> %> or <% %></p>",
                                          "text": "Leave: <% ignored text %>"},
                "click_tracking": {"enable_text": True}, "open_tracking": {"enable": False}}
    result = rewrite(tracker, "<body>x</body>", settings=settings)
    url = unsubscribe_hrefs(result.html)[0]
    assert result.html == f'<body>x<p>Bye? <a href="{url}"><b>Leave</b></a> or <a href="{url}">{url}</a></p></body>'
    text = tracker.rewrite_text("Hi", message_id="msg-1", recipient="ann@example.com", settings=settings, issued_at=1_700_000_000)
    assert text.text == f"Hi\n\nLeave: {url}\n"
    crlf = tracker.rewrite_text("Hi\r\n", message_id="msg-1", recipient="ann@example.com", settings=settings,
                                issued_at=1_700_000_000)
    assert crlf.text == f"Hi\r\n\r\nLeave: {url}\r\n"


def test_substitution_tag_overrides_footers() -> None:
    tracker = make_tracker()
    settings = {"subscription_tracking": {"enable": True, "substitution_tag": "[unsub]", "html": "<p>never</p>"},
                "open_tracking": {"enable": False}, "click_tracking": {"enable_text": True}}
    html = '<body><a href="[unsub]">Unsubscribe</a> or visit [unsub]</body>'
    result = rewrite(tracker, html, settings=settings)
    url = result.unsubscribe[0].html
    assert result.html == html.replace("[unsub]", url)
    assert [s.reason for s in result.skipped] == ["placeholder"]  # left for the substitution, not tracked
    assert tracker.verify(url).kind == "unsubscribe"
    text = tracker.rewrite_text("Stop: [unsub]", message_id="msg-1", recipient="ann@example.com", settings=settings,
                                issued_at=1_700_000_000)
    assert text.text == f"Stop: {url}" and text.links == []  # the bare URL, never click-wrapped
    missing = rewrite(tracker, "<body>x</body>", settings=settings)  # an unsubscribe link must exist: footer instead
    assert "<p>never</p>" in missing.html and any("not found" in w and "footer" in w for w in missing.warnings)


def test_second_pass_adds_no_second_footer() -> None:
    tracker = make_tracker()
    settings = {"subscription_tracking": {"enable": True}, "click_tracking": {"enable_text": True}}
    once = rewrite(tracker, "<body><p>x</p></body>", settings=settings)
    assert rewrite(tracker, once.html, settings=settings).html == once.html
    text = tracker.rewrite_text("Hello", message_id="m", recipient="r", settings=settings)
    assert tracker.rewrite_text(text.text, message_id="m", recipient="r", settings=settings).text == text.text


def test_footer_and_pixel_order() -> None:
    tracker = make_tracker()
    result = rewrite(tracker, "<body>x</body>", settings={"subscription_tracking": {"enable": True}})
    assert result.html.index(BASE_URL + "/u/") < result.html.index(BASE_URL + "/o/") < result.html.index("</body>")


def test_account_settings_load_subscription() -> None:
    account = mailtrack.TrackingSettings.from_account(
        {"subscription": {"enabled": True, "html_content": "<p><% Unsubscribe %></p>", "plain_content": "Stop: <% %>",
                          "replace": "", "url": "", "landing": "<p>Done</p>"}}
    )
    tracker = make_tracker(settings=account)
    result = rewrite(tracker, "<body>x</body>", settings={"open_tracking": {"enable": False}})
    assert result.html.startswith("<body>x<p><a href=") and ">Unsubscribe</a></p></body>" in result.html


def test_links_in_footers_are_tracked_once() -> None:
    tracker = make_tracker()
    settings = {"subscription_tracking": {"enable": True, "html": '<a href="https://b.example/">b</a> <% Unsub %>',
                                          "text": "See https://b.example/ <% %>"},
                "click_tracking": {"enable": True, "enable_text": True}}
    first = rewrite(tracker, "<p>x</p>", settings=settings)
    assert [link.url for link in first.links] == ["https://b.example/"]
    assert (first.links[0].start, first.links[0].end) == (8, 8)  # not in the input: where the footer went
    assert rewrite(tracker, first.html, settings=settings).html == first.html
    text = tracker.rewrite_text("Hi", message_id="m", recipient="r", settings=settings)
    assert [link.url for link in text.links] == ["https://b.example/"]
    assert tracker.rewrite_text(text.text, message_id="m", recipient="r", settings=settings).text == text.text


def test_subscription_settings_checks() -> None:
    with pytest.raises(mailtrack.SettingsError, match="must not be blank"):
        mailtrack.TrackingSettings.coerce({"subscription_tracking": {"enable": True, "substitution_tag": "  "}})
    with pytest.raises(mailtrack.SettingsError, match="must differ"):
        mailtrack.TrackingSettings.coerce({"subscription_tracking": {"substitution_tag": "[t]"},
                                           "open_tracking": {"substitution_tag": "[t]"}})
    with pytest.raises(mailtrack.SettingsError):
        mailtrack.TrackingSettings().patch(["click"], {})  # type: ignore[arg-type]
    with pytest.raises(mailtrack.SettingsError, match="mixes the shorthand"):
        mailtrack.TrackingSettings.coerce({"open": True, "click_tracking": {"enable": False}})


def test_tag_only_inside_a_tracked_link_falls_back_to_the_footer() -> None:
    tracker = make_tracker()
    settings = {"subscription_tracking": {"enable": True, "substitution_tag": "[u]"}, "open_tracking": {"enable": False}}
    result = rewrite(tracker, '<body><a href="https://a.example/?x=[u]">x</a></body>', settings=settings)
    assert len(result.unsubscribe) == 1 and "If you would like to unsubscribe" in result.unsubscribe[0].html
    assert len([w for w in result.warnings if "[u]" in w]) == 1


def test_a_glued_substitution_tag_gets_a_space_and_says_so_once() -> None:
    tracker = make_tracker()
    settings = {"subscription_tracking": {"enable": True, "substitution_tag": "[unsub]"}}
    result = tracker.rewrite_text("A [unsub]_x B [unsub]-y C [unsub] D\n", message_id="m", recipient="r@x.example",
                                  settings=settings)
    assert [p.html.endswith(" ") for p in result.unsubscribe] == [True, True, False]
    assert sum("a space was put after the URL" in w and "2 time(s)" in w for w in result.warnings) == 1
    assert "_x B" in result.text and "-y C" in result.text  # the rest of the text stays as written


def test_a_text_footer_url_is_kept_apart_from_what_follows_it_only_when_needed() -> None:
    from mailtrack.core.rewrite.footer import text_footer

    url = BASE_URL + "/u/abc.def.ghi"
    assert text_footer("Leave: <% %>-now", url) == f"Leave: {url} -now"
    assert text_footer("Leave: <% %>.", url) == f"Leave: {url}."  # a full stop ends a URL for every reader
    assert text_footer("Leave (<% %>)", url) == f"Leave ({url})"
    assert text_footer("<% %>", url) == url
