"""The suppression list: who an organization does not mail, and the rules that put addresses on it.

Hard bounces and complaints suppress at once; soft bounces (permanent non-address failures, expired deliveries)
suppress once `POSTWERK_SOFT_BOUNCE_LIMIT` of them fall within `POSTWERK_SOFT_BOUNCE_WINDOW`. Each reason has
its own lifetime (`POSTWERK_SUPPRESSION_TTL`); an expired entry no longer counts and is closed by the next write
or the periodic expiry.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import audit_record
from sending.models import Event, EventType, Suppression

Reason = Suppression.Reason


def _live(now: datetime) -> Q:
    return Q(removed_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def suppressed_addresses(
    organization_id: int, addresses: Iterable[str], stream_id: int | None = None
) -> dict[str, Suppression]:
    """The live suppressions among `addresses` that apply to mail on the stream `stream_id`: the organization-wide
    ones (a hard bounce, a complaint) and the stream's own (an unsubscribe from that stream), keyed by lower-cased
    address. One query."""
    wanted = {a.lower() for a in addresses}
    if not wanted:
        return {}
    scope = Q(stream__isnull=True) | Q(stream_id=stream_id) if stream_id is not None else Q(stream__isnull=True)
    rows = Suppression.objects.filter(_live(timezone.now()), scope, organization_id=organization_id, address__in=wanted)
    return {s.address: s for s in rows}


def _expires(reason: str, now: datetime) -> datetime | None:
    ttl = settings.POSTWERK_SUPPRESSION_TTL.get(reason, 0)
    return now + timedelta(seconds=ttl) if ttl else None


def suppression_add(
    *,
    organization_id: int,
    address: str,
    reason: str,
    details: dict | None = None,
    source_message_id: uuid.UUID | None = None,
    created_by: str = "",
    stream_id: int | None = None,
    audit: bool = True,
) -> tuple[Suppression, bool]:
    """Suppress an address; (row, created). An existing live entry stays, unless the new one lasts longer.
    `stream_id`: for that stream's mail only (an unsubscribe from a newsletter); None: for every stream. One a
    person or key adds by hand (`created_by` set) goes into the audit log unless `audit` is False (an import
    records itself once)."""
    address, now = address.strip().lower(), timezone.now()
    expires = _expires(reason, now)
    for _ in range(3):  # a concurrent add of the same address wins the unique index: read it back
        try:
            with transaction.atomic():
                current = (
                    Suppression.objects.select_for_update()
                    .filter(
                        organization_id=organization_id, address=address, removed_at__isnull=True, stream_id=stream_id
                    )
                    .first()
                )
                if current is not None and current.expires_at is not None and current.expires_at <= now:
                    current.removed_at, current.removed_by = now, "expired"
                    current.save(update_fields=["removed_at", "removed_by"])
                    current = None
                if current is not None:
                    if current.expires_at is not None and (expires is None or expires > current.expires_at):
                        current.reason, current.expires_at, current.details = reason, expires, details or {}
                        current.source_message_id = source_message_id or current.source_message_id
                        current.save(update_fields=["reason", "expires_at", "details", "source_message"])
                    return current, False
                row = Suppression.objects.create(
                    organization_id=organization_id,
                    address=address,
                    reason=reason,
                    details=details or {},
                    source_message_id=source_message_id,
                    created_by=created_by,
                    created_at=now,
                    expires_at=expires,
                    stream_id=stream_id,
                )
                if created_by and audit:
                    audit_record(
                        organization=organization_id,
                        action="suppression.added",
                        target=row,
                        target_label=address,
                        changes={"reason": reason},
                    )
                return row, True
        except IntegrityError:
            continue
    raise RuntimeError(f"could not record the suppression of {address}")


def suppression_remove(*, organization_id: int, address: str, removed_by: str) -> bool:
    """Lift a suppression; the row is kept with who removed it and when. False if there was none."""
    address = address.strip().lower()
    with transaction.atomic():
        rows = list(
            Suppression.objects.select_for_update().filter(
                organization_id=organization_id, address=address, removed_at__isnull=True
            )
        )
        Suppression.objects.filter(pk__in=[r.pk for r in rows]).update(
            removed_at=timezone.now(), removed_by=removed_by[:200]
        )
        for row in rows:
            audit_record(
                organization=organization_id,
                action="suppression.lifted",
                target=row,
                target_label=address,
                changes={"reason": row.reason},
            )
    return bool(rows)


def suppressions_expire() -> int:
    """Close entries past their lifetime, so the list shows what is in force."""
    now = timezone.now()
    return Suppression.objects.filter(removed_at__isnull=True, expires_at__lte=now).update(
        removed_at=now, removed_by="expired"
    )


@dataclass(frozen=True)
class BounceFact:
    """A final failure of one delivery, however Postwerk learned of it (SMTP reply, DSN)."""

    organization_id: int
    address: str
    message_id: uuid.UUID | None
    kind: str  # "hard" | "soft"
    reason: str
    status: str
    diagnostic: str


def bounce_effects(facts: list[BounceFact]) -> list[Suppression]:
    """Suppress hard-bounced addresses now, soft-bounced ones once they repeat. Call after the bounce events
    are written (in the same transaction), so the soft count includes them."""
    added = []
    window_start = timezone.now() - timedelta(seconds=settings.POSTWERK_SOFT_BOUNCE_WINDOW)
    for fact in facts:
        details = {"reason": fact.reason, "status": fact.status, "diagnostic": fact.diagnostic[:1000]}
        if fact.kind == "hard":
            row, created = suppression_add(
                organization_id=fact.organization_id,
                address=fact.address,
                reason=Reason.HARD_BOUNCE,
                details=details,
                source_message_id=fact.message_id,
                created_by="bounce",
            )
        else:
            soft = Event.objects.filter(
                organization_id=fact.organization_id,
                type=EventType.BOUNCED,
                recipient__address__iexact=fact.address,
                created_at__gte=window_start,
                details__kind="soft",
            ).count()
            if soft < settings.POSTWERK_SOFT_BOUNCE_LIMIT:
                continue
            row, created = suppression_add(
                organization_id=fact.organization_id,
                address=fact.address,
                reason=Reason.SOFT_BOUNCE,
                details={**details, "soft_bounces": soft},
                source_message_id=fact.message_id,
                created_by="bounce",
            )
        if created:
            added.append(row)
    return added
