"""Writes for organizations and their keys."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .models import ApiKey, Organization
from .secrets import generate_api_key

# Recording every request's time would make each send a write; a minute's precision is plenty.
LAST_USED_PRECISION = timedelta(seconds=60)


def organization_get_or_create(*, name: str) -> tuple[Organization, bool]:
    return Organization.objects.get_or_create(name=name)


@transaction.atomic
def api_key_create(*, organization: Organization, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which exists only in this return value."""
    key, prefix, key_hash = generate_api_key()
    api_key = ApiKey.objects.create(organization=organization, name=name, prefix=prefix, key_hash=key_hash)
    return api_key, key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_PRECISION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
