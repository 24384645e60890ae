"""Retention: message bodies are blanked after POSTWERK_RETENTION_RAW_DAYS, and messages with their recipients,
events, tags and webhook deliveries deleted after POSTWERK_RETENTION_DAYS. Suppressions are never touched.

Never one giant statement: each pass takes POSTWERK_RETENTION_BATCH ids through an index range (per
organization on (organization, created_at), bounded by the cutoff, so the last batch finds nothing quickly)
and changes them in its own short transaction, so the hot tables are never locked for long and delivery goes
on meanwhile. A message with any recipient still queued, sending, deferred or held is left alone.

Throttling's rows of destinations nobody has mailed for a day (their state and connection slots) go too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.db.models.functions import Length
from django.utils import timezone

from accounts.models import Organization
from sending.delivery.slots import slots_idle_delete
from sending.delivery.throttling import states_idle_delete
from sending.models import (
    CapturedMessage,
    Event,
    InboundMail,
    InboundMessage,
    Message,
    Recipient,
    RecipientState,
    WebhookDelivery,
    WebhookEndpoint,
)
from sending.observability.metrics import uuid7_floor

# A destination's throttle rows untouched this long go (longer when back-offs may last longer): whatever they
# knew, a window count or a back-off to double, no longer matters.
THROTTLE_IDLE = timedelta(days=1)

ACTIVE_STATES = (
    RecipientState.QUEUED,
    RecipientState.SENDING,
    RecipientState.DEFERRED,
    RecipientState.HELD,
    RecipientState.SCHEDULED,  # waiting for its send_at: never purged before it went out
)


@dataclass
class PurgeReport:
    bodies_purged: int = 0
    messages_deleted: int = 0
    rows_deleted: int = 0  # every row removed, cascades included
    orphan_events_deleted: int = 0
    inbound_bodies_purged: int = 0
    inbound_deleted: int = 0
    throttle_rows_deleted: int = 0  # destination state and connection slots unused for THROTTLE_IDLE

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def body_purged(message: Message) -> bool:
    """The body was removed by retention: the dashboard and API say so instead of showing an empty message.
    `size` keeps the original size, so an empty `raw` with a size is a purged one."""
    return message.size > 0 and not bytes(message.raw or b"")


def _finished(messages):  # type: ignore[no-untyped-def]
    active = Recipient.objects.filter(message=OuterRef("pk"), state__in=ACTIVE_STATES)
    return messages.exclude(Exists(active))


def _batches(organization_id: int, cutoff: datetime, batch: int, *, bodies_only: bool):  # type: ignore[no-untyped-def]
    """Ids of finished messages created before `cutoff`, oldest first, `batch` at a time (keyset pages)."""
    after: tuple[datetime, object] | None = None
    while True:
        page = Message.objects.filter(organization_id=organization_id, created_at__lt=cutoff)
        if bodies_only:
            page = page.annotate(raw_length=Length("raw")).filter(raw_length__gt=0)
        if after is not None:
            page = page.filter(created_at__gte=after[0]).exclude(created_at=after[0], id__lte=after[1])
        rows = list(_finished(page).order_by("created_at", "id").values_list("created_at", "id")[:batch])
        if not rows:
            return
        yield [pk for _, pk in rows]
        after = rows[-1]


def bodies_purge(*, cutoff: datetime, batch: int, report: PurgeReport) -> None:
    for organization_id in Organization.objects.values_list("pk", flat=True):
        for ids in _batches(organization_id, cutoff, batch, bodies_only=True):
            with transaction.atomic():
                # Re-checked inside the transaction: a message released from `held` meanwhile keeps its body.
                report.bodies_purged += _finished(Message.objects.filter(pk__in=ids)).update(raw=b"")
                # A sandbox message's captured copies are its body too (cascade-deleted with it later).
                CapturedMessage.objects.filter(message_id__in=ids, message__raw=b"").update(data=b"")


def messages_delete(*, cutoff: datetime, batch: int, report: PurgeReport) -> None:
    for organization_id in Organization.objects.values_list("pk", flat=True):
        for ids in _batches(organization_id, cutoff, batch, bodies_only=False):
            with transaction.atomic():
                # Django's collector follows every cascade (recipients, events, tags, webhook deliveries and
                # their attempts) and nulls the references that must survive (suppressions' source message).
                total, per_model = _finished(Message.objects.filter(pk__in=ids)).delete()
            report.messages_deleted += per_model.get("sending.Message", 0)
            report.rows_deleted += total
        orphan_events_delete(organization_id=organization_id, cutoff=cutoff, batch=batch, report=report)


def orphan_events_delete(*, organization_id: int, cutoff: datetime, batch: int, report: PurgeReport) -> None:
    """Events of no message (domain, reputation, webhook events), and test-send webhook deliveries."""
    while True:
        ids = list(
            Event.objects.filter(organization_id=organization_id, created_at__lt=cutoff, message__isnull=True)
            .order_by("-created_at")
            .values_list("id", flat=True)[:batch]
        )
        if not ids:
            break
        with transaction.atomic():
            total, per_model = Event.objects.filter(pk__in=ids).delete()
        report.orphan_events_deleted += per_model.get("sending.Event", 0)
        report.rows_deleted += total
    for endpoint_id in WebhookEndpoint.objects.filter(organization_id=organization_id).values_list("pk", flat=True):
        total, _ = WebhookDelivery.objects.filter(
            endpoint_id=endpoint_id, event__isnull=True, created_at__lt=cutoff
        ).delete()
        report.rows_deleted += total


def inbound_purge(*, raw_cutoff: datetime, cutoff: datetime, batch: int, report: PurgeReport) -> None:
    """Inbound reports (DSNs, ARF) once processed, and mail accepted for inbound routes (raw and parsed)."""
    done = InboundMessage.objects.exclude(state=InboundMessage.State.RECEIVED)
    _raw_rows_purge(done, raw_cutoff=raw_cutoff, cutoff=cutoff, batch=batch, report=report)
    _raw_rows_purge(InboundMail.objects.all(), raw_cutoff=raw_cutoff, cutoff=cutoff, batch=batch, report=report)


def _raw_rows_purge(done, *, raw_cutoff: datetime, cutoff: datetime, batch: int, report: PurgeReport) -> None:  # type: ignore[no-untyped-def]
    """Rows older than `cutoff` deleted, bodies older than `raw_cutoff` emptied; ids are time-ordered uuid7, so the
    primary key bounds the range."""
    model = done.model
    while ids := list(done.filter(id__lt=uuid7_floor(cutoff)).order_by("id").values_list("id", flat=True)[:batch]):
        with transaction.atomic():
            deleted, _ = model.objects.filter(pk__in=ids).delete()
        report.inbound_deleted += deleted
        report.rows_deleted += deleted
    bodies = done.filter(id__lt=uuid7_floor(raw_cutoff)).annotate(raw_length=Length("raw")).filter(raw_length__gt=0)
    while ids := list(bodies.order_by("id").values_list("id", flat=True)[:batch]):
        with transaction.atomic():
            report.inbound_bodies_purged += model.objects.filter(pk__in=ids).update(raw=b"")


def retention_purge(
    *,
    raw_days: int | None = None,
    days: int | None = None,
    batch: int | None = None,
    now: datetime | None = None,
) -> PurgeReport:
    """One retention pass with the configured ages (or these). Safe to run from several places at once: every
    batch re-checks its rows inside its own transaction."""
    now = now or timezone.now()
    raw_days = settings.POSTWERK_RETENTION_RAW_DAYS if raw_days is None else raw_days
    days = settings.POSTWERK_RETENTION_DAYS if days is None else days
    batch = batch or settings.POSTWERK_RETENTION_BATCH
    raw_cutoff, cutoff = now - timedelta(days=raw_days), now - timedelta(days=days)
    report = PurgeReport()
    messages_delete(cutoff=cutoff, batch=batch, report=report)
    bodies_purge(cutoff=raw_cutoff, batch=batch, report=report)
    inbound_purge(raw_cutoff=raw_cutoff, cutoff=cutoff, batch=batch, report=report)
    throttle_idle = now - max(THROTTLE_IDLE, timedelta(seconds=settings.POSTWERK_THROTTLE_BACKOFF_MAX))
    report.throttle_rows_deleted = states_idle_delete(throttle_idle, batch) + slots_idle_delete(throttle_idle)
    return report
