"""When to try a deferred recipient again, and when to give up (the schedule lives in settings)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings


def retry_delay(attempts: int) -> timedelta:
    """Delay after the `attempts`-th failed attempt: the schedule's step, its last step repeating."""
    schedule = settings.POSTWERK_RETRY_SCHEDULE
    return timedelta(seconds=schedule[min(max(attempts, 1), len(schedule)) - 1])


def next_attempt(*, attempts: int, now: datetime, created_at: datetime) -> datetime | None:
    """The next attempt's time, or None when it would fall past the maximum age: the recipient expires."""
    when = now + retry_delay(attempts)
    if when - created_at > timedelta(seconds=settings.POSTWERK_MAX_DELIVERY_AGE):
        return None
    return when
