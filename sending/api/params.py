"""Query parameters shared by the list endpoints."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sending.api.errors import ApiError


def datetime_param(params, name: str) -> datetime | None:  # type: ignore[no-untyped-def]
    raw = params.get(name)
    if not raw:
        return None
    value = parse_datetime(raw)
    if value is None:
        raise ApiError(400, f"Bad {name}.", {name: ["An ISO 8601 date-time."]}, "invalid")
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)
