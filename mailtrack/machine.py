"""Machine events: whether a request to a tracking URL was a person's, or which machine's, and why (issue 14).

Apple Mail Privacy Protection loads every image on arrival, Gmail's and
Yahoo's image proxies fetch the pixel for the reader (once, then cache it),
and link scanners (Microsoft Safe Links / Defender, Barracuda, Mimecast,
Proofpoint) fetch every link before and at delivery. :class:`Classifier`
looks at one request (method, which URL, headers, the client's address after
trusted-proxy resolution, and how long after signing it came) and answers a
verdict: ``(None, ())`` for a person as far as we can tell, or one of
:data:`~mailtrack.events.MACHINE_LABELS` with the reasons that led to it.
It is pure logic over what the request says; :mod:`mailtrack.http.endpoints`
calls it for every event, on the raw request, before privacy mode reduces the
address and user agent (:mod:`mailtrack.delivery.privacy`). The reasons name
the signal and a network, never the reader's full address or user agent, so
they are safe to store under privacy mode.

The signals, each with its source. *Strong* signals label a request alone;
*weak* ones label a click only when two agree, since each alone also fits people.

``prefetch`` (strong)
    ``HEAD`` (RFC 9110, section 9.3.2: the headers of a ``GET`` without its
    body; what link checkers and scanners send, never a person following a
    link); ``Sec-Purpose: prefetch`` (the Fetch standard,
    https://fetch.spec.whatwg.org/#sec-purpose-header, and Chrome's
    speculation rules), its older spellings ``Purpose: prefetch`` (Chrome
    before Sec-Purpose) and ``X-Moz: prefetch`` (Firefox's link prefetching,
    https://developer.mozilla.org/en-US/docs/Web/HTTP/Link_prefetching_FAQ),
    and ``X-Purpose: preview`` (Safari's Top Sites thumbnails).
``image_proxy`` (strong)
    The user agent names ``GoogleImageProxy`` (Gmail's image proxy, "via
    ggpht.com GoogleImageProxy", https://support.google.com/mail/answer/145919)
    or ``YahooMailProxy`` (https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html),
    or the address is in an ``image_proxy`` block of the ranges file. A real
    first open, whose later opens the proxy answers from its cache.
``apple_mpp`` (strong, opens only)
    The user agent is exactly ``Mozilla/5.0``, nothing after it: what Mail
    Privacy Protection's proxy fetches send since 20 September 2021
    (https://github.com/ua-parser/uap-core/issues/509), and no mail client or
    browser a person reads with (each adds its platform and engine). An address
    in an ``apple_mpp`` block (Apple's 17.0.0.0/8) adds a corroborating reason;
    an Apple address alone labels nothing, since Apple's own network and iCloud
    Private Relay carry people (MPP shares Private Relay's egress,
    https://wordtothewise.com/2021/09/apple-mpp-reporting-and-geolocation/).
``link_scanner`` (strong)
    The address is in a ``link_scanner`` block (Exchange Online Protection,
    where Safe Links detonates URLs: gophish/gophish#973 logs its requests from
    40.107.218.12; Barracuda Email Gateway Defense); the user agent names a
    mail-security vendor (Barracuda, Mimecast, Proofpoint, MessageLabs,
    IronPort, Trend Micro: the agents that mautic/mautic#16263 and other
    trackers list) or is an automation client or crawler (``HeadlessChrome``,
    ``python-requests``, ``curl``, ``Wget``, ``Go-http-client``, ``Java``,
    ``Apache-HttpClient``, ``libwww-perl``, ``PhantomJS``, a ``...bot/``
    agent); or the user agent is the bare ``Mozilla/5.0`` on a click or an
    unsubscribe (MPP fetches images, never links).
``link_scanner`` (weak, clicks and unsubscribes only; two are needed)
    * the request came less than :data:`SCANNER_SECONDS` (10 s) after the token
      was signed: scanners fetch at delivery, seconds after sending
      (resend/resend-node#901 shows a scanner click 12 s after delivery),
      while a person needs time to see the message; but signing may happen
      long before sending, and a transactional mail can be clicked fast;
    * a Chrome older than version :data:`OLD_CHROME` (80, February 2020) on
      Windows: Safe Links' detonation browser has sent Chrome 57, 64 and 72
      (gophish/gophish#973, opencollective/opencollective#3656), but people
      on old machines run old browsers too;
    * no ``User-Agent`` at all (every browser sends one);
    * no ``Accept-Language`` (browsers send it with every navigation; the
      scanners' HTTP clients usually do not).

    ``Sec-Fetch-User: ?1`` cancels the weak signals: a browser sends it only
    for a navigation the user activated (Fetch Metadata,
    https://w3c.github.io/webappsec-fetch-metadata/#sec-fetch-user-header),
    which a scanner driving a browser by script does not produce. ``Via``
    is not used: it says a proxy passed the request on, not whose.
``honeypot``
    A click on the invisible link the rewriter adds with
    ``Tracker(honeypot=True)`` (see :mod:`mailtrack.core.rewrite.honeypot`):
    no person sees it, so whatever follows it is a machine. Given by the
    endpoint (:meth:`Classifier.classify`'s ``honeypot``); the clicks of that
    message around it are the store's business.

When strong signals of several labels match, the first of ``honeypot``,
``apple_mpp``, ``image_proxy``, ``link_scanner``, ``prefetch`` wins (who
fetched, before how); every matching reason is kept.

The IP ranges come from a CSV file shipped in the package
(``mailtrack/data/machine_ranges.csv``: ``network,label,source,retrieved``,
each block with where it is published and when it was read), replaceable with
``mailtrack serve --machine-ranges FILE`` (:meth:`MachineRanges.load`).
Lookups are a binary search over sorted integer intervals: on the serving
path a verdict costs a few microseconds.
"""

