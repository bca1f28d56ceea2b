"""Which links are left alone: template placeholders and per-link opt-outs.

Placeholders are left alone because the template engine runs after us in some
pipelines (or the ESP substitutes them): signing ``{{url}}`` would freeze a
value nobody meant to send. Opt-out attributes are the ones teams already use
with SendGrid and other providers, so a migration needs no template changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Union

from mailtrack.core.charrefs import decode_attribute
from mailtrack.core.scanner import LinkTag
from mailtrack.core.urls import ASCII_WHITESPACE, plain_destination
from mailtrack.exceptions import ArgumentError, ConfigurationError

__all__ = ["DEFAULT_OPT_OUTS", "DEFAULT_PLACEHOLDERS", "OptOuts", "PlaceholderMatcher"]

#: Patterns searched in the decoded destination; a match means "left alone".
DEFAULT_PLACEHOLDERS: tuple[str, ...] = (
    r"(?s:\{\{.*?\}\})",  # Mustache, Handlebars, Jinja, Liquid output
    r"(?s:\{%.*?%\})",  # Jinja, Django, Liquid tags
    r"(?s:\*\|.*?\|\*)",  # Mailchimp merge tags
    r"(?s:<%.*?%>)",  # SendGrid legacy, ERB
    # %tag% (SendGrid substitutions), but not percent-encoding: the closing "%"
    # must not start an escape like %80.
    r"%[A-Za-z_][A-Za-z0-9_.-]*%(?![0-9A-Fa-f]{2})",
    r"\A\[[^\[\]]+\]\Z",  # [tag] as the whole value
    r"(?s:\$\{.*?\})",  # ${var}
)

#: Opt-out attribute -> the value that opts out (None: present at all). Values compare without case.
DEFAULT_OPT_OUTS: Mapping[str, str | None] = {
    "clicktracking": "off",  # SendGrid
    "data-pm-no-track": None,  # Postmark
    "ses:no-track": None,  # Amazon SES
    "data-msys-clicktrack": "0",  # SparkPost
    "mc:disable-tracking": None,  # Mailchimp / Mandrill
    "disable-tracking": "true",  # Mailgun-style
    "data-mautic-disable-tracking": "true",  # Mautic
}

PatternInput = Union[str, "re.Pattern[str]"]
_TRIGGER_CHARS = "{%|<[$"  # a character every default placeholder pattern needs
_TRIGGERS = re.escape(_TRIGGER_CHARS)

# The default "opening ... closing" patterns, as plain strings. A lazy ``.*?``
# between two delimiters costs a scan to the end of the value for every opening
# without a closing one (quadratic: ``{{{{{{...``), so these are not searched
# as expressions: such a pattern matches exactly when the value holds the
# closing delimiter somewhere after the end of the *first* opening one, which
# two ``str.find`` calls settle in linear time.
_DELIMITED: Mapping[str, tuple[str, str]] = {
    DEFAULT_PLACEHOLDERS[0]: ("{{", "}}"),
    DEFAULT_PLACEHOLDERS[1]: ("{%", "%}"),
    DEFAULT_PLACEHOLDERS[2]: ("*|", "|*"),
    DEFAULT_PLACEHOLDERS[3]: ("<%", "%>"),
    DEFAULT_PLACEHOLDERS[6]: ("${", "}"),
}


class PlaceholderMatcher:
    """Finds template placeholders: default delimiter pairs by ``str.find``, the rest with one combined expression.

    Every default pattern is searched in time linear in the value. Custom
    patterns run as given, so their cost is the caller's: avoid a lazy
    ``.*?`` between delimiters (use the default spelling of a pair, which is
    recognised and searched in linear time, or a negated class like ``[^}]*``).
    """

    def __init__(self, patterns: PatternInput | Iterable[PatternInput] = DEFAULT_PLACEHOLDERS) -> None:
        if isinstance(patterns, (str, re.Pattern)):
            patterns = [patterns]  # one pattern, not its characters
        if not isinstance(patterns, Iterable):
            raise ArgumentError(f"placeholder_patterns must be a pattern or an iterable of them, not {patterns!r}")
        sources = [_scoped(p) for p in patterns]
        self.patterns = tuple(sources)
        self._pairs = tuple(_DELIMITED[s] for s in sources if s in _DELIMITED)
        #: Finds any pair's opening delimiter in one search, so a value with none costs no ``str.find`` per pair.
        self._opening = re.compile("|".join(re.escape(opening) for opening, _ in self._pairs)).search if self._pairs else None
        rest = [s for s in sources if s not in _DELIMITED]
        try:
            self._regex = re.compile("|".join(f"(?:{s})" for s in rest)) if rest else None
        except re.error as exc:  # each compiles alone, not joined: global flags inside, a group name twice
            raise ConfigurationError(
                f"placeholder patterns cannot be searched together ({exc}): put flags in a scoped group like "
                "(?i:...), and give each named group its own name"
            ) from None
        # Every default pattern needs one of these characters; most URLs have none,
        # so one character-class scan settles them (custom lists always run in full).
        defaults = self.patterns == DEFAULT_PLACEHOLDERS
        self._trigger = re.compile(f"[{_TRIGGERS}]").search if defaults else None
        # Defaults only: a custom pattern may need no trigger character at all.
        #: :meth:`plain_http` as a plain function, for the rewriter's per-link loop (one call less per link).
        self.plain: Callable[[str], bool] = plain_destination(_TRIGGER_CHARS) if defaults else _never
        #: True for the default patterns: the compiled per-link loop then runs :attr:`plain`'s test itself.
        self.defaults = defaults
        # The default patterns left to expressions are searched one by one: "%tag%" starts with a literal, which
        # the engine finds without trying every position, and "[tag]" is anchored at the start, so each is searched
        # faster alone than in one alternation (same answer: A|B is found where A or B is). Custom lists keep the
        # one combined expression, whose group numbers are what their back-references refer to.
        self._searches = tuple(re.compile(s).search for s in rest) if defaults else (
            () if self._regex is None else (self._regex.search,))

    def plain_http(self, url: str) -> bool:
        """True if ``url`` is a destination the destination check accepts and that cannot hold a placeholder.

        The fast path for most links: one match instead of a placeholder search
        and the destination check (:func:`mailtrack.core.urls.plain_destination`,
        which answers as that check does).
        """
        return self.plain(url)

    def search(self, value: str) -> bool:
        """True if ``value`` holds a placeholder (linear time for the default patterns)."""
        if self._trigger is not None and self._trigger(value) is None:
            return False
        if self._opening is not None and self._opening(value) is not None:  # no opening delimiter: no pair matches
            pairs = self._pairs
        else:
            pairs = ()
        for opening, closing in pairs:
            first = value.find(opening)
            if first != -1 and value.find(closing, first + len(opening)) != -1:
                return True
        for search in self._searches:
            if search(value) is not None:
                return True
        return False


def _scoped(pattern: PatternInput) -> str:
    """A pattern's source with its flags inline, so that patterns can be joined without losing them."""
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigurationError(f"placeholder pattern {pattern!r} does not compile: {exc}") from None
        return pattern
    if not isinstance(pattern, re.Pattern) or not isinstance(pattern.pattern, str):
        raise ArgumentError(f"placeholder patterns must be str or compiled str patterns, not {pattern!r}")
    flags = "".join(letter for flag, letter in _INLINE_FLAGS if pattern.flags & flag)
    return f"(?{flags}:{pattern.pattern})" if flags else pattern.pattern


