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

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from mail.bulk import bulk_update_rows, insert_rows
from sending.models import Event, EventType, Message, Recipient, RecipientState
from sending.stats.counting import COUNTED, Facts, events_counted, facts_of


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


def events_insert(rows: list[dict[str, object]], recipients: Iterable[Recipient]) -> None:
    """Events whose sequence numbers the caller's own state write has just taken (accept, delivery outcomes), of
    `recipients` (with their message loaded), and their counts (sending.stats)."""
    insert_rows(Event, rows)
    _rows_counted(rows, recipients)


# --- counts (sending.stats): written with the events they count ------------------------------------------------


def recipient_facts(r: Recipient) -> Facts | None:
    """What a recipient's events are counted under, from the recipient and its loaded message (no query)."""
    message = r.message
    return facts_of(
        organization_id=r.organization_id,
        domain_id=message.domain_id,
        stream_id=message.stream_id,
        tags=message.tags,
        mx_host=r.mx_host,
        started_at=message.send_at or r.created_at,
        sandbox=message.sandbox,
    )


def _rows_counted(rows: list[dict[str, object]], recipients: Iterable[Recipient]) -> None:
    if not any(row["type"] in COUNTED for row in rows):
        return
    facts = {r.pk: recipient_facts(r) for r in recipients}
    events_counted(
        (facts[row["recipient_id"]], row["type"], row["details"], row["sequence"], row["created_at"], False)  # type: ignore[misc]
        for row in rows
        if row["type"] in COUNTED
    )


# Read with a recipient (one join, in the query that reads its sequence number) to count its events.
_FACT_FIELDS = (
    "mx_host",
    "created_at",
    "message__domain_id",
    "message__stream_id",
    "message__tags",
    "message__send_at",
    "message__sandbox",
)


def _facts_read(organization_id: int, values: Sequence[object]) -> Facts | None:
    mx_host, created_at, domain_id, stream_id, tags, send_at, sandbox = values
    return facts_of(
        organization_id=organization_id,
        domain_id=domain_id,  # type: ignore[arg-type]
        stream_id=stream_id,  # type: ignore[arg-type]
        tags=tags,  # type: ignore[arg-type]
        mx_host=str(mx_host),
        started_at=send_at or created_at,  # type: ignore[arg-type]
        sandbox=bool(sandbox),
    )


# --- one delivery at a time -------------------------------------------------------------------------------------


def recipient_changed(
    recipient: Recipient,
    event_type: str,
    details: dict,
    *,
    at: datetime | None = None,
    only_if: dict | None = None,
    unique: bool = False,
    **fields: object,
) -> bool:
    """Write `fields` (a `state`, say) and one event of the delivery, with its next sequence number, together,
    and count it (sending.stats; `unique`: the delivery's first of its kind, for the unique counts).

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
        counted = event_type in COUNTED
        read = Recipient.objects.filter(pk=recipient.pk).values_list("event_seq", *(_FACT_FIELDS if counted else ()))
        sequence, *facts = read.get()
        Event.objects.create(
            organization_id=recipient.organization_id,
            message_id=recipient.message_id,
            recipient_id=recipient.pk,
            type=event_type,
            created_at=at,
            details=details,
            sequence=sequence,
        )
        if counted:
            facts_read = _facts_read(recipient.organization_id, facts)
            events_counted([(facts_read, event_type, details, sequence, at, unique)])
    return True


def complaint_recorded(recipient: Recipient, details: dict, *, at: datetime | None = None) -> None:
    """A complaint about the delivery: its event, and `complained_at` the first time only (the complaint rate counts
    the first complaint; a second report about the same delivery is not another one)."""
    at = at or timezone.now()
    with transaction.atomic():
        first = Recipient.objects.filter(pk=recipient.pk, complained_at__isnull=True).update(complained_at=at)
        recipient_changed(recipient, EventType.COMPLAINED, details, at=at, unique=bool(first))


def click_recorded(recipient: Recipient, details: dict, *, at: datetime | None = None) -> None:
    """A click on one of the message's links: its event, and `clicked_at` the first time (the unique click)."""
    at = at or timezone.now()
    with transaction.atomic():
        first = Recipient.objects.filter(pk=recipient.pk, clicked_at__isnull=True).update(clicked_at=at)
        recipient_changed(recipient, EventType.CLICKED, details, at=at, unique=bool(first))


def open_repeated(recipient: Recipient, details: dict, *, at: datetime | None = None) -> None:
    """An open after the first of its kind: no event (the first said it was opened), but the total open count
    counts it."""
    at = at or timezone.now()
    row = Recipient.objects.filter(pk=recipient.pk).values_list(*_FACT_FIELDS).first()
    if row is not None:
        events_counted([(_facts_read(recipient.organization_id, row), EventType.OPENED, details, None, at, False)])


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
    lane: str = ""  # its delivery lane, for the task that takes it once it is queued


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
    if event_type in COUNTED:
        facts = {
            pk: _facts_read(org, values)
            for pk, org, *values in Recipient.objects.filter(id__in=[r.id for r in rows]).values_list(
                "id", "organization_id", *_FACT_FIELDS
            )
        }
        events_counted((facts[r.id], event_type, details, r.event_seq + 1, at, False) for r in rows if r.id in facts)
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