from __future__ import annotations

import bisect
import csv
import functools
import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qsl

from mailtrack.events import MACHINE_LABELS
from mailtrack.exceptions import ConfigurationError

__all__ = ["OFF", "OLD_CHROME", "RANGE_LABELS", "SCANNER_SECONDS", "Classifier", "MachineRanges", "RangeBlock",
           "Verdict", "classifier_for", "default_classifier", "one_click_body"]

#: A verdict: the label (None: a person, as far as we can tell) and the reasons that led to it.
Verdict = tuple[str | None, tuple[str, ...]]
#: The labels a block of the ranges file may carry (prefetch and honeypot are about requests, not networks).
RANGE_LABELS = ("apple_mpp", "image_proxy", "link_scanner")
#: A click sooner than this many seconds after its token was signed is a weak scanner signal.
SCANNER_SECONDS = 10.0
#: A Chrome older than this major version, on Windows, is a weak scanner signal (Safe Links sent 57, 64, 72).
OLD_CHROME = 80
#: Strongest first: the label a request gets when strong signals of several labels match.
_PRIORITY = ("honeypot", "apple_mpp", "image_proxy", "link_scanner", "prefetch")
_PERSON: Verdict = (None, ())
_HEADER = ("network", "label", "source", "retrieved")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

#: User-agent tokens of machines (lowercase), searched as substrings of the lowercased agent: one C-level search each,
#: where one regex alternation tried at every position cost tens of microseconds a request. Value: the reason's key.
_AGENT_TOKENS: tuple[tuple[str, str], ...] = (
    ("googleimageproxy", "google"), ("yahoomailproxy", "yahoo"),
    *((vendor, "vendor") for vendor in ("barracuda", "mimecast", "proofpoint", "messagelabs", "ironport", "trendmicro",
                                        "trend micro")),
    *((client, "automation") for client in ("headlesschrome", "phantomjs", "python-requests", "python-urllib",
                                            "aiohttp", "curl/", "wget/", "go-http-client", "java/", "apache-httpclient",
                                            "libwww-perl", "node-fetch", "scrapy", "crawler", "spider/")),
)
#: A crawler's name before its "bot/" (Googlebot/2.1, bingbot/2.0): found by :func:`_crawler`, which is linear in the
#: agent, where the regex ``[a-z0-9_-]*[a-z]bot/`` was quadratic (a 40 kB agent of letters and " bot/": seconds).
_CRAWLER_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
#: Chrome's version after the Windows NT token: searched only past the first ";" or ")" after "Windows NT " (see
#: :func:`_old_chrome`; the one regex ``Windows NT [^;)]*[;)].*\bChrome/(\d+)\.`` was quadratic in the agent).
_CHROME_VERSION = re.compile(r"\bChrome/(\d+)\.")
_SOURCES = {
    "google": ("image_proxy", "user agent names GoogleImageProxy (Gmail's image proxy)"),
    "yahoo": ("image_proxy", "user agent names YahooMailProxy (Yahoo Mail's image proxy)"),
    "vendor": ("link_scanner", "user agent names a mail-security vendor ({})"),
    "automation": ("link_scanner", "user agent is an automated client ({})"),
}


