"""Deterministic generator of realistic newsletter HTML for benchmarks and tests.

``make_newsletter(target_bytes, n_links, seed)`` builds the kind of markup ESPs
send: a doctype, a ``<head>`` with a ``<style>`` block and an Outlook
``<!--[if mso]>`` settings block, nested layout tables carrying lots of inline
CSS, bulletproof buttons (an Outlook VML ``<v:roundrect href>`` inside a
conditional comment plus the ``<a>`` fallback for every other client), query
strings joined with ``&amp;``, non-ASCII text (accents, dashes, emoji, CJK),
images, and a footer with unsubscribe and preference links.

What counts as a link (``n_links``): every **trackable http(s) href** in the
document, i.e. ``<a href="http...">`` *plus* the ``href`` of each VML
``<v:roundrect>`` inside an MSO conditional comment (Outlook renders those, so a
tracker should rewrite them; an HTML parser only sees comment text). The count
is exact. Each button contributes one VML link and one ``<a>`` link, so a
tree-based rewriter that ignores comments sees ``n_links - vml_link_count(html)``
links. Not counted, and present as a minority: ``mailto:``, ``tel:``, ``#top``
and ``{{placeholder}}`` hrefs, which no tracker should touch.

Everything is drawn from one seeded ``random.Random``; there is no I/O, so the
same arguments always give the same string. The UTF-8 size lands within ~10 %
of ``target_bytes`` as long as the target leaves room for the links (about
400 bytes per link plus ~5 KB of fixed layout).
"""

from __future__ import annotations

import random
import re

__all__ = ["SIZES", "make_newsletter", "count_trackable_links", "vml_link_count"]

#: (name, target_bytes, n_links) used by the benchmark (issue #2).
SIZES: tuple[tuple[str, int, int], ...] = (
    ("10KB", 10_000, 10),
    ("60KB", 60_000, 100),
    ("500KB", 500_000, 1000),
)

_TRACKABLE = re.compile(r"""<(?:a|v:roundrect)\b[^>]*?\shref=(["'])https?://""", re.IGNORECASE)
_VML = re.compile(r"""<v:roundrect\b[^>]*?\shref=(["'])https?://""", re.IGNORECASE)


def count_trackable_links(html: str) -> int:
    """Number of trackable links as defined above (``<a>`` and VML http(s) hrefs)."""
    return len(_TRACKABLE.findall(html))


def vml_link_count(html: str) -> int:
    """Number of those links that are VML hrefs inside MSO conditional comments."""
    return len(_VML.findall(html))


_FONT = "font-family:'Helvetica Neue',Helvetica,Arial,sans-serif"
_BRAND = "#1a73e8"

_HEADLINES = (
    "Spring collection — new arrivals",
    "Nouveautés de la saison : à découvrir",
    "Frühlingsangebote für Sie ausgewählt",
    "Our café's favourite crème brûlée set",
    "🌸 20 % off everything this weekend",
    "東京 and 大阪: the city guide",
    "Últimas tendencias en diseño",
    "Smørrebrød, fika & hygge — Nordic picks",
    "Ready for summer? ☀️ Start here",
    "Zurück im Sortiment: Müsli-Schalen",
)
_WORDS = (
    "design", "season", "collection", "crafted", "weekend", "delivery", "naturally",
    "linen", "ceramic", "handmade", "limited", "edition", "garden", "morning", "coffee",
    "café", "naïve", "façade", "über", "schön", "Grüße", "niño", "año", "smörgåsbord",
    "déjà", "vu", "résumé", "—", "…", "“quoted”", "½", "€", "©", "日本", "新品", "限定",
    "🌿", "✨", "👟", "the", "and", "with", "for", "our", "your", "new", "best", "free",
    "shipping", "today", "only", "more", "fresh", "light", "warm", "simple", "classic",
)
_PRODUCTS = (
    "Crème brûlée set", "Linen tote — natural", "Müsli bowl", "東京 tote bag",
    "Café au lait mug", "Smørbrød board", "Piñata kit 🎉", "Zoë sneaker",
    "Señorita dress", "Ærø candle", "Übergröße hoodie", "Kyoto 急須 teapot",
)
_PATHS = ("p", "product", "c/new", "collections/spring", "blog", "stories", "sale", "lookbook")
_HOSTS = ("shop.example.com", "www.example.com", "blog.example.com", "go.example.net", "example.org")