_INLINE_FLAGS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"), (re.VERBOSE, "x"))


class OptOuts:
    """Per-link opt-out attributes: name -> the value that opts out (None: mere presence).

    A tag is first searched for any of the names as plain text (one C-level
    search); only a hit costs a full attribute parse, so the common link pays
    almost nothing for the rule.
    """

    def __init__(self, attributes: Mapping[str, str | None] = DEFAULT_OPT_OUTS) -> None:
        if not isinstance(attributes, Mapping):
            raise ArgumentError(f"opt_out_attributes must be a mapping of name -> value or None, not {attributes!r}")
        for name, value in attributes.items():
            if not isinstance(name, str) or not name or not (value is None or isinstance(value, str)):
                raise ArgumentError(f"opt_out_attributes maps a non-empty str name to a str or None, not {name!r}: {value!r}")
        self.attributes = {name.lower(): (None if value is None else value.lower()) for name, value in attributes.items()}
        self._names = tuple(self.attributes)
        #: A string in every name ("" if none is 3 characters or more): a tag whose lowercased text does not
        #: hold it carries no opt-out. The rewriter's per-link loop tests it itself before calling :meth:`applies`.
        self.common = _common_substring(self._names)

    def applies(self, text: str, tag: LinkTag) -> bool:
        """True if ``tag`` (scanned from ``text``) carries an opt-out attribute."""
        if not self._names:
            return False
        lowered = text[tag.start : tag.end].lower()
        if self.common and self.common not in lowered:
            return False  # e.g. every default name holds "track"
        if not any(name in lowered for name in self._names):
            return False
        found = tag.attributes(text)
        for name, wanted in self.attributes.items():
            attribute = found.get(name)
            if attribute is not None and (
                wanted is None or decode_attribute(attribute[0]).strip(ASCII_WHITESPACE).lower() == wanted
            ):
                return True
        return False


def _common_substring(names: tuple[str, ...]) -> str:
    """The longest string found in every name ("" if none): one test rules most tags out."""
    if not names:
        return ""
    shortest = min(names, key=len)
    for size in range(len(shortest), 2, -1):
        for start in range(len(shortest) - size + 1):
            candidate = shortest[start : start + size]
            if all(candidate in name for name in names):
                return candidate
    return ""


def _never(url: str) -> bool:
    """The fast path of custom placeholder lists: none (a custom pattern may need no trigger character)."""
    return False