@dataclass(frozen=True)
class RangeBlock:
    """One row of the ranges file: a network, its label, where it is published and when that was read."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    label: str
    source: str
    retrieved: str
    line: int = 0


class MachineRanges:
    """The networks of the ranges file, searchable in O(log n) per address (sorted integer intervals, bisect)."""

    def __init__(self, blocks: Iterable[RangeBlock], origin: str = "machine ranges") -> None:
        self.origin = origin
        self.blocks = tuple(blocks)
        self._tables: dict[int, tuple[list[int], list[int], list[RangeBlock]]] = {}
        for version in (4, 6):
            rows = sorted((b for b in self.blocks if b.network.version == version),
                          key=lambda b: int(b.network.network_address))
            starts = [int(b.network.network_address) for b in rows]
            ends = [int(b.network.broadcast_address) for b in rows]
            for i in range(1, len(rows)):
                if starts[i] <= ends[i - 1]:
                    raise ConfigurationError(
                        f"{origin}, line {rows[i].line}: {rows[i].network} overlaps {rows[i - 1].network} "
                        f"(line {rows[i - 1].line}); blocks must not overlap")
            self._tables[version] = (starts, ends, rows)

    def __len__(self) -> int:
        return len(self.blocks)

    def __repr__(self) -> str:
        return f"MachineRanges({self.origin!r}, {len(self.blocks)} blocks)"

    @classmethod
    def parse(cls, text: str, origin: str = "machine ranges") -> MachineRanges:
        """Read the CSV text of a ranges file; any bad row is a :class:`ConfigurationError` naming its line."""
        if not isinstance(text, str):
            raise ConfigurationError(f"{origin}: the ranges must be text, not {type(text).__name__}")
        blocks: list[RangeBlock] = []
        header_seen = False
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                fields = [field.strip() for field in next(csv.reader([stripped], strict=True))]
            except csv.Error as exc:
                raise ConfigurationError(f"{origin}, line {number}: not a CSV row ({exc})") from None
            if not header_seen:
                if tuple(f.lower() for f in fields) != _HEADER:
                    raise ConfigurationError(f"{origin}, line {number}: the first row must be the header "
                                             f"{','.join(_HEADER)}, not {stripped[:80]!r}")
                header_seen = True
                continue
            blocks.append(_block(fields, origin, number))
        if not header_seen:
            raise ConfigurationError(f"{origin}: no header row {','.join(_HEADER)}")
        return cls(blocks, origin)

    @classmethod
    def load(cls, path: str | Path) -> MachineRanges:
        """Read a ranges file (UTF-8 CSV); unreadable or bad: a :class:`ConfigurationError`."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, TypeError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigurationError(f"cannot read the machine ranges file {str(path)!r}: {reason}") from None
        return cls.parse(text, str(path))

    @classmethod
    def default(cls) -> MachineRanges:
        """The ranges shipped in the package (``mailtrack/data/machine_ranges.csv``), read once."""
        return _default_ranges()

    def lookup(self, address: str | None) -> RangeBlock | None:
        """The block ``address`` lies in, or None (also for None or anything that is not an address)."""
        if not address:
            return None
        parsed = _address_value(address)
        if parsed is None:
            return None
        version, value = parsed
        starts, ends, rows = self._tables[version]
        i = bisect.bisect_right(starts, value) - 1
        if i >= 0 and value <= ends[i]:
            return rows[i]
        return None


