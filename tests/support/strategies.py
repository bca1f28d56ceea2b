"""Hypothesis strategies for email-like HTML.

Documents are assembled from fragments the way real templates are: an optional
doctype, ``<html>``/``<head>``/``<body>`` (each optional, in any case), layout
tables, links written with every attribute syntax the tokenizer accepts
(double/single/unquoted values, upper-case names, whitespace around ``=``,
duplicated attributes, ``/`` separators), destinations of every kind
(http/https in any case, mailto/tel/relative/fragment/empty/javascript/data/
ftp, template placeholders, character references ``&amp;`` ``&#38;``
``&#x26;`` and named ones, legacy references without ``;``), per-link opt-out
attributes, plain and Outlook conditional comments with VML buttons,
raw-text elements (script/style/textarea/title/xmp/iframe/noembed/noframes)
holding fake links, CRLF line endings and non-ASCII text. ``mutated_documents``
then truncates them, inserts stray markup characters or repeats slices.

Everything here stays inside ordinary HTML content; foreign content (svg/math),
``<select>``, ``<frameset>`` and script double-escaping are left to the pinned
examples of documented differences (see tests/oracle.py).
"""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = [
    "BASE_URL",
    "attribute_value",
    "body_fragments",
    "destinations",
    "documents",
    "email_html",
    "link_tags",
    "markup_soup",
    "mutated_documents",
    "no_double_escape",
]

#: Must match the tracker used by the tests: links to it are "already tracked".
BASE_URL = "https://t.example.com"

# ---------------------------------------------------------------------------
# destinations
# ---------------------------------------------------------------------------

_hosts = st.sampled_from(["example.com", "www.shop.example", "EXAMPLE.org", "xn--bcher-kva.example", "sub.d.co.uk"])
_path_chars = st.sampled_from(
    ["a", "b", "Z", "0", "9", "-", "_", ".", "~", "/", "%20", "%E2%80%99", "é", "ü", "日", "+", ",", ";", "!", "$"]
)
_paths = st.lists(_path_chars, max_size=8).map(lambda xs: "/" + "".join(xs))
# An "&" between query parameters, written in every way a template does.
_amps = st.sampled_from(["&amp;", "&", "&#38;", "&#x26;", "&#X26;", "&AMP;", "&amp", "&#038;"])
_query_keys = st.sampled_from(["a", "id", "utm_source", "copy", "not", "lt", "x_y", "reg", "sect"])
_query_values = st.sampled_from(["1", "newsletter", "%7B%7D", "a+b", "", "é", "&quot;q&quot;", "&lt;3", "&eacute;", "&#233;"])
#: Numeric character references the tokenizer maps specially: C1 (windows-1252 table), NUL,
#: surrogates and out-of-range (U+FFFD), controls and noncharacters (kept as they are).
_numeric_refs = st.sampled_from(
    [
        "&#128;",
        "&#x80;",
        "&#x9F;",
        "&#0;",
        "&#xD800;",
        "&#x110000;",
        "&#1;",
        "&#x7F;",
        "&#xFFFE;",
        "&#xFDD0;",
        "&#x1FFFF;",
        "&#13;",
        "&#9;",
        "&#x41",
        "&#65x",
        "&#",
        "&#x;",
    ]
)


@st.composite
def _queries(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(_query_keys, _query_values), max_size=4))
    if not pairs:
        return draw(st.sampled_from(["", "?"]))
    parts = [f"{k}={v}" for k, v in pairs]
    out = "?" + parts[0]
    for part in parts[1:]:
        out += draw(_amps) + part
    return out


_schemes = st.sampled_from(["http", "https", "HTTP", "Https", "hTtPs"])
_fragments = st.sampled_from(["", "", "#top", "#x&amp;y"])


# Characters that sit on the edge of some rule: placeholder triggers, the "\\"
# browsers read as "/", quotes, controls, non-ASCII; also as references.
_odd = st.lists(
    st.sampled_from(list("\\{}%|<>[]$*\"'` \t~^") + ["&#92;", "&#x5C;", "&#1;", "\u00e9", "\U0001F600"]),
    min_size=1,
    max_size=3,
).map("".join)


