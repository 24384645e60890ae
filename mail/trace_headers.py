"""Headers Postwerk adds to a message on its way: Received (SMTP submission) and Feedback-ID (every message).

Both are written as plain ASCII from values checked here, so nothing a client sends can break them open."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from mail.raw_message import date_header

# RFC 5321 §4.1.2 Domain, or an address literal: what may follow "from" in a Received header as it is.
_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_ADDRESS_LITERAL = re.compile(r"\[(?:[0-9.]{7,15}|IPv6:[0-9A-Fa-f:.]{2,45})\]")
_IP = re.compile(r"[0-9A-Fa-f:.]{2,45}")
# Gmail's Feedback-ID fields are separated by colons; each field keeps to these characters.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
FEEDBACK_SENDER_ID = "postwerk"
FEEDBACK_DEFAULT_CAMPAIGN = "default"
_FEEDBACK_ID = re.compile(rb"(?:\A|\r\n)feedback-id[ \t]*:", re.IGNORECASE)


@dataclass(frozen=True)
class SmtpTrace:
    """What the SMTP session knows about where a message came from (RFC 5321 §4.4)."""

    helo: str  # the EHLO/HELO argument, as the client gave it
    ip: str | None  # the client's address
    esmtp: bool  # EHLO rather than HELO
    tls: bool
    authenticated: bool  # by AUTH, not by a trusted network (RFC 3848's "A")


def with_type(trace: SmtpTrace, smtputf8: bool) -> str:
    """The `with` protocol: RFC 3848's ESMTP, ESMTPS, ESMTPA, ESMTPSA, and RFC 6531's UTF8SMTP* forms."""
    if not trace.esmtp:
        return "SMTP"
    return ("UTF8SMTP" if smtputf8 else "ESMTP") + ("S" if trace.tls else "") + ("A" if trace.authenticated else "")


def received_header(trace: SmtpTrace, *, by: str, queue_id: str, when: datetime, smtputf8: bool = False) -> bytes:
    """The Received header the submission server prepends, CRLF-terminated.

    A HELO name that is neither a domain nor an address literal is left out: the client's address is enough,
    and nothing the client typed gets into the header unchecked."""
    literal = f"[{trace.ip}]" if trace.ip and _IP.fullmatch(trace.ip) else ""
    if ":" in literal:
        literal = f"[IPv6:{trace.ip}]"
    helo = trace.helo.strip()
    if not (_DOMAIN.fullmatch(helo) or _ADDRESS_LITERAL.fullmatch(helo)) or len(helo) > 255:
        helo = literal or "unknown"
    source = f"from {helo}" + (f" ({literal})" if literal and literal != helo else "")
    # One clause a line, as MTAs write it: each stays within 78 columns unless a host name is very long.
    lines = (
        f"Received: {source}",
        f" by {by} with {with_type(trace, smtputf8)} id {queue_id};",
        f" {date_header(when)}",
    )
    return "\r\n".join(lines).encode("ascii") + b"\r\n"


def feedback_id(*, tags: list[str], organization_id: int, domain: str) -> str:
    """Gmail's Feedback-ID, `campaign:customer:other:SenderId`: the message's first tag (or "default"), the
    organization, the sender domain, and Postwerk as the sender id. Gmail's Postmaster Tools report spam rates
    per field, so a tag that draws complaints shows up on its own."""
    campaign = _UNSAFE.sub("-", tags[0]).strip("-")[:64] if tags else ""
    fields = [campaign or FEEDBACK_DEFAULT_CAMPAIGN, str(organization_id), _UNSAFE.sub("-", domain)[:253]]
    return ":".join([*fields, FEEDBACK_SENDER_ID])


def with_feedback_id(raw: bytes, value: str) -> bytes:
    """`raw` with a Feedback-ID header on top, unless the sender wrote one."""
    end = raw.find(b"\r\n\r\n")  # the header block, without copying a large body
    if _FEEDBACK_ID.search(raw if end < 0 else raw[:end]):
        return raw
    return f"Feedback-ID: {value}\r\n".encode("ascii") + raw
