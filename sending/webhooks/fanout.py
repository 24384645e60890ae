"""Fan-out: new events become pending webhook deliveries, read from the event table by id.

Nothing on the send path knows about webhooks: whoever writes an event (submission, delivery, bounce
processing, domain checks, tracking, code yet to come) only inserts its row. The webhooks sweep reads the events
after its cursor in id order, one query for the organizations' enabled endpoints, and one bulk insert of
deliveries per window (idempotent: one delivery per endpoint and event).

Ids are allocated at insert and become visible at commit, so on PostgreSQL event 41 may show up after 42 was
read. The cursor never moves past a hole until it has stayed a hole for GAP_WAIT (a rolled-back insert or a
deleted row), and events after a hole are fanned out at once and simply read again next time.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from sending.models import Event, WebhookCursor, WebhookDelivery, WebhookEndpoint
from sending.streams.service import TRANSACTIONAL
from sending.webhooks.postmark import POSTMARK_EVENT_TYPES

# An endpoint taking Postmark's JSON gets only the events Postmark has.
POSTMARK = WebhookEndpoint.PayloadFormat.POSTMARK

WINDOW = 5000
# Far longer than any transaction that writes events.
GAP_WAIT = timedelta(seconds=60)


def webhook_fanout(now: datetime | None = None, max_windows: int = 20) -> int:
    """Create the deliveries of every event not yet fanned out; returns how many were created."""
    created = 0
    for _ in range(max_windows):
        count, more = _window(now or timezone.now())
        created += count
        if not more:
            break
    return created


def _cursor() -> WebhookCursor:
    cursor = WebhookCursor.objects.select_for_update().filter(pk=1).first()
    if cursor is None:
        # First run: no endpoint can want anything older than itself (start_event_id), so start at the end.
        last = Event.objects.aggregate(last=Max("id"))["last"] or 0
        first_start = WebhookEndpoint.objects.aggregate(first=Min("start_event_id"))["first"]
        position = min(last, first_start) if first_start is not None else last
        cursor, _ = WebhookCursor.objects.get_or_create(pk=1, defaults={"position": position})
    return cursor


def _window(now: datetime) -> tuple[int, bool]:
    with transaction.atomic():
        cursor = _cursor()
        # The stream of each event's message, for endpoints that filter by stream (None: an event of no message;
        # mail from before streams existed is `transactional`).
        rows = [
            (pk, org, kind, (stream or TRANSACTIONAL) if message_id is not None else None)
            for pk, org, kind, message_id, stream in Event.objects.filter(id__gt=cursor.position)
            .order_by("id")
            .values_list("id", "organization_id", "type", "message_id", "message__stream__name")[:WINDOW]
        ]
        if not rows:
            return 0, False
        wanted: dict[int, list[WebhookEndpoint]] = defaultdict(list)
        endpoints = WebhookEndpoint.objects.filter(enabled=True, purpose="events")
        for endpoint in endpoints.filter(organization_id__in={row[1] for row in rows}).only(
            "id", "organization_id", "event_types", "streams", "start_event_id", "payload_format"
        ):
            wanted[endpoint.organization_id].append(endpoint)
        deliveries = [
            WebhookDelivery(endpoint_id=e.pk, organization_id=org, event_id=pk, next_attempt_at=now, created_at=now)
            for pk, org, kind, stream in rows
            for e in wanted.get(org, ())
            if pk > e.start_event_id
            and (not e.event_types or kind in e.event_types)
            and (not e.streams or stream is None or stream in e.streams)
            and (e.payload_format != POSTMARK or kind in POSTMARK_EVENT_TYPES)
        ]
        if deliveries:
            WebhookDelivery.objects.bulk_create(deliveries, batch_size=1000, ignore_conflicts=True)
        position, gap_at, gap_since = _advance(cursor, [row[0] for row in rows], now)
        moved = position != cursor.position
        cursor.position, cursor.gap_at, cursor.gap_since = position, gap_at, gap_since
        cursor.save()
    # Another window only if this one was full and the cursor moved (a hole would return the same rows).
    return len(deliveries), len(rows) == WINDOW and moved and gap_at is None


def _advance(cursor: WebhookCursor, ids: list[int], now: datetime) -> tuple[int, int | None, datetime | None]:
    """The new position: up to the first hole that has not waited GAP_WAIT yet, with that hole's bookkeeping."""
    position = cursor.position
    for pk in ids:
        expected = position + 1
        if pk != expected:
            waited = cursor.gap_at == expected and cursor.gap_since is not None and now - cursor.gap_since >= GAP_WAIT
            if not waited:
                since = cursor.gap_since if cursor.gap_at == expected and cursor.gap_since else now
                return position, expected, since
        position = pk
    return position, None, None
