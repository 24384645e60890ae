"""Hosted providers' reports that are neither RFC 3464 DSNs nor RFC 5965 feedback reports.

- Amazon SES notifications (docs.aws.amazon.com/ses/latest/dg/notification-contents.html), as an SNS e-mail
  subscription delivers them: a JSON "Notification" whose Message is the SES JSON (notificationType Bounce or
  Complaint; bouncedRecipients with status and diagnosticCode; bounceType / bounceSubType; complainedRecipients),
  and SES event publishing's events (eventType Bounce / Complaint, same fields).
  The JSON is read with the standard library's `json`; a bounce recipient without status or diagnostic gets its
  reason from the bounce sub-type (MailboxFull, MessageTooLarge, ContentRejected, Suppressed...).
- Microsoft JMRP (Junk Mail Reporting Program) complaints in their plain form: "complaint about message from
  <ip>" / "This is an email abuse report", the original attached as message/rfc822, no feedback-report part;
  the complainant is the original's X-HmXmrOriginalRecipient, else its only To address.
- Apple Mail's one-click unsubscribe: a message to a List-Unsubscribe mailto: with `X-Apple-Unsubscribe: true`;
  the person unsubscribing is its From. Reported as a complaint with feedback type "unsubscribe" (stop mailing
  this address), not as an auto-reply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email.message import Message

from mail.bounces import message as mime
from mail.bounces.reasons import Classification, Kind, Reason, kind_for


@dataclass
class ProviderRecipient:
    address: str
    status: str = ""
    diagnostic: str = ""
    remote_mta: str = ""
    transient: bool = False
    fallback: Classification | None = None  # what the provider's own category says, if the reply says nothing


@dataclass
class ProviderReport:
    type: str  # "bounce" | "complaint"
    source: str  # "ses-json", "jmrp", "apple-unsubscribe"
    recipients: list[ProviderRecipient] = field(default_factory=list)
    feedback_type: str = ""
    original_message_id: str = ""
    original_sender: str = ""


# SES bounceSubType -> reason (Permanent: General, NoEmail, Suppressed, OnAccountSuppressionList, UnsubscribedRecipient;
# Transient: General, MailboxFull, MessageTooLarge, ContentRejected, AttachmentRejected).
_SES_SUBTYPES = {
    "noemail": Reason.USER_UNKNOWN,
    "suppressed": Reason.USER_UNKNOWN,  # on SES's list after an earlier hard bounce of the same address
    "onaccountsuppressionlist": Reason.USER_UNKNOWN,
    "mailboxfull": Reason.MAILBOX_FULL,
    "messagetoolarge": Reason.MESSAGE_TOO_LARGE,
    "contentrejected": Reason.SPAM_BLOCKED,
    "attachmentrejected": Reason.SPAM_BLOCKED,
}
_JMRP = re.compile(r"complaint about message from|this is an email abuse report", re.IGNORECASE)
_MAX_JSON = 256 * 1024
_SES_KEYS = ("notificationType", "eventType")


def recognise(msg: Message, notice: str, subject: str) -> ProviderReport | None:
    for rule in (_apple_unsubscribe, _jmrp, _ses):
        try:
            found = rule(msg, notice, subject)
        except Exception:  # a malformed provider message is left to the other recognisers
            found = None
        if found is not None:
            return found
    return None


def _apple_unsubscribe(msg: Message, notice: str, subject: str) -> ProviderReport | None:
    if mime.header(msg, "x-apple-unsubscribe").lower() not in ("true", "yes", "1"):
        return None
    address = mime.clean_address(mime.header(msg, "from"))
    if not address:
        return None
    return ProviderReport(
        type="complaint",
        source="apple-unsubscribe",
        recipients=[ProviderRecipient(address)],
        feedback_type="unsubscribe",
    )


def _jmrp(msg: Message, notice: str, subject: str) -> ProviderReport | None:
    if not (_JMRP.search(subject) or _JMRP.search(notice[:2000])):
        return None
    original = mime.attached_original(msg)
    if original is None:
        return None
    address = mime.clean_address(mime.header(original, "x-hmxmroriginalrecipient"))
    if not address:
        addresses = {mime.clean_address(v) for v in re.split(r",(?![^<]*>)", mime.header(original, "to"))} - {""}
        address = addresses.pop() if len(addresses) == 1 else ""
    if not address:
        return None
    return ProviderReport(
        type="complaint",
        source="jmrp",
        recipients=[ProviderRecipient(address)],
        feedback_type="abuse",
        original_message_id=mime.header(original, "message-id"),
        original_sender=mime.clean_address(mime.header(original, "return-path")),
    )


def _ses(msg: Message, notice: str, subject: str) -> ProviderReport | None:
    # "notificationType" in SES notifications, "eventType" in event publishing (configuration sets), both
    # inside an SNS envelope's escaped Message or as the bare JSON.
    if not any(f'{quote}"{key}{quote}"' in notice for key in _SES_KEYS for quote in ("", "\\")):
        return None
    start = notice.find("{")
    if start < 0:
        return None
    payload, _end = json.JSONDecoder().raw_decode(notice[start : start + _MAX_JSON])
    if isinstance(payload, dict) and isinstance(payload.get("Message"), str):
        payload = json.loads(payload["Message"])  # the SNS envelope around the SES notification
    if not isinstance(payload, dict):
        return None
    kind = str(payload.get("notificationType") or payload.get("eventType") or "").lower()
    mail = payload.get("mail") if isinstance(payload.get("mail"), dict) else {}
    headers = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    report = ProviderReport(type="bounce", source="ses-json")
    report.original_message_id = str(headers.get("messageId") or "")
    report.original_sender = mime.clean_address(str(mail.get("source") or ""))
    if kind == "complaint":
        complaint = payload.get("complaint") or {}
        report.type = "complaint"
        report.feedback_type = str(complaint.get("complaintFeedbackType") or "abuse").lower()
        for entry in complaint.get("complainedRecipients") or []:
            address = mime.clean_address(str(entry.get("emailAddress", ""))) if isinstance(entry, dict) else ""
            if address:
                report.recipients.append(ProviderRecipient(address))
        return report
    if kind != "bounce":
        return None
    bounce = payload.get("bounce") or {}
    bounce_type = str(bounce.get("bounceType") or "")
    subtype = str(bounce.get("bounceSubType") or "")
    permanent = bounce_type.lower() == "permanent"
    reason = _SES_SUBTYPES.get(subtype.lower(), Reason.USER_UNKNOWN if permanent else Reason.OTHER)
    fallback = Classification(reason, kind_for(reason) if permanent else Kind.SOFT, f"ses:{bounce_type}/{subtype}")
    remote = str(bounce.get("remoteMtaIp") or "")
    for entry in bounce.get("bouncedRecipients") or []:
        if not isinstance(entry, dict):
            continue
        address = mime.clean_address(str(entry.get("emailAddress", "")))
        if not address:
            continue
        diagnostic = str(entry.get("diagnosticCode") or "")
        kind_, sep, rest = diagnostic.partition(";")
        if sep and " " not in kind_.strip():
            diagnostic = rest.strip()
        report.recipients.append(
            ProviderRecipient(
                address,
                status=str(entry.get("status") or ""),
                diagnostic=diagnostic,
                remote_mta=remote,
                transient=not permanent,
                fallback=fallback,
            )
        )
    return report
