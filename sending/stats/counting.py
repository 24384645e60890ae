"""Counting events into StatsCounter rows, inside the transaction that writes them (sending.states calls this).

An event becomes zero or more metrics (`metrics_of`): the first event of a delivery is `accepted`, a first
attempt is `sent`, a delivery is `delivered` plus one delivery-time bucket, a bounce is `bounced` plus its kind,
an open is `opened` (and `opened_unique` the first time; a privacy proxy's are `machine_opened`), and so on. Each
metric is counted for the hour and for the UTC day, for all mail and under the delivery's sender domain, stream,
recipient provider and each of its tags (StatsCounter).
A batch of events is one INSERT … ON CONFLICT DO UPDATE (PostgreSQL and SQLite alike), its keys sorted so that two
transactions counting the same keys lock them in the same order and cannot deadlock.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection

from mail.providers import Providers, file_stamp, load
from sending.models import EventType, StatsCounter

# Delivery time (accepted, or its send_at, to delivered) in buckets: the upper bound in seconds of each. The last
# is "longer". Percentiles are read off the cumulative counts (sending.stats.reading).
DELIVERY_TIME_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
DELIVERY_TIME_PREFIX = "dt_"


def delivery_time_metric(seconds: float) -> str:
    for bound in DELIVERY_TIME_BUCKETS:
        if seconds <= bound:
            return f"{DELIVERY_TIME_PREFIX}{bound}"
    return f"{DELIVERY_TIME_PREFIX}inf"


@dataclass(frozen=True)
class Facts:
    """What a delivery is counted under, and since when its delivery time runs."""

    organization_id: int
    domain_id: int
    stream_id: int
    tags: tuple[str, ...]
    provider: str
    started_at: datetime | None = None


# The first event of a delivery (sequence 1) is its acceptance, whatever state it was accepted in.
_FIRST = {EventType.QUEUED, EventType.SCHEDULED, EventType.HELD, EventType.SUPPRESSED}


def metrics_of(
    event_type: str, details: dict, *, sequence: int | None, at: datetime, facts: Facts, unique: bool = False
) -> list[str]:
    """The metrics one event counts towards. `unique`: the first of its kind for the delivery (an open, a click,
    a complaint)."""
    metrics: list[str] = []
    if event_type in _FIRST and sequence == 1:
        metrics.append("accepted")
    if event_type == EventType.SUPPRESSED:
        metrics.append("suppressed")
    elif event_type == EventType.SENT:
        if details.get("attempt") == 1:
            metrics.append("sent")
    elif event_type == EventType.DELIVERED:
        metrics.append("delivered")
        if facts.started_at is not None:
            metrics.append(delivery_time_metric(max(0.0, (at - facts.started_at).total_seconds())))
    elif event_type == EventType.DEFERRED:
        metrics.append("deferred")
    elif event_type == EventType.BOUNCED:
        metrics.append("bounced")
        if details.get("kind") in ("hard", "soft"):
            metrics.append(f"bounced_{details['kind']}")
    elif event_type in (EventType.FAILED, EventType.EXPIRED):
        metrics.append(str(event_type))
    elif event_type == EventType.COMPLAINED:
        if unique:  # the complaint rate counts a delivery's first complaint (sending.reputation does too)
            metrics.append("complained")
    elif event_type == EventType.OPENED:
        kind = "machine_opened" if details.get("machine") else "opened"
        metrics += [kind, f"{kind}_unique"] if unique else [kind]
    elif event_type == EventType.CLICKED:
        metrics += ["clicked", "clicked_unique"] if unique else ["clicked"]
    elif event_type == EventType.UNSUBSCRIBED:
        metrics.append("unsubscribed")
    return metrics


# What the reading side knows: every metric a counter row may carry.
METRICS = (
    "accepted",
    "sent",
    "delivered",
    "deferred",
    "bounced",
    "bounced_hard",
    "bounced_soft",
    "failed",
    "expired",
    "suppressed",
    "complained",
    "opened",
    "opened_unique",
    "machine_opened",
    "machine_opened_unique",
    "clicked",
    "clicked_unique",
    "unsubscribed",
)

# --- providers --------------------------------------------------------------------------------------------------

_lock = threading.Lock()
_providers: tuple[tuple[str, float], Providers, dict[str, str]] | None = None


def _current() -> tuple[tuple[str, float], Providers, dict[str, str]]:
    """The providers in force (mail/providers.toml, or POSTWERK_PROVIDERS_FILE), re-read when the file changes,
    with this process's host → provider names."""
    global _providers
    path = settings.POSTWERK_PROVIDERS_FILE
    stamp = file_stamp(path)
    cached = _providers
    if cached is None or cached[0] != stamp:
        cached = (stamp, load(path or None), {})
        with _lock:
            _providers = cached
    return cached


