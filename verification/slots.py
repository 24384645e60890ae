"""At most POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX probe connections per MX host, across every process.

Each MX host has that many ProbeSlot rows. A prober takes one with a conditional UPDATE (holder empty, or its
lease expired) whose row count says whether it won, the same claim pattern as delivery's; the database
serialises competing claims on SQLite and PostgreSQL alike, so the limit holds for any number of worker
processes on any number of hosts. A slot is leased, not owned: a holder that dies without releasing it loses
it after POSTWERK_VERIFY_SLOT_LEASE, and a live holder renews the lease as it goes.

Threads of one process that wait for a host are woken as soon as a slot of this process is released; waiters in
other processes poll.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import ProbeSlot

_released = threading.Condition()
# Polling bounds for waiters in other processes: short enough to keep a busy MX busy, jittered so that
# waiters do not all query at once.
_POLL_MIN, _POLL_MAX = 0.02, 0.2


@dataclass
class Slot:
    host: str
    index: int
    token: str
    renewed: float = field(default_factory=time.monotonic)


def _claimable(now: datetime) -> Q:
    return Q(holder="") | Q(expires_at__lt=now)


def slot_acquire(host: str, *, wait: float) -> Slot | None:
    """A connection slot for `host`, waiting up to `wait` seconds for one to come free; None if none did."""
    host = host.lower().rstrip(".")
    limit = max(1, settings.POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX)
    lease = timedelta(seconds=settings.POSTWERK_VERIFY_SLOT_LEASE)
    deadline = time.monotonic() + wait
    while True:
        rows = dict(ProbeSlot.objects.filter(host=host, slot__lt=limit).values_list("slot", "holder"))
        if len(rows) < limit:  # first use of this host (or the limit was raised): create the missing rows
            missing = [ProbeSlot(host=host, slot=i) for i in range(limit) if i not in rows]
            ProbeSlot.objects.bulk_create(missing, ignore_conflicts=True)
            rows.update({s.slot: "" for s in missing})
        now = timezone.now()
        # Free ones first, then any that may have expired; the UPDATE below decides, not this read.
        candidates = sorted(rows, key=lambda i: (rows[i] != "", random.random()))
        for index in candidates:
            token = uuid.uuid4().hex
            won = ProbeSlot.objects.filter(_claimable(now), host=host, slot=index).update(
                holder=token, expires_at=now + lease
            )
            if won:
                return Slot(host, index, token)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        with _released:
            _released.wait(min(remaining, random.uniform(_POLL_MIN, _POLL_MAX)))


def slot_renew(slot: Slot) -> bool:
    """Extend the lease once a third of it has passed; False if the slot was lost (the lease ran out)."""
    lease = settings.POSTWERK_VERIFY_SLOT_LEASE
    if time.monotonic() - slot.renewed < lease / 3:
        return True
    slot.renewed = time.monotonic()
    return bool(
        ProbeSlot.objects.filter(host=slot.host, slot=slot.index, holder=slot.token).update(
            expires_at=timezone.now() + timedelta(seconds=lease)
        )
    )


def slot_release(slot: Slot) -> None:
    ProbeSlot.objects.filter(host=slot.host, slot=slot.index, holder=slot.token).update(
        holder="", expires_at=timezone.now()
    )
    with _released:
        _released.notify_all()


def slots_forget_idle(*, older_than: timedelta) -> int:
    """Delete slots of hosts not probed for a while, so the table does not grow with every MX ever seen."""
    deleted, _ = ProbeSlot.objects.filter(holder="", expires_at__lt=timezone.now() - older_than).delete()
    return deleted
