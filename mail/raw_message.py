"""Editing a submitted message's header block as bytes, so the body travels exactly as the client sent it."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.errors import HeaderParseError
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses

HEADER_END = b"\r\n\r\n"


def normalize_newlines(raw: bytes) -> bytes:
    """CRLF everywhere (RFC 5322 §2.3), whatever the client sent."""
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def split(raw: bytes) -> tuple[bytes, bytes]:
    head, sep, body = raw.partition(HEADER_END)
    if not sep:
        # No blank line: the whole thing is headers (RFC 5322 allows an empty body).
        return raw.rstrip(b"\r\n") + b"\r\n", b""
    return head + b"\r\n", body


def parse_headers(raw: bytes) -> EmailMessage:
    head, _ = split(raw)
    return message_from_bytes(head + b"\r\n", policy=policy.SMTP)  # type: ignore[return-value]


def remove_headers(raw: bytes, names: set[str]) -> bytes:
    """Drop every field with one of these (lower-case) names, continuation lines included."""
    head, body = split(raw)
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower().decode("ascii", "replace")
        dropping = name in names
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept) + b"\r\n" + b"\r\n" + body


def prepend_headers(raw: bytes, fields: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in fields) + raw


def raw_header(headers: EmailMessage, name: str) -> str | None:
    """The first `name` field's value as sent, unfolded, without the structured parse `headers[name]` runs (for
    an address or date field that parse costs more than everything else done to a submitted message)."""
    wanted = name.lower()
    for key, value in headers.raw_items():
        if key.lower() == wanted:
            return _unfolded(value)
    return None


def _unfolded(value: object) -> str:
    # 8-bit bytes (SMTPUTF8 headers, RFC 6532) come out of the parser as surrogate escapes: read them as UTF-8.
    text = str(value)
    if not text.isascii():
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())


def from_addresses(headers: EmailMessage) -> list[str]:
    return header_addresses(headers, "from")


def header_addresses(headers: EmailMessage, *names: str) -> list[str]:
    """The addresses in every field of these (lower-case) names: From, or To, Cc and Bcc."""
    # The raw values go straight to getaddresses: parsing them into header objects first (headers.get_all)
    # only to print them again costs more than the rest of the submission path.
    values = [_unfolded(value) for name, value in headers.raw_items() if name.lower() in names]
    try:
        return [addr for _, addr in getaddresses(values) if addr]
    except (HeaderParseError, IndexError, ValueError, TypeError, AttributeError):
        # Hostile values (tests/fuzz): hand back the raw values; the address check then refuses them as invalid
        # (550 5.6.0), never a temporary 451.
        return values


def date_header(when) -> str:  # type: ignore[no-untyped-def]
    return format_datetime(when)
