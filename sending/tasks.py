"""Celery tasks: thin wrappers that carry ids and call one service each."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from . import delivery
from . import sweep as sweeping
from .models import IdempotencyKey


@shared_task(name="sending.tasks.deliver")
def deliver(recipient_ids: list[str]) -> int:
    return delivery.deliver(recipient_ids)


@shared_task(name="sending.tasks.sweep")
def sweep() -> dict[str, int]:
    report = sweeping.sweep()
    return {"rescued": report.rescued, "enqueued": report.enqueued}


@shared_task(name="sending.tasks.expire_idempotency_keys")
def expire_idempotency_keys() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.POSTWERK_IDEMPOTENCY_TTL)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