@st.composite
def http_urls(draw: st.DrawFn) -> str:
    path = draw(_paths)
    if draw(st.integers(0, 9)) == 0:
        path += draw(_numeric_refs)
    host = draw(_hosts)
    if draw(st.integers(0, 7)) == 0:  # odd characters right after "//" or in the path
        odd = draw(_odd).replace('"', "&quot;").replace("'", "&#39;")
        if draw(st.booleans()):
            host = odd + host
        else:
            path += odd
    return f"{draw(_schemes)}://{host}{path}{draw(_queries())}{draw(_fragments)}"


_non_http = st.sampled_from(
    [
        "mailto:ann@example.com",
        "MAILTO:bob@example.com?subject=Hi&amp;body=x",
        "tel:+1-555-0100",
        "sms:+15550100",
        "/relative/path",
        "relative.html",
        "//example.com/protocol-relative",
        "#",
        "#section",
        "",
        " ",
        "javascript:void(0)",
        "data:text/html,<b>x</b>",
        "ftp://ftp.example.com/file",
        "http:/missing-slash",
        "https:",
        "http://",
        "http://\\\\evil.example/",
        "http://&#92;evil.example/",
        "webcal://example.com/cal.ics",
        "?query=only",
    ]
)
_placeholders = st.sampled_from(
    [
        "{{action_url}}",
        "{{ unsubscribe_url }}",
        "https://example.com/{{id}}/view",
        "{% url 'home' %}",
        "*|UNSUB|*",
        "*|ARCHIVE|*",
        "<%asm_group_unsubscribe_raw_url%>",
        "&lt;%asm_preferences_raw_url%&gt;",
        "%unsubscribe%",
        "https://example.com/?u=%user_id%",
        "[Unsubscribe]",
        "[unsubscribe_preferences]",
        "${link}",
        "https://example.com/${path}",
        "{{{triple}}}",
        "&#123;&#123;encoded&#125;&#125;",
    ]
)
#: Percent-encoding that must *not* be mistaken for a %tag% placeholder.
_percent_encoded = st.sampled_from(
    ["https://example.com/caf%C3%A9%20bar", "http://example.com/?q=%E2%80%99s%20best", "https://example.com/%41%42%"]
)
_already_tracked = st.sampled_from([f"{BASE_URL}/c/abc.def.ghi", f"{BASE_URL.upper()}/o/x", f"{BASE_URL}?x=1"])


@st.composite
def _padded(draw: st.DrawFn, inner: st.SearchStrategy[str]) -> str:
    pad = st.sampled_from(["", "", "", " ", "\n", "\t", "  ", "&#32;", "&#x9;", "\r\n", "\xa0", "\u3000"])
    return draw(pad) + draw(inner) + draw(pad)


destinations = st.one_of(
    http_urls(),
    http_urls(),
    http_urls(),
    http_urls(),
    _padded(http_urls()),
    _padded(http_urls()),
    _non_http,
    _placeholders,
    _percent_encoded,
    _already_tracked,
)

# ---------------------------------------------------------------------------
# attribute syntax
# ---------------------------------------------------------------------------

_ws = st.sampled_from([" ", " ", " ", "\n", "\t", "\r\n", "  \n  ", "\f"])
_opt_ws = st.sampled_from(["", "", "", " ", "\n", "\t "])


@st.composite
def attribute_value(draw: st.DrawFn, value: str) -> str:
    """``=value`` in a quoting style the value survives (or deliberately does not)."""
    eq = draw(_opt_ws) + "=" + draw(_opt_ws)
    styles = ['"', "'"]
    if value and not any(c in value for c in " \t\n\r\f>") and value[0] not in "\"'":
        styles.append("")
    quote = draw(st.sampled_from(styles))
    if quote and quote in value:
        # Write the quote as a character reference, as a template engine would.
        value = value.replace(quote, "&quot;" if quote == '"' else "&#39;")
    return f"{eq}{quote}{value}{quote}"


def _case(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.upper(), name.capitalize()])