class _Gen:
    """Holds the random source and builds markup fragments from it."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.links = 0  # trackable links emitted so far
        self.vml = 0

    # -- text and URLs ---------------------------------------------------------
    def words(self, n: int) -> str:
        text = " ".join(self.rng.choice(_WORDS) for _ in range(n))
        return text[:1].upper() + text[1:] + "."

    def url(self) -> str:
        """An http(s) URL with an ``&amp;``-joined query most of the time, as written in HTML."""
        rng = self.rng
        scheme = "https" if rng.random() < 0.9 else "http"
        host = rng.choice(_HOSTS)
        path = f"{rng.choice(_PATHS)}/{rng.randrange(1, 99999)}"
        roll = rng.random()
        if roll < 0.7:
            query = "?" + "&amp;".join(
                (
                    "utm_source=newsletter",
                    "utm_medium=email",
                    f"utm_campaign=spring-{rng.randrange(2020, 2026)}",
                    f"id={rng.randrange(1, 10**6)}",
                )[: rng.randrange(2, 5)]
            )
        elif roll < 0.8:
            query = f"?q=caf%C3%A9&amp;page={rng.randrange(1, 9)}#reviews"
        elif roll < 0.85:
            query = "?ref=Gr%C3%BC%C3%9Fe&amp;lang=de-DE"
        else:
            query = ""
        self.links += 1
        return f"{scheme}://{host}/{path}{query}"

    def img(self, width: int, alt: str) -> str:
        n = self.rng.randrange(1, 10**5)
        return (
            f'<img src="https://cdn.example.com/img/{n}.jpg" width="{width}" alt="{alt}" border="0" '
            f'style="display:block;border:0;outline:none;text-decoration:none;width:100%;max-width:{width}px;height:auto;">'
        )

    def a(self, inner: str, style: str = "") -> str:
        """An ``<a>`` link; a few use single quotes, as hand-edited templates do."""
        css = style or f"color:{_BRAND};text-decoration:underline;"
        if self.rng.random() < 0.05:
            return f"<a href='{self.url()}' target='_blank' style='{css}'>{inner}</a>"
        return f'<a href="{self.url()}" target="_blank" style="{css}">{inner}</a>'

    # -- blocks ----------------------------------------------------------------
    def button(self, label: str) -> str:
        """Bulletproof button: VML for Outlook, ``<a>`` for the rest (two links)."""
        vml_href = self.url()
        self.vml += 1
        a_href = self.url()
        return (
            '<table role="presentation" border="0" cellpadding="0" cellspacing="0" align="center" style="margin:16px auto;">'
            '<tr><td align="center" style="border-radius:4px;" bgcolor="#1a73e8">'
            "<!--[if mso]>"
            f'<v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" xmlns:w="urn:schemas-microsoft-com:office:word" href="{vml_href}" '
            'style="height:44px;v-text-anchor:middle;width:220px;" arcsize="10%" stroke="f" fillcolor="#1a73e8">'
            f'<w:anchorlock/><center style="color:#ffffff;{_FONT};font-size:16px;font-weight:bold;">{label}</center>'
            "</v:roundrect><![endif]-->"
            "<!--[if !mso]><!-->"
            f'<a href="{a_href}" target="_blank" style="background:#1a73e8;border:1px solid #1a73e8;'
            f"{_FONT};font-size:16px;line-height:44px;text-align:center;text-decoration:none;display:inline-block;"
            f'border-radius:4px;font-weight:bold;color:#ffffff;padding:0 24px;">{label} →</a>'
            "<!--<![endif]-->"
            "</td></tr></table>"
        )

    def paragraph(self, n_words: int, links: int = 0) -> str:
        """A text paragraph with ``links`` inline links (no link when 0: used as filler)."""
        parts = [self.words(self.rng.randrange(max(2, n_words // 2), n_words + 1))]
        for _ in range(links):
            parts.append(self.a(self.words(self.rng.randrange(1, 4)).rstrip(".")))
            parts.append(self.words(self.rng.randrange(3, 9)))
        return (
            f'<p style="margin:0 0 12px 0;{_FONT};font-size:15px;line-height:22px;color:#333333;'
            f'mso-line-height-rule:exactly;">{" ".join(parts)}</p>'
        )

    def section(self, inner: str) -> str:
        return (
            '<tr><td class="section" style="padding:24px 32px;background-color:#ffffff;'
            f'border-bottom:1px solid #eeeeee;">{inner}</td></tr>\n'
        )

    def hero(self) -> str:
        """Image link, headline link, text, button: 4 links (one of them VML)."""
        title = self.rng.choice(_HEADLINES)
        inner = (
            self.a(self.img(536, title), "text-decoration:none;")
            + f'<h1 style="margin:20px 0 8px 0;{_FONT};font-size:26px;line-height:32px;color:#111111;">'
            + self.a(title, "color:#111111;text-decoration:none;")
            + "</h1>"
            + self.paragraph(28)
            + self.button(self.rng.choice(("Shop now", "Découvrir", "Jetzt ansehen", "今すぐ購入")))
        )
        return self.section(inner)

    def product_row(self, columns: int) -> str:
        """A row of product cards, each with an image link and a name link: 2 links per card."""
        width = 100 // columns
        cells = []
        for _ in range(columns):
            name = self.rng.choice(_PRODUCTS)
            price = f"{self.rng.randrange(5, 300)},{self.rng.randrange(0, 99):02d} €"
            cells.append(
                f'<td class="col" width="{width}%" valign="top" style="padding:8px;vertical-align:top;">'
                + self.a(self.img(160, name), "text-decoration:none;")
                + f'<p style="margin:8px 0 0 0;{_FONT};font-size:14px;line-height:20px;">'
                + self.a(name, "color:#111111;text-decoration:none;font-weight:bold;")
                + f'<br><span style="color:#777777;">{price}</span></p></td>'
            )
        table = (
            '<table role="presentation" width="100%" border="0" cellpadding="0" cellspacing="0">'
            f"<tr>{''.join(cells)}</tr></table>"
        )
        return self.section(table)

    def article(self, links: int) -> str:
        """Headline and text with ``links`` links in total (at least 1)."""
        title = self.rng.choice(_HEADLINES)
        inner = (
            f'<h2 style="margin:0 0 8px 0;{_FONT};font-size:20px;line-height:26px;color:#111111;">'
            + self.a(title, "color:#111111;text-decoration:none;")
            + "</h2>"
            + self.paragraph(20, links - 1)
        )
        return self.section(inner)

    def filler(self) -> str:
        """A linkless paragraph to pad the document to its target size."""
        return self.section(self.paragraph(self.rng.randrange(30, 70)))


def _head() -> str:
    return (
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" "
        "\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n"
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:v="urn:schemas-microsoft-com:vml" '
        'xmlns:o="urn:schemas-microsoft-com:office:office" lang="fr">\n<head>\n'
        '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
        '<meta name="x-apple-disable-message-reformatting">\n'
        "<title>Nouveautés du printemps — Example Shop</title>\n"
        "<!--[if mso]><xml><o:OfficeDocumentSettings><o:AllowPNG/><o:PixelsPerInch>96</o:PixelsPerInch>"
        "</o:OfficeDocumentSettings></xml><![endif]-->\n"
        '<style type="text/css">\n'
        "body{margin:0;padding:0;width:100%!important;-webkit-text-size-adjust:100%;-ms-text-size-adjust:100%;}\n"
        "table,td{border-collapse:collapse;mso-table-lspace:0pt;mso-table-rspace:0pt;}\n"
        "img{border:0;height:auto;line-height:100%;outline:none;text-decoration:none;-ms-interpolation-mode:bicubic;}\n"
        "a[x-apple-data-detectors]{color:inherit!important;text-decoration:none!important;}\n"
        "@media only screen and (max-width:620px){.container{width:100%!important;}"
        ".col{display:block!important;width:100%!important;}.section{padding:16px!important;}}\n"
        "</style>\n</head>\n"
    )


def make_newsletter(target_bytes: int, n_links: int, seed: int = 0) -> str:
    """A newsletter of about ``target_bytes`` UTF-8 bytes with exactly ``n_links`` trackable links.

    See the module docstring for what counts as a link. Deterministic in its arguments.
    """
    if n_links < 2:
        raise ValueError("n_links must be at least 2 (logo and unsubscribe links are always present)")
    g = _Gen(seed)
    rng = g.rng
    preheader = (
        '<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;'
        'mso-hide:all;">Jusqu’à −20 % sur la collection de printemps — ne manquez pas ça ✨&#847;&zwnj;&nbsp;</div>\n'
    )
    top = (
        '<body style="margin:0;padding:0;background-color:#f4f4f4;" id="top">\n'
        + preheader
        + '<table role="presentation" width="100%" border="0" cellpadding="0" cellspacing="0" bgcolor="#f4f4f4">'
        '<tr><td align="center" style="padding:16px 8px;">\n'
        "<!--[if mso]><table role=\"presentation\" width=\"600\" cellpadding=\"0\" cellspacing=\"0\"><tr><td><![endif]-->\n"
        '<table class="container" role="presentation" width="600" border="0" cellpadding="0" cellspacing="0" '
        'style="width:600px;max-width:600px;background-color:#ffffff;">\n'
        '<tr><td style="padding:8px 32px;text-align:right;font-size:12px;color:#999999;'
        f'{_FONT};">Problème d’affichage ? <a href="{{{{view_in_browser_url}}}}" style="color:#999999;">'
        "Voir dans le navigateur</a></td></tr>\n"
        f'<tr><td style="padding:16px 32px;" align="left">{g.a(g.img(140, "Example Shop"), "text-decoration:none;")}'
        "</td></tr>\n"
    )
    footer_links = (
        '<tr><td style="padding:24px 32px;background-color:#222222;color:#bbbbbb;'
        f'{_FONT};font-size:12px;line-height:18px;text-align:center;">'
        "Example Shop GmbH · Straße des 17. Juni 135 · 10623 Berlin · Deutschland<br>"
        '<a href="mailto:hello@example.com?subject=Frage%20zur%20Bestellung" style="color:#bbbbbb;">hello@example.com</a>'
        ' · <a href="tel:+4930123456" style="color:#bbbbbb;">+49 30 123456</a>'
        ' · <a href="#top" style="color:#bbbbbb;">↑</a><br>'
        "Vous recevez cet e-mail car vous êtes inscrit·e à notre newsletter. "
        f'<a href="https://news.example.com/unsubscribe?u={rng.randrange(10**8)}&amp;list=spring&amp;sig=a1b2c3" '
        'style="color:#bbbbbb;text-decoration:underline;">Se désabonner</a>'
        ' · <a href="{{preferences_url}}" style="color:#bbbbbb;">Préférences</a>'
        "</td></tr>\n"
    )
    g.links += 1  # the unsubscribe link above
    bottom = (
        "</table>\n<!--[if mso]></td></tr></table><![endif]-->\n</td></tr></table>\n</body>\n</html>\n"
    )

    # Content sections spending the remaining link budget exactly.
    budget = n_links - g.links
    sections: list[str] = []
    while budget > 0:
        roll = 0.0 if not sections else rng.random()  # open with a hero: every size has a VML button
        if roll < 0.2 and budget >= 4:
            sections.append(g.hero())
            budget -= 4
        elif roll < 0.65 and budget >= 4:
            columns = min(rng.choice((2, 3)), budget // 2)
            sections.append(g.product_row(columns))
            budget -= 2 * columns
        else:
            links = min(budget, rng.randrange(1, 4))
            sections.append(g.article(links))
            budget -= links
    assert g.links == n_links, (g.links, n_links)

    # Pad with linkless paragraphs spread evenly between sections.
    prefix, suffix = _head() + top, footer_links + bottom
    size = len((prefix + suffix).encode("utf-8")) + sum(len(s.encode("utf-8")) for s in sections)
    fillers: list[str] = []
    while size < target_bytes:
        filler = g.filler()
        extra = len(filler.encode("utf-8"))
        if size + extra - target_bytes > target_bytes - size:  # overshooting more than stopping short
            break
        fillers.append(filler)
        size += extra
    body: list[str] = []
    slots = max(len(sections), 1)
    per_slot, rest = divmod(len(fillers), slots)
    it = iter(fillers)
    for i in range(slots):
        if i < len(sections):
            body.append(sections[i])
        body.extend(next(it) for _ in range(per_slot + (1 if i < rest else 0)))
    return prefix + "".join(body) + suffix


if __name__ == "__main__":  # a quick look at what the benchmark feeds the contenders
    for name, target, links in SIZES:
        doc = make_newsletter(target, links)
        size = len(doc.encode("utf-8"))
        print(
            f"{name}: {size} bytes ({size / target - 1:+.1%}), {count_trackable_links(doc)} trackable links "
            f"({vml_link_count(doc)} VML)"
        )
