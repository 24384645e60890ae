"""Leased slots: at most N holders of one key at a time, across every process on every host.

A key (a throttled destination, an MX host being probed) has N slot rows. A holder takes one with a conditional
UPDATE (free, or its lease ran out) whose row count says whether it won, so the database serialises competing
claims on SQLite and PostgreSQL alike. A slot is leased, not owned: a holder that dies without releasing it loses
it when the lease ends, and a live holder renews the lease as it goes. Delivery (DeliverySlot, keyed by `key`)
and verification's probe (ProbeSlot, keyed by `host`) share this; only how they wait differs.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone


@dataclass
class Slot:
    key: str
    index: int
    token: str
    renewed: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class SlotTable:
    """The slot rows of one model: `key_field` names the column holding the key; rows have `slot`, `holder`
    ("" when free) and `expires_at` (held: until when; free: since when)."""

    model: type[models.Model]
    key_field: str

    def _rows(self, key: str):  # noqa: ANN202 - a QuerySet of self.model
        return self.model.objects.filter(**{self.key_field: key})

    def take(self, key: str, limit: int, lease_seconds: float) -> Slot | None:
        """One of `limit` slots of `key`, or None when all are held."""
        limit = max(1, limit)
        rows = dict(self._rows(key).filter(slot__lt=limit).values_list("slot", "holder"))
        if len(rows) < limit:  # first use of this key (or its limit was raised): create the missing rows
            missing = [self.model(**{self.key_field: key, "slot": i}) for i in range(limit) if i not in rows]
            self.model.objects.bulk_create(missing, ignore_conflicts=True)
            rows.update({s.slot: "" for s in missing})
        now = timezone.now()
        # Free ones first, then held ones whose lease may have run out; the UPDATE decides, not this read.
        for index in sorted(rows, key=lambda i: (rows[i] != "", random.random())):
            token = uuid.uuid4().hex
            won = (
                self._rows(key)
                .filter(_claimable(now), slot=index)
                .update(holder=token, expires_at=now + timedelta(seconds=lease_seconds))
            )
            if won:
                return Slot(key, index, token)
        return None

    def renew(self, slot: Slot, lease_seconds: float, *, force: bool = False) -> bool:
        """Extend the lease once a third of it has passed (`force`: now); False when it was lost (it ran out and
        was taken, or its row is gone)."""
        if not force and time.monotonic() - slot.renewed < lease_seconds / 3:
            return True
        slot.renewed = time.monotonic()
        return bool(
            self._rows(slot.key)
            .filter(slot=slot.index, holder=slot.token)
            .update(expires_at=timezone.now() + timedelta(seconds=lease_seconds))
        )

    def release(self, slot: Slot) -> None:
        self._rows(slot.key).filter(slot=slot.index, holder=slot.token).update(holder="", expires_at=timezone.now())

    def idle_delete(self, before: datetime) -> int:
        """Delete the rows of every key none of whose slots was held at or after `before`: a destination mailed
        no more, or a rule since removed, leaves nothing behind. A later take() creates them again. Returns the
        rows deleted."""
        recent = self.model.objects.filter(expires_at__gte=before).values(self.key_field)
        return self.model.objects.exclude(**{f"{self.key_field}__in": recent}).delete()[0]


def _claimable(now: datetime) -> Q:
    return Q(holder="") | Q(expires_at__lt=now)
