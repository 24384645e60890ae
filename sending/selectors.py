"""Reads shared by the API, the dashboard and the admin. Every one is scoped to an organization."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db.models import Prefetch, QuerySet

from accounts.models import Organization
from sending.models import Event, Message, Recipient


def message_list(
    *,
    organization: Organization,
    status: str | None = None,
    recipient: str | None = None,
    tag: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Message]:
    qs = Message.objects.filter(organization=organization).defer("raw")
    if status:
        qs = qs.filter(recipients__state=status)
    if recipient:
        qs = qs.filter(recipients__address__iexact=recipient)
    if tag:
        qs = qs.filter(tag_rows__name=tag, tag_rows__organization=organization)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if status or recipient or tag:
        qs = qs.distinct()
    return qs.prefetch_related(Prefetch("recipients", queryset=Recipient.objects.order_by("created_at")))


def message_get(*, organization: Organization, message_id: str) -> Message | None:
    return (
        Message.objects.filter(organization=organization, pk=message_id)
        .defer("raw")
        .select_related("stream", "template_version__template")
        .prefetch_related(Prefetch("recipients", queryset=Recipient.objects.order_by("created_at")))
        .first()
    )


def events_by_recipient(message: Message) -> dict[object, list[Event]]:
    grouped: dict[object, list[Event]] = defaultdict(list)
    for event in Event.objects.filter(message=message).order_by("created_at", "id"):
        grouped[event.recipient_id].append(event)
    return grouped
