"""Building the RFC 5322 message from an API request, with Python's email package. Pure: no database."""

from __future__ import annotations

import binascii
import random
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from email import quoprimime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from mail import wire_policy
from mail.addresses import Mailbox
from mail.errors import PostwerkError

# Headers the platform owns: letting a caller set them would break signing, routing or Bcc privacy.
FORBIDDEN_HEADERS = frozenset(
    {
        "bcc",
        "cc",
        "content-transfer-encoding",
        "content-type",
        "date",
        "dkim-signature",
        "from",
        "message-id",
        "mime-version",
        "received",
        "reply-to",
        "return-path",
        "sender",
        "subject",
        "to",
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
        "authentication-results",
    }
)
# Headers that instruct Postwerk over SMTP (X-Postwerk-Stream, X-Postwerk-Priority): never part of a message.
CONTROL_PREFIX = "x-postwerk-"
# RFC 5322 §2.2: a field name is printable ASCII except the colon.
_FIELD_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]{1,76}$")
# A line break in a folded header that is not followed by whitespace starts a new header (RFC 5322 §2.2.3).
_NEW_FIELD = re.compile(rb"\r\n[^ \t]|\r[^ \n\t]|\n[^ \t]")


class HeaderError(PostwerkError, ValueError):
    """A value that cannot go into a header. `field` is the request field to blame, as a path: ("subject",),
    ("headers", "X-Name"), ("attachments", 0)."""

    def __init__(self, message: str, field: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.field = field


def has_line_break(text: str) -> bool:
    """CR, LF, NUL, or anything else str.splitlines() breaks at (VT, FF, U+001C-1E, NEL, U+2028, U+2029): the
    email package refuses all of these in a header value, so they must be refused before it sees them."""
    return "\0" in text or (bool(text) and text.splitlines() != [text])


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None


@dataclass
class Draft:
    sender: Mailbox
    to: list[Mailbox]
    cc: list[Mailbox] = field(default_factory=list)
    bcc: list[Mailbox] = field(default_factory=list)
    reply_to: list[Mailbox] = field(default_factory=list)
    subject: str = ""
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def recipients(self) -> list[tuple[str, Mailbox]]:
        return [("to", m) for m in self.to] + [("cc", m) for m in self.cc] + [("bcc", m) for m in self.bcc]

    @property
    def smtputf8(self) -> bool:
        return any(m.smtputf8 for m in [self.sender, *self.to, *self.cc, *self.bcc, *self.reply_to])


def check_header(name: str, value: str) -> None:
    """Raise HeaderError for a header a caller may not set, or one that smuggles CR/LF."""
    if not _FIELD_NAME.match(name):
        raise HeaderError(f"{name!r} is not a valid header name.")
    if name.lower() in FORBIDDEN_HEADERS:
        raise HeaderError(f"The {name} header is set by Postwerk and cannot be given.")
    if name.lower().startswith(CONTROL_PREFIX):
        # Over SMTP these are instructions to Postwerk, removed before delivery; the API has fields for them.
        raise HeaderError(
            f"{name}: X-Postwerk-* headers are instructions to Postwerk, never sent; use the stream and priority "
            "fields."
        )
    if has_line_break(value):
        raise HeaderError(f"The {name} header contains a line break.")
    if len(value) > 2000:
        raise HeaderError(f"The {name} header is longer than 2000 characters.")


def _address(mailbox: Mailbox) -> Address:
    local, domain = mailbox.envelope_address.rsplit("@", 1)
    return Address(display_name=mailbox.display_name, username=local, domain=domain)


def build_message(draft: Draft, *, message_id: str, date: datetime) -> bytes:
    """Return the message as CRLF bytes, ready for DKIM signing. Bcc never appears in it."""
    for name, value in draft.headers.items():
        check_header(name, value)
    simple = _build_simple(draft, message_id=message_id, date=date)
    if simple is not None:
        return simple
    return _build_with_email_package(draft, message_id=message_id, date=date)


# --- the common case, written directly ------------------------------------------------------------------------
#
# Most transactional mail is an ASCII text and/or HTML body with short ASCII headers. For those, the bytes the
# email package would produce are fixed and simple, and building them through its header registry and generator
# was half of the send API's CPU per message. ASCII body lines over 78 characters (a rendered template's HTML)
# are quoted-printable by the email package's own encoder. Anything else (non-ASCII, header lines that need
# folding, attachments, names that need quoting or encoding) goes through the email package as before.
# The output is byte-identical to the email package's (tests/test_composer.py compares them); only the
# multipart boundary is random either way.

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_NAME = re.compile(rf"{_ATEXT}(?: {_ATEXT})*")
_SIMPLE_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_SIMPLE_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
# One header line as is: printable ASCII, single spaces, no encoded-word opener the email package would decode.
_SIMPLE_VALUE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_MAX_LINE = 78  # the policy's max_line_length: longer header lines are folded, longer body lines re-encoded


def _simple_mailbox(mailbox: Mailbox) -> str | None:
    if mailbox.smtputf8 or not _SIMPLE_LOCAL.fullmatch(mailbox.local_part):
        return None
    if not _SIMPLE_DOMAIN.fullmatch(mailbox.domain):
        return None
    address = f"{mailbox.local_part}@{mailbox.domain}"
    name = mailbox.display_name
    if not name:
        return address
    if "=?" in name or not _SIMPLE_NAME.fullmatch(name):
        return None
    return f"{name} <{address}>"


def _simple_line(name: str, value: str) -> bytes | None:
    line = f"{name}: {value}" if value else f"{name}:"
    if len(line) > _MAX_LINE or (value and ("=?" in value or not _SIMPLE_VALUE.fullmatch(value))):
        return None
    return line.encode("ascii") + b"\r\n"


@dataclass(frozen=True)
class _Body:
    cte: str  # the Content-Transfer-Encoding the email package would choose
    data: bytes  # CRLF lines


def _simple_body(text: str) -> _Body | None:
    """An ASCII body as the email package writes it (its contentmanager's choice between 7bit and, for lines over
    78 characters, quoted-printable), or None when it would pick another encoding (base64, or non-ASCII text).

    Quoted-printable is the common case of rendered HTML: a tag whose quoted style attribute is longer than a line
    cannot be broken. The email package's own encoder (quoprimime) makes the lines; only its header registry and
    generator, which cost several times more, are skipped."""
    if not text.isascii():
        return None
    lines = text.encode("ascii").splitlines()
    if all(len(line) <= _MAX_LINE for line in lines):
        return _Body("7bit", b"\r\n".join(lines) + b"\r\n")
    # As email.contentmanager._encode_text decides: quoted-printable unless the first ten lines come out shorter in
    # base64, and for at most ten lines the encoding of those (CRLF-joined) lines is the body.
    sniff = b"\r\n".join(lines[:10]) + b"\r\n"
    encoded = quoprimime.body_encode(sniff.decode("ascii"), _MAX_LINE)
    if len(encoded) > len(binascii.b2a_base64(sniff)):
        return None
    if len(lines) > 10:
        encoded = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("ascii"), _MAX_LINE)
    return _Body("quoted-printable", b"\r\n".join(encoded.encode("ascii").splitlines()) + b"\r\n")


