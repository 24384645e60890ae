"""Idempotency-Key handling: a retried request within the window gets the first answer, and sends nothing."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from accounts.models import Organization
from sending.api.errors import ApiError
from sending.models import IdempotencyKey

HEADER = "Idempotency-Key"


def request_key(request) -> str | None:  # type: ignore[no-untyped-def]
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 255 or not key.isprintable():
        raise ApiError(400, "Invalid Idempotency-Key.", {HEADER: ["1 to 255 printable characters."]}, "invalid")
    return key


def request_hash(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def stored_answer(*, organization: Organization, key: str, fingerprint: str) -> IdempotencyKey | None:
    """The stored answer for this key, or None. The same key with another body is the caller's mistake."""
    cutoff = timezone.now() - timedelta(seconds=settings.POSTWERK_IDEMPOTENCY_TTL)
    found = IdempotencyKey.objects.filter(organization=organization, key=key).first()
    if found is None:
        return None
    if found.created_at < cutoff:
        found.delete()
        return None
    if found.request_hash != fingerprint:
        raise ApiError(
            422,
            "This Idempotency-Key was used with a different request body.",
            {HEADER: ["Already used for another request; use a new key."]},
            "idempotency_key_reused",
        )
    return found
