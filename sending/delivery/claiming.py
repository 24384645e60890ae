"""Claiming recipients for delivery: one UPDATE … RETURNING moves them from `queued` to `sending` and hands
back the rows this worker won.

One statement instead of an UPDATE, a SELECT and their transaction: the claim is the step every delivery
task starts with, and under a stream of small batches (SMTP submission, single API sends) its round trips and
commit were the largest part of a worker's time. The claim token is the claiming worker's lease
(sending.delivery.worker_leases): the sweep re-queues the row only once that lease ran out. The UPDATE itself is
sending.states.claimed (the one writer of recipient state); this module picks the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db import connection

from sending.delivery.queueing import LANE_DRAINS
from sending.delivery.worker_leases import claim_token
from sending.models import Message, Recipient, RecipientState
from sending.states import claimed


def claim(recipient_ids: Sequence[str | uuid.UUID]) -> list[Recipient]:
    """Move these recipients, those still queued, to `sending`; returns the ones this call won."""
    if not recipient_ids:
        return []
    pk = Recipient._meta.pk
    ids = [pk.get_db_prep_value(uuid.UUID(str(i)), connection) for i in recipient_ids]
    if connection.vendor == "postgresql":  # one array parameter, however many ids
        return _claim(f"{_q('id')} = ANY(%s::uuid[])", [ids])
    return _claim(f"{_q('id')} IN ({', '.join(['%s'] * len(ids))})", ids)


def claim_queued(domain: str, limit: int, lane: str = "") -> list[Recipient]:
    """Claim up to `limit` queued recipients of a destination that a task of `lane` may take (LANE_DRAINS), priority
    high first, then oldest first. On PostgreSQL rows another worker is claiming are skipped rather than waited for;
    SQLite has one writer at a time anyway."""
    if limit < 1:
        return []
    lanes = LANE_DRAINS[lane]
    params = [RecipientState.QUEUED, domain, *lanes, limit]
    # Names from the model's meta, values as parameters.
    oldest = (
        f"SELECT {_q('id')} FROM {_table()} WHERE {_q('state')} = %s AND {_q('domain')} = %s"  # noqa: S608
        f" AND {_q('lane')} IN ({', '.join(['%s'] * len(lanes))})"
        f" ORDER BY {_q('priority')} DESC, {_q('created_at')} LIMIT %s"
    )
    if connection.vendor != "postgresql":
        return _claim(f"{_q('id')} IN ({oldest})", params)
    # The ids first, as an array (an InitPlan run once), then the UPDATE by primary key. As `id IN (subquery)`
    # PostgreSQL may run the subquery more than once (with SKIP LOCKED each run finds other rows, so more than
    # `limit` were claimed), or hash-join it against every queued row of every destination.
    # No second `state` test outside: the rows are locked and still queued, and the planner would take it as a
    # reason to scan the queued-rows index instead of the primary key.
    return _claim(f"{_q('id')} = ANY(ARRAY({oldest} FOR UPDATE SKIP LOCKED))", params, locked=True)


def _claim(where: str, params: list, *, locked: bool = False) -> list[Recipient]:
    recipients = claimed(where, params, token=claim_token(), locked=locked)
    if recipients:
        messages = Message.objects.select_related("domain", "stream").in_bulk({r.message_id for r in recipients})
        for r in recipients:
            r.message = messages[r.message_id]
    return recipients


def _table() -> str:
    return connection.ops.quote_name(Recipient._meta.db_table)


def _q(column: str) -> str:
    return connection.ops.quote_name(column)