_other_attributes = st.sampled_from(
    [
        'target="_blank"',
        "style='color:#336699;text-decoration:none'",
        'class="button"',
        'title="Go &gt; there"',
        "rel=noopener",
        "data-x",
        'name="top"',
        'alt="A > B"',
        "id=link1",
        'hreflang="en"',
        'shape="rect" coords="0,0,10,10"',
        'hrefx="http://decoy.example/"',
        "xhref=http://decoy2.example/",
        'data-href="https://decoy3.example/"',
    ]
)
_opt_outs = st.sampled_from(
    [
        'clicktracking="off"',
        "clicktracking=OFF",
        'clicktracking="on"',
        "data-pm-no-track",
        'data-pm-no-track=""',
        "ses:no-track",
        'SES:NO-TRACK="yes"',
        "data-msys-clicktrack='0'",
        'data-msys-clicktrack="1"',
        "mc:disable-tracking",
        'disable-tracking="true"',
        'disable-tracking="false"',
        'data-mautic-disable-tracking="true"',
        "data-mautic-disable-tracking=TRUE",
    ]
)


@st.composite
def link_tags(draw: st.DrawFn, names: tuple[str, ...] = ("a", "area")) -> str:
    """A start tag with an href (sometimes two, sometimes none) and other attributes."""
    name = draw(st.sampled_from(names).flatmap(_case))
    attrs: list[str] = []
    n_href = draw(st.sampled_from([1, 1, 1, 1, 1, 1, 2, 0]))
    for _ in range(n_href):
        attrs.append(draw(_case("href")) + draw(attribute_value(draw(destinations))))
    if draw(st.booleans()):
        attrs.insert(draw(st.integers(0, len(attrs))), draw(_other_attributes))
    if draw(st.integers(0, 7)) == 0:
        attrs.insert(draw(st.integers(0, len(attrs))), draw(_opt_outs))
    if draw(st.integers(0, 6)) == 0:
        attrs.append(draw(_other_attributes))
    out = "<" + name
    for attr in attrs:
        out += draw(st.sampled_from([" ", " ", "\n", "\t", "/", " / ", "\r\n    "])) + attr
    out += draw(st.sampled_from([">", ">", ">", " >", "/>", " />", "\n>"]))
    return out


# ---------------------------------------------------------------------------
# content
# ---------------------------------------------------------------------------

_texts = st.sampled_from(
    [
        "Hello",
        "Grüße aus Köln — ¡hola! 日本語 🎉",
        "Terms &amp; conditions",
        "5 &lt; 6 &gt; 4",
        "a < b",
        "price: 5€ &euro;",
        "&nbsp;",
        "\u200b\u00ad",
        "Click here",
        "",
        "http://plain.example/not-a-link",
        "<",
        ">",
        "&",
    ]
)


@st.composite
def _anchor(draw: st.DrawFn) -> str:
    tag = draw(link_tags(("a",)))
    inner = draw(st.one_of(_texts, st.just('<img src="https://img.example/b.png" alt="">'), st.just("<b>Bold</b>")))
    close = draw(st.sampled_from(["</a>", "</A>", "</a >", ""]))
    return tag + inner + close


@st.composite
def _image_map(draw: st.DrawFn) -> str:
    areas = draw(st.lists(link_tags(("area",)), min_size=1, max_size=3))
    return '<img src="map.png" usemap="#m"><map name="m">' + "".join(areas) + "</map>"


_fake_link = st.sampled_from(
    [
        '<a href="https://fake.example/hidden">x</a>',
        "<a href=http://fake2.example/>",
        "<area href='https://fake3.example/'>",
    ]
)