def _text_part(subtype: str, body: _Body, *, mime_version: bool) -> bytes:
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {body.cte}\r\n'
    return head.encode("ascii") + (b"MIME-Version: 1.0\r\n" if mime_version else b"") + b"\r\n" + body.data


def _build_simple(draft: Draft, *, message_id: str, date: datetime) -> bytes | None:
    if draft.attachments or draft.smtputf8:
        return None
    lines: list[bytes | None] = []
    sender = _simple_mailbox(draft.sender)
    lines.append(None if sender is None else _simple_line("From", sender))
    for name, mailboxes in (("To", draft.to), ("Cc", draft.cc), ("Reply-To", draft.reply_to)):
        if mailboxes:
            boxes = [_simple_mailbox(m) for m in mailboxes]
            lines.append(None if None in boxes else _simple_line(name, ", ".join(boxes)))  # type: ignore[arg-type]
    lines.append(_simple_line("Subject", draft.subject))
    lines.append(_simple_line("Date", format_datetime(date)))
    lines.append(_simple_line("Message-ID", message_id))
    lines.extend(_simple_line(name, value) for name, value in draft.headers.items())
    if None in lines:
        return None
    head = b"".join(lines)  # type: ignore[arg-type]

    if draft.text is None:
        html = _simple_body(draft.html or "")
        return None if html is None else head + _text_part("html", html, mime_version=True)
    text = _simple_body(draft.text)
    if text is None:
        return None
    if draft.html is None:
        return head + _text_part("plain", text, mime_version=True)
    html = _simple_body(draft.html)
    if html is None:
        return None
    boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
    while boundary.encode("ascii") in text.data or boundary.encode("ascii") in html.data:  # as the email package
        boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
    delimiter = f"--{boundary}".encode("ascii")
    return (
        head
        + f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode("ascii")
        + delimiter + b"\r\n" + _text_part("plain", text, mime_version=False) + b"\r\n"
        + delimiter + b"\r\n" + _text_part("html", html, mime_version=True) + b"\r\n"
        + delimiter + b"--\r\n"
    )  # fmt: skip