_MAPPED = b"\x00" * 10 + b"\xff\xff"


def _address_value(address: str) -> tuple[int, int] | None:
    """``(4 or 6, the address as an int)``, or None: ``inet_pton`` (strict, and ten times faster than ``ipaddress``).

    An IPv4-mapped IPv6 address (``::ffff:40.107.1.2`` from a dual-stack socket) is its IPv4 address; a zone
    index (``fe80::1%eth0``) is dropped.
    """
    if ":" not in address:
        try:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
        except (OSError, ValueError):
            return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0])
    except (OSError, ValueError):
        return None
    if packed[:12] == _MAPPED:
        return 4, int.from_bytes(packed[12:], "big")
    return 6, int.from_bytes(packed, "big")


def _block(fields: list[str], origin: str, number: int) -> RangeBlock:
    where = f"{origin}, line {number}"
    if len(fields) != len(_HEADER):
        raise ConfigurationError(f"{where}: {len(fields)} fields, expected {len(_HEADER)} ({','.join(_HEADER)})")
    network_text, label, source, retrieved = fields
    try:
        network = ipaddress.ip_network(network_text, strict=True)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {network_text!r} is not a network ({exc})") from None
    if label not in RANGE_LABELS:
        raise ConfigurationError(f"{where}: label {label!r} is not one of {', '.join(RANGE_LABELS)}")
    if not source:
        raise ConfigurationError(f"{where}: every block needs its source (where it is published)")
    if not _DATE.fullmatch(retrieved):
        raise ConfigurationError(f"{where}: retrieved must be a date like 2026-11-30, not {retrieved!r}")
    return RangeBlock(network, label, source, retrieved, number)


@functools.lru_cache(maxsize=1)
def _default_ranges() -> MachineRanges:
    text = resources.files("mailtrack").joinpath("data/machine_ranges.csv").read_text(encoding="utf-8")
    return MachineRanges.parse(text, "mailtrack/data/machine_ranges.csv")


def one_click_body(body: bytes, content_type: str | None) -> bool:
    """Whether a POST body is RFC 8058's one-click unsubscribe: ``List-Unsubscribe=One-Click``.

    RFC 8058 section 3.1 sends it as ``application/x-www-form-urlencoded`` or
    ``multipart/form-data``; our confirmation page's button sends the same field.
    """
    if not body or len(body) > 65536:
        return False
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return _multipart_one_click(body)
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return False
    return ("List-Unsubscribe", "One-Click") in pairs


_PART_NAME = re.compile(rb'name="?List-Unsubscribe"?\r?\Z')


def _multipart_one_click(body: bytes) -> bool:
    """Whether a ``multipart/form-data`` body has a part named ``List-Unsubscribe`` whose value is ``One-Click``.

    One pass over the lines: the part's header lines after its name, a blank line, then ``One-Click`` on a line of
    its own. (The one regex that said this rescanned the lines after every ``name=`` line: 64 kB of them, a second
    and a half of CPU for one POST.)
    """
    lines = body.split(b"\n")
    last = len(lines) - 1  # the text after the last newline: not a whole line
    i = 0
    while i < last:
        if _PART_NAME.search(lines[i]) is None:
            i += 1
            continue
        i += 1
        while i < last and lines[i] not in (b"", b"\r"):
            i += 1  # the part's other header lines
        if i + 1 < last and lines[i + 1] in (b"One-Click", b"One-Click\r"):
            return True
    return False