@st.composite
def _raw_text(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"]))
    fake = draw(_fake_link)
    filler = draw(st.sampled_from(["", "var s = '", "/* ", "</notit>", "</" + name + "x>", "<!--"]))
    close = draw(st.sampled_from([f"</{name}>", f"</{name.upper()}>", f"</{name} >", f"</{name}\n>", f"</{name}/>"]))
    return f"<{draw(_case(name))}>{filler}{fake}{close}"


@st.composite
def _comment(draw: st.DrawFn) -> str:
    fake = draw(_fake_link)
    return draw(
        st.sampled_from(
            [
                f"<!-- {fake} -->",
                f"<!--{fake}--!>",
                "<!---->",
                "<!-->",
                "<!--->",
                f"<!-- -- {fake} -- -->",
                f"<!{fake[1:]}",  # bogus comment: ends at the first ">"
                f"<?php echo '{fake}' ?>",
                "</ not a tag>",
                "<![CDATA[ x ]]>",
            ]
        )
    )


@st.composite
def _vml_button(draw: st.DrawFn) -> str:
    vml = draw(st.sampled_from(["v:roundrect", "v:rect", "v:oval", "V:RoundRect"]))
    href = draw(_case("href")) + draw(attribute_value(draw(destinations)))
    opt = (" " + draw(_opt_outs)) if draw(st.integers(0, 5)) == 0 else ""
    return (
        f'<{vml} xmlns:v="urn:schemas-microsoft-com:vml" xmlns:w="urn:schemas-microsoft-com:office:word" '
        f'{href}{opt} style="height:40px;v-text-anchor:middle;width:200px;" arcsize="10%" '
        f'strokecolor="#1e3650" fill="t"><w:anchorlock/><center style="color:#fff;">Button</center></{vml}>'
    )


@st.composite
def _conditional(draw: st.DrawFn) -> str:
    cond = draw(st.sampled_from(["mso", "gte mso 9", "mso | IE", "IE", "!mso", "(mso)|(IE)", "MSO"]))
    opener = draw(st.sampled_from(["if", "IF", "if"]))
    inner = draw(st.lists(st.one_of(_vml_button(), _anchor(), _fake_link, _texts, st.just("<table><tr><td>")), max_size=3))
    kind = draw(st.integers(0, 3))
    if kind == 0:  # downlevel-revealed: content is ordinary markup between two comments
        return f"<!--[{opener} {cond}]><!-->" + "".join(inner) + "<!--<![endif]-->"
    endif = draw(st.sampled_from(["<![endif]-->", "<![endif]-->", "<![ENDIF]-->", "<![endif]--!>", "<![endif] -->"]))
    return f"<!--[{opener} {cond}]>" + "".join(inner) + endif


_layout_open = st.sampled_from(
    [
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"><tr><td align="center">',
        '<div style="max-width:600px;margin:0 auto">',
        "<center>",
        "<p>",
        "<td>",
        "<tr>",
        "<span>",
        "<font face=Arial>",
        "<noscript>",
        "<template>",
    ]
)
_layout_close = st.sampled_from(
    ["</td></tr></table>", "</div>", "</center>", "</p>", "</td>", "</span>", "</font>", "</noscript>", "</template>", ""]
)
_misc = st.sampled_from(
    [
        "<br>",
        "<br/>",
        "<hr />",
        '<img src="https://img.example/logo.png" width="100" alt="Logo">',
        "<b>bold</b>",
        "<a name=anchor>no href</a>",
        "<a>no attributes</a>",
        '<link href="https://fonts.example/css" rel=stylesheet>',
        '<base href="https://base.example/">',
        '<button href="https://inky.example/">inky</button>',
        '<abbr href="http://not-a-link.example/">x</abbr>',
        '<ahref="http://nope.example/">',
        "<a\thref\t=\t'https://tabs.example/'\t>",
        "</body>",
        "</html>",
        "<body>",
    ]
)


def body_fragments() -> st.SearchStrategy[str]:
    return st.one_of(
        _anchor(),
        _anchor(),
        _anchor(),
        _image_map(),
        _raw_text(),
        _comment(),
        _conditional(),
        _texts,
        _layout_open,
        _layout_close,
        _misc,
    )


_doctypes = st.sampled_from(
    [
        "",
        "<!DOCTYPE html>",
        "<!doctype HTML>",
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">',
    ]
)
_html_open = st.sampled_from(
    [
        "",
        "<html>",
        '<HTML lang="en">',
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office">',
    ]
)
_head_items = st.sampled_from(
    [
        '<meta charset="utf-8">',
        '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />',
        "<title>Newsletter &amp; news <a href='http://title.example/'></title>",
        "<style type=\"text/css\">a{color:red} /* <a href='https://css.example/'> */</style>",
        "<!--[if gte mso 9]><xml><o:OfficeDocumentSettings><o:AllowPNG/></o:OfficeDocumentSettings></xml><![endif]-->",
        "<!--[if mso]><style>table{border-collapse:collapse}</style><![endif]-->",
        '<link rel="stylesheet" href="https://fonts.example/css">',
    ]
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A whole email body."""
    parts = [draw(_doctypes), draw(_html_open)]
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(["<head>", "<HEAD>"])))
        parts.extend(draw(st.lists(_head_items, max_size=3)))
        parts.append(draw(st.sampled_from(["</head>", "</HEAD>", ""])))
    has_body = draw(st.integers(0, 4)) > 0
    if has_body:
        parts.append(draw(st.sampled_from(["<body>", '<body style="margin:0;padding:0" bgcolor=#fff>', "<BODY>"])))
    parts.extend(draw(st.lists(body_fragments(), max_size=14)))
    if has_body and draw(st.integers(0, 4)) > 0:
        parts.append(draw(st.sampled_from(["</body>", "</BODY>", "</body >", "</body\n>"])))
    if parts[1] and draw(st.integers(0, 4)) > 0:
        parts.append(draw(st.sampled_from(["</html>", "</HTML>"])))
    parts.append(
        draw(st.sampled_from(["", "\n", "\r\n", "<!-- trailing comment -->", ' <a href="https://after.example/">late</a>']))
    )
    sep = draw(st.sampled_from(["", "\n", "\r\n", "\n  "]))
    return sep.join(parts)


_garbage = st.sampled_from(
    ["<", ">", '"', "'", "=", "&", "-->", "<!--", "</", "<a ", "\x00", "\r", "\ufeff", "\ud800", "]]>", "<![endif]-->"]
)


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    """A document cut short, with stray characters inserted or a slice repeated."""
    doc = draw(documents())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "insert", "insert", "repeat", "delete"]))
        if not doc:
            break
        i = draw(st.integers(0, len(doc)))
        if kind == "truncate":
            doc = doc[:i]
        elif kind == "insert":
            doc = doc[:i] + draw(_garbage) + doc[i:]
        elif kind == "repeat":
            j = draw(st.integers(i, min(len(doc), i + 80)))
            doc = doc[:j] + doc[i:j] + doc[j:]
        else:
            j = draw(st.integers(i, min(len(doc), i + 5)))
            doc = doc[:i] + doc[j:]
    return doc


#: Everything: well-formed and mutated documents.
email_html = st.one_of(documents(), mutated_documents())

#: Markup soup: complete links, half-written tags and state-switching constructs in random
#: order, to reach tokenizer corners a template never would. No svg/math/select/frameset
#: (documented differences); ``<script>`` is in, but see ``no_double_escape``.
_SOUP = (
    [
        '<a href="http://L1.example/">',
        "<a href=http://L2.example/>",
        "<area href='https://L3.example/'>",
        "<A HREF = http://L4.example/ >",
        '<v:roundrect href="http://V.example/">',
        '<a href="{{p}}">',
        "<a clicktracking=off href=http://O.example/>",
        '<a href="http://L5.example/" ',
        '<a href="',
        '"',
        "'",
    ]
    * 3
    + list("<>/!-=\"' \n\taAhHrRefb[]&#;:vx0?")
    + [
        "href",
        "<a ",
        "<a href=",
        "http://x",
        "https://y",
        "</body>",
        "</html>",
        "<!--",
        "-->",
        "<!--[if mso]>",
        "<![endif]-->",
        "<script>",
        "</script>",
        "<textarea>",
        "</textarea>",
        "<title>",
        "</title>",
        "<style>",
        "</style>",
        "<v:rect ",
        "<area ",
        "<table>",
        "<td>",
        "<plaintext>",
        "<!",
        "<?",
        "</",
        "--!>",
        "<![CDATA[",
        "]]>",
        "&amp;",
        "<noscript>",
        "<xmp>",
        "<iframe>",
        "</iframe>",
        "<template>",
        "<p>",
        "</p>",
        "<b>",
        "</a>",
        "<br/>",
        "\r\n",
        "é",
    ]
)
markup_soup = st.lists(st.sampled_from(_SOUP), max_size=40).map("".join)


def no_double_escape(html: str) -> bool:
    """False if ``html`` may reach the script double-escaped state (documented difference 2)."""
    lowered = html.lower()
    start = lowered.find("<script")
    return start == -1 or "<!--" not in lowered[start:]
