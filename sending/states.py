"""The one owner of recipient state and of the event stream.

Every change of a recipient's state, and every event Postwerk records, is written here: the state (and the
fields that go with it), the event and the recipient's next sequence number together, in one transaction, so the
events API and webhooks see each delivery's history complete and in order. Nothing else updates
`Recipient.state` or `event_seq`, or creates Event rows; tests/test_states_owner.py reads the code and fails
when something does.

Transitions (README "How it works" draws them): accepted (`queued`, `suppressed` or `held`, with their first
events), claimed and re-queued (delivery), each attempt's outcome (`sent`, then `delivered`, `deferred`,
`bounced` or `failed`), held mail released, cancelled or expired, the effects of DSNs and complaints, and the
events of a delivery that change no state (opens, clicks, unsubscribes). Events of no delivery (a domain's DNS,
a blocklist listing, a reputation change) are organization events, written here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from mail.bulk import insert_rows
from sending.models import Event, EventType, Recipient, RecipientState


def recipient_event_row(r: Recipient, event_type: str, at: datetime, details: dict, sequence: int) -> dict[str, object]:
    """An event of one delivery as mail.bulk.insert_rows takes it: every column named, so no default is looked
    up per row, and no model instance built (on the accept and delivery paths that cost more than the insert)."""
    return {
        "organization_id": r.organization_id,
        "message_id": r.message_id,
        "recipient_id": r.id,
        "domain_id": None,
        "type": event_type,
        "created_at": at,
        "details": details,
        "sequence": sequence,
    }


def events_insert(rows: list[dict[str, object]]) -> None:
    """Events whose sequence numbers the caller's own state write has just taken (accept, delivery outcomes)."""
    insert_rows(Event, rows)


# --- one delivery at a time -------------------------------------------------------------------------------------


def recipient_changed(
    recipient: Recipient,
    event_type: str,
    details: dict,
    *,
    at: datetime | None = None,
    only_if: dict | None = None,
    **fields: object,
) -> bool:
    """Write `fields` (a `state`, say) and one event of the delivery, with its next sequence number, together.

    `only_if` narrows the UPDATE (a first open: `{"opened_at__isnull": True}`); when it matches nothing, nothing
    is written and the answer is False. The UPDATE's row lock keeps concurrent writers (an open and a click) apart.
    """
    at = at or timezone.now()
    if "state" in fields:
        fields.setdefault("updated_at", at)
    with transaction.atomic():
        won = Recipient.objects.filter(pk=recipient.pk, **(only_if or {})).update(
            **fields, event_seq=F("event_seq") + 1
        )
        if not won:
            return False
        sequence = Recipient.objects.filter(pk=recipient.pk).values_list("event_seq", flat=True).get()
        Event.objects.create(
            organization_id=recipient.organization_id,
            message_id=recipient.message_id,
            recipient_id=recipient.pk,
            type=event_type,
            created_at=at,
            details=details,
            sequence=sequence,
        )
    return True


def complaint_recorded(recipient: Recipient, details: dict, *, at: datetime | None = None) -> None:
    """A complaint about the delivery: its event, and `complained_at` the first time only (the complaint rate counts
    the first complaint; a second report about the same delivery is not another one)."""
    at = at or timezone.now()
    with transaction.atomic():
        Recipient.objects.filter(pk=recipient.pk, complained_at__isnull=True).update(complained_at=at)
        recipient_changed(recipient, EventType.COMPLAINED, details, at=at)


# --- many deliveries at once ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Locked:
    """A recipient row read under a lock (SELECT … FOR UPDATE, or SQLite's database lock) in this transaction."""

    id: object
    organization_id: int
    message_id: object
    address: str
    domain: str
    event_seq: int
    held_reason: str = ""


# What to read (under the lock) for a Locked row, in its order.
LOCKED_FIELDS = tuple(f.name for f in dataclass_fields(Locked))


def locked_changed(
    rows: Sequence[Locked],
    *,
    from_state: str,
    event_type: str,
    details: dict,
    at: datetime,
    **fields: object,
) -> None:
    """Move locked rows from `from_state`, one event each. The rows are locked since they were read, so their
    event_seq + 1 is theirs. Call inside the transaction that locked them."""
    Recipient.objects.filter(id__in=[r.id for r in rows], state=from_state).update(
        **fields, updated_at=at, event_seq=F("event_seq") + 1
    )
    Event.objects.bulk_create(
        Event(
            organization_id=r.organization_id,
            message_id=r.message_id,
            recipient_id=r.id,
            type=event_type,
            created_at=at,
            details={"address": r.address, "held_reason": r.held_reason, **details},
            sequence=r.event_seq + 1,
        )
        for r in rows
    )


def held_released(rows: Sequence[Locked], *, actor: str, at: datetime, lease_until: datetime) -> None:
    locked_changed(
        rows,
        from_state=RecipientState.HELD,
        event_type=EventType.RELEASED,
        details={"actor": actor},
        at=at,
        state=RecipientState.QUEUED,
        next_attempt_at=lease_until,
    )


def held_cancelled(rows: Sequence[Locked], *, actor: str, reason: str, at: datetime) -> None:
    locked_changed(
        rows,
        from_state=RecipientState.HELD,
        event_type=EventType.CANCELLED,
        details={"actor": actor, "reason": reason},
        at=at,
        state=RecipientState.CANCELLED,
    )


# --- events of no delivery --------------------------------------------------------------------------------------


def organization_event(organization_id: int, event_type: str, details: dict, **fields: object) -> Event:
    """An event of the organization (a domain's DNS, a reputation change, a send limit reached...)."""
    return Event.objects.create(organization_id=organization_id, type=event_type, details=details, **fields)


def organization_events(events: Iterable[Event]) -> None:
    """Several such events at once, built as unsaved Event instances."""
    Event.objects.bulk_create(list(events))
