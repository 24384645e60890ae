"""Scheduled mail and delivery deadlines, driven by the database (the sweep calls these; nothing waits in the broker).

- Scheduled mail (`send_at`) is stored `scheduled` with `next_attempt_at` = its time: it survives any restart, and
  the sweep queues what is due, priority high first. A delivery task never drains it early (claims take `queued`
  rows only).
- A message's recipients can be cancelled until they go out: scheduled, held, or queued and not yet claimed by a
  worker (the row lock makes the claim and the cancel exclusive; whoever comes second finds the state changed).
- Waiting mail past its delivery deadline (`deliver_by`) expires: `expired`, no further attempt. A deferral that
  would retry after the deadline expires at once (sending.delivery.deliver.record_outcomes).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from mail.due import skip_locked_supported
from sending.delivery.queueing import enqueue_after_commit
from sending.models import Message, Recipient, RecipientState
from sending.states import LOCKED_FIELDS, Locked, deadline_expired, not_sent_cancelled, scheduled_released

BATCH = 1000
CANCELLABLE = (RecipientState.SCHEDULED, RecipientState.HELD, RecipientState.QUEUED)
_WAITING = (RecipientState.QUEUED, RecipientState.DEFERRED)


def _locked(qs: QuerySet[Recipient], *order: str, limit: int = BATCH) -> list[Locked]:
    if skip_locked_supported():
        qs = qs.select_for_update(skip_locked=True, of=("self",))
    return [Locked(*row) for row in qs.order_by(*order).values_list(*LOCKED_FIELDS)[:limit]]


def scheduled_release_due(now: datetime | None = None, *, limit: int = 20_000) -> int:
    """Queue the scheduled recipients whose time has come (priority high first, then by time); returns how many."""
    now = now or timezone.now()
    lease_until = now + timedelta(seconds=settings.POSTWERK_ENQUEUE_LEASE)
    total = 0
    while total < limit:
        with transaction.atomic():
            due = Recipient.objects.filter(state=RecipientState.SCHEDULED, next_attempt_at__lte=now)
            rows = _locked(due, "-priority", "next_attempt_at", limit=min(BATCH, limit - total))
            if not rows:
                break
            scheduled_released(rows, at=now, lease_until=lease_until)
            enqueue_after_commit([(str(r.id), r.domain, r.lane) for r in rows])
        total += len(rows)
        if len(rows) < BATCH:
            break
    return total


def deadlines_expire(now: datetime | None = None) -> int:
    """Expire queued or deferred recipients whose message's delivery deadline has passed; returns how many."""
    now = now or timezone.now()
    oldest = now - timedelta(seconds=settings.POSTWERK_MAX_DELIVERY_AGE) - timedelta(days=1)
    total = 0
    for state in _WAITING:
        while True:
            with transaction.atomic():
                # Only deadlines recent enough for mail to still wait on them (a recipient waits at most
                # POSTWERK_MAX_DELIVERY_AGE after it may go, and a deadline is never before that): the
                # message_deliver_by index, not every message that ever had a deadline.
                overdue = Message.objects.filter(deliver_by__lt=now, deliver_by__gte=oldest).values("pk")
                late = Recipient.objects.filter(state=state, message__in=overdue)
                rows = _locked(late, "next_attempt_at")
                if not rows:
                    break
                deadlines = dict(
                    Message.objects.filter(pk__in={r.message_id for r in rows}).values_list("pk", "deliver_by")
                )
                deadline_expired(rows, from_state=state, deliver_by=deadlines, at=now)
            total += len(rows)
            if len(rows) < BATCH:
                break
    return total


def message_cancel(message: Message, *, actor: str) -> int:
    """Cancel what of the message has not gone out yet; returns how many recipients were cancelled."""
    now = timezone.now()
    total = 0
    with transaction.atomic():
        for state in CANCELLABLE:
            qs = Recipient.objects.filter(message=message, state=state)
            if skip_locked_supported():
                # Waiting for a worker's claim to commit (not skipping it): the row is then `sending`, not ours.
                qs = qs.select_for_update(of=("self",))
            rows = [Locked(*row) for row in qs.order_by("id").values_list(*LOCKED_FIELDS)]
            if rows:
                not_sent_cancelled(rows, from_state=state, actor=actor, at=now)
                total += len(rows)
    return total


def scheduled_count(organization_id: int) -> int:
    return Recipient.objects.filter(organization_id=organization_id, state=RecipientState.SCHEDULED).count()


__all__ = ["deadlines_expire", "message_cancel", "scheduled_count", "scheduled_release_due"]