class Classifier:
    """Decides the machine verdict of one request; see the module documentation for every signal and its source.

    ``ranges`` is the networks table (None: no address is looked up).
    ``scanner_seconds`` is the weak timing signal's window.
    """

    def __init__(self, ranges: MachineRanges | None = None, *, scanner_seconds: float = SCANNER_SECONDS) -> None:
        if ranges is not None and not isinstance(ranges, MachineRanges):
            raise ConfigurationError(f"ranges must be MachineRanges or None, not {type(ranges).__name__}")
        if isinstance(scanner_seconds, bool) or not isinstance(scanner_seconds, (int, float)) \
                or not 0 <= scanner_seconds < float("inf"):
            raise ConfigurationError(f"scanner_seconds must be a number of seconds, not {scanner_seconds!r}")
        self.ranges = ranges
        self.scanner_seconds = float(scanner_seconds)

    def classify(
        self,
        method: str,
        kind: str,
        headers: Mapping[str, str],
        ip: str | None = None,
        issued_at: float | None = None,
        now: float | None = None,
        *,
        honeypot: bool = False,
        one_click: bool = False,
    ) -> Verdict:
        """The verdict of one request: ``(None, ())`` for a person, else ``(label, reasons)``.

        ``kind`` is the URL's: ``open``, ``click`` or ``unsubscribe``;
        ``headers`` has lowercase names (as :class:`~mailtrack.http.messages.Request`'s);
        ``ip`` is the client's address after trusted-proxy resolution;
        ``issued_at`` and ``now`` are Unix times (when the token was signed,
        when the request came). ``honeypot``: the click is on the honeypot link.
        ``one_click``: an unsubscribe ``POST`` carrying RFC 8058's body. The
        weak signals are not weighed for it: a mailbox provider's server sends
        that POST when its user presses Unsubscribe (no browser's headers,
        seconds after delivery: what the weak signals describe), and the body
        is the user's request (RFC 8058 section 3.2). Strong signals still label it.
        """
        strong: dict[str, list[str]] = {}
        agent = headers.get("user-agent") or ""
        if honeypot:
            strong["honeypot"] = ["clicked the honeypot link, which no person sees (display:none, aria-hidden)"]
        if method == "HEAD":
            strong.setdefault("prefetch", []).append("HEAD request (RFC 9110 9.3.2: link checkers and scanners)")
        purpose = _prefetch_header(headers)
        if purpose is not None:
            strong.setdefault("prefetch", []).append(f"{purpose} (the Fetch standard's prefetch signal)")
        bare = agent.strip() == "Mozilla/5.0"
        if agent and not bare:
            found = _agent_token(agent.lower())
            if found is not None:
                token, group = found
                label, reason = _SOURCES[group]
                strong.setdefault(label, []).append(reason.format(token))
        block = self.ranges.lookup(ip) if self.ranges is not None and ip else None
        if bare:
            if kind == "open":
                reasons = strong.setdefault("apple_mpp", [])
                reasons.append("bare user agent 'Mozilla/5.0' (what Apple Mail Privacy Protection's proxy sends)")
                if block is not None and block.label == "apple_mpp":
                    reasons.append(f"from {block.network} (apple_mpp block, {block.source})")
            else:
                strong.setdefault("link_scanner", []).append(
                    "bare user agent 'Mozilla/5.0' on a link (no browser sends it; MPP never follows links)")
        if block is not None and block.label != "apple_mpp":
            strong.setdefault(block.label, []).append(f"from {block.network} ({block.label} block, {block.source})")
        if strong:
            label = next(name for name in _PRIORITY if name in strong)
            return label, tuple(reason for name in _PRIORITY for reason in strong.get(name, ()))
        if kind == "open" or one_click or headers.get("sec-fetch-user") == "?1":  # (a user-activated navigation)
            return _PERSON
        weak = []
        if issued_at is not None and now is not None and 0 <= now - issued_at < self.scanner_seconds:
            weak.append(f"came {now - issued_at:.0f} s after signing (under {self.scanner_seconds:g} s: weak)")
        if not agent:
            weak.append("no User-Agent (weak)")
        else:
            old = _old_chrome(agent)
            if old is not None and int(old) < OLD_CHROME:
                weak.append(f"Chrome {old} on Windows, older than {OLD_CHROME} (Safe Links' browser; weak)")
        if not headers.get("accept-language"):
            weak.append("no Accept-Language (browsers send one; weak)")
        if len(weak) >= 2:
            return "link_scanner", tuple(weak)
        return _PERSON


