"""The DKIM keys delivery signs with: a domain's active keys, decrypted once per worker process.

Looked up once per domain every few seconds rather than once per message. A key activated by a rotation starts
signing within KEY_CACHE_SECONDS in other processes (its predecessor stays valid in DNS meanwhile); the process
that activates it forgets the domain at once.

With POSTWERK_REQUIRE_VERIFIED_DOMAINS off (a local trial without DNS) a domain may send before DNS confirmed any
key; it is then signed with its newest pending keys, the ones its DNS records ask to publish.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache

from django.conf import settings

from mail.crypto import decrypt
from sending.models import DkimKey

KEY_CACHE_SECONDS = 10.0
_cache: dict[int | None, tuple[float, list[DkimKey]]] = {}
_lock = threading.Lock()


def active_keys(domain_id: int | None) -> list[DkimKey]:
    """The domain's active keys, newest first."""
    return [key for key in _live_keys(domain_id) if key.state == DkimKey.State.ACTIVE]


def keys_to_sign_with(domain_id: int | None) -> list[DkimKey]:
    """The active keys, newest first; with POSTWERK_REQUIRE_VERIFIED_DOMAINS off and none active, the pending
    ones (the setting lets an unverified domain send, and its mail must still be signed)."""
    keys = active_keys(domain_id)
    if keys or settings.POSTWERK_REQUIRE_VERIFIED_DOMAINS:
        return keys
    return [key for key in _live_keys(domain_id) if key.state == DkimKey.State.PENDING]


def _live_keys(domain_id: int | None) -> list[DkimKey]:
    """The domain's active and pending keys, newest first, cached for KEY_CACHE_SECONDS."""
    hit = _cache.get(domain_id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    keys = list(
        DkimKey.objects.filter(domain_id=domain_id, state__in=(DkimKey.State.ACTIVE, DkimKey.State.PENDING))
        .select_related("domain")
        .order_by("-created_at")
    )
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[domain_id] = (time.monotonic() + KEY_CACHE_SECONDS, keys)
    return keys


def forget(domain_id: int | None = None) -> None:
    """Drop one domain's cached keys (all when None), after its keys changed."""
    with _lock:
        if domain_id is None:
            _cache.clear()
        else:
            _cache.pop(domain_id, None)


def private_key(key: DkimKey) -> bytes:
    return _decrypted(key.pk, key.private_key_encrypted)


@lru_cache(maxsize=256)
def _decrypted(key_id: int, encrypted: str) -> bytes:
    return decrypt(encrypted)
