"""Postwerk's events in Postmark's webhook JSON, for endpoints whose `payload_format` is `postmark`, so a receiver
written for Postmark (django-anymail's PostmarkTrackingWebhookView, say) takes them unchanged. The bounce record is
also the one the Postmark-compatible `/bounces` endpoints answer with (sending.compat.postmark.reads).

| Postwerk event | Postmark RecordType (Type) |
|---|---|
| delivered | Delivery |
| bounced | Bounce (HardBounce, or SoftBounce for a soft bounce) |
| deferred | Bounce (Transient: a temporary failure, retried) |
| complained | SpamComplaint (SpamComplaint) |
| opened | Open |
| clicked | Click |
| unsubscribed | SubscriptionChange (SuppressSending, ManualSuppression) |

Other events have no Postmark equivalent and are not sent to such an endpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db.models import QuerySet

from sending.models import Event, EventType

POSTMARK_EVENT_TYPES = frozenset(
    {
        EventType.DELIVERED,
        EventType.BOUNCED,
        EventType.DEFERRED,
        EventType.COMPLAINED,
        EventType.OPENED,
        EventType.CLICKED,
        EventType.UNSUBSCRIBED,
    }
)
# Postmark's bounce types: (Type, TypeCode, Name, Description).
HARD = (
    "HardBounce",
    1,
    "Hard bounce",
    "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
)
SOFT = ("SoftBounce", 4096, "Soft bounce", "Unable to temporarily deliver this message.")
TRANSIENT = ("Transient", 2, "Message delayed", "The server could not temporarily deliver your message; it is retried.")
SPAM = ("SpamComplaint", 512, "Spam complaint", "The subscriber explicitly marked this email as spam.")


def postmark_stream(name: str | None) -> str:
    """Postwerk's `transactional` stream is Postmark's `outbound`; other streams keep their names."""
    return "outbound" if name in (None, "", "transactional") else str(name)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def events_for_postmark(qs: QuerySet[Event]) -> QuerySet[Event]:
    return qs.select_related("message", "message__stream", "recipient").defer("message__raw")


def _common(event: Event) -> dict:
    message = event.message
    tags = list(message.tags) if message is not None else []
    return {
        "MessageID": str(event.message_id) if event.message_id else "",
        "ServerID": 0,
        "MessageStream": postmark_stream(message.stream.name if message is not None and message.stream else None),
        "Tag": tags[0] if tags else "",
        "Metadata": dict(message.metadata) if message is not None else {},
    }


def _recipient(event: Event) -> str:
    return event.recipient.address if event.recipient is not None else str(event.details.get("address", ""))


def _smtp_text(details: dict) -> str:
    smtp = details.get("smtp") or {}
    text = " ".join(str(part) for part in (smtp.get("code"), smtp.get("enhanced"), smtp.get("text")) if part)
    return str(details.get("diagnostic") or text)


def bounce_record(event: Event) -> dict:
    """A bounced, deferred or complained event as Postmark's bounce (webhook and /bounces alike); its ID is the
    event's id."""
    details = event.details or {}
    if event.type == EventType.COMPLAINED:
        kind = SPAM
    elif event.type == EventType.DEFERRED:
        kind = TRANSIENT
    else:
        kind = SOFT if details.get("kind") == "soft" else HARD
    inactive = kind in (HARD, SPAM)  # Postwerk suppresses the address for these (sending.feedback.suppressions)
    message = event.message
    return {
        "RecordType": "SpamComplaint" if kind is SPAM else "Bounce",
        "ID": event.pk,
        "Type": kind[0],
        "TypeCode": kind[1],
        "Name": kind[2],
        "Description": kind[3],
        "Details": _smtp_text(details),
        "Email": _recipient(event),
        "From": message.mail_from if message is not None else "",
        "BouncedAt": _iso(event.created_at),
        "DumpAvailable": False,
        "Inactive": inactive,
        "CanActivate": inactive,
        "Subject": message.subject if message is not None else "",
        "Content": "",
        **_common(event),
    }


def postmark_payload(event: Event) -> dict | None:
    """The event as Postmark's webhook would post it; None when Postmark has no such event. Load the event with
    `events_for_postmark`."""
    kind, details = event.type, event.details or {}
    if kind in (EventType.BOUNCED, EventType.DEFERRED, EventType.COMPLAINED):
        return bounce_record(event)
    if kind == EventType.DELIVERED:
        return {
            "RecordType": "Delivery",
            "Recipient": _recipient(event),
            "DeliveredAt": _iso(event.created_at),
            "Details": _smtp_text(details),
            **_common(event),
        }
    if kind in (EventType.OPENED, EventType.CLICKED):
        visitor = {
            "Recipient": _recipient(event),
            "ReceivedAt": _iso(event.created_at),
            "UserAgent": str(details.get("user_agent", "")),
            "Platform": "Unknown",
            "Client": {},
            "OS": {},
            "Geo": {"IP": str(details.get("ip", ""))},
            **_common(event),
        }
        if kind == EventType.OPENED:
            return {"RecordType": "Open", "FirstOpen": True, "ReadSeconds": 0, **visitor}
        return {"RecordType": "Click", "ClickLocation": "HTML", "OriginalLink": str(details.get("url", "")), **visitor}
    if kind == EventType.UNSUBSCRIBED:
        return {
            "RecordType": "SubscriptionChange",
            "Recipient": _recipient(event),
            "ChangedAt": _iso(event.created_at),
            "Origin": "Recipient",
            "SuppressSending": True,
            "SuppressionReason": "ManualSuppression",
            **_common(event),
        }
    return None