def held_released(rows: Sequence[Locked], *, actor: str, at: datetime, lease_until: datetime) -> list[Locked]:
    """Held mail let go: `queued` (returned, for the caller to enqueue), except mail scheduled for later
    (`send_at` still ahead), which goes back to `scheduled` for its time and is left to the sweep."""
    later = dict(
        Message.objects.filter(pk__in={r.message_id for r in rows}, send_at__gt=at).values_list("pk", "send_at")
    )
    by_time: dict[datetime, list[Locked]] = {}
    for r in rows:
        if r.message_id in later:
            by_time.setdefault(later[r.message_id], []).append(r)
    for send_at, scheduled in by_time.items():
        locked_changed(
            scheduled,
            from_state=RecipientState.HELD,
            event_type=EventType.RELEASED,
            details={"actor": actor, "scheduled_for": send_at.isoformat()},
            at=at,
            state=RecipientState.SCHEDULED,
            next_attempt_at=send_at,
        )
    queued = [r for r in rows if r.message_id not in later]
    locked_changed(
        queued,
        from_state=RecipientState.HELD,
        event_type=EventType.RELEASED,
        details={"actor": actor},
        at=at,
        state=RecipientState.QUEUED,
        next_attempt_at=lease_until,
    )
    return queued


def held_cancelled(rows: Sequence[Locked], *, actor: str, reason: str, at: datetime) -> None:
    locked_changed(
        rows,
        from_state=RecipientState.HELD,
        event_type=EventType.CANCELLED,
        details={"actor": actor, "reason": reason},
        at=at,
        state=RecipientState.CANCELLED,
    )


def scheduled_released(rows: Sequence[Locked], *, at: datetime, lease_until: datetime) -> None:
    """Scheduled mail whose time has come: `scheduled` → `queued`, with its `queued` event (it enters the queue
    now), left alone by the sweep until `lease_until` while its task is on the way."""
    locked_changed(
        rows,
        from_state=RecipientState.SCHEDULED,
        event_type=EventType.QUEUED,
        details={"scheduled": True},
        at=at,
        state=RecipientState.QUEUED,
        next_attempt_at=lease_until,
    )


def not_sent_cancelled(rows: Sequence[Locked], *, from_state: str, actor: str, at: datetime) -> None:
    """Mail cancelled before it went out (scheduled, held or still queued): `cancelled`, never attempted."""
    locked_changed(
        rows,
        from_state=from_state,
        event_type=EventType.CANCELLED,
        details={"actor": actor, "reason": "cancelled", "was": from_state},
        at=at,
        state=RecipientState.CANCELLED,
        next_attempt_at=None,
    )


def deadline_expired(rows: Sequence[Locked], *, from_state: str, deliver_by: dict, at: datetime) -> None:
    """Waiting mail past its delivery deadline (`deliver_within`): `expired`, with an `expired` event, and no
    further attempt. `deliver_by`: each message's deadline, by message id."""
    by_deadline: dict[object, list[Locked]] = {}
    for r in rows:
        by_deadline.setdefault(deliver_by[r.message_id], []).append(r)
    for deadline, group in by_deadline.items():
        locked_changed(
            group,
            from_state=from_state,
            event_type=EventType.EXPIRED,
            details={"deliver_by": deadline.isoformat(), "reason": "deadline"},
            at=at,
            state=RecipientState.EXPIRED,
            next_attempt_at=None,
        )


# --- delivery: claims, attempts, and giving claims back -------------------------------------------------------


def claimed(where: str, params: list, *, token: uuid.UUID, locked: bool = False) -> list[Recipient]:
    """`queued` → `sending` for the rows `where` picks, in one UPDATE … RETURNING (sending.delivery.claiming builds
    `where`); the attempt is counted and the `sent` event's sequence number reserved (the event is written with
    the outcome). `locked`: `where` already holds the rows locked and queued."""
    now = timezone.now()
    columns = ", ".join(_q(f.column) for f in Recipient._meta.concrete_fields)
    sql = (
        f"UPDATE {_table()} SET {_q('state')} = %s, {_q('claim_token')} = %s, {_q('sending_since')} = %s,"  # noqa: S608
        f" {_q('updated_at')} = %s, {_q('attempts')} = {_q('attempts')} + 1,"
        f" {_q('event_seq')} = {_q('event_seq')} + 1"
        f" WHERE {where}{'' if locked else ' AND ' + _q('state') + ' = %s'} RETURNING {columns}"
    )
    still_queued = [] if locked else [RecipientState.QUEUED]
    token_db = Recipient._meta.get_field("claim_token").get_db_prep_value(token, connection)
    now_db = connection.ops.adapt_datetimefield_value(now)
    return list(Recipient.objects.raw(sql, [RecipientState.SENDING, token_db, now_db, now_db, *params, *still_queued]))


