"""The event stream as the outside world sees it: one JSON shape for the events API and for webhooks, the
organization-scoped event query, and the per-recipient sequence numbers events carry.

Every event has an id, a type, a timestamp, the organization, the message and recipient ids where there are
ones, the message's tags and metadata, the recipient's `sequence` (1 for `queued`, then one more per event of
that delivery, so a receiver can order what may arrive out of order) and the type's own details (SMTP reply,
bounce kind and reason, URL clicked, user agent, IP, ...).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.db.models import F, QuerySet

from accounts.models import Organization
from sending.models import Event, Recipient


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_payload(event: Event) -> dict:
    """The public JSON of an event. Load it with `events_for_payload` so this costs no query."""
    message, recipient, domain = event.message, event.recipient, event.domain
    return {
        "id": str(event.pk),
        "type": event.type,
        "timestamp": _iso(event.created_at),
        "organization_id": event.organization_id,
        "message_id": str(event.message_id) if event.message_id else None,
        "recipient_id": str(event.recipient_id) if event.recipient_id else None,
        "recipient": recipient.address if recipient is not None else None,
        "sequence": event.sequence,
        "domain": domain.name if domain is not None else None,
        "tags": list(message.tags) if message is not None else [],
        "metadata": dict(message.metadata) if message is not None else {},
        "details": event.details,
    }


def events_for_payload(qs: QuerySet[Event]) -> QuerySet[Event]:
    # Only what the payload needs: never the message's raw bytes.
    return qs.select_related("message", "recipient", "domain").only(
        "id",
        "type",
        "created_at",
        "organization_id",
        "details",
        "sequence",
        "message__id",
        "message__tags",
        "message__metadata",
        "recipient__id",
        "recipient__address",
        "domain__id",
        "domain__name",
    )


def event_list(
    *,
    organization: Organization,
    types: list[str] | None = None,
    recipient: str | None = None,
    message_id: uuid.UUID | None = None,
    tag: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Event]:
    """The organization's events, newest first, filtered. `recipient` is a recipient id or an address."""
    qs = Event.objects.filter(organization=organization)
    if types:
        qs = qs.filter(type__in=types)
    if recipient:
        try:
            qs = qs.filter(recipient_id=uuid.UUID(recipient))
        except ValueError:
            qs = qs.filter(
                recipient_id__in=Recipient.objects.filter(
                    organization=organization, address__iexact=recipient.strip()
                ).values("id")
            )
    if message_id:
        qs = qs.filter(message_id=message_id)
    if tag:
        qs = qs.filter(message__tag_rows__name=tag, message__tag_rows__organization=organization)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    return events_for_payload(qs).order_by("-id")


def sequence_next(recipient_id: uuid.UUID) -> int:
    """Count one more event for a delivery and return its sequence number. Call inside the transaction that
    writes the event: the UPDATE's row lock keeps concurrent writers (an open and a click) apart."""
    Recipient.objects.filter(pk=recipient_id).update(event_seq=F("event_seq") + 1)
    return Recipient.objects.filter(pk=recipient_id).values_list("event_seq", flat=True).get()


def recipient_event_row(r: Recipient, event_type: str, at: datetime, details: dict, sequence: int) -> dict[str, object]:
    """An event of one delivery as mail.bulk.insert_rows takes it: every column named, so no default is looked
    up per row, and no model instance built (on the accept and delivery paths that cost more than the insert)."""
    return {
        "organization_id": r.organization_id,
        "message_id": r.message_id,
        "recipient_id": r.id,
        "domain_id": None,
        "type": event_type,
        "created_at": at,
        "details": details,
        "sequence": sequence,
    }
