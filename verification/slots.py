"""At most POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX probe connections per MX host, across every process.

Leased ProbeSlot rows (mail.leases), so the limit holds for any number of worker processes on any number of
hosts. Unlike a delivery worker, a prober waits for a slot: threads of one process that wait for a host are woken
as soon as a slot of this process is released; waiters in other processes poll.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from mail.leases import Slot, SlotTable
from verification.models import ProbeSlot

_slots = SlotTable(ProbeSlot, "host")
_released = threading.Condition()
# Polling bounds for waiters in other processes: short enough to keep a busy MX busy, jittered so that
# waiters do not all query at once.
_POLL_MIN, _POLL_MAX = 0.02, 0.2

__all__ = ["Slot", "slot_acquire", "slot_release", "slot_renew", "slots_forget_idle"]


def slot_acquire(host: str, *, wait: float) -> Slot | None:
    """A connection slot for `host`, waiting up to `wait` seconds for one to come free; None if none did."""
    host = host.lower().rstrip(".")
    deadline = time.monotonic() + wait
    while True:
        slot = _slots.take(host, settings.POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX, settings.POSTWERK_VERIFY_SLOT_LEASE)
        if slot is not None:
            return slot
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        with _released:
            _released.wait(min(remaining, random.uniform(_POLL_MIN, _POLL_MAX)))


def slot_renew(slot: Slot) -> bool:
    """Extend the lease once a third of it has passed; False if the slot was lost (the lease ran out)."""
    return _slots.renew(slot, settings.POSTWERK_VERIFY_SLOT_LEASE)


def slot_release(slot: Slot) -> None:
    _slots.release(slot)
    with _released:
        _released.notify_all()


def slots_forget_idle(*, older_than: timedelta) -> int:
    """Delete slots of hosts not probed for a while, so the table does not grow with every MX ever seen."""
    deleted, _ = ProbeSlot.objects.filter(holder="", expires_at__lt=timezone.now() - older_than).delete()
    return deleted