def provider_of(mx_host: str) -> str:
    """The provider name of the MX host a delivery used; "" when it has not been attempted yet."""
    if not mx_host:
        return ""
    _, data, names = _current()
    name = names.get(mx_host)
    if name is None:
        name = data.identify([mx_host]).name
        if len(names) < 10_000:
            names[mx_host] = name
    return name


def provider_label(name: str) -> str:
    if not name:
        return "(not attempted yet)"
    return _current()[1].get(name).label if name != "other" else "Other"


def facts_of(
    *,
    organization_id: int,
    domain_id: int | None,
    stream_id: int | None,
    tags: Iterable[str] | None,
    mx_host: str,
    started_at: datetime | None,
    sandbox: bool = False,
) -> Facts | None:
    """None for sandbox mail: it never reaches a receiver, so it counts nowhere (reputation skips it too)."""
    if sandbox:
        return None
    return Facts(
        organization_id=organization_id,
        domain_id=domain_id or 0,
        stream_id=stream_id or 0,
        tags=tuple(dict.fromkeys(str(t) for t in (tags or ()) if t)),
        provider=provider_of(mx_host),
        started_at=started_at,
    )


# --- writing ----------------------------------------------------------------------------------------------------

Key = tuple[int, str, str, datetime, str, str]  # in the order of _COLUMNS (the unique index's)


def increments(facts: Facts, at: datetime, metrics: Iterable[str], into: Counter[Key]) -> None:
    """Add one of each metric, for the hour and the day of `at`, for all mail and under each dimension's value."""
    hour = at.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    D = StatsCounter.Dimension
    keys = [
        (str(D.ALL), ""),
        (str(D.DOMAIN), str(facts.domain_id)),
        (str(D.STREAM), str(facts.stream_id)),
        (str(D.PROVIDER), facts.provider),
        *((str(D.TAG), tag[:100]) for tag in facts.tags),
    ]
    for metric in metrics:
        for span, start in ((str(StatsCounter.Span.HOUR), hour), (str(StatsCounter.Span.DAY), day)):
            for dimension, key in keys:
                into[(facts.organization_id, span, dimension, start, metric, key)] += 1


_COLUMNS = ("organization_id", "span", "dimension", "start", "metric", "key", "count")
_CHUNK = 500


def counts_add(counts: Counter[Key]) -> None:
    """Add the counts to their rows (created when missing), in one statement per 500 keys. Call inside the
    transaction that writes the events counted."""
    if not counts:
        return
    quote = connection.ops.quote_name
    table = quote(StatsCounter._meta.db_table)
    columns = ", ".join(quote(c) for c in _COLUMNS)
    conflict = ", ".join(quote(c) for c in _COLUMNS[:-1])
    count = quote("count")
    keys = sorted(counts)  # the index's order: two writers lock shared rows in the same order
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        for first in range(0, len(keys), _CHUNK):
            chunk = keys[first : first + _CHUNK]
            params: list[object] = []
            for org, span, dimension, start, metric, key in chunk:
                params += [
                    org,
                    span,
                    dimension,
                    adapt(start),
                    metric,
                    key,
                    counts[(org, span, dimension, start, metric, key)],
                ]
            values = ", ".join(["(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"] * len(chunk))
            # Only quoted identifiers from the model and %s placeholders go into the text.
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {values}"  # noqa: S608
                f" ON CONFLICT ({conflict}) DO UPDATE SET {count} = {table}.{count} + excluded.{count}",
                params,
            )


def events_counted(counted: Iterable[tuple[Facts | None, str, dict, int | None, datetime, bool]]) -> None:
    """Count events given as (facts, type, details, sequence, time, unique), in one write (None facts: not
    counted)."""
    counts: Counter[Key] = Counter()
    for facts, event_type, details, sequence, at, unique in counted:
        if facts is None:
            continue
        metrics = metrics_of(event_type, details, sequence=sequence, at=at, facts=facts, unique=unique)
        if metrics:
            increments(facts, at, metrics, counts)
    counts_add(counts)


def counted_types() -> frozenset[str]:
    """The event types that may count (the others cost no lookup)."""
    return frozenset(
        {
            *_FIRST,
            EventType.SENT,
            EventType.DELIVERED,
            EventType.DEFERRED,
            EventType.BOUNCED,
            EventType.FAILED,
            EventType.EXPIRED,
            EventType.COMPLAINED,
            EventType.OPENED,
            EventType.CLICKED,
            EventType.UNSUBSCRIBED,
        }
    )


COUNTED = counted_types()
