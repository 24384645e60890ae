"""At most `max_connections` delivery sessions per throttled destination, across every process on every host.

The same lease pattern as verification/slots.py (ProbeSlot): each destination key has that many DeliverySlot rows,
a sender takes one with a conditional UPDATE (free, or its lease ran out) whose row count says whether it won, so
the database serialises competing claims on SQLite and PostgreSQL alike. A holder that dies loses its slot when the
lease ends; a live one renews it as it goes. Unlike the prober, a sender never waits for a slot: a worker sitting
on a busy destination would hold up every other one, so the caller postpones the mail instead (the holders take
it along meanwhile). The two modules stay separate because they share ten lines, not a concept worth a base class.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import DeliverySlot


@dataclass
class Slot:
    key: str
    index: int
    token: str
    renewed: float = field(default_factory=time.monotonic)


def _claimable(now: datetime) -> Q:
    return Q(holder="") | Q(expires_at__lt=now)


def slot_take(key: str, limit: int) -> Slot | None:
    """One of `limit` connection slots of `key`, or None when all are held."""
    limit = max(1, limit)
    lease = timedelta(seconds=settings.POSTWERK_THROTTLE_SLOT_LEASE)
    rows = dict(DeliverySlot.objects.filter(key=key, slot__lt=limit).values_list("slot", "holder"))
    if len(rows) < limit:  # first use of this destination (or its limit was raised): create the missing rows
        missing = [DeliverySlot(key=key, slot=i) for i in range(limit) if i not in rows]
        DeliverySlot.objects.bulk_create(missing, ignore_conflicts=True)
        rows.update({s.slot: "" for s in missing})
    now = timezone.now()
    # Free ones first, then held ones whose lease may have run out; the UPDATE decides, not this read.
    for index in sorted(rows, key=lambda i: (rows[i] != "", random.random())):
        token = uuid.uuid4().hex
        won = DeliverySlot.objects.filter(_claimable(now), key=key, slot=index).update(
            holder=token, expires_at=now + lease
        )
        if won:
            return Slot(key, index, token)
    return None


def slot_renew(slot: Slot) -> bool:
    """Extend the lease once a third of it has passed; False when it was lost (it ran out and was taken)."""
    lease = settings.POSTWERK_THROTTLE_SLOT_LEASE
    if time.monotonic() - slot.renewed < lease / 3:
        return True
    slot.renewed = time.monotonic()
    return bool(
        DeliverySlot.objects.filter(key=slot.key, slot=slot.index, holder=slot.token).update(
            expires_at=timezone.now() + timedelta(seconds=lease)
        )
    )


def slot_release(slot: Slot) -> None:
    DeliverySlot.objects.filter(key=slot.key, slot=slot.index, holder=slot.token).update(
        holder="", expires_at=timezone.now()
    )