def _table() -> str:
    return connection.ops.quote_name(Recipient._meta.db_table)


def _q(column: str) -> str:
    return connection.ops.quote_name(column)


# What an attempt's outcome changes on the row (sending.delivery.deliver.record_outcomes sets them in memory).
OUTCOME_FIELDS = [
    "state",
    "last_code",
    "last_enhanced",
    "last_text",
    "mx_host",
    "tls",
    "updated_at",
    "sending_since",
    "claim_token",
    "delivered_at",
    "next_attempt_at",
    "event_seq",
    # What reputation reads (sending.reputation.rates): the outcome's time and a bounce's kind.
    "finished_at",
    "bounce_kind",
    # Per-IP reputation (sending.reputation.ip_reputation): which source address the attempt used.
    "sending_ip",
]


def attempts_recorded(recipients: list[Recipient], events: list[dict[str, object]]) -> None:
    """Outcomes of attempts: each recipient's new state and fields as set in memory, and its `sent` and outcome
    events, whose sequence numbers its claim kept for it (no other writer touches a claimed row's events). Call
    inside the outcome's transaction."""
    bulk_update_rows(Recipient, recipients, OUTCOME_FIELDS)
    events_insert(events, recipients)


def claims_given_back(recipient_ids: Sequence[object], *, until: datetime, at: datetime) -> int:
    """Claimed but never attempted (a back-off came first): back to `queued` until `until`; the attempt and the
    reserved sequence number are given back, so the next claim's `sent` carries the same attempt number."""
    return Recipient.objects.filter(id__in=recipient_ids, state=RecipientState.SENDING).update(
        state=RecipientState.QUEUED,
        next_attempt_at=until,
        updated_at=at,
        attempts=F("attempts") - 1,
        event_seq=F("event_seq") - 1,
        claim_token=None,
        sending_since=None,
    )


def claims_waiting(recipients: Sequence[Recipient], *, until: datetime, at: datetime, details: dict) -> None:
    """Claimed but not attempted because no sending IP may take them now (a warm-up allowance spent today, every
    IP of the pool suspended or slowed towards the provider): `deferred` until `until`, not failed. The attempt
    is given back (nothing was sent), and the `deferred` event takes the sequence number the claim reserved."""
    if not recipients:
        return
    with transaction.atomic():
        Recipient.objects.filter(id__in=[r.pk for r in recipients], state=RecipientState.SENDING).update(
            state=RecipientState.DEFERRED,
            next_attempt_at=until,
            updated_at=at,
            attempts=F("attempts") - 1,
            claim_token=None,
            sending_since=None,
        )
        events_insert(
            [
                recipient_event_row(
                    r,
                    EventType.DEFERRED,
                    at,
                    {"address": r.address, "next_attempt_at": until.isoformat(), **details},
                    r.event_seq,
                )
                for r in recipients
            ],
            recipients,
        )


def abandoned_requeued(abandoned: Q, *, at: datetime) -> int:
    """`sending` rows nobody delivers any more (their worker died) back to `queued`, due now. The dead worker's
    attempt still counts; the `sent` event it never wrote gives its sequence number back."""
    return Recipient.objects.filter(abandoned).update(
        state=RecipientState.QUEUED,
        sending_since=None,
        claim_token=None,
        next_attempt_at=at,
        updated_at=at,
        event_seq=F("event_seq") - 1,
    )


def due_requeued(recipient_ids: Sequence[object], *, lease_until: datetime, at: datetime) -> None:
    """Due `queued` or `deferred` rows, whose task is being published: `queued`, left alone by the sweep until
    `lease_until`. No event: `deferred` said when it would be tried again."""
    for start in range(0, len(recipient_ids), 1000):
        Recipient.objects.filter(
            id__in=recipient_ids[start : start + 1000], state__in=(RecipientState.QUEUED, RecipientState.DEFERRED)
        ).update(state=RecipientState.QUEUED, next_attempt_at=lease_until, updated_at=at)


# --- events of no delivery --------------------------------------------------------------------------------------


def organization_event(organization_id: int, event_type: str, details: dict, **fields: object) -> Event:
    """An event of the organization (a domain's DNS, a reputation change, a send limit reached...)."""
    return Event.objects.create(organization_id=organization_id, type=event_type, details=details, **fields)


def organization_events(events: Iterable[Event]) -> None:
    """Several such events at once, built as unsaved Event instances."""
    Event.objects.bulk_create(list(events))
