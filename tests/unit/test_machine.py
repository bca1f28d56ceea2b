"""mailtrack.machine: each signal, the priority between them, the ranges file and its errors, RFC 8058's body."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailtrack.config import Config
from mailtrack.exceptions import ConfigurationError
from mailtrack.machine import (
    Classifier,
    MachineRanges,
    classifier_for,
    default_classifier,
    one_click_body,
)

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
          "Safari/537.36")
BROWSER = {"user-agent": CHROME, "accept-language": "en-US"}
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
SAFE_LINKS = ("Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/57.0.2987.133 "
              "Safari/537.36")
HEADER = "network,label,source,retrieved\n"


@pytest.fixture
def classify() -> Classifier:
    return default_classifier()


def test_a_browser_is_a_person(classify: Classifier) -> None:
    for kind in ("open", "click", "unsubscribe"):
        assert classify.classify("GET", kind, BROWSER, "203.0.113.5", 0, 3600) == (None, ())
    assert classify.classify("GET", "click", BROWSER, None) == (None, ())  # no address, no times: nothing weak


def test_image_proxies_by_agent(classify: Classifier) -> None:
    label, reasons = classify.classify("GET", "open", {"user-agent": GMAIL}, "66.249.84.1")
    assert label == "image_proxy" and "GoogleImageProxy" in reasons[0]
    yahoo = {"user-agent": "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"}
    assert classify.classify("GET", "open", yahoo, "203.0.113.1")[0] == "image_proxy"


def test_apple_mpp_is_the_bare_agent_and_apple_only_corroborates(classify: Classifier) -> None:
    label, reasons = classify.classify("GET", "open", {"user-agent": "Mozilla/5.0"}, "17.58.1.2")
    assert label == "apple_mpp" and len(reasons) == 2 and "17.0.0.0/8" in reasons[1]
    label, reasons = classify.classify("GET", "open", {"user-agent": "Mozilla/5.0"}, "104.28.40.7")
    assert label == "apple_mpp" and len(reasons) == 1  # a Private Relay egress: the agent alone
    apple_mail = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    assert classify.classify("GET", "open", {"user-agent": apple_mail}, "17.58.1.2") == (None, ())
    # MPP fetches images, never links: the bare agent on a link is a scanner
    assert classify.classify("GET", "click", {"user-agent": "Mozilla/5.0"}, "17.58.1.2")[0] == "link_scanner"


@pytest.mark.parametrize("address", ["40.107.218.12", "::ffff:40.107.218.12", "2a01:111:f403:c000::5",
                                     "104.47.1.1", "209.222.82.10"])
def test_scanner_ranges(classify: Classifier, address: str) -> None:
    label, reasons = classify.classify("GET", "click", BROWSER, address, 0, 3600)
    assert label == "link_scanner" and "link_scanner block" in reasons[0]
    assert classify.classify("GET", "open", BROWSER, address)[0] == "link_scanner"


@pytest.mark.parametrize("agent", ["python-requests/2.31.0", "curl/8.5.0", "Wget/1.21", "Go-http-client/1.1",
                                   "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                                   "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0 Safari/537.36",
                                   "Barracuda Sentinel (EE)", "Mimecast URL Protect"])
def test_automation_and_vendor_agents(classify: Classifier, agent: str) -> None:
    label, reasons = classify.classify("GET", "click", {"user-agent": agent, "accept-language": "en"}, "203.0.113.5")
    assert label == "link_scanner" and reasons


@pytest.mark.parametrize("headers", [{"sec-purpose": "prefetch"}, {"sec-purpose": "prefetch;prerender"},
                                     {"purpose": "prefetch"}, {"x-moz": "prefetch"}, {"x-purpose": "preview"}])
def test_prefetch_headers(classify: Classifier, headers: dict[str, str]) -> None:
    label, reasons = classify.classify("GET", "click", {**BROWSER, **headers}, "203.0.113.5", 0, 3600)
    assert label == "prefetch" and len(reasons) == 1


def test_head_is_prefetch_unless_someone_is_named(classify: Classifier) -> None:
    assert classify.classify("HEAD", "click", BROWSER, "203.0.113.5")[0] == "prefetch"
    label, reasons = classify.classify("HEAD", "click", BROWSER, "40.107.1.1")
    assert label == "link_scanner" and len(reasons) == 2  # who before how; both reasons kept


def test_weak_signals_need_a_second(classify: Classifier) -> None:
    old = {"user-agent": SAFE_LINKS, "accept-language": "en"}
    assert classify.classify("GET", "click", BROWSER, "203.0.113.5", 1000, 1003) == (None, ())  # fast only
    assert classify.classify("GET", "click", old, "203.0.113.5", 1000, 9000) == (None, ())  # old Chrome only
    label, reasons = classify.classify("GET", "click", old, "203.0.113.5", 1000, 1003)
    assert label == "link_scanner" and len(reasons) == 2
    label, reasons = classify.classify("GET", "click", {}, "203.0.113.5")  # no agent, no language
    assert label == "link_scanner" and len(reasons) == 2
    # a navigation the user activated (Fetch Metadata's Sec-Fetch-User) outweighs the weak signals
    assert classify.classify("GET", "click", {**old, "sec-fetch-user": "?1"}, "203.0.113.5", 1000, 1003) == (None, ())
    # opens never get a weak verdict: a reader with the client open sees mail at once
    assert classify.classify("GET", "open", {}, "203.0.113.5", 1000, 1001) == (None, ())
    assert Classifier(None, scanner_seconds=0).classify("GET", "click", old, None, 1000, 1000) == (None, ())


def test_an_rfc_8058_post_is_the_readers_request_whatever_its_weak_signals(classify: Classifier) -> None:
    """Gmail's, Yahoo's and Apple's servers send RFC 8058's POST when their user presses Unsubscribe: no browser's
    headers, seconds after delivery. The body is the user's request: weak signals do not make it a machine's."""
    server = {"user-agent": "Google-One-Click-Unsubscribe", "content-type": "application/x-www-form-urlencoded"}
    assert classify.classify("POST", "unsubscribe", {}, "203.0.113.5", 1000, 1002)[0] == "link_scanner"
    assert classify.classify("POST", "unsubscribe", {}, "203.0.113.5", 1000, 1002, one_click=True) == (None, ())
    assert classify.classify("POST", "unsubscribe", server, "203.0.113.5", 1000, 1002, one_click=True) == (None, ())
    # a strong signal still labels it (the endpoint honours the body all the same)
    label, _ = classify.classify("POST", "unsubscribe", {"user-agent": "python-requests/2.31"}, None, 1000, 1002,
                                 one_click=True)
    assert label == "link_scanner"


def test_honeypot_wins(classify: Classifier) -> None:
    label, reasons = classify.classify("GET", "click", BROWSER, "40.107.1.1", honeypot=True)
    assert label == "honeypot" and "honeypot" in reasons[0] and len(reasons) == 2


def test_reasons_never_hold_the_address_or_agent(classify: Classifier) -> None:
    _, reasons = classify.classify("GET", "click", {"user-agent": "curl/8.5.0 secret-build"}, "40.107.218.12", 0, 1)
    assert not any("40.107.218.12" in reason or "secret-build" in reason for reason in reasons)


def test_no_ranges_no_lookup() -> None:
    assert Classifier(None).classify("GET", "click", BROWSER, "40.107.1.1") == (None, ())


# -- the ranges file ------------------------------------------------------------------------------------------


def test_the_shipped_file_is_sourced_and_dated() -> None:
    ranges = MachineRanges.default()
    assert len(ranges) >= 10
    for block in ranges.blocks:
        assert block.source.startswith("https://") and block.retrieved.startswith("20")
    assert {block.label for block in ranges.blocks} == {"link_scanner", "apple_mpp"}


@pytest.mark.parametrize("address, found", [
    ("40.107.0.0", "40.107.0.0/16"), ("40.107.255.255", "40.107.0.0/16"), ("40.108.0.0", None), ("40.106.255.255", None),
    ("52.238.78.88", "52.238.78.88/32"), ("52.238.78.89", None), ("2a01:111:f400:ffff::1", "2a01:111:f400::/48"),
    ("fe80::1%eth0", None), ("", None), ("not an address", None), ("1", None), ("::ffff:17.1.2.3", "17.0.0.0/8"),
])
def test_lookup(address: str, found: str | None) -> None:
    block = MachineRanges.default().lookup(address)
    assert (None if block is None else str(block.network)) == found


@pytest.mark.parametrize("text, problem", [
    ("", "no header row"),
    ("net,label\n", "line 1: the first row must be the header"),
    (HEADER + "10.0.0.0/8,link_scanner,https://x\n", "line 2: 3 fields"),
    (HEADER + "# ok\n10.0.0.1/8,link_scanner,https://x,2026-01-01\n", "line 3: '10.0.0.1/8' is not a network"),
    (HEADER + "10.0.0.0/8,honeypot,https://x,2026-01-01\n", "line 2: label 'honeypot' is not one of"),
    (HEADER + "10.0.0.0/8,link_scanner,,2026-01-01\n", "line 2: every block needs its source"),
    (HEADER + "10.0.0.0/8,link_scanner,https://x,yesterday\n", "line 2: retrieved must be a date"),
    (HEADER + "10.0.0.0/8,link_scanner,https://x,2026-01-01\n10.1.0.0/16,image_proxy,https://y,2026-01-01\n",
     "line 3: 10.1.0.0/16 overlaps 10.0.0.0/8 (line 2)"),
    (HEADER + '10.0.0.0/8,link_scanner,"https://x,2026-01-01\n', "line 2: "),
])
def test_bad_ranges_name_the_line(text: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match="mine.csv") as caught:
        MachineRanges.parse(text, "mine.csv")
    assert problem in str(caught.value)


def test_a_file_of_ones_own(tmp_path: Path) -> None:
    path = tmp_path / "ranges.csv"
    path.write_text("# mine\n" + HEADER + "198.51.100.0/24,image_proxy,https://example.com/list,2026-11-30\n"
                    "2001:db8::/32,link_scanner,https://example.com/list,2026-11-30\n", encoding="utf-8")
    classifier = classifier_for(str(path))
    assert classifier is not None
    assert classifier.classify("GET", "open", BROWSER, "198.51.100.7")[0] == "image_proxy"
    assert classifier.classify("GET", "open", BROWSER, "2001:db8::7")[0] == "link_scanner"
    assert classifier.classify("GET", "open", BROWSER, "40.107.1.1") == (None, ())  # replaced, not added to
    assert classifier_for("off") is None and classifier_for("OFF") is None
    assert classifier_for(None) is default_classifier()
    with pytest.raises(ConfigurationError, match="cannot read the machine ranges file"):
        classifier_for(str(tmp_path / "missing.csv"))


def test_config_reads_machine_ranges(tmp_path: Path) -> None:
    assert Config.from_sources({}, {}).classifier is default_classifier()
    assert Config.from_sources({"machine_ranges": "off"}, {}).classifier is None
    assert Config.from_sources({}, {"MAILTRACK_MACHINE_RANGES": "off"}).classifier is None
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "10.0.0.0/8,nope,https://x,2026-01-01\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"line 2: label 'nope'.*--machine-ranges, MAILTRACK_MACHINE_RANGES"):
        Config.from_sources({}, {"MAILTRACK_MACHINE_RANGES": str(bad)})


# -- RFC 8058's body ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, kind, expected", [
    (b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded", True),
    (b"List-Unsubscribe=One-Click", None, True),
    (b"other=1&List-Unsubscribe=One-Click", "application/x-www-form-urlencoded; charset=utf-8", True),
    (b"List-Unsubscribe=One-Click-Not", "application/x-www-form-urlencoded", False),
    (b"", "application/x-www-form-urlencoded", False),
    (b"\xff\xfe", None, False),
    (b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b--\r\n',
     "multipart/form-data; boundary=b", True),
    (b'--b\r\nContent-Disposition: form-data; name="Other"\r\n\r\nOne-Click\r\n--b--\r\n',
     "multipart/form-data; boundary=b", False),
])
def test_one_click_body(body: bytes, kind: str | None, expected: bool) -> None:
    assert one_click_body(body, kind) is expected
