"""Reading a stored message for display: its headers, text body, HTML body and attachments. Pure: bytes in,
values out.

Python's email parser recurses once per MIME level and ends in RecursionError a few thousand levels down, so a
message nested deeper than mail.mime_limits allows is shown by its headers only (read without descending).

The standard library's structured header classes raise on some hostile values (AttributeError for a group where
an address list is expected, IndexError, HeaderParseError), so each header is shown parsed when it parses and as
its raw text otherwise, and a body structure the parser cannot walk is shown by its headers."""

from __future__ import annotations

from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.errors import MessageError
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from mail.mime_limits import mime_too_deep


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    inline: bool


@dataclass(frozen=True)
class MessageParts:
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    attachments: list[Attachment] = field(default_factory=list)
    too_deep: bool = False  # nested past MAX_MIME_DEPTH: headers only, the body is not parsed


def _content(part: EmailMessage | None) -> str | None:
    if part is None:
        return None
    try:
        return part.get_content()
    except (LookupError, UnicodeError, ValueError):  # an unknown charset or broken encoding: show what we can
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


# What the standard library's header and MIME walking code raises on input it does not expect (see above).
_PARSER_FAILURES = (MessageError, AttributeError, IndexError, LookupError, TypeError, ValueError)


def _header_pairs(message: EmailMessage) -> list[tuple[str, str]]:
    pairs = []
    for name, value in message.raw_items():
        try:
            shown = str(message.policy.header_fetch_parse(name, value))
        except _PARSER_FAILURES:
            shown = " ".join(str(value).split())  # as it was sent, unfolded
        pairs.append((name, shown))
    return pairs


def _headers_only(raw: bytes, too_deep: bool = True) -> MessageParts:
    top = BytesHeaderParser(policy=policy.default).parsebytes(raw)
    assert isinstance(top, EmailMessage)
    return MessageParts(headers=_header_pairs(top), text=None, html=None, too_deep=too_deep)


def message_parts(raw: bytes) -> MessageParts:
    # SMTP submission refuses such mail, but rows stored before that check (or by another path) may hold it.
    if mime_too_deep(raw):
        return _headers_only(raw)
    try:
        return _parts(raw)
    except RecursionError:  # a structure the byte scan did not see as deep (it is cheap to be sure)
        return _headers_only(raw)
    except _PARSER_FAILURES:  # a MIME structure the parser cannot walk: its headers are still worth showing
        return _headers_only(raw, too_deep=False)


def _parts(raw: bytes) -> MessageParts:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    headers = _header_pairs(message)
    attachments = []
    for part in message.walk():
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        if disposition in ("attachment", "inline") and (part.get_filename() or disposition == "attachment"):
            payload = part.get_payload(decode=True) or b""
            attachments.append(
                Attachment(part.get_filename() or "", part.get_content_type(), len(payload), disposition == "inline")
            )
    return MessageParts(
        headers=headers,
        text=_content(message.get_body(preferencelist=("plain",))),
        html=_content(message.get_body(preferencelist=("html",))),
        attachments=attachments,
    )