def _build_with_email_package(draft: Draft, *, message_id: str, date: datetime) -> bytes:
    # Postwerk's wire policy: a long ASCII header (a URL in List-Unsubscribe, a token) is folded at its spaces or
    # left long, never turned into RFC 2047 encoded words as Python's own policy would.
    policy = wire_policy.SMTPUTF8 if draft.smtputf8 else wire_policy.SMTP
    msg = EmailMessage(policy=policy)
    msg["From"] = _address(draft.sender)
    _check_folded(msg, "From", ("from",))
    for name, field_name, mailboxes in (("To", "to", draft.to), ("Cc", "cc", draft.cc),
                                        ("Reply-To", "reply_to", draft.reply_to)):  # fmt: skip
        if mailboxes:
            msg[name] = [_address(m) for m in mailboxes]
            _check_folded(msg, name, (field_name,))
    msg["Subject"] = draft.subject
    _check_folded(msg, "Subject", ("subject",))
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    for name, value in draft.headers.items():
        msg[name] = value
        _check_folded(msg, name, ("headers", name))

    if draft.text is not None:
        msg.set_content(draft.text, cte=_cte(draft.text))
        if draft.html is not None:
            msg.add_alternative(draft.html, subtype="html", cte=_cte(draft.html))
    else:
        html = draft.html or ""
        msg.set_content(html, subtype="html", cte=_cte(html))

    inline = [(i, a) for i, a in enumerate(draft.attachments) if a.content_id]
    if inline:
        html_part = msg.get_body(("html",))
        target = html_part if html_part is not None else msg
        for i, att in inline:
            maintype, subtype = _split_type(att.content_type)
            target.add_related(
                att.content,
                maintype=maintype,
                subtype=subtype,
                cid=f"<{att.content_id}>",
                filename=att.filename,
                disposition="inline",
            )
            _check_part(target.get_payload()[-1], ("attachments", i))
    for i, att in enumerate(draft.attachments):
        if not att.content_id:
            maintype, subtype = _split_type(att.content_type)
            msg.add_attachment(att.content, maintype=maintype, subtype=subtype, filename=att.filename)
            _check_part(msg.get_payload()[-1], ("attachments", i))
    return msg.as_bytes(policy=policy)


def _check_folded(part: EmailMessage, name: str, field: tuple[str | int, ...]) -> None:
    """Refuse a header that would be written as more than one. Python before 3.11.10 (CVE-2024-6923) decodes
    RFC 2047 encoded words when folding, so "=?utf-8?q?x=0D=0ABcc:_a@b?=" came out as a real Bcc header."""
    for value in part.get_all(name, []):
        folded = part.policy.fold_binary(name, value)
        if not folded.endswith(b"\r\n") or _NEW_FIELD.search(folded[:-2]):
            raise HeaderError(f"The {name} header would contain a line break (an encoded word?).", field)
        # Python folds long words into encoded words, except in a display name: RFC 5322 §2.1.1 caps a line at 998.
        if any(len(line) > 998 for line in folded.split(b"\r\n")):
            raise HeaderError(f"The {name} header has a word too long for one line (998 characters).", field)


def _check_part(part: EmailMessage, field: tuple[str | int, ...]) -> None:
    for name in set(part.keys()):
        _check_folded(part, name, field)


def _cte(body: str) -> str | None:
    # 8bit bodies need 8BITMIME at every hop and may be re-encoded on the way, which breaks DKIM's body hash.
    return None if body.isascii() else "quoted-printable"


def _split_type(content_type: str) -> tuple[str, str]:
    maintype, _, subtype = content_type.partition("/")
    return maintype or "application", subtype or "octet-stream"
