"""Rewrite every inline text part of a parsed message; report each leaf.

HTML parts go first so that links opted out there stay alone in the text parts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mailtrack.core.mime.headers import set_charset, set_field
from mailtrack.core.mime.transfer import DecodedPart, can_encode, decode_part, encode_part
from mailtrack.core.mime.tree import MAX_DEPTH, MimeNode, body_parts
from mailtrack.core.results import HtmlResult, MessagePart, PartStatus, TextResult
from mailtrack.core.rewrite import RewritePlan, rewrite_html_edits, rewrite_text_edits

# The plan for a body part, or None to leave that kind of part alone.
PlanFor = Callable[[str, bool], "RewritePlan | None"]  # (subtype, is_body) -> plan


def rewrite_parts(raw: bytes, root: MimeNode, plan_for: PlanFor) -> tuple[list[tuple[int, int, bytes]], list[MessagePart], list[str]]:
    """Rewrite every inline text part; return byte edits for ``raw``, a report per leaf part, and warnings.

    HTML parts go first so that links opted out there are left alone in the
    text parts too.
    """
    bodies = body_parts(root)
    leaves = root.leaves()
    edits: list[tuple[int, int, bytes]] = []
    reports: dict[str, MessagePart] = {}
    warnings: list[str] = []
    opted_out: set[str] = set()
    exclude: frozenset[str] = frozenset()
    counted = 0  # links counted so far: indexes continue, and max_links holds for the whole message
    order = sorted(leaves, key=lambda n: n.content_type != "text/html")
    for node in order:
        if len(exclude) != len(opted_out):
            exclude = frozenset(opted_out)
        report = _rewrite_leaf(raw, node, plan_for, node.path in bodies, exclude, edits, counted)
        reports[node.path] = report
        if report.result is not None:
            counted += len(report.result.links) + sum(s.reason == "already-tracked" for s in report.result.skipped)
        if isinstance(report.result, HtmlResult):
            opted_out.update(s.url for s in report.result.skipped if s.reason == "opt-out")
        for warning in report.warnings:
            warnings.append(f"part {node.path}: {warning}")
    return edits, [reports[n.path] for n in leaves], warnings


def _rewrite_leaf(
    raw: bytes,
    node: MimeNode,
    plan_for: PlanFor,
    is_body: bool,
    exclude: frozenset[str],
    edits: list[tuple[int, int, bytes]],
    counted: int,
) -> MessagePart:
    ctype = node.content_type
    encoding = node.transfer_encoding
    charset = node.charset

    def report(status: PartStatus = "left", **fields: Any) -> MessagePart:
        # Built once, with everything it says (dataclasses.replace on a first draft cost twice as much).
        return MessagePart(node.path, ctype, charset, encoding, status, body=is_body, **fields)

    if node.depth >= MAX_DEPTH:
        return report(reason=f"nested more than {MAX_DEPTH} levels deep")
    if ctype not in ("text/html", "text/plain"):
        if ctype.startswith("multipart/"):
            return report(reason="multipart without parts (no boundary or no delimiter found)")
        return report(reason="not a text body")
    if node.is_attachment:
        return report(reason="attachment")
    if node.body_start == node.header_end and node.body_start == node.end:
        return report("unchanged", reason="no body (nothing after the headers)")
    decoded = decode_part(raw, node, encoding, charset)
    if isinstance(decoded, str):
        return report("undecodable", reason=decoded)
    subtype = ctype[5:]
    plan = plan_for(subtype, is_body)
    if plan is None:
        return report("unchanged", reason="tracking off for this part")
    plan = _for_part(plan if plan.first_index == counted else replace(plan, first_index=counted), decoded, subtype == "html")
    result: HtmlResult | TextResult
    if subtype == "html":
        result, changes = rewrite_html_edits(decoded.text, plan)
    else:
        result, changes = rewrite_text_edits(decoded.text, plan, exclude)
    notes = list(result.warnings)
    if decoded.guessed:
        notes.insert(0, "no charset declared and the bytes are not ASCII: read and written as UTF-8")
    if not changes:
        return report("unchanged", result=result, warnings=notes)
    # The rewriters' output is the decoded text with exactly these changes spliced in: not spliced again.
    encoded = encode_part(decoded, changes, html=subtype == "html",
                          intended=result.html if isinstance(result, HtmlResult) else result.text)
    if isinstance(encoded, str):  # what would be written does not decode to the rewritten text: leave the part
        return report("unencodable", reason=encoded, warnings=notes[:1] if decoded.guessed else [])
    body, new_encoding, new_charset = encoded.body, encoded.encoding, encoded.charset
    if new_encoding != encoding:
        edits.extend(set_field(raw, node, "Content-Transfer-Encoding", new_encoding, decoded.eol))
        notes.append(f"Content-Transfer-Encoding changed from {encoding} to {new_encoding}: the new lines did not fit it")
        if decoded.guessed:
            new_charset = "utf-8"  # encoded bytes can no longer be sniffed: say what they are
    if new_charset != decoded.charset:
        edits.extend(set_charset(raw, node, new_charset, decoded.eol))
        why = "it was read as UTF-8" if decoded.guessed else f"the footer has characters {decoded.charset} lacks"
        notes.append(f"charset set from {decoded.charset} to {new_charset}: {why}")
    edits.append((node.body_start, node.end, body))  # after any field added at the same offset
    return report(
        "rewritten", result=result, warnings=notes,
        new_transfer_encoding=new_encoding, new_charset=new_charset,
    )


def _for_part(plan: RewritePlan, decoded: DecodedPart, html: bool) -> RewritePlan:
    """The plan fitted to one part: footers with its line breaks, HTML footers in its charset.

    A CRLF body never gets a bare LF; characters an HTML part's charset lacks
    become character references here, so the result reports what is written.
    """
    unsubscribe = plan.unsubscribe
    if unsubscribe is None:
        return plan
    text = decoded.text
    crlf = decoded.eol == b"\r\n" or ("\r" in text and "\r\n" in text)  # (a CR first: a one-character search is fast)
    newline = "\r\n" if crlf else decoded.eol.decode("ascii")
    fix = re.compile(r"\r\n|\r|\n")
    template = fix.sub(newline, unsubscribe.html)
    if html:
        if not can_encode(template, decoded.codec):
            template = "".join(c if can_encode(c, decoded.codec) else f"&#{ord(c)};" for c in template)
    unsubscribe = replace(unsubscribe, html=template, text=fix.sub(newline, unsubscribe.text), newline=newline)
    return replace(plan, unsubscribe=unsubscribe)
