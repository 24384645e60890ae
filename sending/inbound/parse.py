"""An inbound message as the post's JSON fields (Postmark's inbound webhook shape). Pure: bytes in, values out.

Reply text: mail-parser-reply cuts the quoted history ("On … wrote:", Outlook's separators, "> " lines) and the
signature from the plain-text body, in the languages listed here.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from mailparser_reply import EmailReplyParser

from sending.inbound.matching import split_tag

# The languages whose reply headers and signatures mail-parser-reply recognises for StrippedTextReply.
REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs"]


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    content: bytes
    content_id: str


def _address_full(value: str | None) -> list[dict[str, str]]:
    found = []
    for name, address in email.utils.getaddresses([value] if value else []):
        if not address:
            continue
        local = address.rpartition("@")[0]
        found.append({"Email": address, "Name": name, "MailboxHash": split_tag(local)[1]})
    return found


def _header(message: EmailMessage, name: str) -> str:
    value = message.get(name)
    return str(value).strip() if value is not None else ""


def _bodies(message: EmailMessage) -> tuple[str, str]:
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    return (_text_of(text_part), _text_of(html_part))


def _text_of(part: EmailMessage | None) -> str:
    if part is None:
        return ""
    try:
        return str(part.get_content())
    except (LookupError, ValueError, AssertionError):  # an unknown charset or a broken transfer encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else str(payload)


def attachments(message: EmailMessage) -> list[Attachment]:
    found = []
    for part in message.iter_attachments():
        if part.is_multipart():
            continue
        content = part.get_payload(decode=True)
        if not isinstance(content, bytes):
            content = b""
        found.append(
            Attachment(
                name=part.get_filename() or "",
                content_type=part.get_content_type(),
                content=content,
                content_id=(part.get("Content-ID") or "").strip(),
            )
        )
    return found


def stripped_reply(text: str) -> str:
    if not text.strip():
        return ""
    replies = EmailReplyParser(languages=REPLY_LANGUAGES).read(text).replies
    # The first reply's body is the new text without its signature, disclaimers and the quoted history.
    return replies[0].body.strip() if replies else ""


def message_read(raw: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[return-value]


def without_nul(value: object) -> object:
    """NUL characters replaced (U+FFFD) in every string: PostgreSQL's text and JSON cannot hold them, and a message
    carrying one must be stored like any other."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {k: without_nul(v) for k, v in value.items()}
    return value


def parsed_fields(raw: bytes, *, original_recipient: str) -> tuple[dict, list[Attachment]]:
    """The post's fields but the attachments, and the attachments themselves."""
    message = message_read(raw)
    text, html = _bodies(message)
    from_full = _address_full(_header(message, "From"))
    local = original_recipient.rpartition("@")[0]
    fields = {
        "FromName": from_full[0]["Name"] if from_full else "",
        "From": from_full[0]["Email"] if from_full else "",
        "FromFull": from_full[0] if from_full else {"Email": "", "Name": "", "MailboxHash": ""},
        "To": _header(message, "To"),
        "ToFull": _address_full(_header(message, "To")),
        "Cc": _header(message, "Cc"),
        "CcFull": _address_full(_header(message, "Cc")),
        "OriginalRecipient": original_recipient,
        "MailboxHash": split_tag(local)[1],
        "ReplyTo": _header(message, "Reply-To"),
        "Subject": _header(message, "Subject"),
        "Date": _header(message, "Date"),
        "TextBody": text,
        "HtmlBody": html,
        "StrippedTextReply": stripped_reply(text),
        "Headers": [{"Name": name, "Value": str(value)} for name, value in message.items()],
    }
    return without_nul(fields), attachments(message)  # type: ignore[return-value]
