"""Whole MIME messages: rewrite the inline text bodies and keep every other byte.

A message is handled as bytes. Its structure is read by the rules of Python's
``email`` package (header blocks, boundary delimiter lines, the body parts the
way ``EmailMessage.get_body`` picks them), but it is never re-generated:

* each inline ``text/html`` and ``text/plain`` part is decoded (transfer
  encoding, then its own charset), rewritten, and only the lines that hold a
  change are encoded again, in the same charset and transfer encoding; lines
  without a change keep their original bytes (a base64 body, which has no
  lines to keep, is encoded whole, with its original line length);
* the transfer encoding (or, for text we cannot express in its charset, the
  charset) changes only when the new lines would break it: a 7bit line that is
  no longer ASCII, or any line longer than RFC 5322's 998 octets;
* headers are removed or added as whole fields; nothing else is touched.
  Attachments, ``message/rfc822`` parts, preambles and epilogues are copied.

Parts that cannot be decoded (an unknown charset or transfer encoding, bytes
invalid in the declared charset, broken base64) are left as they are and
reported (``undecodable``), never dropped. A rewritten part is decoded again
before it is written; when it would not read back as exactly the rewritten
text (a stateful codec such as ISO-2022-JP with stray escape bytes) it is left
as it was too and reported (``unencodable``).

``tree`` reads the structure, ``transfer`` decodes and re-encodes parts,
``headers`` edits header fields, ``parts`` rewrites the leaves.
"""

from mailtrack.core.mime.headers import add_field, splice_bytes
from mailtrack.core.mime.parts import PlanFor, rewrite_parts
from mailtrack.core.mime.tree import MimeNode, body_parts, line_break, parse_message, unfold

__all__ = ["MimeNode", "PlanFor", "add_field", "body_parts", "line_break", "parse_message", "rewrite_parts", "splice_bytes", "unfold"]
