"""The periodic sweep: the database, not the broker, decides what still needs delivering.

It re-queues recipients left in `sending` by a worker that died (its lease ran out: delivery.worker_leases), expires
waiting mail past its delivery deadline, queues scheduled mail whose time has come (delivery.scheduled), and
enqueues queued or deferred recipients whose time has come (retries, and fresh ones whose broker message was
lost, once their enqueue lease ran out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from mail.due import due_taken
from sending.delivery.queueing import enqueue
from sending.delivery.scheduled import deadlines_expire, scheduled_release_due
from sending.delivery.worker_leases import leases_idle_delete
from sending.models import Recipient, RecipientState, WorkerLease
from sending.states import abandoned_requeued, due_requeued

SWEEP_LIMIT = 20_000
_DUE_STATES = (RecipientState.QUEUED, RecipientState.DEFERRED)


@dataclass(frozen=True)
class SweepReport:
    rescued: int
    enqueued: int


def sweep(now: datetime | None = None) -> SweepReport:
    now = now or timezone.now()
    rescued = abandoned_requeued(abandoned(now), at=now)
    # Deadlines first, so nothing past its own is queued again; then scheduled mail whose time has come.
    deadlines_expire(now)
    scheduled_release_due(now)
    lease_until = now + timedelta(seconds=settings.POSTWERK_ENQUEUE_LEASE)
    refs = due_taken(
        Recipient.objects.filter(state__in=_DUE_STATES, next_attempt_at__lte=now),
        fields=("id", "domain", "lane"),
        limit=SWEEP_LIMIT,
        lease=lambda ids: due_requeued(ids, lease_until=lease_until, at=now),
    )
    if refs:
        enqueue([(str(pk), domain, lane) for pk, domain, lane in refs])
    leases_idle_delete(now - timedelta(seconds=max(3600, 10 * settings.POSTWERK_WORKER_LEASE)))
    return SweepReport(rescued=rescued, enqueued=len(refs))


def abandoned(now: datetime) -> Q:
    """`sending` recipients nobody is delivering: their worker's lease ran out or was released. However long a
    live worker takes (a slow receiver), its lease is renewed and its recipients stay its own. A claim whose token
    is no lease at all (made outside a worker, or by a version before leases) falls back on
    POSTWERK_SENDING_TIMEOUT."""
    leases = WorkerLease.objects.values("worker")
    lapsed = leases.filter(Q(holder="") | Q(expires_at__lt=now))
    stuck_before = now - timedelta(seconds=settings.POSTWERK_SENDING_TIMEOUT)
    return Q(state=RecipientState.SENDING) & (
        Q(claim_token__in=lapsed) | (~Q(claim_token__in=leases) & Q(sending_since__lt=stuck_before))
    )
