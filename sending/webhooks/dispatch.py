"""Sending webhook deliveries: find the due ones, claim them, POST, log the attempt, schedule the retry.

The database decides: the broker only carries delivery ids, a queued delivery whose task was lost is queued
again once its lease runs out, and one left in `sending` by a dead worker goes back to `pending`. Retries follow
POSTWERK_WEBHOOK_RETRY_SCHEDULE after a timeout, a connection error or any non-2xx answer; 410 Gone disables
the endpoint at once, and an endpoint with no success for POSTWERK_WEBHOOK_DISABLE_AFTER is disabled too.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.celery import app as celery_app
from mail.due import due_taken
from mail.errors import PostwerkError
from sending.events import event_payload, events_for_payload
from sending.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint, uuid7
from sending.webhooks import transport
from sending.webhooks.endpoints import signing_secrets, webhook_endpoint_disable
from sending.webhooks.postmark import events_for_postmark, postmark_payload
from sending.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, signature_header

# Published by name (config/celery.py); the task is sending.webhooks.tasks.deliver.
DELIVER_TASK = "sending.webhooks.deliver"

log = logging.getLogger(__name__)

State, Trigger = WebhookDelivery.State, WebhookDelivery.Trigger
USER_AGENT = "Postwerk-Webhooks/1"
DUE_LIMIT = 5000


class ReplayRefused(PostwerkError):
    pass


def _sending_timeout() -> timedelta:
    # A batch is sent one delivery after another, each bounded by the timeout.
    return timedelta(seconds=settings.POSTWERK_WEBHOOK_TIMEOUT * settings.POSTWERK_WEBHOOK_BATCH + 60)


# --- due and enqueue ------------------------------------------------------------------------------------------


def deliveries_due(now: datetime | None = None, limit: int = DUE_LIMIT) -> list[tuple[str, str]]:
    """(delivery id, endpoint id) of deliveries to send now, leased so the next sweep skips them."""
    now = now or timezone.now()
    WebhookDelivery.objects.filter(state=State.SENDING, sending_since__lt=now - _sending_timeout()).update(
        state=State.PENDING, next_attempt_at=now, claim_token=None, sending_since=None
    )
    lease_until = now + timedelta(seconds=settings.POSTWERK_ENQUEUE_LEASE)
    waiting = (State.PENDING, State.QUEUED)

    def lease(ids: list[object]) -> None:
        for start in range(0, len(ids), 1000):
            WebhookDelivery.objects.filter(id__in=ids[start : start + 1000], state__in=waiting).update(
                state=State.QUEUED, next_attempt_at=lease_until
            )

    due = WebhookDelivery.objects.filter(state__in=waiting, next_attempt_at__lte=now)
    refs = due_taken(due, fields=("id", "endpoint_id"), limit=limit, lease=lease)
    return [(str(pk), str(endpoint)) for pk, endpoint in refs]


def enqueue(refs: Iterable[tuple[str, str]]) -> int:
    """Publish send tasks, one per endpoint and batch. A broker failure is logged: the sweep tries again."""
    by_endpoint: dict[str, list[str]] = defaultdict(list)
    for delivery_id, endpoint_id in refs:
        by_endpoint[endpoint_id].append(delivery_id)
    size, published = settings.POSTWERK_WEBHOOK_BATCH, 0
    try:
        with celery_app.producer_or_acquire() as producer:
            for ids in by_endpoint.values():
                for start in range(0, len(ids), size):
                    celery_app.send_task(DELIVER_TASK, args=[ids[start : start + size]], producer=producer)
                    published += 1
    except Exception:
        log.exception("could not publish webhook tasks; the webhooks sweep will queue them again")
    return published


# --- send -----------------------------------------------------------------------------------------------------


def deliveries_send(delivery_ids: list[str]) -> int:
    """Send what can be claimed of these deliveries, in order; returns how many were attempted. When an
    endpoint does not answer at all, the rest of its batch waits for that delivery's retry instead of each
    waiting out its own timeout."""
    token, now = uuid.uuid4(), timezone.now()
    won = WebhookDelivery.objects.filter(pk__in=delivery_ids, state=State.QUEUED).update(
        state=State.SENDING, claim_token=token, sending_since=now
    )
    if not won:
        return 0
    claimed = {
        str(d.pk): d
        for d in WebhookDelivery.objects.filter(pk__in=delivery_ids, claim_token=token).select_related("endpoint")
    }
    unreachable: dict[uuid.UUID, datetime] = {}
    disabled: set[uuid.UUID] = set()
    attempted = 0
    for pk in delivery_ids:
        delivery = claimed.get(str(pk))
        if delivery is None:
            continue
        if delivery.endpoint_id in disabled:
            _update(delivery, token, state=State.CANCELLED, last_error="endpoint disabled")
            continue
        if delivery.endpoint_id in unreachable:
            _update(delivery, token, state=State.PENDING, next_attempt_at=unreachable[delivery.endpoint_id])
            continue
        try:
            attempt = delivery_attempt(delivery, token)
        except Exception:  # a bug, or the endpoint deleted mid-batch: never strand the rest in `sending`
            log.exception("webhook delivery %s failed", delivery.pk)
            retry = timezone.now() + timedelta(seconds=settings.POSTWERK_WEBHOOK_RETRY_SCHEDULE[0])
            _update(delivery, token, state=State.PENDING, next_attempt_at=retry)
            continue
        if attempt is None:
            continue
        attempted += 1
        if not delivery.endpoint.enabled:
            disabled.add(delivery.endpoint_id)
        elif attempt.status_code is None and delivery.state == State.PENDING:
            unreachable[delivery.endpoint_id] = delivery.next_attempt_at
    return attempted


def _update(delivery: WebhookDelivery, token: uuid.UUID, **fields: object) -> None:
    # Only while this worker's claim holds: a sweep that gave up on us may have queued it again.
    WebhookDelivery.objects.filter(pk=delivery.pk, claim_token=token).update(
        claim_token=None, sending_since=None, **fields
    )


def _payload(delivery: WebhookDelivery) -> dict | None:
    if delivery.event_id is None:
        return delivery.payload
    if delivery.endpoint.payload_format == WebhookEndpoint.PayloadFormat.POSTMARK:
        event = events_for_postmark(Event.objects.filter(pk=delivery.event_id)).first()
        return postmark_payload(event) if event is not None else None
    event = events_for_payload(Event.objects.filter(pk=delivery.event_id)).first()
    return event_payload(event) if event is not None else None


def delivery_attempt(delivery: WebhookDelivery, token: uuid.UUID) -> WebhookAttempt | None:
    """One POST of a claimed delivery, logged; None when there was nothing to send (endpoint disabled)."""
    endpoint = delivery.endpoint
    if not endpoint.enabled and delivery.trigger != Trigger.TEST:
        _update(delivery, token, state=State.CANCELLED, last_error="endpoint disabled")
        return None
    payload = _payload(delivery)
    if payload is None:
        # Deleted, or (an endpoint switched to Postmark's JSON after the fan-out) an event Postmark has no body for.
        _update(delivery, token, state=State.CANCELLED, last_error="the event no longer exists in this format")
        return None
    started = timezone.now()
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(body, signing_secrets(endpoint, started)),
        # Neither an inbound post nor a Postmark-shaped event body has Postwerk's id/type keys: the inbound mail's
        # id, or the delivery's event and the RecordType, stand for them.
        EVENT_ID_HEADER: str(delivery.inbound_mail_id or payload.get("id", delivery.event_id)),
        "Postwerk-Event-Type": "inbound"
        if delivery.inbound_mail_id
        else str(payload.get("type", payload.get("RecordType"))),
        "Postwerk-Delivery-Id": str(delivery.pk),
        "Postwerk-Attempt": str(delivery.attempts + 1),
    }
    result = transport.post(endpoint.url, body, headers)
    return _record(delivery, token, result, started)


def _record(
    delivery: WebhookDelivery, token: uuid.UUID, result: transport.HttpResult, started: datetime
) -> WebhookAttempt:
    now, trigger = timezone.now(), delivery.trigger
    delivery.attempts += 1
    disable_reason = None
    if result.ok:
        delivery.state, delivery.succeeded_at = State.SUCCEEDED, now
    elif trigger == Trigger.TEST:
        delivery.state = State.FAILED  # a test send is tried once and changes nothing about the endpoint
    elif result.status == 410:
        delivery.state, disable_reason = State.FAILED, "the endpoint answered 410 Gone"
    else:
        schedule, step = settings.POSTWERK_WEBHOOK_RETRY_SCHEDULE, delivery.attempts - 1
        if step < len(schedule):
            delivery.state, delivery.next_attempt_at = State.PENDING, now + timedelta(seconds=schedule[step])
        else:
            delivery.state = State.FAILED
    with transaction.atomic():
        attempt = WebhookAttempt.objects.create(
            delivery=delivery,
            trigger=trigger,
            started_at=started,
            duration_ms=result.duration_ms,
            status_code=result.status,
            error=result.error[:500],
            response_excerpt=result.excerpt,
            ip=result.ip,
        )
        _update(
            delivery,
            token,
            state=delivery.state,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_status=result.status,
            last_error=result.error[:500],
            succeeded_at=delivery.succeeded_at,
            trigger=Trigger.TEST if trigger == Trigger.TEST else Trigger.AUTO,
        )
        if trigger != Trigger.TEST:
            endpoints = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id)
            if result.ok:
                # Written when it changes something (or once a minute), not once per delivery of a busy endpoint.
                endpoints.filter(
                    Q(failing_since__isnull=False)
                    | Q(last_success_at__isnull=True)
                    | Q(last_success_at__lt=now - timedelta(seconds=60))
                ).update(failing_since=None, last_success_at=now)
            else:
                endpoints.filter(failing_since__isnull=True).update(failing_since=now)
    if not result.ok and trigger != Trigger.TEST and disable_reason is None:
        failing_since = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).values_list("failing_since", flat=True)
        since = failing_since.first()
        if since is not None and now - since >= timedelta(seconds=settings.POSTWERK_WEBHOOK_DISABLE_AFTER):
            disable_reason = f"failing since {since.isoformat()} with no successful delivery"
    if disable_reason is not None:
        webhook_endpoint_disable(endpoint_id=delivery.endpoint_id, reason=disable_reason, now=now)
        delivery.endpoint.enabled = False
    return attempt


# --- by hand ------------------------------------------------------------------------------------------------


def delivery_replay(*, delivery: WebhookDelivery) -> None:
    """Send a delivery again now (whatever its state), as a logged `replay` attempt."""
    if not delivery.endpoint.enabled:
        raise ReplayRefused("The endpoint is disabled; enable it first.")
    now = timezone.now()
    with transaction.atomic():
        updated = (
            WebhookDelivery.objects.filter(pk=delivery.pk)
            .exclude(state=State.SENDING)
            .update(
                state=State.QUEUED,
                trigger=Trigger.REPLAY,
                next_attempt_at=now + timedelta(seconds=settings.POSTWERK_ENQUEUE_LEASE),
            )
        )
        if not updated:
            raise ReplayRefused("The delivery is being sent right now.")
        refs = [(str(delivery.pk), str(delivery.endpoint_id))]
        transaction.on_commit(lambda: enqueue(refs))


def sample_payload(endpoint: WebhookEndpoint, event_type: str, now: datetime) -> dict:
    address = "jane@example.com"
    return {
        "id": f"test-{uuid.uuid4().hex}",
        "type": event_type,
        "timestamp": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "organization_id": endpoint.organization_id,
        "message_id": str(uuid7()),
        "recipient_id": str(uuid7()),
        "recipient": address,
        "sequence": 1,
        "domain": None,
        "tags": ["test"],
        "metadata": {},
        "details": {"address": address},
        "test": True,
    }


def endpoint_test(*, endpoint: WebhookEndpoint, event_type: str) -> WebhookAttempt:
    """POST a sample event now and return the attempt (also logged as a `test` delivery)."""
    token, now = uuid.uuid4(), timezone.now()
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        organization_id=endpoint.organization_id,
        payload=sample_payload(endpoint, event_type, now),
        state=State.SENDING,
        trigger=Trigger.TEST,
        claim_token=token,
        sending_since=now,
    )
    attempt = delivery_attempt(delivery, token)
    assert attempt is not None  # a test send goes out even to a disabled endpoint
    return attempt
