"""Prometheus metrics: what the whole platform is doing, read from the database at scrape time, plus the few
figures only one process can know (SMTP sessions, delivery latency), summed across a host's processes.

Why two kinds: processes run on many hosts, so figures that must be global (queue depth, per-minute outcomes,
webhook backlog) come from cheap indexed queries, cached for POSTWERK_METRICS_CACHE_SECONDS, and any web
process answers the same truth. Figures born inside one process use prometheus_client's multiprocess mode
(files in POSTWERK_METRICS_DIR): every gunicorn worker, Celery child and SMTP server of a host writes there and
the host's /metrics sums them; Prometheus scrapes each host and sums the hosts.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sending.models import Event, EventType, InboundMessage, Recipient, RecipientState, WebhookDelivery

# --- per process (multiprocess mode) ---------------------------------------------------------------------

SMTP_SESSIONS = Counter("postwerk_smtp_sessions", "SMTP sessions opened (submission and inbound listeners)")
SMTP_SESSIONS_OPEN = Gauge("postwerk_smtp_sessions_open", "SMTP sessions open now", multiprocess_mode="livesum")
SMTP_TRANSACTIONS = Counter("postwerk_smtp_transactions", "SMTP submission transactions (DATA) by result", ["result"])
DELIVERY_ATTEMPTS = Counter("postwerk_delivery_attempts", "Delivery attempts recorded by outcome", ["outcome"])
# Accepted to delivered. Buckets span the first attempt (seconds) to the retry schedule's later steps (hours).
DELIVERY_LATENCY = Histogram(
    "postwerk_delivery_latency_seconds",
    "Time from acceptance to delivery, per delivered recipient",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600, 48 * 3600),
)

# --- from the database -----------------------------------------------------------------------------------

# States with work still ahead: the queue. Final states are history, not depth.
QUEUE_STATES = (RecipientState.QUEUED, RecipientState.SENDING, RecipientState.DEFERRED, RecipientState.HELD)
OUTCOME_EVENTS = (EventType.DELIVERED, EventType.DEFERRED, EventType.BOUNCED, EventType.FAILED)
WEBHOOK_BACKLOG_STATES = (
    WebhookDelivery.State.PENDING,
    WebhookDelivery.State.QUEUED,
    WebhookDelivery.State.SENDING,
)


@dataclass
class Snapshot:
    taken: float = 0.0
    database_up: bool = True
    queue: dict[str, tuple[int, float]] = field(default_factory=dict)  # state -> (count, oldest age seconds)
    accepted_last_minute: int = 0
    outcomes_last_minute: dict[str, int] = field(default_factory=dict)
    webhook_backlog: dict[str, int] = field(default_factory=dict)
    webhook_oldest_age: float = 0.0
    inbound_backlog: int = 0


def uuid7_floor(moment: datetime) -> uuid.UUID:
    """The smallest uuid7 (sending.models.uuid7) of `moment`'s millisecond: ids are time-ordered, so a range on
    the primary key finds the rows created since then without an index on created_at."""
    return uuid.UUID(int=int(moment.timestamp() * 1000) << 80)


def _age(now: datetime, oldest: datetime | None) -> float:
    return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0


def _outcomes_since(since: datetime) -> dict[str, int]:
    # Event ids grow with time: the newest event from before `since` (a backward walk of the primary key over
    # one minute of events) bounds a primary-key range scan instead of scanning the table for created_at.
    before = Event.objects.filter(created_at__lt=since).order_by("-id").values_list("id", flat=True).first()
    events = Event.objects.filter(type__in=OUTCOME_EVENTS, created_at__gte=since)
    if before is not None:
        events = events.filter(id__gt=before)
    counts = dict(events.values_list("type").annotate(n=Count("id")).order_by())
    return {str(t): counts.get(t, 0) for t in OUTCOME_EVENTS}


def take_snapshot() -> Snapshot:
    now = timezone.now()
    since = now - timedelta(seconds=60)
    snap = Snapshot(taken=time.monotonic())
    rows = (
        Recipient.objects.filter(state__in=QUEUE_STATES)
        .values_list("state")
        .annotate(n=Count("id"), oldest=Min("created_at"))
        .order_by()
    )
    found = {state: (n, _age(now, oldest)) for state, n, oldest in rows}
    snap.queue = {str(s): found.get(s, (0, 0.0)) for s in QUEUE_STATES}
    snap.accepted_last_minute = Recipient.objects.filter(id__gte=uuid7_floor(since)).count()
    snap.outcomes_last_minute = _outcomes_since(since)
    hooks = (
        WebhookDelivery.objects.filter(state__in=WEBHOOK_BACKLOG_STATES)
        .values_list("state")
        .annotate(n=Count("id"), oldest=Min("created_at"))
        .order_by()
    )
    oldest = None
    for state, n, first in hooks:
        snap.webhook_backlog[state] = n
        oldest = first if oldest is None or first < oldest else oldest
    snap.webhook_backlog = {str(s): snap.webhook_backlog.get(s, 0) for s in WEBHOOK_BACKLOG_STATES}
    snap.webhook_oldest_age = _age(now, oldest)
    snap.inbound_backlog = InboundMessage.objects.filter(state=InboundMessage.State.RECEIVED).count()
    return snap


_lock = threading.Lock()
_cached = Snapshot()


def cached_snapshot() -> Snapshot:
    """The database figures, at most POSTWERK_METRICS_CACHE_SECONDS old: scrapes from several Prometheus
    servers (or a fast scrape interval) cost one set of queries per process per period."""
    global _cached
    with _lock:
        if _cached.taken and time.monotonic() - _cached.taken < settings.POSTWERK_METRICS_CACHE_SECONDS:
            return _cached
        try:
            _cached = take_snapshot()
        except DatabaseError:
            _cached = Snapshot(taken=time.monotonic(), database_up=False)
        return _cached


def clear_cache() -> None:
    global _cached
    with _lock:
        _cached = Snapshot()


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = cached_snapshot()
        yield GaugeMetricFamily("postwerk_database_up", "1 when the figures below could be read", int(snap.database_up))
        if not snap.database_up:
            return
        depth = GaugeMetricFamily("postwerk_queue_depth", "Recipients not yet finished, by state", labels=["state"])
        age = GaugeMetricFamily(
            "postwerk_queue_oldest_age_seconds", "Age of the oldest recipient in each state", labels=["state"]
        )
        for state, (n, oldest) in snap.queue.items():
            depth.add_metric([state], n)
            age.add_metric([state], oldest)
        yield depth
        yield age
        yield GaugeMetricFamily(
            "postwerk_recipients_accepted_last_minute",
            "Recipients accepted (API and SMTP) in the last 60 seconds",
            snap.accepted_last_minute,
        )
        outcomes = GaugeMetricFamily(
            "postwerk_deliveries_last_minute",
            "Delivery outcomes recorded in the last 60 seconds",
            labels=["outcome"],
        )
        for outcome, n in snap.outcomes_last_minute.items():
            outcomes.add_metric([outcome], n)
        yield outcomes
        backlog = GaugeMetricFamily(
            "postwerk_webhook_backlog", "Webhook deliveries not yet sent, by state", labels=["state"]
        )
        for state, n in snap.webhook_backlog.items():
            backlog.add_metric([state], n)
        yield backlog
        yield GaugeMetricFamily(
            "postwerk_webhook_backlog_oldest_age_seconds",
            "Age of the oldest webhook delivery not yet sent",
            snap.webhook_oldest_age,
        )
        yield GaugeMetricFamily(
            "postwerk_inbound_backlog", "Inbound reports stored but not yet processed", snap.inbound_backlog
        )


def exposition() -> bytes:
    """The text exposition format: this host's per-process figures and the database's."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:  # a process started without the folder: its own figures only
        for metric in (SMTP_SESSIONS, SMTP_SESSIONS_OPEN, SMTP_TRANSACTIONS, DELIVERY_ATTEMPTS, DELIVERY_LATENCY):
            registry.register(metric)
    registry.register(DatabaseCollector())
    return generate_latest(registry)
