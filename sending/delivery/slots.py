"""At most `max_connections` delivery sessions per throttled destination, across every process on every host.

Leased DeliverySlot rows (mail.leases). Unlike the prober, a sender never waits for a slot: a worker sitting on
a busy destination would hold up every other one, so the caller postpones the mail instead (the holders take it
along meanwhile).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from mail.leases import Slot, SlotTable
from sending.models import DeliverySlot

_slots = SlotTable(DeliverySlot, "key")

__all__ = ["Slot", "slot_release", "slot_renew", "slot_take", "slots_idle_delete"]


def slot_take(key: str, limit: int) -> Slot | None:
    """One of `limit` connection slots of `key`, or None when all are held."""
    return _slots.take(key, limit, settings.POSTWERK_THROTTLE_SLOT_LEASE)


def slot_renew(slot: Slot) -> bool:
    return _slots.renew(slot, settings.POSTWERK_THROTTLE_SLOT_LEASE)


def slot_release(slot: Slot) -> None:
    _slots.release(slot)


def slots_idle_delete(before: datetime) -> int:
    return _slots.idle_delete(before)
