"""Safe, bounded access to a received message's MIME structure: the one place that touches `email` parsing.

Everything here tolerates malformed input (the stdlib `compat32` policy records defects instead of raising) and
caps its work: only the first MAX_PARSE_BYTES of a message are parsed, at most MAX_PARTS parts are visited, and at
most MAX_TEXT_BYTES of each text part are decoded. The parts that matter in a report (the human-readable
notice, the RFC 3464 delivery-status or RFC 5965 feedback-report, the original's headers) come first, so a
20 MB bounce that returns the whole original costs no more than a small one.
"""

from __future__ import annotations

import binascii
import email
import html
import quopri
import re
from collections.abc import Iterator
from email import policy
from email.header import decode_header, make_header
from email.message import Message

MAX_PARSE_BYTES = 1024 * 1024
MAX_PARTS = 200
MAX_TEXT_BYTES = 64 * 1024

# Where a non-MIME bounce starts quoting the original message (qmail, Exim, Sendmail, Gmail, Yahoo, Exchange...).
ORIGINAL_MARKERS = re.compile(
    r"^[ \t]*(?:"
    r"-+ ?Below this line is a copy of the message\.?"
    r"|-+ This is a copy of the message, including all the headers\. -+"
    r"|-+ This is a copy of the message's headers\. -+"
    r"|-+ ?Original message ?-+"
    r"|-+ ?Original message (?:follows|headers)\.? ?-*"
    r"|Original message follows\.?"
    r"|-+ Returned (?:message|mail) -+"
    r"|-+ ?The header of the original message is following\.? ?-+"
    r"|-+ ?Original Message Header ?-+"
    r"|-+ ?Returned Message ?-+"
    r"|-+ ?Received message headers? ?-+"
    r"|-+ ?Unsent Message below ?-+"
    r"|Original-Message:"
    r")[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def unsurrogate(text: str) -> str:
    """compat32 keeps 8-bit header bytes as surrogate escapes; read them as UTF-8 (RFC 6532), else replace them."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def load(raw: bytes) -> Message:
    """Parse at most MAX_PARSE_BYTES of raw with the lenient compat32 policy (defects are recorded, not raised)."""
    if not isinstance(raw, bytes | bytearray):
        raw = str(raw or "").encode("utf-8", "replace")
    return email.message_from_bytes(bytes(raw[:MAX_PARSE_BYTES]), policy=policy.compat32)


def walk(msg: Message) -> Iterator[Message]:
    """Every part, depth first, at most MAX_PARTS of them."""
    for count, part in enumerate(msg.walk()):
        if count >= MAX_PARTS:
            return
        yield part


def content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "text/plain"


def header(msg: Message | None, name: str) -> str:
    """A header's value, RFC 2047 encoded-words decoded, unfolded; "" if absent or undecodable."""
    if msg is None:
        return ""
    try:
        value = msg.get(name)
    except Exception:
        return ""
    if value is None:
        return ""
    try:
        text = str(make_header(decode_header(str(value))))
    except Exception:
        text = str(value)
    return " ".join(unsurrogate(text).split())


def _charset(part: Message) -> str:
    try:
        charset = part.get_content_charset() or "utf-8"
        "".encode(charset)
        return charset
    except Exception:
        return "utf-8"


def part_bytes(part: Message) -> bytes:
    """The decoded body of a leaf part (transfer encoding undone), at most MAX_TEXT_BYTES."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload[:MAX_TEXT_BYTES]
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw[:MAX_TEXT_BYTES].encode("utf-8", "replace")
    return b""


def part_text(part: Message) -> str:
    """A text part as str: decoded with its charset, HTML reduced to text."""
    if part.is_multipart():
        return ""
    text = part_bytes(part).decode(_charset(part), "replace")
    if content_type(part) == "text/html":
        text = html_to_text(text)
    return text


_BLOCK_TAGS = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|/h\d|/table|p|div|tr)\b[^>]*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]{0,2000}>")
_INVISIBLE = re.compile(r"<(style|script|head)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def html_to_text(markup: str) -> str:
    markup = _INVISIBLE.sub(" ", markup)
    markup = _BLOCK_TAGS.sub("\n", markup)
    return html.unescape(_TAGS.sub(" ", markup))


def structured_text(part: Message) -> str:
    """The text of a message/delivery-status, message/feedback-report or similar part, whatever the parser did.

    compat32 turns message/delivery-status into one header block per RFC 3464 block, and any other message/*
    type into a sub-message (headers = the first block, body = the rest); a part that carries a transfer
    encoding or arrived as text/* stays a string. All three come back as "Name: value" text, blank-line separated.
    """
    if not part.is_multipart():
        return part_bytes(part).decode("utf-8", "replace")
    blocks: list[str] = []
    try:
        payload = part.get_payload()
    except Exception:
        return ""
    for block in payload[:MAX_PARTS] if isinstance(payload, list) else []:
        if not isinstance(block, Message):
            continue
        try:
            lines = [unsurrogate(f"{name}: {value}") for name, value in block.items()]
        except Exception:
            lines = []
        # decode=True gives the raw bytes back (plain get_payload() would turn 8-bit UTF-8 into U+FFFD).
        body = "" if block.is_multipart() else part_bytes(block).decode("utf-8", "replace")
        blocks.append("\n".join(lines))
        if body.strip():
            blocks.append(body)
    return _undo_transfer_encoding(part, "\n\n".join(blocks))


def _undo_transfer_encoding(part: Message, text: str) -> str:
    """A message/* part sent base64 or quoted-printable (RFC 2046 forbids it, some gateways do it): compat32 has
    parsed the encoded text as fields, so the text is decoded here."""
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    try:
        if encoding == "base64":
            return binascii.a2b_base64("".join(text.split()).encode("ascii", "ignore")).decode("utf-8", "replace")
        if encoding == "quoted-printable":
            return quopri.decodestring(text.encode("utf-8", "replace")).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return text
    return text


def parse_fields(text: str) -> list[dict[str, str]]:
    """RFC 3464 §2.1 / RFC 5965 §3.1 field blocks: unfold, split on blank lines, lower-cased names.

    A name repeated within a block keeps every value, joined by "\\n" (ARF allows several Original-Rcpt-To).
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text[:MAX_TEXT_BYTES].replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
            continue
        if line[0] in " \t" and last:
            current[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            continue
        last = name.strip().lower()
        value = value.strip()
        current[last] = f"{current[last]}\n{value}" if last in current else value
    if current:
        blocks.append(current)
    return blocks


def attached_original(msg: Message) -> Message | None:
    """The returned original message, or its headers: message/rfc822, message/global (RFC 6533), or
    text/rfc822-headers (RFC 6522), whichever comes first."""
    for part in walk(msg):
        ctype = content_type(part)
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
            if isinstance(payload, str):
                return headers_from_text(payload)
        if ctype in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            return headers_from_text(part_bytes(part).decode("utf-8", "replace"))
    return None


def headers_from_text(text: str) -> Message | None:
    text = text.lstrip("\r\n")
    if not text:
        return None
    try:
        return email.message_from_string(text[:MAX_TEXT_BYTES], policy=policy.compat32)
    except Exception:
        return None


def inline_original(notice: str) -> Message | None:
    """The original quoted inline after a marker line, as in qmail, Exim and Sendmail's plain-text bounces."""
    match = ORIGINAL_MARKERS.search(notice)
    if not match:
        return None
    rest = notice[match.end() :].lstrip("\r\n")
    rest = "\n".join(line[2:] if line.startswith("> ") else line for line in rest.split("\n")[:400])
    original = headers_from_text(rest.lstrip(" \t\r\n"))
    return original if original is not None and len(original.keys()) else None


def notice_text(msg: Message) -> str:
    """The human-readable text of a report: its own text parts, not those of a returned original.

    text/plain parts are preferred; text/html is used only when a report has no plain text (some Exchange and
    Microsoft 365 notices). The result is capped at MAX_TEXT_BYTES in total.
    """
    plain: list[str] = []
    markup: list[str] = []
    size = 0
    for part in _own_parts(msg):
        ctype = content_type(part)
        if ctype == "text/plain" or (ctype.startswith("text/") and ctype not in ("text/html", "text/rfc822-headers")):
            text = part_text(part)
            plain.append(text)
        elif ctype == "text/html":
            text = part_text(part)
            markup.append(text)
        else:
            continue
        size += len(text)
        if size >= MAX_TEXT_BYTES:
            break
    if not plain and not markup and not msg.is_multipart():
        # A multipart declared without a usable boundary stays one string: read it as text.
        return part_bytes(msg).decode("utf-8", "replace")
    return "\n\n".join(plain or markup)[:MAX_TEXT_BYTES]


def _own_parts(msg: Message) -> Iterator[Message]:
    """Leaf parts of msg without descending into attached messages."""
    stack = [msg]
    seen = 0
    while stack and seen < MAX_PARTS:
        part = stack.pop(0)
        seen += 1
        if content_type(part).startswith("message/"):
            continue
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                stack[0:0] = [p for p in payload if isinstance(p, Message)]
            continue
        yield part


# An addr-spec as found in reports: dot-atom local part (RFC 5322) or UTF-8 (RFC 6531/6533), no quoted strings.
ADDRESS_RE = re.compile(r"[^\s<>@\"'(),;:\[\]]{1,64}@[^\s<>@\"'(),;:\[\]]{1,253}")


def clean_address(value: str) -> str:
    """The addr-spec in a field value such as "rfc822; <Jane@Corp.Example>", lower-cased; "" if none."""
    value = (value or "").strip()
    if ";" in value:
        value = value.split(";", 1)[1]
    match = ADDRESS_RE.search(value)
    if not match:
        return ""
    return match.group(0).strip(".'`").lower()
