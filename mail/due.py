"""Taking due rows for a task: the lease-and-requeue step every periodic sweep shares.

The database decides what still needs doing (the broker may have lost a task, a worker may have died); a sweep
takes the rows whose time has come, oldest first, and leases them (marks them as handed out until a time) in the
same transaction, so that two sweeps, or a sweep and a worker, never hand out the same row twice. On PostgreSQL
rows another transaction holds are skipped, not waited for; SQLite has one writer at a time anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.db import connection, transaction
from django.db.models import Model, QuerySet


def skip_locked_supported() -> bool:
    return connection.features.has_select_for_update_skip_locked


def due_taken(
    due: QuerySet[Model],
    *,
    fields: Sequence[str],
    limit: int,
    lease: Callable[[list[object]], None],
    order_by: str = "next_attempt_at",
) -> list[tuple]:
    """`fields` of up to `limit` due rows (the first field is the primary key), oldest first; `lease(ids)` marks
    them in the same transaction, while they are locked."""
    with transaction.atomic():
        if skip_locked_supported():
            due = due.select_for_update(skip_locked=True)
        rows = list(due.order_by(order_by).values_list(*fields)[:limit])
        if rows:
            lease([row[0] for row in rows])
    return rows