def _agent_token(agent: str) -> tuple[str, str] | None:
    """The first machine token in a lowercased user agent, and its kind (a key of ``_SOURCES``), or None."""
    for token, group in _AGENT_TOKENS:
        if token in agent:
            return token, group
    if "bot/" in agent:
        name = _crawler(agent)
        if name is not None:
            return name, "automation"
    return None


def _crawler(agent: str) -> str | None:
    """The first ``name + "bot/"`` in a lowercased agent (``[a-z0-9_-]*[a-z]bot/``, leftmost), in linear time.

    Runs of name characters cannot hold a ``/``, so the leftmost match ends at the first ``bot/`` with a letter
    before it, and starts where the run of name characters before that letter starts.
    """
    at = agent.find("bot/")
    while at != -1:
        if at > 0 and "a" <= agent[at - 1] <= "z":
            start = at - 1
            while start > 0 and agent[start - 1] in _CRAWLER_NAME:
                start -= 1
            return agent[start : at + 4]
        at = agent.find("bot/", at + 1)
    return None


def _old_chrome(agent: str) -> str | None:
    """The version of the last ``Chrome/N.`` after ``Windows NT ...;`` (or ``)``) in ``agent``, or None; linear."""
    at = agent.find("Windows NT ")
    if at == -1:
        return None
    ends = [end for end in (agent.find(";", at + 11), agent.find(")", at + 11)) if end != -1]
    if not ends:
        return None
    version = None
    for found in _CHROME_VERSION.finditer(agent, min(ends) + 1):
        version = found.group(1)
    return version


def _prefetch_header(headers: Mapping[str, str]) -> str | None:
    """The header that says this is a prefetch (``Sec-Purpose: prefetch`` and its older spellings), or None."""
    for name, word in (("sec-purpose", "prefetch"), ("purpose", "prefetch"), ("x-moz", "prefetch"),
                       ("x-purpose", "preview")):
        value = headers.get(name)
        if value and word in value.lower():
            return f"{name.title()}: {word}"
    return None


@functools.lru_cache(maxsize=1)
def default_classifier() -> Classifier:
    """A classifier over the shipped ranges (built once)."""
    return Classifier(MachineRanges.default())


#: The ``machine_ranges`` setting that turns classification off (every event ``machine=None``).
OFF = "off"


def classifier_for(setting: str | Path | None) -> Classifier | None:
    """The classifier a ``machine_ranges`` setting asks for: None or ``""`` the shipped ranges, ``"off"`` none
    (classification off), else the ranges file at that path (a :class:`ConfigurationError` naming a bad line)."""
    if setting is None or setting == "":
        return default_classifier()
    if not isinstance(setting, (str, Path)):
        raise ConfigurationError(f"machine_ranges must be a file path or 'off', not {type(setting).__name__}")
    if isinstance(setting, str) and setting.strip().lower() == OFF:
        return None
    return _file_classifier(str(setting))


@functools.lru_cache(maxsize=8)
def _file_classifier(path: str) -> Classifier:
    return Classifier(MachineRanges.load(path))


assert set(_PRIORITY) == set(MACHINE_LABELS), "every machine label has a place in the priority order"
