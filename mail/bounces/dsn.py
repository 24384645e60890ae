"""RFC 3464 delivery status notifications: the message/delivery-status fields, per message and per recipient.

A DSN (RFC 3462/6522 multipart/report; report-type=delivery-status) carries one per-message block
(Reporting-MTA, Original-Envelope-Id, Arrival-Date...) and one block per recipient (Final-Recipient, Action,
Status, Remote-MTA, Diagnostic-Code...). RFC 6533's message/global-delivery-status is the UTF-8 variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message

from mail.bounces import message as mime
from mail.bounces.reasons import normalise_status

DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")

# Fields that make a block a per-recipient block (RFC 3464 §2.3); some MTAs omit the per-message block.
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient", "action")


@dataclass
class DsnRecipient:
    address: str  # Original-Recipient when it is an rfc822 address (what we sent to), else Final-Recipient
    final_recipient: str
    action: str  # failed / delayed / delivered / relayed / expanded (RFC 3464 §2.3.3), lower case
    status: str  # "5.1.1" (RFC 3464 §2.3.4), "" if absent or unparseable
    diagnostic: str  # Diagnostic-Code without its type: "550 5.1.1 <x>: ... User unknown"
    remote_mta: str  # Remote-MTA without its type: "mx.example"


@dataclass
class DeliveryStatus:
    per_message: dict[str, str] = field(default_factory=dict)
    recipients: list[DsnRecipient] = field(default_factory=list)


def find_parts(msg: Message) -> list[Message]:
    return [part for part in mime.walk(msg) if mime.content_type(part) in DSN_TYPES]


def _typed_value(value: str) -> str:
    """Strip the type of a typed field ("smtp; 550 ...", "dns; mx.example") and fold white space."""
    kind, sep, rest = value.partition(";")
    text = rest if sep and " " not in kind.strip() else value
    return " ".join(text.split())


def parse(parts: list[Message]) -> DeliveryStatus:
    result = DeliveryStatus()
    for part in parts:
        for block in mime.parse_fields(mime.structured_text(part)):
            if not any(name in block for name in _RECIPIENT_FIELDS):
                for name, value in block.items():
                    result.per_message.setdefault(name, value)
                continue
            recipient = _recipient(block)
            if recipient is not None:
                result.recipients.append(recipient)
    return result


def _recipient(block: dict[str, str]) -> DsnRecipient | None:
    final = mime.clean_address(block.get("final-recipient", ""))
    original = mime.clean_address(block.get("original-recipient", "")) or mime.clean_address(
        block.get("x-actual-recipient", "")
    )
    address = original or final
    if not address:
        return None
    # "Action: failed (bad mailbox)": the first word; some MTAs write "Action: error" (OpenSMTPD) or omit it.
    action = (block.get("action", "").split() or [""])[0].strip(";,()").lower()
    if action == "error":
        action = "failed"
    status = normalise_status(block.get("status", "").split("\n")[0])
    if not action:
        action = "delayed" if status.startswith("4") else "failed"
    return DsnRecipient(
        address=address,
        final_recipient=final or address,
        action=action,
        status=status,
        diagnostic=_typed_value(block.get("diagnostic-code", "")),
        remote_mta=_typed_value(block.get("remote-mta", "")).split(" ")[0].strip("[]."),
    )
