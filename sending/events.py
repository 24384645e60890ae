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

from django.db.models import Q, QuerySet

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


# Only what the payload needs: never the message's raw bytes.
PAYLOAD_FIELDS = (
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


def events_for_payload(qs: QuerySet[Event]) -> QuerySet[Event]:
    return qs.select_related("message", "recipient", "domain").only(*PAYLOAD_FIELDS)


def event_list(
    *,
    organization: Organization,
    types: list[str] | None = None,
    recipient: str | None = None,
    message_id: uuid.UUID | None = None,
    tag: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    domain_id: int | None = None,
) -> QuerySet[Event]:
    """The organization's events, newest first, filtered. `recipient` is a recipient id or an address;
    `domain_id` matches a domain's own events and those of the mail sent from it."""
    qs = Event.objects.filter(organization=organization)
    if domain_id:
        qs = qs.filter(Q(domain_id=domain_id) | Q(message__domain_id=domain_id))
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
