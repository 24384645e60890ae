"""Editing a submitted message's header block as bytes, so the body travels exactly as the client sent it."""

from __future__ import annotations

from email import message_from_bytes, policy
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


def from_addresses(headers: EmailMessage) -> list[str]:
    values = headers.get_all("From") or []
    return [addr for _, addr in getaddresses([str(v) for v in values]) if addr]


def date_header(when) -> str:  # type: ignore[no-untyped-def]
    return format_datetime(when)
