"""The email policy for every header Postwerk writes: plain ASCII stays plain ASCII on the wire.

Python's own policies (email.policy.SMTP) fold a header at 78 columns, and a word they cannot break at a space
(a URL, a token) they turn into RFC 2047 encoded words to wrap it ("=?utf-8?q?=3Chttps=3A//...?="). For
List-Unsubscribe that hides the RFC 8058 one-click URL from every receiver, and since the header is DKIM-signed
nothing downstream can repair it; Python's parser decodes it again, which is why only the raw bytes show it.

Here a printable ASCII value is folded at its own whitespace only (lines may then run past 78, up to RFC 5322's
998) and never encoded; unfolding gives back exactly the value. Anything else (non-ASCII text, encoded words
given as such, MIME headers with their RFC 2231 parameters, a word longer than 998) is folded as Python does.
Headers parsed from a message (SMTP-submitted mail re-serialised by tracking) go out as they came
(refold_source="none"), folded where their sender folded them.
"""

from __future__ import annotations

import re
from email.policy import EmailPolicy
from typing import Any

MAX_LINE = 998  # RFC 5322 §2.1.1: the hard limit of a line, CRLF not counted
_PLAIN = re.compile(r"[\x20-\x7e\t]*")
# A fold point is the whitespace before a word: each chunk is its leading whitespace and one word.
_CHUNK = re.compile(r"[ \t]*[^ \t]+|[ \t]+")


def fold_plain(name: str, value: str, *, width: int = 78, linesep: str = "\r\n") -> str | None:
    """`name: value` folded before whitespace so lines stay within `width` wherever the value allows, ending
    with `linesep`; None when the value is not printable ASCII or a word alone would run past 998."""
    if not _PLAIN.fullmatch(value) or "=?" in value:
        return None
    start = f"{name}:"
    lines, line = [], start
    for chunk in _CHUNK.findall(f" {value}"):
        # Never right after the colon (that gains nothing), nor before trailing whitespace (a blank line).
        breakable = line != start and chunk[0] in " \t" and not chunk.isspace()
        if breakable and len(line) + len(chunk) > width:
            lines.append(line)
            line = chunk  # the whitespace stays, as the first character of the continuation line
        else:
            line += chunk
    lines.append(line)
    if any(len(x) > MAX_LINE for x in lines):
        return None
    return linesep.join(lines) + linesep


class WirePolicy(EmailPolicy):
    def _fold(self, name: str, value: Any, refold_binary: bool = False) -> str:
        # Header objects are what the program set; a parsed source value (a plain str) is left to refold_source.
        if hasattr(value, "name") and not name.lower().startswith("content-"):
            text = str(value)
            width = self.max_line_length or MAX_LINE
            if len(name) + 2 + len(text) > width:
                folded = fold_plain(name, text, width=width, linesep=self.linesep)
                if folded is not None:
                    return folded
        return super()._fold(name, value, refold_binary=refold_binary)


SMTP = WirePolicy(linesep="\r\n", refold_source="none")
SMTPUTF8 = SMTP.clone(utf8=True)
