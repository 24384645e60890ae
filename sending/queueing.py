"""Handing recipient ids to Celery, grouped by destination so one worker reuses one SMTP connection."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)


def enqueue(refs: Iterable[tuple[str, str]]) -> int:
    """Publish delivery tasks for (recipient id, destination domain) pairs; returns tasks published.

    A failure to publish is logged, not raised: the rows are committed, and the sweep enqueues them again
    once their lease runs out.
    """
    from .tasks import deliver

    by_domain: dict[str, list[str]] = defaultdict(list)
    for recipient_id, domain in refs:
        by_domain[domain].append(recipient_id)
    size = settings.POSTWERK_DELIVERY_BATCH
    published = 0
    try:
        with deliver.app.producer_or_acquire() as producer:
            for ids in by_domain.values():
                for start in range(0, len(ids), size):
                    deliver.apply_async(args=[ids[start : start + size]], producer=producer)
                    published += 1
    except Exception:  # any broker error: the database keeps the truth and the sweep will retry
        log.exception("could not publish delivery tasks; the sweep will enqueue them later")
    return published


def enqueue_after_commit(refs: list[tuple[str, str]]) -> None:
    transaction.on_commit(lambda: enqueue(refs))
