"""The end-to-end demo: track a sample campaign mail and check every URL it produced.

Runs on embedded defaults (a throwaway key, ``https://t.example.com``), so it
needs no configuration; it prints what a user would want to see first: which
links were tracked, which were left alone and why, that each URL verifies back
to its destination, that forgeries are refused, and that nothing else changed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from .exc import InvalidToken
from .tracker import Tracker

SAMPLE_CAMPAIGN = """\
<!DOCTYPE html>
<html lang="en" xmlns:v="urn:schemas-microsoft-com:vml">
<head>
  <meta charset="utf-8">
  <title>Spring sale &mdash; up to 40% off</title>
  <style>a { color: #0a66c2; } /* <a href="https://not-a-link.example/"> */</style>
</head>
<body style="margin:0;padding:0;background:#f4f4f4;">
  <table role="presentation" width="100%" cellpadding="0" cellspacing="0">
    <tr><td align="center" style="padding:24px;font-family:Arial,sans-serif;">
      <h1 style="margin:0;">Spring is here, Ann!</h1>
      <p>Fresh picks, from caf&eacute; au lait mugs to garden chairs &ndash; 40&nbsp;% off.</p>
      <!--[if mso]>
      <v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="https://shop.example.com/sale?src=mail&amp;id=42"
        style="height:44px;v-text-anchor:middle;width:220px;" arcsize="10%" fillcolor="#0a66c2" stroke="f">
        <center style="color:#ffffff;">Shop the sale</center></v:roundrect>
      <![endif]-->
      <!--[if !mso]><!-->
      <a href="https://shop.example.com/sale?src=mail&amp;id=42" class="button"
         style="background:#0a66c2;color:#fff;padding:12px 24px;border-radius:4px;">Shop the sale</a>
      <!--<![endif]-->
      <p><a href='https://blog.example.com/spring-guide#plants'>Read the planting guide</a> &middot;
         <a href=https://shop.example.com/gift-cards>Gift cards</a></p>
      <p>Questions? <a href="mailto:help@example.com">Write to us</a> or call <a href="tel:+15551234567">555 1234</a>.</p>
      <p><a href="https://partner.example.org/ad" clicktracking="off">Our partner (untracked)</a></p>
      <p style="font-size:12px;color:#777;">Sent to {{email}} &middot;
         <a href="{{unsubscribe_url}}">Unsubscribe</a> &middot; <a href="#top">Back to top</a></p>
    </td></tr>
  </table>
</body>
</html>
"""


def run_demo(html: str = SAMPLE_CAMPAIGN, *, out: Callable[[str], None] = print, show_diff: bool = True) -> int:
    """Rewrite ``html`` for one recipient and report; returns a process exit code."""
    tracker = Tracker(secret_keys=["demo-old-key", "demo-new-key"], base_url="https://t.example.com")
    result = tracker.rewrite_html(
        html, message_id="<spring-2026-0001@example.com>", recipient="ann@example.com", metadata={"campaign": "spring"}
    )
    out(f"Rewrote a {len(html.encode())}-byte campaign mail for ann@example.com\n")
    out(f"Tracked links ({len(result.links)}):")
    failures = 0
    for link in result.links:
        verified = tracker.verify(link.tracking_url)
        ok = verified.url == link.url and verified.kind == "click"
        failures += not ok
        out(f"  #{link.index} <{link.tag}> {link.url}")
        shown = link.tracking_url if len(link.tracking_url) < 90 else f"{link.tracking_url[:44]}...{link.tracking_url[-40:]}"
        out(f"      -> {shown}  verifies: {'yes' if ok else 'NO'}")
    out(f"\nLeft alone ({len(result.skipped)}):")
    for skip in result.skipped:
        out(f"  <{skip.tag}> {skip.raw!r}: {skip.reason}")
    pixel = result.pixel
    if pixel is not None:
        opened = tracker.verify(pixel.html.split('src="', 1)[1].split('"', 1)[0])
        out(f"\nOpen pixel inserted at offset {pixel.position} (before </body>), verifies as: {opened.kind}")
    forged = result.links[0].tracking_url[:-2] + ("AA" if not result.links[0].tracking_url.endswith("AA") else "BA")
    try:
        tracker.verify(forged)
        out("Forged URL: ACCEPTED (this is a bug)")
        failures += 1
    except InvalidToken as exc:
        out(f"Forged URL refused: {exc.reason}")
    again = tracker.rewrite_html(result.html, message_id="x", recipient="y")
    out(f"Second pass over the output changes nothing: {again.html == result.html}")
    failures += again.html != result.html
    if show_diff:
        out("\nEvery changed line (everything else is byte-identical):")
        for line in difflib.unified_diff(html.splitlines(), result.html.splitlines(), lineterm="", n=0):
            if not line.startswith(("---", "+++", "@@")):
                out("  " + (line if len(line) < 140 else line[:137] + "..."))
    out(f"\nOutput size {result.size} bytes; Gmail would clip it: {result.gmail_clipped}")
    return 1 if failures else 0
